//! Kernel tests: load and attach the real programs, move bytes over loopback, and read the
//! records back from the per-CPU rings. They need root and BPF; under `CI=true` a missing
//! capability fails the test, elsewhere the test says it was skipped.

mod common;

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use telegen_bpf::abi::{self};
use telegen_bpf::{enable_program_stats, loaded_programs, Tracer, TracerOptions};

use common::*;

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
    // The first 64 bytes, then the rest (168 <= the 256-byte tail budget) as the tail.
    assert_eq!(
        out.payload.len(),
        REQ_LEN,
        "capture limit and tail honoured"
    );
    assert_eq!(out.ev.tail as usize, REQ_LEN - 64);
    assert!(out.payload.starts_with(b"GET /hello HTTP/1.1"));
    assert!(out.payload.ends_with(&[b'x'; 168]));
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

/// A server whose acceptor thread runs on CPU 0 and hands each connection to a worker on
/// CPU 1: the connection's id carries the CPU of its first record (the worker's), since the
/// agent gives a connection to the shard draining that CPU's ring; the accepting CPU would
/// put every connection of such a server on one shard.
const PY_ACCEPTOR: &str = r#"
import os, socket, threading
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen()
os.sched_setaffinity(0, {0})
print(srv.getsockname()[1], flush=True)
c, _ = srv.accept()
def serve():
    os.sched_setaffinity(0, {1})
    data = c.recv(100)
    # The scheduler moves the thread: its next records are written on CPU 0.
    os.sched_setaffinity(0, {0})
    c.sendall(b"ok:" + data)
    c.close()
t = threading.Thread(target=serve)
t.start()
t.join()
"#;

/// Start the tracer with `opts`, run the Python server `py` (given `args`; it prints its port
/// first), send it `request` and read its answer to the end. Returns the tracer (still loaded),
/// the answer and the child's records, drained once it exited.
fn serve_a_child(
    opts: &TracerOptions,
    py: &str,
    args: &[&str],
    request: &[u8],
) -> (Tracer, Vec<u8>, Vec<Rec>) {
    let (tracer, rings) = Tracer::start(opts).expect("tracer starts");
    let mut child = std::process::Command::new("python3")
        .args(["-c", py])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut port = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut port,
    )
    .unwrap();
    let mut conn =
        std::net::TcpStream::connect(("127.0.0.1", port.trim().parse().unwrap())).unwrap();
    conn.write_all(request).unwrap();
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).unwrap();
    assert!(child.wait().unwrap().success());
    let recs = RefCell::new(Vec::new());
    drain(&rings, &recs);
    let mut recs = recs.into_inner();
    recs.retain(|r| r.ev.pid == child.id());
    (tracer, answer, recs)
}

/// The record of the request the child's server read.
fn request_record(recs: &[Rec]) -> &Rec {
    recs.iter()
        .find(|r| r.ev.kind == abi::EV_DATA && r.ev.dir == abi::DIR_INGRESS)
        .expect("the request's record")
}

