//! The binary as a user meets it: clear errors on bad input, the no-collector mode, an
//! unreachable collector, the Prometheus endpoint, and nothing left in the kernel after exit.

use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

use telegen_bpf::loaded_programs;
use telegen_tests::agent::{
    free_port, prom_value, require_bpf, scrape_prometheus, serial, telegen_bin, Agent, Nginx,
};

fn fails_with(args: &[&str], needle: &str) {
    let out = Command::new(telegen_bin())
        .args(args)
        .output()
        .expect("run telegen");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} should fail");
    assert!(
        err.contains(needle),
        "{args:?}: expected `{needle}` in:\n{err}"
    );
}

#[test]
fn bad_input_gets_a_clear_error() {
    fails_with(&["run", "--bogus"], "unexpected argument '--bogus'");
    fails_with(&["run", "--compression", "zstd"], "invalid value 'zstd'");
    fails_with(&["run", "--drain-interval-ms", "0"], "0 is not in 1..=100");
    fails_with(&["run", "--shard-cores", "999"], "core 999 does not exist");
    fails_with(&["run", "--shard-cores", "0,0"], "listed twice");
    fails_with(
        &["run", "--export-core", "4096"],
        "core 4096 does not exist",
    );
    fails_with(
        &["run", "--capture-bytes", "0"],
        "--capture-bytes must be between 1 and 4096",
    );
    fails_with(
        &["run", "--tail-bytes", "2000"],
        "--tail-bytes must be at most 1024",
    );
    fails_with(&["run", "--ring-bytes", "lots"], "is not a size");
    fails_with(
        &["run", "--no-prometheus", "--prometheus-addr", "127.0.0.1:1"],
        "cannot be used with",
    );
    fails_with(&["run", "--exe", "/usr/sbin/nginx"], "not a path");
    fails_with(
        &[
            "run",
            "--otlp-endpoint",
            "http://127.0.0.1:1",
            "--otlp-header",
            "novalue",
        ],
        "--otlp-header novalue",
    );
    let help = Command::new(telegen_bin())
        .args(["run", "--help"])
        .output()
        .expect("help");
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--otlp-endpoint",
        "--shard-cores",
        "--export-core",
        "--ring-bytes",
        "--conn-table-entries",
        "--capture-bytes",
        "--pid",
        "--exe",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}

#[test]
fn without_privileges_it_names_what_is_missing() {
    if Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("SKIPPED: setpriv (util-linux) not installed");
        return;
    }
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(telegen_bin())
        .args(["run", "--no-prometheus", "--no-output"])
        .output()
        .expect("setpriv");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("CAP_BPF"), "{err}");
}

fn traffic(port: u16, n: usize) {
    for i in 0..n {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect nginx");
        write!(
            s,
            "GET /api/items/{i} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        let mut buf = String::new();
        s.read_to_string(&mut buf).expect("read");
        assert!(buf.starts_with("HTTP/1.1 200"));
    }
}

#[test]
fn with_no_collector_it_writes_otlp_json_lines() {
    if !require_bpf() {
        return;
    }
    let _g = serial();
    let nginx = Nginx::start();
    let out = std::env::temp_dir().join(format!("telegen-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&out);
    let agent = Agent::start(&[
        "--pid".into(),
        nginx.proc.pid().to_string(),
        "--output".into(),
        out.display().to_string(),
        "--no-prometheus".into(),
        "--summary-interval".into(),
        "1".into(),
        "--metrics-interval-ms".into(),
        "300".into(),
    ]);
    // The test process itself is not traced (only nginx is), so its requests show up once.
    traffic(nginx.port, 7);
    let log = agent.stop();
    assert!(log.contains("writing OTLP JSON lines"), "{log}");
    let text = std::fs::read_to_string(&out).expect("jsonl written");
    let mut spans = 0;
    let mut saw_metric = false;
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("each line is JSON");
        if let Some(rs) = v.get("resourceSpans").and_then(|r| r.as_array()) {
            for r in rs {
                for ss in r["scopeSpans"].as_array().into_iter().flatten() {
                    spans += ss["spans"].as_array().map(|a| a.len()).unwrap_or(0);
                }
            }
        }
        saw_metric |= line.contains("http.server.request.duration");
    }
    assert_eq!(spans, 7, "{text}");
    assert!(saw_metric);
    // The final report says how many lines went to the file, as many as it holds.
    let last = log
        .lines()
        .rfind(|l| l.contains("stopped."))
        .expect("final report");
    assert!(
        last.contains(&format!(
            "JSON lines written {} (write errors 0)",
            text.lines().count()
        )),
        "{last}"
    );
    let _ = std::fs::remove_file(&out);
    assert!(
        loaded_programs().is_empty(),
        "left behind: {:?}",
        loaded_programs()
    );
}

#[test]
fn an_unreachable_collector_is_counted_not_fatal_and_prometheus_serves_counters() {
    if !require_bpf() {
        return;
    }
    let _g = serial();
    let nginx = Nginx::start();
    let prom = free_port();
    let dead = free_port();
    let agent = Agent::start(&[
        "--pid".into(),
        nginx.proc.pid().to_string(),
        "--otlp-endpoint".into(),
        format!("http://127.0.0.1:{dead}"),
        "--no-summary".into(),
        "--prometheus-addr".into(),
        format!("127.0.0.1:{prom}"),
        "--metrics-interval-ms".into(),
        "300".into(),
    ]);
    traffic(nginx.port, 5);
    std::thread::sleep(Duration::from_millis(2500));
    let body = scrape_prometheus(prom);
    let value = |name: &str| prom_value(&body, name);
    assert!(value("telegen_kernel_events_emitted_total") >= 10, "{body}");
    assert_eq!(value("telegen_kernel_events_dropped_total"), 0);
    assert!(value("telegen_shard_spans_emitted_total") >= 5, "{body}");
    let log = agent.stop();
    let last = log
        .lines()
        .rfind(|l| l.contains("stopped."))
        .expect("final report");
    assert!(last.contains("exported spans 0"), "{last}");
    assert!(
        !last.contains("dropped at export: spans 0,"),
        "drops are counted: {last}"
    );
    assert!(
        loaded_programs().is_empty(),
        "left behind: {:?}",
        loaded_programs()
    );
}
