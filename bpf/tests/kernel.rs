//! Kernel tests: load and attach the real programs, move bytes over loopback, and read the
//! records back from the per-CPU rings. They need root and BPF; under `CI=true` a missing
//! capability fails the test, elsewhere the test says it was skipped.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use telegen_bpf::abi::{self, Event};
use telegen_bpf::{
    loaded_programs, preflight, ProcessFilter, RingBufferBuilder, TlsManager, Tracer, TracerOptions,
};

/// Tests that load the programs run one at a time: each checks what is left in the kernel.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn bpf_or_skip() -> bool {
    match preflight() {
        Ok(()) => true,
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("BPF unavailable under CI: {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED: BPF unavailable: {e}");
            false
        }
    }
}

/// `GET /hello HTTP/1.1\r\nHost: x\r\n\r\n` (32 bytes) and 200 bytes of body.
const REQ_LEN: usize = 32 + 200;

#[derive(Debug, Clone)]
struct Rec {
    ev: Event,
    payload: Vec<u8>,
}

fn drain(rings: &[telegen_bpf::CpuRing], out: &RefCell<Vec<Rec>>) {
    let mut b = RingBufferBuilder::new();
    for r in rings {
        b.add(&r.map, |rec: &[u8]| {
            let (ev, p) = Event::decode(rec).expect("record decodes");
            out.borrow_mut().push(Rec {
                ev,
                payload: p.to_vec(),
            });
            0
        })
        .unwrap();
    }
    let rb = b.build().unwrap();
    rb.consume().unwrap();
}

#[test]
fn traces_loopback_exchange_from_a_child_process() {
    if !bpf_or_skip() {
        return;
    }
    let _serial = serial();
    let opts = TracerOptions {
        capture_bytes: 64,
        ring_bytes_total: 1 << 20,
        ..Default::default()
    };
    let (tracer, rings) = Tracer::start(&opts).expect("tracer starts");
    assert!(tracer.hooks().iter().any(|h| h.ends_with("sys_exit_read")));

    // Our own process is excluded from tracing, so the traffic comes from a child (python).
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let script = format!(
        "import socket\ns=socket.create_connection(('127.0.0.1',{port}))\n\
         s.sendall(b'GET /hello HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n' + b'x'*200)\nprint(s.recv(100))\ns.close()\n"
    );
    let mut child = std::process::Command::new("python3")
        .arg("-c")
        .arg(&script)
        .spawn()
        .unwrap();
    let (mut conn, _) = listener.accept().unwrap();
    let mut buf = [0u8; 512];
    let mut got = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    while got < REQ_LEN && Instant::now() < deadline {
        let n = conn.read(&mut buf[got..]).unwrap();
        assert!(n > 0, "client closed early after {got} bytes");
        got += n;
    }
    conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    assert!(child.wait().unwrap().success());

    let recs = RefCell::new(Vec::new());
    drain(&rings, &recs);
    let recs = recs.into_inner();
    let child_pid = child.id();
    let mine: Vec<&Rec> = recs.iter().filter(|r| r.ev.pid == child_pid).collect();
    let out = mine
        .iter()
        .find(|r| r.ev.kind == abi::EV_DATA && r.ev.dir == abi::DIR_EGRESS)
        .expect("egress record");
    assert_eq!(out.ev.role, abi::ROLE_CLIENT);
    assert_eq!(out.ev.bytes as usize, REQ_LEN, "bytes moved by the syscall");
    assert_eq!(out.payload.len(), 64, "capture limit honoured");
    assert!(out.payload.starts_with(b"GET /hello HTTP/1.1"));
    assert_eq!(out.ev.remote.port, port);
    assert_eq!(out.ev.remote.ip().to_string(), "127.0.0.1");
    assert_eq!(out.ev.remote.proto, abi::PROTO_TCP);
    assert!(!out.ev.is_udp());
    let inb = mine
        .iter()
        .find(|r| r.ev.kind == abi::EV_DATA && r.ev.dir == abi::DIR_INGRESS)
        .expect("ingress record");
    assert!(inb.payload.starts_with(b"HTTP/1.1 200 OK"));
    assert_eq!(inb.ev.conn_id, out.ev.conn_id);
    assert!(
        inb.ev.seq > out.ev.seq,
        "kernel sequence orders the exchange"
    );
    assert!(mine
        .iter()
        .any(|r| r.ev.kind == abi::EV_CLOSE && r.ev.conn_id == out.ev.conn_id));
    // Nothing from our own process.
    assert!(recs.iter().all(|r| r.ev.pid != std::process::id()));
    let stats = tracer.stats();
    assert!(stats.iter().map(|s| s.emitted).sum::<u64>() >= 3);
    assert_eq!(stats.iter().map(|s| s.dropped).sum::<u64>(), 0);
    assert!(!loaded_programs().is_empty());
    drop(tracer);
    drop(rings);
    assert!(
        loaded_programs().is_empty(),
        "programs left after drop: {:?}",
        loaded_programs()
    );
}

