//! Real peers for the protocol tests beyond HTTP/1.1: a gRPC server and client (Python `grpcio`),
//! a DNS server (`dnsmasq`), DNS clients (`dig`, Python `dnspython`), a DNS server that never
//! answers, and an HTTPS client on OpenSSL 1.1 (Python `ctypes` on Debian bullseye's libssl1.1,
//! unpacked by scripts/setup.sh). Every process is killed and reaped on drop.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::agent::{free_port, wait_port, Proc};

/// Start a Python peer that talks over its stdin and stdout, and read the first line it prints
/// (its "started" line; empty if it died first).
fn start_python(cmd: &mut Command) -> (Proc, BufReader<std::process::ChildStdout>, String) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("peer started");
    (Proc { child }, stdout, line)
}

/// The gRPC service the tests call: `demo.v1.Echo` with a unary `Ping`, a server-streaming
/// `List` (3 messages), a unary `Fail` that aborts with NOT_FOUND, and the large-message pair
/// `Big` (a unary answer of 100,000 bytes) and `BigList` (3 messages of 40,000 bytes): grpcio
/// writes such an answer and its trailers in one sendmsg, far larger than the capture size. Then
/// the calls that stream large messages the other way: `Collect` (client streaming: answers
/// `got <bytes>`), `CollectFail` (client streaming: reads every message, then fails with
/// INVALID_ARGUMENT) and `Chat` (bidirectional: answers each message with `got <bytes>` as it
/// arrives). Raw bytes, no protoc.
const GRPC_SERVER: &str = r#"
import sys
from concurrent import futures
import grpc

def ping(req, ctx):
    return b"pong:" + req

def lst(req, ctx):
    for i in range(3):
        yield b"item%d" % i

def fail(req, ctx):
    ctx.abort(grpc.StatusCode.NOT_FOUND, "no such thing")

def big(req, ctx):
    return b"b" * 100000

def big_list(req, ctx):
    for i in range(3):
        yield (b"%d" % i) * 40000

def collect(reqs, ctx):
    return b"got %d" % sum(len(m) for m in reqs)

def collect_fail(reqs, ctx):
    n = sum(len(m) for m in reqs)
    ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, "read %d bytes" % n)

def chat(reqs, ctx):
    for m in reqs:
        yield b"got %d" % len(m)

handlers = {
    "Ping": grpc.unary_unary_rpc_method_handler(ping),
    "List": grpc.unary_stream_rpc_method_handler(lst),
    "Fail": grpc.unary_unary_rpc_method_handler(fail),
    "Big": grpc.unary_unary_rpc_method_handler(big),
    "BigList": grpc.unary_stream_rpc_method_handler(big_list),
    "Collect": grpc.stream_unary_rpc_method_handler(collect),
    "CollectFail": grpc.stream_unary_rpc_method_handler(collect_fail),
    "Chat": grpc.stream_stream_rpc_method_handler(chat),
}
server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("demo.v1.Echo", handlers),))
server.add_insecure_port("127.0.0.1:" + sys.argv[1])
server.start()
print("ready", flush=True)
server.wait_for_termination()
"#;

/// Calls `Ping` n times, `List` m times, `Fail` k times, `Big` b times, `BigList` l times,
/// `Collect` c times, `CollectFail` f times and `Chat` t times on one channel, then prints a line
/// `done <pings> <items> <failcode> <bigs> <bigitems> <collected> <collectfailcode> <chatitems>`
/// (a big answer counts when its size is right, a `Collect` when it counted every byte). Each
/// streaming call sends 4 messages of 40,000 to 100,000 bytes (sizes vary from call to call).
/// Waits for `go` on stdin first, so the agent can be told its pid before any call is made.
const GRPC_CLIENT: &str = r#"
import sys
import grpc

port, n, m, k, b, l, c, f, t = sys.argv[1], *(int(a) for a in sys.argv[2:10])
print("pid", flush=True)
sys.stdin.readline()
ch = grpc.insecure_channel("127.0.0.1:" + port)
grpc.channel_ready_future(ch).result(timeout=10)
ping = ch.unary_unary("/demo.v1.Echo/Ping")
lst = ch.unary_stream("/demo.v1.Echo/List")
fail = ch.unary_unary("/demo.v1.Echo/Fail")
big = ch.unary_unary("/demo.v1.Echo/Big")
big_list = ch.unary_stream("/demo.v1.Echo/BigList")
collect = ch.stream_unary("/demo.v1.Echo/Collect")
collect_fail = ch.stream_unary("/demo.v1.Echo/CollectFail")
chat = ch.stream_stream("/demo.v1.Echo/Chat")
calls = 0
def messages():
    global calls
    calls += 1
    sizes = [40000 + (calls * 4 + j) * 13331 % 60001 for j in range(4)]
    return sizes, [bytes([97 + j]) * s for j, s in enumerate(sizes)]
