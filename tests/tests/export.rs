//! The export core against a real OTLP/HTTP receiver on 127.0.0.1: delivery, resources, gzip,
//! headers, retries, a dead collector, cumulative histograms, JSON lines and Prometheus.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point, AggregationTemporality};
use opentelemetry_proto::tonic::trace::v1::{span, status};
use telegen_dataplane::export::{
    run_export_core, CpuKernelStats, ExportConfig, ExportError, ExportReport, KernelStatsSource,
    ResourceResolver, StopHandle,
};
use telegen_dataplane::signal::{
    AttrValue, Attrs, ExportMsg, HistogramDelta, ShardStats, SpanKind, SpanRecord,
    DURATION_BOUNDS_S,
};
use telegen_tests::receiver::{attr_int, attr_str, Receiver};

struct FakeResolver;
impl ResourceResolver for FakeResolver {
    fn host(&self) -> Attrs {
        vec![
            ("host.name", AttrValue::Str("testhost".into())),
            ("os.type", AttrValue::Str("linux".into())),
        ]
    }
    fn process(&mut self, pid: u32) -> Attrs {
        vec![
            ("process.pid", AttrValue::Int(i64::from(pid))),
            ("service.name", AttrValue::Str(format!("svc-{pid}"))),
        ]
    }
}

struct FakeKernel;
impl KernelStatsSource for FakeKernel {
    fn read(&mut self) -> Vec<CpuKernelStats> {
        vec![
            CpuKernelStats {
                cpu: 0,
                seen: 100,
                emitted: 93,
                dropped: 7,
                ..Default::default()
            },
            CpuKernelStats {
                cpu: 1,
                seen: 50,
                emitted: 50,
                dropped: 0,
                ..Default::default()
            },
        ]
    }
}

fn span_rec(i: u32, pid: u32) -> SpanRecord {
    let mut trace_id = [0u8; 16];
    trace_id[..4].copy_from_slice(&i.to_be_bytes());
    trace_id[15] = 0xab;
    let mut span_id = [0u8; 8];
    span_id[..4].copy_from_slice(&i.to_be_bytes());
    span_id[7] = 0xcd;
    SpanRecord {
        trace_id,
        span_id,
        parent_span_id: if i % 2 == 0 { [0; 8] } else { [7; 8] },
        name: "GET /users/{id}".into(),
        kind: if i % 2 == 0 {
            SpanKind::Server
        } else {
            SpanKind::Client
        },
        start_unix_ns: 1_700_000_000_000_000_000 + u64::from(i) * 1000,
        end_unix_ns: 1_700_000_000_000_000_000 + u64::from(i) * 1000 + 2_500_000,
        error: (i % 5 == 4).then(|| "HTTP 500".to_string()),
        attrs: vec![
            ("http.request.method", AttrValue::Str("GET".into())),
            ("http.route", AttrValue::Str("/users/{id}".into())),
            (
                "http.response.status_code",
                AttrValue::Int(if i % 5 == 4 { 500 } else { 200 }),
            ),
        ],
        pid,
        comm: [0; 16],
    }
}

struct Running {
    stop: StopHandle,
    handle: JoinHandle<Result<ExportReport, ExportError>>,
}

impl Running {
    fn finish(self) -> ExportReport {
        self.stop.stop();
        self.handle
            .join()
            .expect("export thread panicked")
            .expect("export core failed")
    }
}

fn start(
    cfg: ExportConfig,
    nqueues: usize,
    cap: usize,
    kstats: bool,
) -> (Running, Vec<rtrb::Producer<ExportMsg>>) {
    let mut producers = Vec::new();
    let mut consumers = Vec::new();
    for _ in 0..nqueues {
        let (p, c) = rtrb::RingBuffer::new(cap);
        producers.push(p);
        consumers.push(c);
    }
    let stop = StopHandle::new();
    let s = stop.clone();
    let handle = std::thread::spawn(move || {
        let k: Option<Box<dyn KernelStatsSource>> = if kstats {
            Some(Box::new(FakeKernel))
        } else {
            None
        };
        run_export_core(cfg, consumers, Box::new(FakeResolver), k, s)
    });
    (Running { stop, handle }, producers)
}

