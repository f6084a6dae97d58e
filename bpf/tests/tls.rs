//! Kernel tests of the OpenSSL uprobes: nginx with TLS, curl and Python `ssl`, plaintext on the
//! socket's connection, ciphertext suppressed, uprobes detached when the last user exits.

mod common;

use std::cell::RefCell;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use telegen_bpf::abi::{self, Event};
use telegen_bpf::{
    loaded_programs, ProcessFilter, RingBufferBuilder, TlsManager, Tracer, TracerOptions,
};

use common::*;

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
        let ring = r.cpu;
        b.add(&r.map, move |rec: &[u8]| {
            if let Ok((ev, p)) = Event::decode(rec) {
                sink.borrow_mut().push(Rec {
                    ev,
                    payload: p.to_vec(),
                    ring,
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