pings = sum(1 for _ in range(n) if ping(b"x") == b"pong:x")
items = sum(len(list(lst(b"x"))) for _ in range(m))
code = "none"
for _ in range(k):
    try:
        fail(b"x")
    except grpc.RpcError as e:
        code = e.code().name
bigs = sum(1 for _ in range(b) if len(big(b"x")) == 100000)
big_items = sum(1 for _ in range(l) for x in big_list(b"x") if len(x) == 40000)
collected = 0
for _ in range(c):
    sizes, msgs = messages()
    collected += collect(iter(msgs)) == b"got %d" % sum(sizes)
fail_code = "none"
for _ in range(f):
    try:
        collect_fail(iter(messages()[1]))
    except grpc.RpcError as e:
        fail_code = e.code().name
chat_items = 0
for _ in range(t):
    sizes, msgs = messages()
    got = list(chat(iter(msgs)))
    chat_items += sum(1 for g, s in zip(got, sizes) if g == b"got %d" % s)
ch.close()
print("done", pings, items, code, bigs, big_items, collected, fail_code, chat_items, flush=True)
"#;

/// A Python `grpcio` server on a free loopback port.
#[derive(Debug)]
pub struct GrpcServer {
    pub proc: Proc,
    pub port: u16,
}

impl GrpcServer {
    pub fn start() -> GrpcServer {
        let port = free_port();
        let mut child = Command::new("python3")
            .args(["-c", GRPC_SERVER, &port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3");
        let out = child.stdout.take().expect("piped");
        let proc = Proc { child };
        let mut line = String::new();
        BufReader::new(out)
            .read_line(&mut line)
            .expect("read grpc server");
        assert_eq!(
            line.trim(),
            "ready",
            "grpc server did not start (pip install grpcio; the README's test command does)"
        );
        wait_port(port, Duration::from_secs(10));
        GrpcServer { proc, port }
    }
}

/// How many calls of each kind a [`GrpcClient`] makes (in this order).
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcCalls {
    pub pings: u32,
    pub lists: u32,
    pub fails: u32,
    pub bigs: u32,
    pub big_lists: u32,
    pub collects: u32,
    pub collect_fails: u32,
    pub chats: u32,
}

impl GrpcCalls {
    /// The counts in the order the client script takes them on its command line.
    fn args(&self) -> [String; 8] {
        [
            self.pings,
            self.lists,
            self.fails,
            self.bigs,
            self.big_lists,
            self.collects,
            self.collect_fails,
            self.chats,
        ]
        .map(|v| v.to_string())
    }
}

/// What a [`GrpcClient`] got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcOutcome {
    /// `Ping` answers that were right.
    pub pings: u32,
    /// `List` messages received.
    pub items: u32,
    /// Status name the last `Fail` call raised (`none` without one).
    pub fail: String,
    /// `Big` answers of the right size.
    pub bigs: u32,
    /// `BigList` messages of the right size.
    pub big_items: u32,
    /// `Collect` calls whose answer counted every byte sent.
    pub collected: u32,
    /// Status name the last `CollectFail` call raised (`none` without one).
    pub collect_fail: String,
    /// `Chat` answers that counted their message's bytes.
    pub chat_items: u32,
}

/// A gRPC client process started and paused before its first call.
#[derive(Debug)]
pub struct GrpcClient {
    pub proc: Proc,
    stdout: BufReader<std::process::ChildStdout>,
}

impl GrpcClient {
    /// Start a client that makes `calls` (it waits for [`GrpcClient::run_calls`]).
    pub fn start_calls(port: u16, calls: GrpcCalls) -> GrpcClient {
        let (proc, stdout, line) = start_python(
            Command::new("python3")
                .args(["-c", GRPC_CLIENT, &port.to_string()])
                .args(calls.args()),
        );
        assert_eq!(line.trim(), "pid", "grpc client did not start");
        GrpcClient { proc, stdout }
    }