fn push(p: &mut rtrb::Producer<ExportMsg>, msg: ExportMsg) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut msg = msg;
    loop {
        match p.push(msg) {
            Ok(()) => return,
            Err(rtrb::PushError::Full(m)) => {
                assert!(Instant::now() < deadline, "export core stopped draining");
                msg = m;
                std::thread::sleep(Duration::from_micros(100));
            }
        }
    }
}

fn cfg_for(rx: &Receiver) -> ExportConfig {
    ExportConfig {
        endpoint: Some(rx.endpoint()),
        flush_interval: Duration::from_millis(20),
        metrics_interval: Duration::from_secs(60),
        request_timeout: Duration::from_secs(2),
        ..Default::default()
    }
}

#[test]
fn spans_arrive_with_resource_attributes_ids_gzip_and_headers() {
    let rx = Receiver::start();
    let cfg = ExportConfig {
        headers: vec![
            ("x-api-key".into(), "s3cret".into()),
            ("x-tenant".into(), "acme".into()),
        ],
        ..cfg_for(&rx)
    };
    let (run, mut prods) = start(cfg, 2, 64, false);
    for i in 0..10 {
        let q = (i % 2) as usize;
        push(
            &mut prods[q],
            ExportMsg::Span(Box::new(span_rec(i, 100 + q as u32))),
        );
    }
    assert!(
        rx.wait_for_spans(10, Duration::from_secs(5)),
        "spans did not arrive"
    );
    let report = run.finish();
    assert_eq!(report.spans_received, 10);
    assert_eq!(report.spans_exported, 10);
    assert_eq!(report.spans_dropped, 0);

    let spans = rx.spans();
    assert_eq!(spans.len(), 10);
    for (res, s) in &spans {
        let i = u32::from_be_bytes([s.span_id[0], s.span_id[1], s.span_id[2], s.span_id[3]]);
        let want = span_rec(i, 0);
        assert_eq!(s.trace_id, want.trace_id.to_vec());
        assert_eq!(s.span_id, want.span_id.to_vec());
        let pid = 100 + i % 2;
        assert_eq!(attr_int(res, "process.pid"), Some(i64::from(pid)));
        assert_eq!(
            attr_str(res, "service.name"),
            Some(format!("svc-{pid}").as_str())
        );
        assert_eq!(attr_str(res, "host.name"), Some("testhost"));
        assert_eq!(attr_str(&s.attributes, "http.route"), Some("/users/{id}"));
        assert_eq!(s.name, "GET /users/{id}");
        if i % 2 == 0 {
            assert_eq!(s.kind, span::SpanKind::Server as i32);
            assert!(s.parent_span_id.is_empty());
        } else {
            assert_eq!(s.kind, span::SpanKind::Client as i32);
            assert_eq!(s.parent_span_id, vec![7; 8]);
        }
        let st = s.status.clone().unwrap_or_default();
        if i % 5 == 4 {
            assert_eq!(st.code, status::StatusCode::Error as i32);
            assert_eq!(st.message, "HTTP 500");
        } else {
            assert_eq!(st.code, status::StatusCode::Unset as i32);
        }
        assert_eq!(s.end_time_unix_nano - s.start_time_unix_nano, 2_500_000);
    }
    for req in rx.trace_requests() {
        for rs in &req.resource_spans {
            assert_eq!(rs.scope_spans.len(), 1);
            assert_eq!(
                rs.scope_spans[0].scope.as_ref().map(|s| s.name.as_str()),
                Some("telegen")
            );
        }
    }
    let reqs = rx.requests();
    assert!(reqs.iter().any(|r| r.path == "/v1/traces"));
    for r in &reqs {
        assert!(r.gzip, "request not gzipped: {r:?}");
        assert_eq!(r.header("content-type"), Some("application/x-protobuf"));
        assert_eq!(r.header("x-api-key"), Some("s3cret"));
        assert_eq!(r.header("x-tenant"), Some("acme"));
        assert_eq!(r.status, 200);
    }
}

