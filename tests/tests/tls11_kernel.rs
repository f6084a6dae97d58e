//! TLS through OpenSSL 1.1: a client on Debian bullseye's real libssl.so.1.1 (unpacked by
//! scripts/setup.sh, not installed) talks HTTPS to nginx (bookworm's libssl3). Only the client
//! is traced, and it maps no libssl.so.3, so its plaintext can only come from the uprobes the
//! agent attached to the 1.1 file. Spans and metrics are decoded from the OTLP the agent
//! exported; which file got which uprobes, from the agent's log.

use std::path::{Path, PathBuf};
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use telegen_tests::agent::{
    assert_prom_zero, free_port, otlp_agent, require_bpf, scrape_prometheus, serial, Nginx,
    NginxOptions,
};
use telegen_tests::peers::{require_libssl11, Ssl11Client};
use telegen_tests::receiver::{attr_int, attr_str, metric_count_where, Receiver};

/// The agent traces only the OpenSSL 1.1 client loading `libssl`, which makes the requests of
/// `conns` (see [`Ssl11Client::start`]) to nginx; `expected` is `(path, status)` per request.
/// Asserts the client saw those, the agent attached all 9 uprobes to `libssl` and to no other
/// file, and exported exactly one https client span and one client duration point per request.
fn one_client(lib_dir: &Path, libssl: &Path, conns: &[&str], expected: &[(&str, u16)]) {
    let recv = Receiver::start();
    let nginx = Nginx::start_with(NginxOptions {
        tls: true,
        ..Default::default()
    });
    let port = nginx.tls_port.expect("tls port");
    let client = Ssl11Client::start(lib_dir, libssl, port, conns);
    assert!(
        client.version.starts_with("OpenSSL 1.1.1"),
        "{}",
        client.version
    );
    let prom = free_port();
    let agent = otlp_agent(
        &recv.endpoint(),
        &[client.proc.pid()],
        &["--prometheus-addr".into(), format!("127.0.0.1:{prom}")],
    );

    let done = client.run();
    let expected: Vec<(String, u16)> = expected.iter().map(|(p, s)| (p.to_string(), *s)).collect();
    assert_eq!(done, expected, "what the client itself saw");
    let arrived = recv.wait_for_spans(expected.len(), Duration::from_secs(20));
    // Metrics are exported every 500 ms; let the last interval go out.
    std::thread::sleep(Duration::from_millis(1500));
    let body = scrape_prometheus(prom);
    // Every SSL* was tied to its socket, and every plaintext parsed.
    assert_prom_zero(
        &body,
        &[
            "telegen_kernel_tls_unmapped_total",
            "telegen_shard_parse_errors_total",
        ],
    );
    let log = agent.stop();

    // All 9 uprobes (1.1.1 has the _ex functions) on this file, and on no other libssl.
    let attached: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("telegen: TLS uprobes attached to "))
        .collect();
    let want = format!(
        "{}: 9 hooks on SSL_read, SSL_write, SSL_read_ex, SSL_write_ex, SSL_set_fd",
        libssl.display()
    );
    assert!(
        attached.len() == 1 && attached[0].ends_with(&want),
        "expected one attach line ending in {want:?} (log:\n{log})"
    );
    assert!(
        !log.lines()
            .any(|l| l.starts_with("telegen: TLS uprobe ") && l.contains(" failed: ")),
        "an attach failed (log:\n{log})"
    );

    let spans = recv.spans();
    assert!(arrived, "spans did not arrive: {spans:?} (log:\n{log})");
    let client_spans: Vec<_> = spans
        .iter()
        .filter(|(_, s)| s.kind == SpanKind::Client as i32)
        .collect();
    assert_eq!(
        client_spans.len(),
        expected.len(),
        "one client span per request (log:\n{log})"
    );
    assert_eq!(
        spans.len(),
        expected.len(),
        "nginx is not traced: client spans only"
    );
    let mut got: Vec<(String, u16)> = Vec::new();
    for (_, s) in &client_spans {
        assert_eq!(
            attr_str(&s.attributes, "url.scheme"),
            Some("https"),
            "{s:?}"
        );
        assert_eq!(
            attr_int(&s.attributes, "server.port"),
            Some(i64::from(port)),
            "{s:?}"
        );
        let full = attr_str(&s.attributes, "url.full").unwrap_or_default();
        let path = full
            .strip_prefix("https://")
            .and_then(|r| r.find('/').map(|i| &r[i..]))
            .unwrap_or_else(|| panic!("url.full {full:?}"));
        let status = attr_int(&s.attributes, "http.response.status_code").expect("status");
        got.push((path.to_string(), u16::try_from(status).expect("u16")));
    }
    got.sort();
    let mut want_spans = expected.clone();
    want_spans.sort();
    assert_eq!(got, want_spans);

    let https = |a: &[KeyValue]| attr_str(a, "url.scheme") == Some("https");
    assert_eq!(
        metric_count_where(&recv, "http.client.request.duration", https),
        expected.len() as u64
    );
    assert_eq!(
        metric_count_where(&recv, "http.client.request.duration", |_| true),
        expected.len() as u64,
        "no client request counted without https"
    );
}

#[test]
fn https_client_on_openssl_1_1_gives_plaintext_spans() {
    if !require_bpf() {
        return;
    }
    let Some(lib_dir) = require_libssl11() else {
        return;
    };
    let _g = serial();
    // One connection tied with SSL_set_fd, one through a socket BIO; both APIs on each.
    one_client(
        &lib_dir,
        &lib_dir.join("libssl.so.1.1"),
        &[
            "set_fd /api/ssl11/fd/1:plain /api/ssl11/fd/2:ex /fail:ex",
            "bio /api/ssl11/bio/1:ex /api/ssl11/bio/2:plain",
        ],
        &[
            ("/api/ssl11/fd/1", 200),
            ("/api/ssl11/fd/2", 200),
            ("/fail", 503),
            ("/api/ssl11/bio/1", 200),
            ("/api/ssl11/bio/2", 200),
        ],
    );
}

/// A copy of the library in a temp directory, removed on drop.
struct TempCopy(PathBuf);

impl Drop for TempCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Python wheels vendor OpenSSL renamed by auditwheel (`libssl-<hash>.so.1.1`, as in
/// psycopg2-binary): that file is found and traced too.
#[test]
fn wheel_vendored_libssl_1_1_is_traced() {
    if !require_bpf() {
        return;
    }
    let Some(lib_dir) = require_libssl11() else {
        return;
    };
    let _g = serial();
    let dir = TempCopy(std::env::temp_dir().join(format!("telegen-ssl11-{}", std::process::id())));
    std::fs::create_dir_all(dir.0.join("demo.libs")).expect("temp dir");
    let vendored = dir.0.join("demo.libs/libssl-5babfe3f.so.1.1");
    std::fs::copy(lib_dir.join("libssl.so.1.1"), &vendored).expect("copy libssl.so.1.1");
    one_client(
        &lib_dir,
        &vendored,
        &["set_fd /api/wheel/1:plain /api/wheel/2:ex"],
        &[("/api/wheel/1", 200), ("/api/wheel/2", 200)],
    );
}