    /// Let it make its calls; returns what each kind of call got back.
    pub fn run_calls(mut self) -> GrpcOutcome {
        use std::io::Write;
        let stdin = self.proc.child.stdin.as_mut().expect("piped");
        stdin.write_all(b"go\n").expect("write");
        stdin.flush().expect("flush");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("client result");
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f.first(), Some(&"done"), "grpc client failed: {line:?}");
        let status = self.proc.child.wait().expect("wait");
        assert!(status.success());
        let num = |i: usize| -> u32 { f[i].parse().expect("a count") };
        GrpcOutcome {
            pings: num(1),
            items: num(2),
            fail: f[3].to_string(),
            bigs: num(4),
            big_items: num(5),
            collected: num(6),
            collect_fail: f[7].to_string(),
            chat_items: num(8),
        }
    }
}

/// dnsmasq from Debian on a free loopback port (UDP and TCP), answering from its own records:
/// `svc.test` A 10.1.2.3, `both.test` A 10.0.0.9 and AAAA fd00::9; every other name under
/// `.test` is NXDOMAIN. No upstream servers.
#[derive(Debug)]
pub struct Dnsmasq {
    pub proc: Proc,
    pub port: u16,
}

fn dnsmasq_bin() -> PathBuf {
    ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("dnsmasq not found: apt-get install -y dnsmasq-base (the README's test command does)")
        })
}

impl Dnsmasq {
    pub fn start() -> Dnsmasq {
        let port = free_port();
        let child = Command::new(dnsmasq_bin())
            .args([
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--listen-address=127.0.0.1",
                "--user=root",
                "--pid-file",
                "--local=/test/",
                "--address=/svc.test/10.1.2.3",
                "--host-record=both.test,10.0.0.9,fd00::9",
                "--cache-size=0",
            ])
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dnsmasq");
        let proc = Proc { child };
        wait_port(port, Duration::from_secs(10));
        Dnsmasq { proc, port }
    }
}

/// `dig` against 127.0.0.1:port; returns its short answer. `extra` are more dig options
/// (`+tcp`, `AAAA`, ...). Never retries, waits at most `timeout_s`.
pub fn dig(port: u16, name: &str, extra: &[&str], timeout_s: u32) -> String {
    let out = Command::new("dig")
        .arg("@127.0.0.1")
        .args(["-p", &port.to_string(), name])
        .args(extra)
        .args(["+tries=1", &format!("+time={timeout_s}"), "+nocookie"])
        .output()
        .expect("run dig (apt-get install -y dnsutils)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A UDP socket bound on a free loopback port that never answers (a dead DNS server).
#[derive(Debug)]
pub struct SilentDns {
    _sock: UdpSocket,
    pub port: u16,
}

impl SilentDns {
    pub fn start() -> SilentDns {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let port = sock.local_addr().expect("addr").port();
        SilentDns { _sock: sock, port }
    }
}

/// Python `dnspython` resolving each name (type A) against 127.0.0.1:port, one query each;
/// prints one line per name: the answer or the exception name. Waits for `go` on stdin first.
const PY_RESOLVER: &str = r#"
import sys
import dns.resolver

port = int(sys.argv[1])
print("pid", flush=True)
sys.stdin.readline()
r = dns.resolver.Resolver(configure=False)
r.nameservers = ["127.0.0.1"]
r.port = port
r.lifetime = 3
for name in sys.argv[2:]:
    try:
        a = r.resolve(name, "A", raise_on_no_answer=False)
        print(name, " ".join(x.to_text() for x in a), flush=True)
    except Exception as e:
        print(name, type(e).__name__, flush=True)
print("done", flush=True)
"#;

/// A Python resolver process paused before its first query.
#[derive(Debug)]
pub struct PyResolver {
    pub proc: Proc,
    stdout: BufReader<std::process::ChildStdout>,
}

impl PyResolver {
    pub fn start(port: u16, names: &[&str]) -> PyResolver {
        let (proc, stdout, line) = start_python(
            Command::new("python3")
                .args(["-c", PY_RESOLVER, &port.to_string()])
                .args(names),
        );
        assert_eq!(
            line.trim(),
            "pid",
            "python resolver did not start (pip install dnspython; the README's test command does)"
        );
        PyResolver { proc, stdout }
    }

    /// Run the queries; returns the lines printed (one per name).
    pub fn run(mut self) -> Vec<String> {
        use std::io::Write;
        let stdin = self.proc.child.stdin.as_mut().expect("piped");
        stdin.write_all(b"go\n").expect("write");
        stdin.flush().expect("flush");
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            if self.stdout.read_line(&mut line).expect("read") == 0 {
                break;
            }
            if line.trim() == "done" {
                break;
            }
            lines.push(line.trim().to_string());
        }
        let _ = self.proc.child.wait();
        lines
    }
}

/// Where scripts/setup.sh unpacks Debian bullseye's libssl1.1 (`libssl.so.1.1` and
/// `libcrypto.so.1.1`); it is not installed system-wide.
pub const LIBSSL11_DIR: &str = "/opt/telegen-test/libssl1.1/root/usr/lib/x86_64-linux-gnu";

/// The directory holding OpenSSL 1.1's libraries, when scripts/setup.sh has unpacked them.
/// Under `CI=true` their absence fails the test loudly; elsewhere the test prints that it was
/// skipped and why.
pub fn require_libssl11() -> Option<PathBuf> {
    let dir = PathBuf::from(LIBSSL11_DIR);
    let missing: Vec<&str> = ["libssl.so.1.1", "libcrypto.so.1.1"]
        .into_iter()
        .filter(|f| !dir.join(f).is_file())
        .collect();
    if missing.is_empty() {
        return Some(dir);
    }
    let why = format!(
        "{missing:?} not in {LIBSSL11_DIR}: run scripts/setup.sh (it unpacks Debian bullseye's libssl1.1)"
    );
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("OpenSSL 1.1 unavailable under CI=true: {why}");
    }
    eprintln!("SKIPPED: OpenSSL 1.1 unavailable: {why}");
    None
}