/// The prologue of a test whose child moves a thread between CPUs 0 and 1: BPF (else skip),
/// 2 CPUs, the kernel tests' lock, and tracer options capturing 64 bytes with `ring_bytes` of
/// rings. `None`: skipped.
fn thread_moving_test(
    ring_bytes: u64,
) -> Option<(std::sync::MutexGuard<'static, ()>, TracerOptions)> {
    if !bpf_or_skip() {
        return None;
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(cpus >= 2, "this test needs 2 CPUs, the machine has {cpus}");
    let opts = TracerOptions {
        capture_bytes: 64,
        ring_bytes_total: ring_bytes,
        ..Default::default()
    };
    Some((serial(), opts))
}

#[test]
fn a_connection_id_carries_the_cpu_of_its_first_record() {
    let Some((_serial, opts)) = thread_moving_test(1 << 20) else {
        return;
    };
    let (_tracer, answer, recs) = serve_a_child(&opts, PY_ACCEPTOR, &[], b"hello");
    assert_eq!(answer, b"ok:hello");
    let mine: Vec<&Rec> = recs.iter().collect();
    let first = request_record(&recs);
    assert_eq!(
        first.ev.conn_id >> abi::CONN_ID_CPU_SHIFT,
        2,
        "CPU 1 (plus one) in {:#x}",
        first.ev.conn_id
    );
    // Every record of the connection, its close included, carries that id.
    let of_conn = mine.iter().filter(|r| r.ev.fd == first.ev.fd).count();
    assert!(of_conn >= 3, "request, answer and close: {mine:?}");
    assert!(mine
        .iter()
        .filter(|r| r.ev.fd == first.ev.fd)
        .all(|r| r.ev.conn_id == first.ev.conn_id));
    // The answer and the close, written on CPU 0 once the thread moved, are in CPU 1's ring,
    // where the connection's shard reads: none is left for another shard to forward.
    let rings: Vec<(u8, u32)> = mine
        .iter()
        .filter(|r| r.ev.fd == first.ev.fd)
        .map(|r| (r.ev.kind, r.ring))
        .collect();
    assert!(
        rings.iter().all(|&(_, ring)| ring == 1),
        "(kind, ring) of each record: {rings:?}"
    );
}

/// A server thread reads a request on CPU 1 (the connection's home), moves to CPU 0 and answers
/// in `argv[1]` sends of 64 bytes, more than its home ring holds.
const PY_SPILLER: &str = r#"
import os, socket, sys, threading
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen()
print(srv.getsockname()[1], flush=True)
c, _ = srv.accept()
def serve():
    os.sched_setaffinity(0, {1})
    c.recv(100)
    os.sched_setaffinity(0, {0})
    for _ in range(int(sys.argv[1])):
        c.sendall(b"x" * 64)
    c.close()
t = threading.Thread(target=serve)
t.start()
t.join()
"#;

#[test]
fn a_home_ring_three_quarters_full_spills_into_the_writing_cpus_ring() {
    let Some((_serial, opts)) = thread_moving_test(128 << 10) else {
        return;
    };
    // The ring size the loader will pick for these options.
    let ring = u64::from(
        Tracer::start(&opts)
            .expect("tracer starts")
            .0
            .ring_bytes_per_cpu(),
    );
    // A record in a ring: its 8-byte header, the event and 64 captured bytes, 8-aligned.
    let rec = (8 + std::mem::size_of::<abi::Event>() as u64 + 64).div_ceil(8) * 8;
    // 1.2 rings of answers: 3/4 of a ring stay home, the rest must spill (nothing drains the
    // rings until the end).
    let sends = ring * 6 / 5 / rec;
    let (tracer, answer, recs) = serve_a_child(&opts, PY_SPILLER, &[&sends.to_string()], b"go");
    assert_eq!(answer.len() as u64, 64 * sends);
    let first = request_record(&recs);
    assert_eq!(
        first.ev.conn_id >> abi::CONN_ID_CPU_SHIFT,
        2,
        "home is CPU 1"
    );
    let of_conn: Vec<&Rec> = recs
        .iter()
        .filter(|r| r.ev.conn_id == first.ev.conn_id)
        .collect();
    // Nothing lost: the request, every answer and the close, each sequence number once.
    let mut seqs: Vec<u64> = of_conn.iter().map(|r| r.ev.seq).collect();
    seqs.sort_unstable();
    let missing: Vec<u64> = (0..sends + 2)
        .filter(|q| seqs.binary_search(q).is_err())
        .collect();
    assert!(
        missing.is_empty() && seqs.len() as u64 == sends + 2,
        "{} records for {} syscalls; missing sequence numbers {:?}",
        seqs.len(),
        sends + 2,
        &missing[..missing.len().min(8)]
    );
    let dropped: u64 = tracer.stats().iter().map(|s| s.dropped).sum();
    assert_eq!(dropped, 0, "ring drops");
    // The home ring took records until three quarters full, then CPU 0's ring the rest.
    let home = of_conn.iter().filter(|r| r.ring == 1).count() as u64;
    let spilled = of_conn.iter().filter(|r| r.ring == 0).count() as u64;
    assert!(spilled > 0, "nothing spilled: {home} records home");
    assert!(
        (home + 1) * rec >= ring * 3 / 4,
        "spilled with the home ring only {home} records ({} bytes) of {ring} full",
        home * rec
    );
}

/// A child writes like grpcio (a writev of small iovecs, one 100 KB iovec, small iovecs), a
/// plain 5000-byte send, a sendmsg whose end lies past the iovecs the kernel walks, and reads
/// 20000 bytes with recvmsg into two buffers.
const PY_LARGE_IO: &str = r#"
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
big = bytes(range(256)) * 400
def check(n, want):
    if n != want:
        sys.exit("short write %d of %d" % (n, want))
parts = [b"h%02d" % i for i in range(6)] + [big] + [b"T%02d" % i for i in range(12)]
check(s.sendmsg(parts), sum(map(len, parts)))
check(s.send(b"W" * 4000 + bytes(range(200)) * 5), 5000)
parts = [big] + [b"x"] * 40
check(s.sendmsg(parts), sum(map(len, parts)))
parts = [bytes([i]) for i in range(80)]
check(s.sendmsg(parts), 80)
got = 0
bufs = [bytearray(7000), bytearray(7000)]
while got < 20000:
    n = s.recvmsg_into(bufs)[0]
    if n == 0:
        sys.exit("eof")
    got += n
s.close()
"#;

#[test]
fn large_payloads_carry_their_last_bytes() {
    if !bpf_or_skip() {
        return;
    }
    let _serial = serial();
    let opts = TracerOptions {
        capture_bytes: 64,
        ring_bytes_total: 4 << 20,
        ..Default::default()
    };
    assert_eq!(opts.tail_bytes, 256, "the default tail budget");
    let (tracer, rings) = Tracer::start(&opts).expect("tracer starts");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut child = std::process::Command::new("python3")
        .args(["-c", PY_LARGE_IO, &port.to_string()])
        .spawn()
        .unwrap();
    let (mut conn, _) = listener.accept().unwrap();
    let big: Vec<u8> = (0..400).flat_map(|_| 0..=255u8).collect();
    let mut first: Vec<u8> = (0..6)
        .flat_map(|i| format!("h{i:02}").into_bytes())
        .collect();
    first.extend(&big);
    first.extend((0..12).flat_map(|i| format!("T{i:02}").into_bytes()));
    let mut second = vec![b'W'; 4000];
    second.extend((0..5).flat_map(|_| 0..200u8));
    let mut third = big.clone();
    third.extend([b'x'; 40]);
    let fourth: Vec<u8> = (0..80).collect();
    let want = first.len() + second.len() + third.len() + fourth.len();
    let mut got = Vec::with_capacity(want);
    let mut buf = vec![0u8; 1 << 16];
    while got.len() < want {
        let n = conn.read(&mut buf).unwrap();
        assert!(n > 0, "child closed after {} bytes", got.len());
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got.len(), want);
    let answer: Vec<u8> = (0..20000u32).map(|i| (i * 7 % 251) as u8).collect();
    conn.write_all(&answer).unwrap();
    assert!(child.wait().unwrap().success());

    let recs = RefCell::new(Vec::new());
    drain(&rings, &recs);
    let recs = recs.into_inner();
    let mut mine: Vec<&Rec> = recs
        .iter()
        .filter(|r| r.ev.pid == child.id() && r.ev.kind == abi::EV_DATA)
        .collect();
    mine.sort_by_key(|r| r.ev.seq);
    let out: Vec<&&Rec> = mine
        .iter()
        .filter(|r| r.ev.dir == abi::DIR_EGRESS)
        .collect();
    assert_eq!(out.len(), 4, "four writes");
    for (r, sent, tail) in [
        (out[0], &first, 256usize),
        (out[1], &second, 256),
        // Its end lies in iovecs 2 to 41, past the 32 read in one go: read one at a time.
        (out[2], &third, 256),
        // 80 iovecs of one byte: the prefix runs past the 32nd, the tail is the last 16.
        (out[3], &fourth, 16),
    ] {
        assert_eq!(r.ev.bytes as usize, sent.len());
        assert_eq!(r.ev.tail as usize, tail, "{:?}", r.ev);
        assert_eq!(r.payload.len(), 64 + tail);
        assert_eq!(r.payload[..64], sent[..64], "the prefix");
        assert_eq!(
            r.payload[64..],
            sent[sent.len() - tail..],
            "the tail is the last bytes moved"
        );
    }
    // The tail of the grpcio-shaped writev spans the end of the big iovec and 12 small ones.
    assert!(out[0].payload.ends_with(b"T10T11"));
    // Reads: the tail ends where the read ended (inside one of the two buffers), so each read
    // carries the last bytes of its own share of the answer.
    let mut at = 0usize;
    for r in mine.iter().filter(|r| r.ev.dir == abi::DIR_INGRESS) {
        let n = r.ev.bytes as usize;
        let head = n.min(64);
        let tail = (n - head).min(256);
        assert_eq!(r.ev.tail as usize, tail, "{:?}", r.ev);
        assert_eq!(r.payload[..head], answer[at..at + head]);
        assert_eq!(r.payload[head..], answer[at + n - tail..at + n]);
        at += n;
    }
    assert_eq!(at, answer.len(), "every read seen");
    drop(tracer);
    drop(rings);
    assert!(loaded_programs().is_empty());
}

/// Each program's run statistics, as the agent reports them (`telegen_kernel_program_*`): the
/// kernel counts a program's runs and time while the statistics are on.
#[test]
fn program_run_statistics_count_while_enabled() {
    let Some((_serial, tracer, _rings)) = small_tracer() else {
        return;
    };
    let reader = tracer.stats_reader().expect("stats reader");
    let close_stats = || {
        let all = reader.programs();
        assert!(all.iter().any(|p| p.name == "tg_exit_read"), "{all:?}");
        all.into_iter()
            .find(|p| p.name == "tg_enter_close")
            .expect("the close program")
    };
    let before = close_stats();
    let on = enable_program_stats().expect("BPF_ENABLE_STATS");
    // Every close runs the program (this process's own are then left alone by it).
    for _ in 0..200 {
        drop(std::fs::File::open("/etc/hostname").unwrap());
    }
    let after = close_stats();
    drop(on);
    assert!(after.runs >= before.runs + 200, "{before:?} -> {after:?}");
    assert!(after.run_ns > before.run_ns, "{before:?} -> {after:?}");
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
            tail_bytes: 2048,
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

/// Ingress syscalls (read, readv, recvfrom, recvmsg; recvmmsg in `udp.rs`) and connect have no
/// entry program: their exit programs read the arguments from the registers the syscall entered
/// with. A client connects and reads four answers, one with each ingress syscall, in turn with
/// the server (this process, which is not traced): every answer arrives, whole and in order, on
/// the connection the exit-only connect tracked.
#[test]
fn every_ingress_syscall_is_read_at_its_exit() {
    let Some((_serial, tracer, rings)) = small_tracer() else {
        return;
    };
    for syscall in [
        "read", "readv", "recvfrom", "recvmsg", "recvmmsg", "connect",
    ] {
        let enter = format!("tracepoint/syscalls/sys_enter_{syscall}");
        let exit = format!("tracepoint/syscalls/sys_exit_{syscall}");
        assert!(
            !tracer.hooks().contains(&enter.as_str()),
            "{enter} is attached"
        );
        assert!(
            tracer.hooks().contains(&exit.as_str()),
            "{exit} is not attached"
        );
    }

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Each answer is read by one syscall (the next is written only after the client's ack), so
    // each read returns exactly one answer.
    let script = format!(
        "import os, socket\n\
         s = socket.create_connection(('127.0.0.1', {port}))\n\
         def ack(i):\n    s.sendall(b'ack %d' % i)\n\
         got = [os.read(s.fileno(), 100)]\nack(0)\n\
         a, b = bytearray(4), bytearray(96)\nn = os.readv(s.fileno(), [a, b])\n\
         got.append(bytes(a + b)[:n])\nack(1)\n\
         got.append(s.recv(100))\nack(2)\n\
         buf = bytearray(100)\nn = s.recvmsg_into([buf])[0]\ngot.append(bytes(buf[:n]))\n\
         assert got == [b'answer %d' % i for i in range(4)], got\n\
         s.close()\n"
    );
    let mut child = std::process::Command::new("python3")
        .arg("-c")
        .arg(&script)
        .spawn()
        .unwrap();
    let (mut conn, _) = listener.accept().unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    for i in 0..4 {
        conn.write_all(format!("answer {i}").as_bytes()).unwrap();
        if i < 3 {
            let mut ack = [0u8; 5];
            conn.read_exact(&mut ack).unwrap();
            assert_eq!(&ack, format!("ack {i}").as_bytes());
        }
    }
    assert!(child.wait().unwrap().success(), "the client's reads failed");

    let recs = RefCell::new(Vec::new());
    drain(&rings, &recs);
    let recs = recs.into_inner();
    let child_pid = child.id();
    let data = |dir: u8| -> Vec<&Rec> {
        recs.iter()
            .filter(|r| r.ev.pid == child_pid && r.ev.kind == abi::EV_DATA && r.ev.dir == dir)
            .collect()
    };
    let answers = data(abi::DIR_INGRESS);
    let got: Vec<&[u8]> = answers.iter().map(|r| r.payload.as_slice()).collect();
    let want: Vec<Vec<u8>> = (0..4).map(|i| format!("answer {i}").into_bytes()).collect();
    assert_eq!(got, want, "one record per read, in order");
    let acks = data(abi::DIR_EGRESS);
    assert_eq!(acks.len(), 3, "{} acks", acks.len());
    let conn_id = acks[0].ev.conn_id;
    for r in answers.iter().chain(&acks) {
        assert_eq!(r.ev.conn_id, conn_id);
        assert_eq!(
            r.ev.role,
            abi::ROLE_CLIENT,
            "tracked by the exit of connect"
        );
        assert_eq!(r.ev.remote.port, port);
    }
    for r in &answers {
        // No entry time: a read's bytes arrived when it returned.
        assert_eq!(r.ev.start_ns, r.ev.end_ns);
        assert_eq!(r.ev.bytes as usize, r.payload.len());
    }
    // Writes keep their entry time: the bytes leave from the write's entry.
    assert!(acks
        .iter()
        .all(|r| r.ev.start_ns > 0 && r.ev.start_ns <= r.ev.end_ns));
    let mut seqs: Vec<u64> = answers.iter().chain(&acks).map(|r| r.ev.seq).collect();
    seqs.sort_unstable();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    assert_eq!(tracer.stats().iter().map(|s| s.dropped).sum::<u64>(), 0);
    drop(tracer);
    drop(rings);
}

/// A child that moves bytes over a Unix socketpair (never traced), then replaces fds with
/// `dup2`, which closes the fd it replaces without a `close` syscall: the fd of the Unix
/// socket `a` becomes a TCP connection, and the fd of a TCP connection `c` becomes the Unix
/// socket `b`. Then it closes `b` and opens a TCP connection that takes `b`'s fd. It prints
/// the three fds, and leaves with `os._exit`, whose implicit closes fire no tracepoint either.
const PY_FD_SWAPS: &str = r#"
import os, socket, sys
port = int(sys.argv[1])
a, b = socket.socketpair()
for _ in range(2):  # the second exchange finds both ends marked as not traced
    a.send(b"unix-1"); b.recv(10)
    b.send(b"unix-1"); a.recv(10)
keep = os.dup(a.fileno())  # the Unix pair outlives the fd `a` loses
c = socket.create_connection(("127.0.0.1", port))
os.dup2(c.fileno(), a.fileno())
os.write(a.fileno(), b"tcp-via-dup")
os.dup2(b.fileno(), c.fileno())
os.write(c.fileno(), b"unix-2")
bfd = b.fileno()
b.close()
d = socket.create_connection(("127.0.0.1", port))
assert d.fileno() == bfd, (d.fileno(), bfd)
d.send(b"tcp-2")
print(a.fileno(), bfd, c.fileno(), flush=True)
os._exit(0)
"#;

#[test]
fn sockets_not_traced_and_fds_replaced_without_a_close() {
    let Some((_serial, tracer, rings)) = small_tracer() else {
        return;
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut child = std::process::Command::new("python3")
        .args(["-c", PY_FD_SWAPS, &port.to_string()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Accept with a deadline: a child that fails early must fail the test, not hang it.
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    for want in [&b"tcp-via-dup"[..], b"tcp-2"] {
        let mut conn = loop {
            match listener.accept() {
                Ok((conn, _)) => break conn,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if let Some(status) = child.try_wait().unwrap() {
                        assert!(status.success(), "the child failed: {status}");
                    }
                    assert!(Instant::now() < deadline, "no connection from the child");
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        conn.set_nonblocking(false).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = vec![0u8; want.len()];
        conn.read_exact(&mut buf).unwrap();
        got.push(buf);
    }
    assert_eq!(got, [&b"tcp-via-dup"[..], b"tcp-2"]);
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(child.wait().unwrap().success());
    let fds: Vec<u32> = line
        .split_whitespace()
        .map(|f| f.parse().unwrap())
        .collect();
    let (a_fd, b_fd, c_fd) = (fds[0], fds[1], fds[2]);

    let recs = RefCell::new(Vec::new());
    drain(&rings, &recs);
    let mut recs = recs.into_inner();
    recs.retain(|r| r.ev.pid == child.id());
    let data = |fd: u32| -> Vec<&[u8]> {
        recs.iter()
            .filter(|r| r.ev.kind == abi::EV_DATA && r.ev.fd == fd)
            .map(|r| r.payload.as_slice())
            .collect()
    };
    let closes = |fd: u32| {
        recs.iter()
            .filter(|r| r.ev.kind == abi::EV_CLOSE && r.ev.fd == fd)
            .count()
    };
    // The Unix socket's bytes are never reported, before or after the swaps.
    assert!(
        recs.iter()
            .all(|r| !r.payload.windows(5).any(|w| w == b"unix-")),
        "{recs:?}"
    );
    // `a`'s fd, marked as a socket not traced, turned into a TCP connection: traced from its
    // first write, and the mark it replaced reports no close.
    assert_eq!(data(a_fd), [&b"tcp-via-dup"[..]]);
    let via_dup = recs
        .iter()
        .find(|r| r.ev.kind == abi::EV_DATA && r.ev.fd == a_fd)
        .unwrap();
    assert_eq!(via_dup.ev.remote.port, port);
    assert_eq!(via_dup.ev.remote.proto, abi::PROTO_TCP);
    assert_eq!(closes(a_fd), 0, "{recs:?}");
    // `c`'s connection, replaced by the Unix socket, is reported closed when its fd is next
    // used, and the Unix bytes written there are not reported.
    assert_eq!(closes(c_fd), 1, "{recs:?}");
    assert!(data(c_fd).is_empty(), "{recs:?}");
    // Closing the marked socket `b` reports no close, and the connection that takes its fd is
    // traced.
    assert_eq!(data(b_fd), [&b"tcp-2"[..]]);
    assert_eq!(closes(b_fd), 0, "{recs:?}");
    drop(tracer);
}
