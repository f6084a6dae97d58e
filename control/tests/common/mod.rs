//! Helpers shared by the discovery test files: fixture options, attribute checks and a tiny
//! HTTP(S) server for metadata and Kubernetes fakes (it can hang, answer garbage or close).
// Each test file uses the part it needs.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use telegen::discovery::{attr_str, cloud::CloudOptions, DiscoveryOptions};
use telegen_dataplane::signal::Attrs;

pub const ID: &str = "3f4e8a1c2b5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7";
pub const POD_UID: &str = "8a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9";

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/discovery")
}

/// Options over the fixture tree: bare-metal DMI (so no cloud is probed unless overridden).
pub fn fixture_options() -> DiscoveryOptions {
    let f = fixtures();
    DiscoveryOptions {
        proc_root: f.join("proc"),
        sys_root: f.join("sys/baremetal"),
        etc_root: f.join("etc/debian12"),
        docker_root: f.join("docker"),
        in_cluster: false,
        cloud: CloudOptions {
            enabled: false,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Options over the live machine, never touching a cloud or an API server.
pub fn live_options() -> DiscoveryOptions {
    DiscoveryOptions {
        in_cluster: false,
        cloud: CloudOptions {
            enabled: false,
            ..Default::default()
        },
        ..Default::default()
    }
}

pub fn has(a: &Attrs, k: &str, v: &str) -> bool {
    attr_str(a, k) == Some(v)
}

// ---------------------------------------------------------------------------------------------
// A tiny HTTP server for metadata and Kubernetes fakes.

/// What the fake server does with one request.
pub enum Reply {
    Http(u16, Vec<(String, String)>, String),
    /// Accept and say nothing for this long.
    Hang(Duration),
    /// Raw bytes, then close.
    Raw(Vec<u8>),
}

pub fn ok_json(body: &str) -> Reply {
    Reply::Http(
        200,
        vec![("Content-Type".into(), "application/json".into())],
        body.to_string(),
    )
}

pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Request {
    pub fn header(&self, k: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(x, _)| x.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    }
}

pub struct FakeServer {
    pub url: String,
    pub stop: Arc<AtomicBool>,
    pub handle: Option<thread::JoinHandle<()>>,
}

impl FakeServer {
    pub fn start(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> FakeServer {
        Self::start_with(None, handler)
    }

    /// An HTTPS server with the fixture certificate (signed by fixtures/k8s-tls/ca.crt).
    pub fn start_tls(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> FakeServer {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let dir = fixtures().join("k8s-tls");
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(dir.join("server.crt"))
                .unwrap()
                .map(|c| c.unwrap())
                .collect();
        let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
        let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        Self::start_with(Some(Arc::new(cfg)), handler)
    }

    pub fn start_with(
        tls: Option<Arc<rustls::ServerConfig>>,
        handler: impl Fn(&Request) -> Reply + Send + Sync + 'static,
    ) -> FakeServer {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{}", l.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let handler = Arc::new(handler);
        let handle = thread::spawn(move || {
            while !s2.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((conn, _)) => {
                        let h = handler.clone();
                        let s3 = s2.clone();
                        let tls = tls.clone();
                        conn.set_nonblocking(false).unwrap();
                        conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                        thread::spawn(move || match tls {
                            None => serve(conn, &*h, &s3),
                            Some(cfg) => {
                                let sc = rustls::ServerConnection::new(cfg).unwrap();
                                serve(rustls::StreamOwned::new(sc, conn), &*h, &s3)
                            }
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FakeServer {
            url,
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

pub fn serve<S: Read + Write>(
    mut conn: S,
    h: &(dyn Fn(&Request) -> Reply + Send + Sync),
    stop: &AtomicBool,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = text.split("\r\n");
    let first: Vec<&str> = lines.next().unwrap_or("").split(' ').collect();
    let req = Request {
        method: first.first().unwrap_or(&"").to_string(),
        path: first.get(1).unwrap_or(&"").to_string(),
        headers: lines
            .take_while(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect(),
    };
    match h(&req) {
        Reply::Http(status, headers, body) => {
            let mut out = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n", body.len());
            for (k, v) in headers {
                out.push_str(&format!("{k}: {v}\r\n"));
            }
            out.push_str("\r\n");
            out.push_str(&body);
            let _ = conn.write_all(out.as_bytes());
            let _ = conn.flush();
        }
        Reply::Hang(d) => {
            let until = Instant::now() + d;
            while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(10));
            }
        }
        Reply::Raw(b) => {
            let _ = conn.write_all(&b);
        }
    }
}