#[test]
fn bad_settings_are_refused_before_loading() {
    if !bpf_or_skip() {
        return;
    }
    for opts in [
        TracerOptions {
            capture_bytes: 0,
            ..Default::default()
        },
        TracerOptions {
            capture_bytes: 5000,
            ..Default::default()
        },
        TracerOptions {
            ring_bytes_total: 1024,
            ..Default::default()
        },
        TracerOptions {
            conn_table_entries: 10,
            ..Default::default()
        },
        TracerOptions {
            udp_ports: vec![53, 0],
            ..Default::default()
        },
        TracerOptions {
            udp_ports: (1..=65).collect(),
            ..Default::default()
        },
    ] {
        let err = Tracer::start(&opts).expect_err("refused");
        assert!(
            matches!(err, telegen_bpf::BpfError::Invalid { .. }),
            "{err}"
        );
    }
}

/// A prerequisite program is missing: fail under `CI=true`, skip elsewhere.
fn tool_or_skip(ok: bool, what: &str) -> bool {
    if ok {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{what} unavailable under CI (scripts/setup.sh installs it)");
    }
    eprintln!("SKIPPED: {what} unavailable");
    false
}

fn runs(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    out.status.success().then_some(text)
}

/// nginx serving HTTPS with a self-signed certificate on a free loopback port; stopped on drop.
struct TlsNginx {
    child: std::process::Child,
    port: u16,
    dir: PathBuf,
}

