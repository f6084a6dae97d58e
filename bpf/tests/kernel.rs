//! Kernel tests: load and attach the real programs, move bytes over loopback, and read the
//! records back from the per-CPU rings. They need root and BPF; under `CI=true` a missing
//! capability fails the test, elsewhere the test says it was skipped.

mod common;

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use telegen_bpf::abi::{self};
use telegen_bpf::{loaded_programs, Tracer, TracerOptions};

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
