//! Kernel tests of UDP tracking: datagrams on traced ports through every send/receive syscall
//! family, nothing from untraced ports.

mod common;

use std::cell::RefCell;

use telegen_bpf::abi::{self};
use telegen_bpf::{loaded_programs, Tracer, TracerOptions};

use common::*;

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