impl TlsNginx {
    fn start(bin: &Path) -> TlsNginx {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir =
            std::env::temp_dir().join(format!("telegen-tls-nginx-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let d = dir.display();
        let cert = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .arg("ec_paramgen_curve:prime256v1")
            .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
            .arg("-keyout")
            .arg(dir.join("key.pem"))
            .arg("-out")
            .arg(dir.join("cert.pem"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run openssl");
        assert!(cert.success(), "openssl could not make a certificate");
        let conf = format!(
            "worker_processes 1;\ndaemon off;\nerror_log {d}/error.log;\npid {d}/nginx.pid;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n access_log off;\n client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n\
              fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
              server {{ listen 127.0.0.1:{port} ssl;\n\
               ssl_certificate {d}/cert.pem; ssl_certificate_key {d}/key.pem;\n\
               location /tls/ {{ default_type text/plain; return 200 \"tls ok\\n\"; }}\n }}\n}}\n"
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let child = Command::new(bin)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let n = TlsNginx { child, port, dir };
        let end = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < end, "nginx did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        n
    }
}

impl Drop for TlsNginx {
    fn drop(&mut self) {
        // SAFETY: signalling our own child; SIGTERM makes the master stop its workers and exit.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Kernel links (any owner) attached to Telegen's OpenSSL uprobe programs.
fn ssl_links() -> usize {
    let ids: Vec<u32> = libbpf_rs::query::ProgInfoIter::default()
        .filter(|p| p.name.to_string_lossy().starts_with("tg_ssl"))
        .map(|p| p.id)
        .collect();
    libbpf_rs::query::LinkInfoIter::default()
        .filter(|l| ids.contains(&l.prog_id))
        .count()
}

/// Two keep-alive requests over one TLS connection with Python's `ssl` (SSL_read_ex/_write_ex).
/// The second response is read 4 bytes at a time: after the first read, OpenSSL serves the rest
/// of the record from its buffer with no syscall, so the SSL* -> socket mapping must be reused.
const PY_TLS_CLIENT: &str = r#"
import socket, ssl, sys
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1]))))
for path, step in (("/tls/py1", 4096), ("/tls/py2", 4)):
    s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path).encode())
    buf = b""
    while b"tls ok\n" not in buf:
        d = s.recv(step)
        assert d, "server closed"
        buf += d
    assert buf.startswith(b"HTTP/1.1 200"), buf
s.close()
"#;

#[test]
fn tls_plaintext_from_openssl_uprobes_on_the_socket_connection() {
    if !bpf_or_skip() {
        return;
    }
    let nginx_bin = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    let nginx_ssl = nginx_bin
        .as_ref()
        .and_then(|b| runs(b.to_str()?, &["-V"]))
        .is_some_and(|v| v.contains("--with-http_ssl_module"));
    if !tool_or_skip(nginx_ssl, "nginx with http_ssl_module (nginx-light)")
        || !tool_or_skip(runs("openssl", &["version"]).is_some(), "openssl CLI")
        || !tool_or_skip(runs("curl", &["--version"]).is_some(), "curl")
        || !tool_or_skip(
            runs("python3", &["-c", "import ssl"]).is_some(),
            "python3 ssl",
        )
    {
        return;
    }
    let _serial = serial();
    // Trace only this test's descendants: other processes on the host (and their libssl
    // mappings) stay out of the assertions.
    let opts = TracerOptions {
        capture_bytes: 256,
        ring_bytes_total: 8 << 20,
        filter: ProcessFilter {
            pids: vec![std::process::id()],
            names: Vec::new(),
        },
        ..Default::default()
    };
    let (tracer, rings) = Tracer::start(&opts).expect("tracer starts");
    let mut tls = TlsManager::new(&tracer).expect("TLS programs loaded");
    let recs: std::rc::Rc<RefCell<Vec<Rec>>> = Default::default();
    let mut b = RingBufferBuilder::new();
    for r in &rings {
        let sink = recs.clone();
        b.add(&r.map, move |rec: &[u8]| {
            if let Ok((ev, p)) = Event::decode(rec) {
                sink.borrow_mut().push(Rec {
                    ev,
                    payload: p.to_vec(),
                });
            }
            0
        })
        .unwrap();
    }
    let rb = b.build().unwrap();

    let nginx = TlsNginx::start(nginx_bin.as_deref().unwrap());
    tls.scan_now();
    let st = tls.stats();
    assert_eq!(
        st.libraries_attached,
        1,
        "nginx maps libssl: {:?} {:?}",
        tls.libraries(),
        tls.failures()
    );
    assert!(tls.failures().is_empty(), "{:?}", tls.failures());
    assert_eq!(st.links, 9, "four entry/return pairs and SSL_set_fd");
    assert_eq!(ssl_links(), 9, "the kernel holds exactly our links");

    let port = nginx.port.to_string();
    let curl = Command::new("curl")
        .args(["-sk", "--http1.1"])
        .arg(format!("https://127.0.0.1:{port}/tls/curl"))
        .output()
        .expect("run curl");
    assert!(curl.status.success(), "curl failed: {curl:?}");
    assert_eq!(curl.stdout, b"tls ok\n");
    let py = Command::new("python3")
        .arg("-c")
        .arg(PY_TLS_CLIENT)
        .arg(&port)
        .output()
        .expect("run python3");
    assert!(
        py.status.success(),
        "python TLS client failed: {}",
        String::from_utf8_lossy(&py.stderr)
    );
    std::thread::sleep(Duration::from_millis(100));
    rb.consume().unwrap();

    let all = recs.borrow().clone();
    let tls_recs: Vec<&Rec> = all
        .iter()
        .filter(|r| r.ev.kind == abi::EV_TLS_DATA)
        .collect();
    let find = |dir: u8, role: u8, prefix: &[u8]| -> &Rec {
        tls_recs
            .iter()
            .find(|r| r.ev.dir == dir && r.ev.role == role && r.payload.starts_with(prefix))
            .copied()
            .unwrap_or_else(|| {
                panic!(
                    "no TLS_DATA dir {dir} role {role} starting {:?}; TLS records: {:?}",
                    String::from_utf8_lossy(prefix),
                    tls_recs
                        .iter()
                        .map(|r| (
                            r.ev.comm(),
                            r.ev.dir,
                            r.ev.role,
                            String::from_utf8_lossy(&r.payload[..r.payload.len().min(24)])
                                .into_owned()
                        ))
                        .collect::<Vec<_>>()
                )
            })
    };

    // curl (SSL_write/SSL_read): its request and the response, on one connection.
    let creq = find(
        abi::DIR_EGRESS,
        abi::ROLE_CLIENT,
        b"GET /tls/curl HTTP/1.1\r\n",
    );
    assert_eq!(creq.ev.remote.port, nginx.port);
    let cresp = tls_recs
        .iter()
        .find(|r| r.ev.conn_id == creq.ev.conn_id && r.ev.dir == abi::DIR_INGRESS)
        .expect("curl's TLS response record");
    assert!(cresp.payload.starts_with(b"HTTP/1.1 200"));
    assert!(cresp.ev.seq > creq.ev.seq);
    // nginx (SSL_read/SSL_write) saw the same request as a server.
    let sreq = find(
        abi::DIR_INGRESS,
        abi::ROLE_SERVER,
        b"GET /tls/curl HTTP/1.1\r\n",
    );
    let sresp = tls_recs
        .iter()
        .find(|r| r.ev.conn_id == sreq.ev.conn_id && r.ev.dir == abi::DIR_EGRESS)
        .expect("nginx's TLS response record");
    assert!(sresp.payload.starts_with(b"HTTP/1.1 200"));
    assert_eq!(sreq.ev.pid, sresp.ev.pid);
    assert_eq!(sreq.ev.local.port, nginx.port);

    // Python (SSL_read_ex/SSL_write_ex): two keep-alive exchanges on one connection.
    let p1 = find(
        abi::DIR_EGRESS,
        abi::ROLE_CLIENT,
        b"GET /tls/py1 HTTP/1.1\r\n",
    );
    let p2 = find(
        abi::DIR_EGRESS,
        abi::ROLE_CLIENT,
        b"GET /tls/py2 HTTP/1.1\r\n",
    );
    assert_eq!(p1.ev.conn_id, p2.ev.conn_id, "keep-alive: one connection");
    assert_ne!(p1.ev.conn_id, creq.ev.conn_id);
    assert_eq!(
        p1.ev.bytes as usize,
        "GET /tls/py1 HTTP/1.1\r\nHost: x\r\n\r\n".len()
    );
    let mut conn: Vec<&Rec> = all
        .iter()
        .filter(|r| r.ev.conn_id == p1.ev.conn_id)
        .collect();
    conn.sort_by_key(|r| r.ev.seq);
    let first_tls = conn
        .iter()
        .position(|r| r.ev.kind == abi::EV_TLS_DATA)
        .unwrap();
    // Before the first plaintext: the handshake, emitted as encrypted DATA (TLS records).
    assert!(first_tls > 0, "handshake bytes come first");
    assert!(conn[..first_tls].iter().all(|r| r.ev.kind == abi::EV_DATA));
    assert_eq!(conn[0].ev.dir, abi::DIR_EGRESS);
    assert_eq!(&conn[0].payload[..2], &[0x16, 0x03], "ClientHello record");
    // From then on: only plaintext (encrypted payloads suppressed), consecutive seqs, and the
    // close at the end.
    let tail = &conn[first_tls..];
    for w in tail.windows(2) {
        assert_eq!(
            w[1].ev.seq,
            w[0].ev.seq + 1,
            "consecutive seqs: {:?}",
            w[1].ev
        );
    }
    let (last, body) = tail.split_last().unwrap();
    assert_eq!(last.ev.kind, abi::EV_CLOSE);
    assert!(body.iter().all(|r| r.ev.kind == abi::EV_TLS_DATA));
    let summary: Vec<(u8, &[u8])> = body
        .iter()
        .map(|r| (r.ev.dir, &r.payload[..12.min(r.payload.len())]))
        .collect();
    assert_eq!(
        summary[..4],
        [
            (abi::DIR_EGRESS, &b"GET /tls/py1"[..]),
            (abi::DIR_INGRESS, &b"HTTP/1.1 200"[..]),
            (abi::DIR_EGRESS, &b"GET /tls/py2"[..]),
            (abi::DIR_INGRESS, &b"HTTP"[..]),
        ]
    );
    // The second response came in 4-byte reads, most served from OpenSSL's buffer: together
    // they are exactly the first response, in order, on the same connection.
    let whole: Vec<u8> = body[3..].iter().flat_map(|r| r.payload.clone()).collect();
    assert!(body[3..].iter().all(|r| r.ev.dir == abi::DIR_INGRESS
        && r.ev.bytes <= 4
        && r.payload.len() == r.ev.bytes as usize));
    assert_eq!(whole.len(), body[1].ev.bytes as usize);
    assert_eq!(
        String::from_utf8_lossy(&whole[..12]),
        String::from_utf8_lossy(&body[1].payload[..12])
    );
    assert!(whole.ends_with(b"tls ok\n"));
    let stats = tracer.stats();
    assert!(
        stats.iter().map(|s| s.tls_suppressed).sum::<u64>() >= 4,
        "encrypted payloads after the first plaintext were counted, not emitted: {stats:?}"
    );
    assert_eq!(stats.iter().map(|s| s.dropped).sum::<u64>(), 0);
    assert_eq!(stats.iter().map(|s| s.tls_unmapped).sum::<u64>(), 0);

    // Every process mapping libssl is gone: the next scan detaches the uprobes.
    drop(nginx);
    tls.scan_now();
    let st = tls.stats();
    assert_eq!(st.libraries_attached, 0, "{:?}", tls.libraries());
    assert_eq!(st.links, 0);
    assert_eq!(st.libraries_detached, 1);
    assert_eq!(ssl_links(), 0, "uprobe links left in the kernel");
    drop(tls);
    drop(rb);
    drop(tracer);
    drop(rings);
}

#[test]
fn tls_off_loads_no_uprobe_programs() {
    if !bpf_or_skip() {
        return;
    }
    let _serial = serial();
    let opts = TracerOptions {
        ring_bytes_total: 1 << 20,
        tls: false,
        ..Default::default()
    };
    let (tracer, rings) = Tracer::start(&opts).expect("tracer starts");
    assert!(!tracer.tls_enabled());
    let err = TlsManager::new(&tracer).expect_err("no TLS programs to attach");
    assert!(
        matches!(err, telegen_bpf::BpfError::Invalid { name: "tls", .. }),
        "{err}"
    );
    let progs = loaded_programs();
    assert!(progs.iter().any(|p| p == "tg_exit_read"), "{progs:?}");
    assert!(!progs.iter().any(|p| p.starts_with("tg_ssl")), "{progs:?}");
    assert!(tracer.hooks().iter().all(|h| h.starts_with("tracepoint/")));
    drop(tracer);
    drop(rings);
}

/// A free UDP port on 127.0.0.1 (bound and released: the child binds it again).
fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().port()
}

/// The child's script: a UDP server on the traced port and clients using every send/receive
/// syscall family, then a client/server pair on a port that is not traced. Prints its sockets'
/// fds and ports as `name fd port` lines.
const UDP_SCRIPT: &str = r#"
import ctypes, os, socket, sys
P, Q = int(sys.argv[1]), int(sys.argv[2])
libc = ctypes.CDLL(None, use_errno=True)

class iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
class msghdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32),
                ("iov", ctypes.POINTER(iovec)), ("iovlen", ctypes.c_size_t),
                ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]
class mmsghdr(ctypes.Structure):
    _fields_ = [("hdr", msghdr), ("len", ctypes.c_uint)]
class sockaddr_in(ctypes.Structure):
    _fields_ = [("family", ctypes.c_ushort), ("port", ctypes.c_ushort),
                ("addr", ctypes.c_uint8 * 4), ("zero", ctypes.c_uint8 * 8)]

def addr_of(port):
    a = sockaddr_in(socket.AF_INET, socket.htons(port))
    a.addr[:] = [127, 0, 0, 1]
    return a

def mmsg(bufs, addrs):
    n = len(bufs)
    vec = (mmsghdr * n)()
    keep = []
    for i, b in enumerate(bufs):
        iov = iovec(ctypes.cast(b, ctypes.c_void_p), len(b))
        keep.append(iov)
        vec[i].hdr.iov = ctypes.pointer(iov)
        vec[i].hdr.iovlen = 1
        if addrs[i] is not None:
            vec[i].hdr.name = ctypes.cast(ctypes.pointer(addrs[i]), ctypes.c_void_p)
            vec[i].hdr.namelen = ctypes.sizeof(sockaddr_in)
    return vec, keep

srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); srv.bind(("127.0.0.1", P))
cli = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
# 1. sendto / recvfrom
cli.sendto(b"q1-sendto", ("127.0.0.1", P))
data, peer = srv.recvfrom(100)
srv.sendto(b"a1-sendto", peer)
cli.recvfrom(100)
# 2. sendmsg / recvmsg
cli.sendmsg([b"q2-", b"sendmsg"], [], 0, ("127.0.0.1", P))
data, _, _, peer = srv.recvmsg(100)
srv.sendmsg([b"a2-sendmsg"], [], 0, peer)
cli.recvmsg(100)
# 3. sendmmsg / recvmmsg: two datagrams each way in one call
cport = cli.getsockname()[1]
bufs = [ctypes.create_string_buffer(b"q3-mmsg-one", 11), ctypes.create_string_buffer(b"q3-mmsg-two", 11)]
vec, keep = mmsg(bufs, [addr_of(P), addr_of(P)])
assert libc.sendmmsg(cli.fileno(), vec, 2, 0) == 2
rbufs = [ctypes.create_string_buffer(100), ctypes.create_string_buffer(100)]
names = [sockaddr_in(), sockaddr_in()]
rvec, rkeep = mmsg(rbufs, names)
assert libc.recvmmsg(srv.fileno(), rvec, 2, 0, None) == 2
bufs = [ctypes.create_string_buffer(b"a3-mmsg-one", 11), ctypes.create_string_buffer(b"a3-mmsg-two", 11)]
vec, keep = mmsg(bufs, [addr_of(cport), addr_of(cport)])
assert libc.sendmmsg(srv.fileno(), vec, 2, 0) == 2
rvec, rkeep = mmsg([ctypes.create_string_buffer(100), ctypes.create_string_buffer(100)], [None, None])
assert libc.recvmmsg(cli.fileno(), rvec, 2, 0, None) == 2
# 4. connected socket: write / read
con = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); con.connect(("127.0.0.1", P))
os.write(con.fileno(), b"q4-write")
data, peer = srv.recvfrom(100)
srv.sendto(b"a4-read", peer)
os.read(con.fileno(), 100)
# 5. a port that is not traced
other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); other.bind(("127.0.0.1", Q))
quiet = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
quiet.sendto(b"untraced", ("127.0.0.1", Q))
data, peer = other.recvfrom(100)
other.sendto(b"untraced-reply", peer)
quiet.recvfrom(100)
# 6. connected to the untraced port (the kernel stops looking at its plain writes), then a
#    datagram with its own address to the traced port: that one is seen
late = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); late.connect(("127.0.0.1", Q))
for _ in range(3):
    os.write(late.fileno(), b"to-untraced")
    other.recvfrom(100)