/// Uncompressed, a batch's encoded buffer itself becomes the request body (the next batch
/// encodes into a new one): several batches in a row each carry their own spans.
#[test]
fn plain_body_without_gzip() {
    let rx = Receiver::start();
    let cfg = ExportConfig {
        gzip: false,
        max_spans_per_batch: 3,
        ..cfg_for(&rx)
    };
    let (run, mut prods) = start(cfg, 1, 16, false);
    for i in 0..10 {
        push(&mut prods[0], ExportMsg::Span(Box::new(span_rec(i, 1))));
    }
    assert!(rx.wait_for_spans(10, Duration::from_secs(5)));
    run.finish();
    let reqs = rx.requests();
    let traces = reqs.iter().filter(|r| r.path == "/v1/traces").count();
    assert!(
        traces >= 4,
        "{traces} trace requests for 10 spans in batches of 3"
    );
    assert!(reqs
        .iter()
        .all(|r| !r.gzip && r.header("content-encoding").is_none()));
    let mut ids: Vec<_> = rx.spans().iter().map(|(_, s)| s.span_id.clone()).collect();
    assert_eq!(ids.len(), 10, "duplicates or losses");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 10);
}

fn retry_delivers_exactly_once(status: u16, retry_after: Option<u64>, min_wait: Duration) {
    let rx = Receiver::start();
    rx.fail_next(1, status, retry_after);
    let cfg = ExportConfig {
        max_spans_per_batch: 5,
        ..cfg_for(&rx)
    };
    let (run, mut prods) = start(cfg, 1, 64, false);
    let t0 = Instant::now();
    for i in 0..5 {
        push(&mut prods[0], ExportMsg::Span(Box::new(span_rec(i, 9))));
    }
    assert!(
        rx.wait_for_spans(5, Duration::from_secs(10)),
        "not delivered after retry"
    );
    let waited = t0.elapsed();
    assert!(waited >= min_wait, "retried too early: {waited:?}");
    let report = run.finish();
    let spans = rx.spans();
    assert_eq!(spans.len(), 5, "duplicates or losses");
    let mut ids: Vec<_> = spans.iter().map(|(_, s)| s.span_id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5);
    assert_eq!(rx.requests()[0].status, status);
    assert_eq!(report.spans_exported, 5);
    assert_eq!(report.spans_dropped, 0);
    assert!(report.retries >= 1, "{report:?}");
    assert_eq!(report.batches_failed, 0);
}

#[test]
fn retry_after_503_delivers_everything_exactly_once() {
    retry_delivers_exactly_once(503, Some(1), Duration::from_millis(950));
}

#[test]
fn retry_after_429_with_backoff() {
    retry_delivers_exactly_once(429, None, Duration::ZERO);
}

#[test]
fn non_retryable_4xx_drops_and_counts() {
    let rx = Receiver::start();
    rx.fail_next(1, 400, None);
    let cfg = ExportConfig {
        max_spans_per_batch: 3,
        ..cfg_for(&rx)
    };
    let (run, mut prods) = start(cfg, 1, 64, false);
    for i in 0..3 {
        push(&mut prods[0], ExportMsg::Span(Box::new(span_rec(i, 9))));
    }
    assert!(rx.wait_for_requests(1, Duration::from_secs(5)));
    let report = run.finish();
    assert_eq!(report.spans_dropped, 3);
    assert_eq!(report.spans_dropped_by_reason, vec![("rejected", 3)]);
    assert_eq!(report.batches_failed, 1);
    assert_eq!(report.retries, 0);
    assert!(rx.spans().is_empty());
}