/// An HTTPS/1.1 client written against OpenSSL 1.1's C API with `ctypes` (no Python `ssl`
/// module, so libssl.so.3 is never mapped; the script checks both). Two connections: one tied
/// to its socket with `SSL_set_fd`, one with a socket BIO (`BIO_new_socket` + `SSL_set_bio`).
/// Each request is written with `SSL_write` or `SSL_write_ex` and its response read with
/// `SSL_read` or `SSL_read_ex` in 32-byte pieces, so most reads are served from OpenSSL's
/// buffer without a syscall. Prints `version <OpenSSL_version>`, waits for `go` on stdin (so the
/// agent can be told its pid and attach first), then prints `<path> <status>` per request and
/// `done`.
const PY_SSL11_CLIENT: &str = r#"
import ctypes, os, socket, sys

crypto_path, ssl_path, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
crypto = ctypes.CDLL(crypto_path, mode=ctypes.RTLD_GLOBAL)
ssl = ctypes.CDLL(ssl_path)
P, I, Z = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t

def fn(lib, name, res, *args):
    f = getattr(lib, name)
    f.restype, f.argtypes = res, list(args)
    return f

OpenSSL_version = fn(crypto, "OpenSSL_version", ctypes.c_char_p, I)
BIO_new_socket = fn(crypto, "BIO_new_socket", P, I, I)
TLS_client_method = fn(ssl, "TLS_client_method", P)
SSL_CTX_new = fn(ssl, "SSL_CTX_new", P, P)
SSL_CTX_free = fn(ssl, "SSL_CTX_free", None, P)
SSL_new = fn(ssl, "SSL_new", P, P)
SSL_free = fn(ssl, "SSL_free", None, P)
SSL_set_fd = fn(ssl, "SSL_set_fd", I, P, I)
SSL_set_bio = fn(ssl, "SSL_set_bio", None, P, P, P)
SSL_connect = fn(ssl, "SSL_connect", I, P)
SSL_shutdown = fn(ssl, "SSL_shutdown", I, P)
SSL_write = fn(ssl, "SSL_write", I, P, ctypes.c_char_p, I)
SSL_read = fn(ssl, "SSL_read", I, P, P, I)
SSL_write_ex = fn(ssl, "SSL_write_ex", I, P, ctypes.c_char_p, Z, ctypes.POINTER(Z))
SSL_read_ex = fn(ssl, "SSL_read_ex", I, P, P, Z, ctypes.POINTER(Z))

maps = open("/proc/self/maps").read()
if os.path.realpath(ssl_path) not in maps or "libssl.so.3" in maps:
    sys.exit("expected %s mapped and no libssl.so.3" % ssl_path)
print("version", OpenSSL_version(0).decode(), flush=True)
sys.stdin.readline()

ctx = SSL_CTX_new(TLS_client_method())
assert ctx, "SSL_CTX_new"
CHUNK = 32

def send(s, data, ex):
    if ex:
        n = Z(0)
        assert SSL_write_ex(s, data, len(data), ctypes.byref(n)) == 1 and n.value == len(data)
    else:
        assert SSL_write(s, data, len(data)) == len(data), "SSL_write"