late.sendto(b"q6-late", ("127.0.0.1", P))
data, peer = srv.recvfrom(100)
# 7. IPv6: the same exchange over ::1
srv6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); srv6.bind(("::1", P))
cli6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
cli6.sendto(b"q7-v6", ("::1", P))
data, peer = srv6.recvfrom(100)
srv6.sendto(b"a7-v6", peer)
cli6.recvfrom(100)
socks = [("srv", srv), ("cli", cli), ("con", con), ("other", other), ("quiet", quiet), ("late", late),
         ("srv6", srv6), ("cli6", cli6)]
for name, s in socks:
    print(name, s.fileno(), s.getsockname()[1])
for _, s in socks:
    s.close()
"#;

#[test]
fn traces_udp_datagrams_on_traced_ports_only() {
    if !bpf_or_skip() {
        return;
    }
    let _serial = serial();
    let (p, q) = (free_udp_port(), free_udp_port());
    let opts = TracerOptions {
        capture_bytes: 64,
        ring_bytes_total: 1 << 20,
        udp_ports: vec![p],
        ..Default::default()
    };
    let (tracer, rings) = Tracer::start(&opts).expect("tracer starts");
    assert!(tracer
        .hooks()
        .iter()
        .any(|h| h.ends_with("sys_exit_recvmmsg")));
    let (pid, socks) = run_udp_script(p, q);
    let recs = RefCell::new(Vec::new());
    drain(&rings, &recs);
    let recs = recs.into_inner();
    drop(tracer);
    drop(rings);
    let mine: Vec<&Rec> = recs.iter().filter(|r| r.ev.pid == pid).collect();

    // Nothing at all from the sockets on the untraced port: no data, no close.
    for name in ["other", "quiet"] {
        let fd = socks[name].0;
        assert!(
            mine.iter().all(|r| r.ev.fd != fd || !r.ev.is_udp()),
            "{name} (untraced port) produced events"
        );
    }
    // No datagram to or from the untraced port (the close of `late`, traced later, carries the
    // socket's connected peer, which is on that port).
    assert!(mine
        .iter()
        .filter(|r| r.ev.kind == abi::EV_DATA)
        .all(|r| r.ev.remote.port != q && r.ev.local.port != q));

    let (cli_port, con_port, late_port) = (socks["cli"].1, socks["con"].1, socks["late"].1);
    let expect = |name: &str, role: u8, want: &[(u8, u16, &[u8])]| {
        let fd = socks[name].0;
        let mut evs: Vec<&&Rec> = mine
            .iter()
            .filter(|r| r.ev.fd == fd && r.ev.is_udp())
            .collect();
        evs.sort_by_key(|r| r.ev.seq);
        let conn = evs.first().expect("events").ev.conn_id;
        assert!(evs.iter().all(|r| r.ev.conn_id == conn), "{name}: one conn");
        let (close, data): (Vec<&&Rec>, Vec<&&Rec>) =
            evs.iter().partition(|r| r.ev.kind == abi::EV_CLOSE);
        assert_eq!(close.len(), 1, "{name}: one close");
        let got: Vec<(u8, u16, &[u8])> = data
            .iter()
            .map(|r| (r.ev.dir, r.ev.remote.port, r.payload.as_slice()))
            .collect();
        assert_eq!(got, want, "{name}");
        let loopback = if name.ends_with('6') {
            "::1"
        } else {
            "127.0.0.1"
        };
        for r in &data {
            assert_eq!(r.ev.kind, abi::EV_DATA);
            assert_eq!(r.ev.role, role, "{name}");
            assert_eq!(r.ev.bytes as usize, r.payload.len());
            if r.ev.remote.port != 0 {
                assert_eq!(r.ev.remote.ip().to_string(), loopback, "{name}");
            }
            assert_eq!(r.ev.local.port, socks[name].1);
            assert_eq!(r.ev.remote.proto, abi::PROTO_UDP);
        }
        let seqs: Vec<u64> = evs.iter().map(|r| r.ev.seq).collect();
        assert_eq!(
            seqs,
            (seqs[0]..seqs[0] + seqs.len() as u64).collect::<Vec<_>>()
        );
    };
    let (i, e) = (abi::DIR_INGRESS, abi::DIR_EGRESS);
    expect(
        "cli",
        abi::ROLE_CLIENT,
        &[
            (e, p, b"q1-sendto"),
            (i, p, b"a1-sendto"),
            (e, p, b"q2-sendmsg"),
            (i, p, b"a2-sendmsg"),
            (e, p, b"q3-mmsg-one"),
            (e, p, b"q3-mmsg-two"),
            // recvmmsg without msg_name on an unconnected socket: the peer is unknown (port
            // 0), but the socket is a traced client, so the datagrams are reported.
            (i, 0, b"a3-mmsg-one"),
            (i, 0, b"a3-mmsg-two"),
        ],
    );
    expect(
        "srv",
        abi::ROLE_SERVER,
        &[
            (i, cli_port, b"q1-sendto"),
            (e, cli_port, b"a1-sendto"),
            (i, cli_port, b"q2-sendmsg"),
            (e, cli_port, b"a2-sendmsg"),
            (i, cli_port, b"q3-mmsg-one"),
            (i, cli_port, b"q3-mmsg-two"),
            (e, cli_port, b"a3-mmsg-one"),
            (e, cli_port, b"a3-mmsg-two"),
            (i, con_port, b"q4-write"),
            (e, con_port, b"a4-read"),
            (i, late_port, b"q6-late"),
        ],
    );
    expect("late", abi::ROLE_CLIENT, &[(e, p, b"q6-late")]);
    let cli6_port = socks["cli6"].1;
    expect(
        "srv6",
        abi::ROLE_SERVER,
        &[(i, cli6_port, b"q7-v6"), (e, cli6_port, b"a7-v6")],
    );
    expect(
        "cli6",
        abi::ROLE_CLIENT,
        &[(e, p, b"q7-v6"), (i, p, b"a7-v6")],
    );
    expect(
        "con",
        abi::ROLE_CLIENT,
        &[(e, p, b"q4-write"), (i, p, b"a4-read")],
    );
    assert!(
        loaded_programs().is_empty(),
        "programs left after drop: {:?}",
        loaded_programs()
    );
}

type Socks = std::collections::HashMap<String, (u32, u16)>;

/// Run [`UDP_SCRIPT`] in a child (our own process is never traced); its pid and sockets.
fn run_udp_script(p: u16, q: u16) -> (u32, Socks) {
    let child = std::process::Command::new("python3")
        .arg("-c")
        .arg(UDP_SCRIPT)
        .arg(p.to_string())
        .arg(q.to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let socks = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (
                f[0].to_string(),
                (f[1].parse().unwrap(), f[2].parse().unwrap()),
            )
        })
        .collect();
    (pid, socks)
}