#[test]
fn collector_down_never_blocks_counts_failures_and_stops_promptly() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    }; // closed now: connections are refused
    let cfg = ExportConfig {
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        max_spans_per_batch: 10,
        flush_interval: Duration::from_millis(5),
        max_pending_batches: 4,
        max_retries: 3,
        max_backoff: Duration::from_millis(50),
        request_timeout: Duration::from_millis(500),
        shutdown_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let (run, mut prods) = start(cfg, 1, 128, false);
    let t0 = Instant::now();
    let n = 5_000u32;
    for i in 0..n {
        push(&mut prods[0], ExportMsg::Span(Box::new(span_rec(i, 3))));
    }
    let produce = t0.elapsed();
    assert!(
        produce < Duration::from_secs(5),
        "producers blocked: {produce:?}"
    );
    let t1 = Instant::now();
    let report = run.finish();
    let stop_took = t1.elapsed();
    assert!(
        stop_took < Duration::from_secs(3),
        "stop took {stop_took:?}"
    );
    assert_eq!(report.spans_received, u64::from(n));
    assert_eq!(report.spans_exported, 0);
    assert_eq!(report.spans_dropped, u64::from(n), "{report:?}");
    let reasons: Vec<&str> = report
        .spans_dropped_by_reason
        .iter()
        .map(|(r, _)| *r)
        .collect();
    assert!(reasons.contains(&"queue_full"), "{report:?}");
    assert!(report.retries > 0, "{report:?}");
    assert!(report.batches_dropped > 0, "{report:?}");
}