def recv(s, ex):
    buf = ctypes.create_string_buffer(CHUNK)
    if ex:
        n = Z(0)
        assert SSL_read_ex(s, buf, CHUNK, ctypes.byref(n)) == 1, "SSL_read_ex"
        return buf.raw[: n.value]
    n = SSL_read(s, buf, CHUNK)
    assert n > 0, "SSL_read"
    return buf.raw[:n]

def request(s, path, ex):
    send(s, b"GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n" % path.encode(), ex)
    resp = b""
    while b"\r\n\r\n" not in resp:
        resp += recv(s, ex)
    head, body = resp.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    length = next(int(l.split(":", 1)[1]) for l in lines if l.lower().startswith("content-length:"))
    while len(body) < length:
        body += recv(s, ex)
    print(path, lines[0].split()[1], flush=True)

def connection(bind, calls):
    sock = socket.create_connection(("127.0.0.1", port))
    s = SSL_new(ctx)
    assert s, "SSL_new"
    if bind == "set_fd":
        assert SSL_set_fd(s, sock.fileno()) == 1, "SSL_set_fd"
    else:
        bio = BIO_new_socket(sock.fileno(), 0)
        assert bio, "BIO_new_socket"
        SSL_set_bio(s, bio, bio)
    assert SSL_connect(s) == 1, "SSL_connect"
    for path, ex in calls:
        request(s, path, ex)
    SSL_shutdown(s)
    SSL_free(s)
    sock.close()

for conn in sys.argv[4:]:
    bind, *reqs = conn.split()
    connection(bind, [(r.rsplit(":", 1)[0], r.rsplit(":", 1)[1] == "ex") for r in reqs])
SSL_CTX_free(ctx)
print("done", flush=True)
"#;

/// The OpenSSL 1.1 client of `PY_SSL11_CLIENT` (a Python script on `ctypes`), started and
/// paused before its first connection.
#[derive(Debug)]
pub struct Ssl11Client {
    pub proc: Proc,
    /// What the loaded libcrypto says it is (`OpenSSL_version(OPENSSL_VERSION)`).
    pub version: String,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Ssl11Client {
    /// `libssl`: the libssl.so.1.1 file to load (the one in [`LIBSSL11_DIR`] or a copy of it);
    /// libcrypto.so.1.1 comes from `lib_dir`. `conns`: one string per connection, `"<set_fd|bio> <path>:<plain|ex> ..."`, its
    /// requests in order on that keep-alive connection (`plain`: `SSL_write`/`SSL_read`, `ex`:
    /// `SSL_write_ex`/`SSL_read_ex`). OpenSSL 1.1 reads no configuration (`OPENSSL_CONF` is
    /// /dev/null): the system's is written for OpenSSL 3.
    pub fn start(
        lib_dir: &std::path::Path,
        libssl: &std::path::Path,
        port: u16,
        conns: &[&str],
    ) -> Ssl11Client {
        let (proc, stdout, line) = start_python(
            Command::new("python3")
                .arg("-c")
                .arg(PY_SSL11_CLIENT)
                .arg(lib_dir.join("libcrypto.so.1.1"))
                .arg(libssl)
                .arg(port.to_string())
                .args(conns)
                .env("OPENSSL_CONF", "/dev/null"),
        );
        let version = line
            .trim()
            .strip_prefix("version ")
            .unwrap_or_else(|| panic!("OpenSSL 1.1 client did not start: {line:?}"))
            .to_string();
        Ssl11Client {
            proc,
            version,
            stdout,
        }
    }

    /// Make the requests; returns `(path, status)` per request, in order.
    pub fn run(mut self) -> Vec<(String, u16)> {
        use std::io::Write;
        let stdin = self.proc.child.stdin.as_mut().expect("piped");
        stdin.write_all(b"go\n").expect("write");
        stdin.flush().expect("flush");
        let mut out = Vec::new();
        loop {
            let mut line = String::new();
            if self.stdout.read_line(&mut line).expect("read") == 0 {
                panic!("OpenSSL 1.1 client exited early after {out:?}");
            }
            if line.trim() == "done" {
                break;
            }
            let (path, status) = line.trim().rsplit_once(' ').expect("<path> <status>");
            out.push((path.to_string(), status.parse().expect("status")));
        }
        let status = self.proc.child.wait().expect("wait");
        assert!(status.success(), "OpenSSL 1.1 client: {status}");
        out
    }
}
