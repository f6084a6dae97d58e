//! TLS through OpenSSL: the agent's uprobes on libssl give the HTTP parsers the plaintext of
//! nginx (server) and of a Python `ssl` client, while the ciphertext on the same sockets is
//! recognised and skipped. Spans and metrics are decoded from the OTLP the agent exported.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use telegen_tests::agent::{
    assert_prom_zero, curl, free_port, otlp_agent, prom_value, require_bpf, scrape_prometheus,
    serial, Nginx, NginxOptions, Proc,
};
use telegen_tests::receiver::{attr_int, attr_str, metric_count_where, Receiver};

/// Two keep-alive HTTPS requests with Python's `ssl` (OpenSSL's `SSL_read_ex`/`SSL_write_ex`),
/// after `go` on stdin, so the agent can be told its pid first.
const PY_HTTPS: &str = r#"
import http.client, ssl, sys
print("pid", flush=True)
sys.stdin.readline()
ctx = ssl._create_unverified_context()
c = http.client.HTTPSConnection("127.0.0.1", int(sys.argv[1]), context=ctx)
for path in ("/api/py/1", "/api/py/2"):
    c.request("GET", path)
    r = c.getresponse()
    r.read()
    print(r.status, flush=True)
c.close()
"#;

#[test]
fn https_through_openssl_gives_plaintext_spans_on_both_sides() {
    if !require_bpf() {
        return;
    }
    let _g = serial();
    let recv = Receiver::start();
    let nginx = Nginx::start_with(NginxOptions {
        tls: true,
        ..Default::default()
    });
    let port = nginx.tls_port.expect("tls port");
    let mut py = Command::new("python3")
        .args(["-c", PY_HTTPS, &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut out = BufReader::new(py.stdout.take().expect("piped"));
    let mut line = String::new();
    out.read_line(&mut line).expect("python started");
    assert_eq!(line.trim(), "pid");
    let py = Proc { child: py };
    let prom = free_port();
    let agent = otlp_agent(
        &recv.endpoint(),
        &[nginx.proc.pid(), py.pid()],
        &["--prometheus-addr".into(), format!("127.0.0.1:{prom}")],
    );

    let base = format!("https://127.0.0.1:{port}");
    for i in 0..3 {
        curl(&[
            "-sk",
            "--http1.1",
            "-o",
            "/dev/null",
            &format!("{base}/api/curl/{i}"),
        ]);
    }
    curl(&[
        "-sk",
        "--http1.1",
        "-o",
        "/dev/null",
        &format!("{base}/fail"),
    ]);
    let mut py = py;
    let stdin = py.child.stdin.as_mut().expect("piped");
    stdin.write_all(b"go\n").expect("go");
    stdin.flush().expect("flush");
    for _ in 0..2 {
        line.clear();
        out.read_line(&mut line).expect("status");
        assert_eq!(line.trim(), "200", "python request failed");
    }
    let _ = py.child.wait();
    assert!(recv.wait_for_spans(8, Duration::from_secs(20)));
    std::thread::sleep(Duration::from_millis(1500));
    // Ciphertext after the first plaintext is not even sent to user space; the handshake before
    // it is recognised there and skipped.
    let body = scrape_prometheus(prom);
    assert!(
        prom_value(&body, "telegen_kernel_tls_suppressed_total") > 0,
        "{body}"
    );
    assert!(
        prom_value(&body, "telegen_shard_tls_encrypted_total") > 0,
        "{body}"
    );
    // Every SSL* was tied to its socket, and every plaintext parsed.
    assert_prom_zero(
        &body,
        &[
            "telegen_kernel_tls_unmapped_total",
            "telegen_shard_parse_errors_total",
        ],
    );
    let log = agent.stop();

    let spans = recv.spans();
    let server: Vec<_> = spans
        .iter()
        .filter(|(_, s)| s.kind == SpanKind::Server as i32)
        .collect();
    let client: Vec<_> = spans
        .iter()
        .filter(|(_, s)| s.kind == SpanKind::Client as i32)
        .collect();
    assert_eq!(
        server.len(),
        6,
        "3 curl + 1 failing + 2 python requests (log:\n{log})"
    );
    assert_eq!(
        client.len(),
        2,
        "python's two requests as client spans (log:\n{log})"
    );
    for (_, s) in &server {
        assert_eq!(
            attr_str(&s.attributes, "url.scheme"),
            Some("https"),
            "{s:?}"
        );
        assert_eq!(
            attr_int(&s.attributes, "server.port"),
            Some(i64::from(port))
        );
    }
    let fails = server
        .iter()
        .filter(|(_, s)| attr_int(&s.attributes, "http.response.status_code") == Some(503))
        .count();
    assert_eq!(fails, 1);
    let mut paths: Vec<&str> = server
        .iter()
        .filter_map(|(_, s)| attr_str(&s.attributes, "url.path"))
        .collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "/api/curl/0",
            "/api/curl/1",
            "/api/curl/2",
            "/api/py/1",
            "/api/py/2",
            "/fail"
        ]
    );
    for (_, s) in &client {
        let full = attr_str(&s.attributes, "url.full").unwrap_or_default();
        assert!(full.starts_with("https://127.0.0.1:"), "{full}");
    }
    let https = |a: &[opentelemetry_proto::tonic::common::v1::KeyValue]| {
        attr_str(a, "url.scheme") == Some("https")
    };
    assert_eq!(
        metric_count_where(&recv, "http.server.request.duration", https),
        6
    );
    assert_eq!(
        metric_count_where(&recv, "http.client.request.duration", |_| true),
        2
    );
}