#[test]
fn cumulative_histograms_sum_the_deltas() {
    let rx = Receiver::start();
    let (run, mut prods) = start(cfg_for(&rx), 2, 64, false);
    let delta = |pid: u32, route: &str, counts: Vec<u64>| {
        let mut bucket_counts = vec![0u64; DURATION_BOUNDS_S.len() + 1];
        for (i, c) in counts.iter().enumerate() {
            bucket_counts[i * 3] = *c;
        }
        ExportMsg::Histogram(Box::new(HistogramDelta {
            name: "http.server.request.duration",
            unit: "s",
            pid,
            attrs: vec![("http.route", AttrValue::Str(route.into()))],
            bounds: DURATION_BOUNDS_S,
            count: counts.iter().sum(),
            bucket_counts,
            sum: 0.5,
            min: 0.001,
            max: 0.2,
        }))
    };
    let mut want = 0;
    for k in 0..6u64 {
        let counts = vec![k, 1, 2];
        want += counts.iter().sum::<u64>();
        push(&mut prods[(k % 2) as usize], delta(7, "/a", counts));
    }
    push(&mut prods[0], delta(7, "/b", vec![4]));
    push(&mut prods[1], delta(8, "/a", vec![1]));
    std::thread::sleep(Duration::from_millis(50));
    let report = run.finish();
    assert_eq!(report.histogram_deltas_received, 8);
    assert!(report.points_exported >= 3, "{report:?}");

    let metrics = rx.metrics();
    let mut found = Vec::new();
    let mut self_seen = false;
    for req in &metrics {
        for rm in &req.resource_metrics {
            let res = rm
                .resource
                .as_ref()
                .map(|r| r.attributes.clone())
                .unwrap_or_default();
            for m in rm.scope_metrics.iter().flat_map(|s| s.metrics.iter()) {
                match &m.data {
                    Some(metric::Data::Histogram(h)) => {
                        assert_eq!(m.name, "http.server.request.duration");
                        assert_eq!(m.unit, "s");
                        assert_eq!(
                            h.aggregation_temporality,
                            AggregationTemporality::Cumulative as i32
                        );
                        for p in &h.data_points {
                            assert_eq!(p.explicit_bounds, DURATION_BOUNDS_S.to_vec());
                            assert_eq!(p.bucket_counts.iter().sum::<u64>(), p.count);
                            assert!(
                                p.start_time_unix_nano > 0
                                    && p.time_unix_nano >= p.start_time_unix_nano
                            );
                            found.push((
                                attr_int(&res, "process.pid"),
                                attr_str(&p.attributes, "http.route").map(str::to_string),
                                p.count,
                            ));
                        }
                    }
                    Some(metric::Data::Sum(s)) => {
                        assert_eq!(attr_str(&res, "service.name"), Some("telegen"));
                        assert!(s.is_monotonic);
                        assert_eq!(
                            s.aggregation_temporality,
                            AggregationTemporality::Cumulative as i32
                        );
                        if m.name == "telegen_export_histogram_deltas_received" {
                            self_seen = true;
                            assert_eq!(
                                s.data_points[0].value,
                                Some(number_data_point::Value::AsInt(8))
                            );
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    found.sort();
    assert_eq!(
        found,
        vec![
            (Some(7), Some("/a".to_string()), want),
            (Some(7), Some("/b".to_string()), 4),
            (Some(8), Some("/a".to_string()), 1),
        ]
    );
    assert!(self_seen, "self-telemetry sums missing");
}

#[test]
fn jsonl_mode_writes_parseable_otlp_json_lines() {
    let path = std::env::temp_dir().join(format!("telegen-export-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let cfg = ExportConfig {
        jsonl_path: Some(path.clone()),
        summary_interval: Some(Duration::from_millis(30)),
        flush_interval: Duration::from_millis(10),
        ..Default::default()
    };
    let (run, mut prods) = start(cfg, 1, 64, false);
    for i in 0..3 {
        push(&mut prods[0], ExportMsg::Span(Box::new(span_rec(i, 55))));
    }
    std::thread::sleep(Duration::from_millis(80));
    let report = run.finish();
    assert_eq!(report.spans_received, 3);
    assert_eq!(report.jsonl_errors, 0);
    let text = std::fs::read_to_string(&path).expect("jsonl file");
    let _ = std::fs::remove_file(&path);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("line is JSON"))
        .collect();
    assert_eq!(lines.len() as u64, report.jsonl_lines);
    let mut span_ids = Vec::new();
    for v in &lines {
        if let Some(rs) = v.get("resourceSpans").and_then(|r| r.as_array()) {
            for r in rs {
                for ss in r["scopeSpans"].as_array().into_iter().flatten() {
                    for s in ss["spans"].as_array().into_iter().flatten() {
                        span_ids.push(s["spanId"].as_str().unwrap_or("").to_string());
                        assert_eq!(s["traceId"].as_str().map(str::len), Some(32));
                    }
                }
            }
        }
    }
    span_ids.sort();
    assert_eq!(
        span_ids,
        vec!["00000000000000cd", "00000001000000cd", "00000002000000cd"]
    );
    assert!(
        lines.iter().any(|v| v.get("resourceMetrics").is_some()),
        "no metrics line"
    );
}

fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn prometheus_endpoint_serves_the_counters() {
    let addr = free_port();
    let cfg = ExportConfig {
        prometheus_addr: Some(addr),
        ..Default::default()
    };
    let (run, mut prods) = start(cfg, 1, 64, true);
    push(
        &mut prods[0],
        ExportMsg::Stats(Box::new(ShardStats {
            shard: 0,
            queue_drops: 3,
            ..Default::default()
        })),
    );
    for i in 0..4 {
        push(&mut prods[0], ExportMsg::Span(Box::new(span_rec(i, 1))));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut body = String::new();
    while Instant::now() < deadline {
        body = http_get(addr, "/metrics").unwrap_or_default();
        if body.contains("telegen_export_spans_received_total 4") && body.contains("shard=\"0\"") {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    for want in [
        "# TYPE telegen_kernel_events_dropped_total counter",
        "telegen_kernel_events_dropped_total{cpu=\"0\"} 7",
        "telegen_kernel_events_seen_total{cpu=\"1\"} 50",
        "# HELP telegen_shard_queue_drops_total",
        "telegen_shard_queue_drops_total{shard=\"0\"} 3",
        "telegen_export_spans_dropped_total{reason=\"queue_full\"} 0",
        "telegen_export_spans_received_total 4",
    ] {
        assert!(body.contains(want), "missing {want:?} in\n{body}");
    }
    assert!(http_get(addr, "/nope")
        .unwrap_or_default()
        .starts_with("HTTP/1.1 404"));
    run.finish();
}

#[test]
fn prometheus_bind_failure_is_an_error_at_start() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let cfg = ExportConfig {
        prometheus_addr: Some(addr),
        ..Default::default()
    };
    let r = run_export_core(
        cfg,
        Vec::new(),
        Box::new(FakeResolver),
        None,
        StopHandle::new(),
    );
    match r {
        Err(e @ ExportError::PrometheusBind { .. }) => {
            assert!(e.to_string().contains(&addr.to_string()), "{e}")
        }
        other => panic!("expected a bind error, got {other:?}"),
    }
}

#[test]
fn bad_endpoint_is_an_error_at_start() {
    let cfg = ExportConfig {
        endpoint: Some("https://127.0.0.1:1".into()),
        ..Default::default()
    };
    let r = run_export_core(
        cfg,
        Vec::new(),
        Box::new(FakeResolver),
        None,
        StopHandle::new(),
    );
    assert!(
        matches!(r, Err(ExportError::InvalidEndpoint { .. })),
        "{r:?}"
    );
}

#[test]
fn huge_intervals_do_not_overflow() {
    let cfg = ExportConfig {
        flush_interval: Duration::MAX,
        metrics_interval: Duration::MAX,
        summary_interval: Some(Duration::MAX),
        shutdown_timeout: Duration::MAX,
        max_backoff: Duration::MAX,
        ..Default::default()
    };
    let (run, mut prods) = start(cfg, 1, 8, true);
    push(&mut prods[0], ExportMsg::Span(Box::new(span_rec(1, 1))));
    std::thread::sleep(Duration::from_millis(20));
    let report = run.finish();
    assert_eq!(report.spans_received, 1);
}

#[test]
fn full_batches_split_and_proc_resolver_names_the_process() {
    let rx = Receiver::start();
    let mut producers = Vec::new();
    let mut consumers = Vec::new();
    let (p, c) = rtrb::RingBuffer::new(256);
    producers.push(p);
    consumers.push(c);
    let stop = StopHandle::new();
    let s = stop.clone();
    let cfg = ExportConfig {
        flush_interval: Duration::from_secs(60), // only full batches and stop flush
        ..cfg_for(&rx)
    };
    let handle = std::thread::spawn(move || {
        run_export_core(
            cfg,
            consumers,
            Box::new(telegen_dataplane::export::ProcResolver::new()),
            None,
            s,
        )
    });
    let pid = std::process::id();
    for i in 0..1200 {
        push(
            &mut producers[0],
            ExportMsg::Span(Box::new(span_rec(i, pid))),
        );
    }
    assert!(
        rx.wait_for_spans(1024, Duration::from_secs(5)),
        "full batches not sent"
    );
    stop.stop();
    let report = handle.join().expect("no panic").expect("core ok");
    assert_eq!(report.spans_exported, 1200);
    let sizes: Vec<usize> = rx
        .trace_requests()
        .iter()
        .map(|r| {
            r.resource_spans
                .iter()
                .map(|rs| rs.scope_spans[0].spans.len())
                .sum()
        })
        .collect();
    assert_eq!(sizes, vec![512, 512, 176]);
    let exe = std::env::current_exe().expect("exe");
    let name = exe.file_name().and_then(|n| n.to_str()).expect("name");
    let (res, _) = &rx.spans()[0];
    assert_eq!(attr_int(res, "process.pid"), Some(i64::from(pid)));
    assert_eq!(attr_str(res, "service.name"), Some(name));
    assert_eq!(attr_str(res, "os.type"), Some("linux"));
    assert!(attr_str(res, "process.command_line").is_some());
}
