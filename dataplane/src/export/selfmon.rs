//! Self-telemetry: Telegen's own counters. Everything that happens to a signal inside the export
//! core is recorded as a typed [`SelfEvent`]; shard snapshots (`ExportMsg::Stats`) and kernel
//! per-CPU counters are kept as their latest value. One snapshot of all of it ([`families`]) feeds
//! both the Prometheus text endpoint (`GET /metrics`, served here) and the OTLP monotonic Sums
//! exported each metrics interval under `service.name=telegen`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::Metric;

use super::otlp;
use super::CpuKernelStats;
use crate::signal::ShardStats;
use telegen_bpf::ProgramStats;

/// Why a span or a data point was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The bounded queue of batches awaiting send was full (the oldest batch was dropped).
    QueueFull,
    /// The collector answered a non-retryable status (4xx other than 429).
    Rejected,
    /// Retryable failures outlasted `max_retries`.
    RetriesExhausted,
    /// Still pending when the shutdown timeout expired.
    Shutdown,
    /// A new histogram series beyond the series limit.
    SeriesLimit,
    /// A histogram delta whose bounds differ from its series' bounds.
    BoundsMismatch,
    /// Compressing the request body failed.
    Encode,
}

impl DropReason {
    pub const ALL: [DropReason; 7] = [
        DropReason::QueueFull,
        DropReason::Rejected,
        DropReason::RetriesExhausted,
        DropReason::Shutdown,
        DropReason::SeriesLimit,
        DropReason::BoundsMismatch,
        DropReason::Encode,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::Rejected => "rejected",
            DropReason::RetriesExhausted => "retries_exhausted",
            DropReason::Shutdown => "shutdown",
            DropReason::SeriesLimit => "series_limit",
            DropReason::BoundsMismatch => "bounds_mismatch",
            DropReason::Encode => "encode",
        }
    }
    fn index(self) -> usize {
        self as usize
    }
}

/// Which signal a batch carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalKind {
    Traces,
    Metrics,
}

/// Something that happened inside the export core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelfEvent {
    SpansReceived(u64),
    HistogramDeltasReceived(u64),
    /// A batch of `items` spans/points was acknowledged by the collector.
    BatchSent {
        kind: SignalKind,
        items: u64,
    },
    /// A batch was given up on after it was sent (rejected or retries exhausted).
    BatchFailed {
        kind: SignalKind,
        items: u64,
        reason: DropReason,
    },
    /// A batch (or items that never made a batch) dropped before sending.
    Dropped {
        kind: SignalKind,
        items: u64,
        reason: DropReason,
        whole_batch: bool,
    },
    /// Batches abandoned in flight at shutdown (their items are counted by a `Dropped` event).
    BatchesAbandoned(u64),
    Retry,
    JsonlLine,
    JsonlError,
}

const NREASONS: usize = DropReason::ALL.len();

/// The counters. Cheap to update from any task (relaxed atomics); shard and kernel snapshots sit
/// behind uncontended mutexes.
#[derive(Debug, Default)]
pub struct SelfMon {
    spans_received: AtomicU64,
    deltas_received: AtomicU64,
    spans_exported: AtomicU64,
    points_exported: AtomicU64,
    spans_dropped: [AtomicU64; NREASONS],
    points_dropped: [AtomicU64; NREASONS],
    batches_sent: AtomicU64,
    batches_failed: AtomicU64,
    batches_dropped: AtomicU64,
    retries: AtomicU64,
    jsonl_lines: AtomicU64,
    jsonl_errors: AtomicU64,
    pending_batches: AtomicU64,
    shards: Mutex<BTreeMap<u32, ShardStats>>,
    kernel: Mutex<BTreeMap<u32, CpuKernelStats>>,
    programs: Mutex<Vec<ProgramStats>>,
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}
fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// A copy of every counter at one instant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub spans_received: u64,
    pub deltas_received: u64,
    pub spans_exported: u64,
    pub points_exported: u64,
    pub spans_dropped: [u64; NREASONS],
    pub points_dropped: [u64; NREASONS],
    pub batches_sent: u64,
    pub batches_failed: u64,
    pub batches_dropped: u64,
    pub retries: u64,
    pub jsonl_lines: u64,
    pub jsonl_errors: u64,
    pub pending_batches: u64,
    pub shards: Vec<ShardStats>,
    pub kernel: Vec<CpuKernelStats>,
    pub programs: Vec<ProgramStats>,
}

impl Snapshot {
    pub fn spans_dropped_total(&self) -> u64 {
        self.spans_dropped.iter().sum()
    }
    pub fn points_dropped_total(&self) -> u64 {
        self.points_dropped.iter().sum()
    }
    pub fn kernel_dropped_total(&self) -> u64 {
        self.kernel.iter().map(|k| k.dropped).sum()
    }
    /// Cross-shard and shard-to-export queue drops.
    pub fn queue_dropped_total(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.queue_drops + s.export_queue_drops)
            .sum()
    }
}

impl SelfMon {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn record(&self, ev: SelfEvent) {
        match ev {
            SelfEvent::SpansReceived(n) => add(&self.spans_received, n),
            SelfEvent::HistogramDeltasReceived(n) => add(&self.deltas_received, n),
            SelfEvent::BatchSent { kind, items } => {
                add(&self.batches_sent, 1);
                match kind {
                    SignalKind::Traces => add(&self.spans_exported, items),
                    SignalKind::Metrics => add(&self.points_exported, items),
                }
            }
            SelfEvent::BatchFailed {
                kind,
                items,
                reason,
            } => {
                add(&self.batches_failed, 1);
                self.drop_items(kind, items, reason);
            }
            SelfEvent::Dropped {
                kind,
                items,
                reason,
                whole_batch,
            } => {
                if whole_batch {
                    add(&self.batches_dropped, 1);
                }
                self.drop_items(kind, items, reason);
            }
            SelfEvent::BatchesAbandoned(n) => add(&self.batches_dropped, n),
            SelfEvent::Retry => add(&self.retries, 1),
            SelfEvent::JsonlLine => add(&self.jsonl_lines, 1),
            SelfEvent::JsonlError => add(&self.jsonl_errors, 1),
        }
    }

    fn drop_items(&self, kind: SignalKind, items: u64, reason: DropReason) {
        match kind {
            SignalKind::Traces => add(&self.spans_dropped[reason.index()], items),
            SignalKind::Metrics => add(&self.points_dropped[reason.index()], items),
        }
    }

    pub fn set_pending_batches(&self, n: u64) {
        self.pending_batches.store(n, Ordering::Relaxed);
    }

    /// Keep the latest snapshot of a shard.
    pub fn set_shard_stats(&self, s: ShardStats) {
        if let Ok(mut m) = self.shards.lock() {
            m.insert(s.shard, s);
        }
    }

    /// Keep the latest kernel per-CPU counters.
    pub fn set_kernel_stats(&self, stats: Vec<CpuKernelStats>) {
        if let Ok(mut m) = self.kernel.lock() {
            for s in stats {
                m.insert(s.cpu, s);
            }
        }
    }

    /// Keep the latest run statistics of the BPF programs.
    pub fn set_program_stats(&self, programs: Vec<ProgramStats>) {
        if let Ok(mut m) = self.programs.lock() {
            *m = programs;
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        let arr = |a: &[AtomicU64; NREASONS]| {
            let mut o = [0u64; NREASONS];
            for (d, s) in o.iter_mut().zip(a.iter()) {
                *d = get(s);
            }
            o
        };
        Snapshot {
            spans_received: get(&self.spans_received),
            deltas_received: get(&self.deltas_received),
            spans_exported: get(&self.spans_exported),
            points_exported: get(&self.points_exported),
            spans_dropped: arr(&self.spans_dropped),
            points_dropped: arr(&self.points_dropped),
            batches_sent: get(&self.batches_sent),
            batches_failed: get(&self.batches_failed),
            batches_dropped: get(&self.batches_dropped),
            retries: get(&self.retries),
            jsonl_lines: get(&self.jsonl_lines),
            jsonl_errors: get(&self.jsonl_errors),
            pending_batches: get(&self.pending_batches),
            shards: self
                .shards
                .lock()
                .map(|m| m.values().copied().collect())
                .unwrap_or_default(),
            kernel: self
                .kernel
                .lock()
                .map(|m| m.values().copied().collect())
                .unwrap_or_default(),
            programs: self.programs.lock().map(|m| m.clone()).unwrap_or_default(),
        }
    }
}

/// Counter (monotonic) or gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FamilyKind {
    Counter,
    Gauge,
}

/// One metric family: Prometheus name (counters end in `_total`), help, samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: FamilyKind,
    pub samples: Vec<(Vec<(&'static str, String)>, u64)>,
}

fn fam(name: &'static str, help: &'static str, kind: FamilyKind, v: u64) -> Family {
    Family {
        name,
        help,
        kind,
        samples: vec![(Vec::new(), v)],
    }
}

fn by_reason(name: &'static str, help: &'static str, v: &[u64; NREASONS]) -> Family {
    Family {
        name,
        help,
        kind: FamilyKind::Counter,
        samples: DropReason::ALL
            .iter()
            .map(|r| (vec![("reason", r.as_str().to_string())], v[r.index()]))
            .collect(),
    }
}

/// Every self-telemetry family from a snapshot.
pub fn families(s: &Snapshot) -> Vec<Family> {
    use FamilyKind::{Counter, Gauge};
    let mut out = vec![
        fam(
            "telegen_export_spans_received_total",
            "Spans received from the shards.",
            Counter,
            s.spans_received,
        ),
        fam(
            "telegen_export_histogram_deltas_received_total",
            "Histogram deltas received from the shards.",
            Counter,
            s.deltas_received,
        ),
        fam(
            "telegen_export_spans_exported_total",
            "Spans acknowledged by the OTLP collector.",
            Counter,
            s.spans_exported,
        ),
        by_reason(
            "telegen_export_spans_dropped_total",
            "Spans dropped by the export core, by reason.",
            &s.spans_dropped,
        ),
        fam(
            "telegen_export_points_exported_total",
            "Metric data points acknowledged by the OTLP collector.",
            Counter,
            s.points_exported,
        ),
        by_reason(
            "telegen_export_points_dropped_total",
            "Metric data points dropped by the export core, by reason.",
            &s.points_dropped,
        ),
        fam(
            "telegen_export_batches_sent_total",
            "OTLP requests acknowledged.",
            Counter,
            s.batches_sent,
        ),
        fam(
            "telegen_export_batches_failed_total",
            "OTLP batches given up on after sending (rejected or retries exhausted).",
            Counter,
            s.batches_failed,
        ),
        fam(
            "telegen_export_batches_dropped_total",
            "OTLP batches dropped before sending (queue full, shutdown).",
            Counter,
            s.batches_dropped,
        ),
        fam(
            "telegen_export_retries_total",
            "OTLP request retries.",
            Counter,
            s.retries,
        ),
        fam(
            "telegen_export_jsonl_lines_total",
            "OTLP JSON lines written.",
            Counter,
            s.jsonl_lines,
        ),
        fam(
            "telegen_export_jsonl_errors_total",
            "OTLP JSON write failures.",
            Counter,
            s.jsonl_errors,
        ),
        fam(
            "telegen_export_pending_batches",
            "Encoded batches waiting to be sent.",
            Gauge,
            s.pending_batches,
        ),
    ];
    let kernel = |name, help, f: fn(&CpuKernelStats) -> u64| Family {
        name,
        help,
        kind: Counter,
        samples: s
            .kernel
            .iter()
            .map(|k| (vec![("cpu", k.cpu.to_string())], f(k)))
            .collect(),
    };
    out.push(kernel(
        "telegen_kernel_events_seen_total",
        "Events seen by the BPF programs, per CPU.",
        |k| k.seen,
    ));
    out.push(kernel(
        "telegen_kernel_events_emitted_total",
        "Events written to the kernel rings, per CPU.",
        |k| k.emitted,
    ));
    out.push(kernel(
        "telegen_kernel_events_dropped_total",
        "Events dropped in the kernel (ring full), per CPU.",
        |k| k.dropped,
    ));
    out.push(kernel(
        "telegen_kernel_payloads_truncated_total",
        "Payloads longer than --capture-bytes (only their prefix was copied), per CPU.",
        |k| k.truncated,
    ));
    out.push(kernel(
        "telegen_kernel_tls_unmapped_total",
        "TLS plaintext dropped: its SSL* was never tied to a traced socket, per CPU.",
        |k| k.tls_unmapped,
    ));
    out.push(kernel(
        "telegen_kernel_tls_suppressed_total",
        "Encrypted payloads not sent to user space (the plaintext is), per CPU.",
        |k| k.tls_suppressed,
    ));
    // Only once the kernel has counted something (`kernel.bpf_stats_enabled` set at some
    // point): with the sysctl off, as by default, every program's figures stay zero.
    if s.programs.iter().any(|p| p.runs > 0) {
        let program = |name, help, f: fn(&ProgramStats) -> u64| Family {
            name,
            help,
            kind: Counter,
            samples: s
                .programs
                .iter()
                .map(|p| (vec![("program", p.name.clone())], f(p)))
                .collect(),
        };
        out.push(program(
            "telegen_kernel_program_runs_total",
            "Runs of each BPF program, counted while the sysctl kernel.bpf_stats_enabled is 1.",
            |p| p.runs,
        ));
        out.push(program(
            "telegen_kernel_program_run_nanoseconds_total",
            "Nanoseconds each BPF program ran, counted while kernel.bpf_stats_enabled is 1.",
            |p| p.run_ns,
        ));
    }
    type ShardField = (
        &'static str,
        &'static str,
        FamilyKind,
        fn(&ShardStats) -> u64,
    );
    let shard_fields: [ShardField; 19] = [
        (
            "telegen_shard_events_drained_total",
            "Kernel events drained by the shard.",
            Counter,
            |s| s.events_drained,
        ),
        (
            "telegen_shard_events_malformed_total",
            "Kernel events that failed to decode.",
            Counter,
            |s| s.events_malformed,
        ),
        (
            "telegen_shard_events_forwarded_total",
            "Events forwarded to another shard.",
            Counter,
            |s| s.events_forwarded,
        ),
        (
            "telegen_shard_events_received_total",
            "Events received from another shard.",
            Counter,
            |s| s.events_received,
        ),
        (
            "telegen_shard_queue_drops_total",
            "Events dropped because a cross-shard queue was full.",
            Counter,
            |s| s.queue_drops,
        ),
        (
            "telegen_shard_reorder_gaps_total",
            "Sequence gaps given up on.",
            Counter,
            |s| s.reorder_gaps,
        ),
        (
            "telegen_shard_events_late_total",
            "Events that arrived after their sequence gap was given up on.",
            Counter,
            |s| s.events_late,
        ),
        (
            "telegen_shard_reorder_budget_gaps_total",
            "Sequence gaps given up on to keep held records within the reorder budget.",
            Counter,
            |s| s.reorder_budget_gaps,
        ),
        (
            "telegen_shard_reorder_held_bytes",
            "Bytes of early records held waiting for a missing one.",
            Gauge,
            |s| s.reorder_held_bytes,
        ),
        (
            "telegen_shard_orphan_children_total",
            "Client spans exported as roots because their parent server span never arrived.",
            Counter,
            |s| s.orphan_children,
        ),
        (
            "telegen_shard_flows_active",
            "Flows currently held by the shard.",
            Gauge,
            |s| s.flows_active,
        ),
        (
            "telegen_shard_flows_evicted_total",
            "Flows evicted because the table was full.",
            Counter,
            |s| s.flows_evicted,
        ),
        (
            "telegen_shard_flows_expired_total",
            "Flows expired idle.",
            Counter,
            |s| s.flows_expired,
        ),
        (
            "telegen_shard_unknown_protocol_total",
            "Payloads no parser recognised.",
            Counter,
            |s| s.unknown_protocol,
        ),
        (
            "telegen_shard_tls_encrypted_total",
            "Encrypted TLS payloads recognised on sockets and skipped.",
            Counter,
            |s| s.tls_encrypted,
        ),
        (
            "telegen_shard_parse_errors_total",
            "Parser errors.",
            Counter,
            |s| s.parse_errors,
        ),
        (
            "telegen_shard_exchanges_unpaired_total",
            "Exchanges seen but not emitted because which request and response belong together \
             is unknown (HTTP/1.1 after uncaptured bytes that may hide pipelined requests; \
             HTTP/2 with the client side never learned).",
            Counter,
            |s| s.exchanges_unpaired,
        ),
        (
            "telegen_shard_spans_emitted_total",
            "Spans emitted by the shard.",
            Counter,
            |s| s.spans_emitted,
        ),
        (
            "telegen_shard_export_queue_drops_total",
            "Signals dropped because the queue to the export core was full.",
            Counter,
            |s| s.export_queue_drops,
        ),
    ];
    for (name, help, kind, f) in shard_fields {
        out.push(Family {
            name,
            help,
            kind,
            samples: s
                .shards
                .iter()
                .map(|sh| (vec![("shard", sh.shard.to_string())], f(sh)))
                .collect(),
        });
    }
    out
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Prometheus text exposition format (0.0.4) of the families.
pub fn render_prometheus(families: &[Family]) -> String {
    let mut out = String::with_capacity(8192);
    for f in families {
        let kind = match f.kind {
            FamilyKind::Counter => "counter",
            FamilyKind::Gauge => "gauge",
        };
        let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
        let _ = writeln!(out, "# TYPE {} {}", f.name, kind);
        for (labels, v) in &f.samples {
            out.push_str(f.name);
            if !labels.is_empty() {
                out.push('{');
                for (i, (k, lv)) in labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{k}=\"{}\"", escape_label(lv));
                }
                out.push('}');
            }
            let _ = writeln!(out, " {v}");
        }
    }
    out
}

/// OTLP metrics for the families: counters as monotonic cumulative Sums, gauges as Gauges; the
/// name drops the Prometheus `_total` suffix. Families without samples are skipped.
pub fn otlp_metrics(families: &[Family], start_unix_ns: u64, now_unix_ns: u64) -> Vec<Metric> {
    families
        .iter()
        .filter(|f| !f.samples.is_empty())
        .map(|f| {
            let points = f
                .samples
                .iter()
                .map(|(labels, v)| {
                    let attrs = labels
                        .iter()
                        .map(|(k, lv)| KeyValue {
                            key: (*k).to_string(),
                            value: Some(AnyValue {
                                value: Some(any_value::Value::StringValue(lv.clone())),
                            }),
                            key_strindex: 0,
                        })
                        .collect();
                    (attrs, i64::try_from(*v).unwrap_or(i64::MAX))
                })
                .collect();
            match f.kind {
                FamilyKind::Counter => otlp::monotonic_sum_metric(
                    f.name.strip_suffix("_total").unwrap_or(f.name),
                    f.help,
                    points,
                    start_unix_ns,
                    now_unix_ns,
                ),
                FamilyKind::Gauge => otlp::gauge_metric(f.name, f.help, points, now_unix_ns),
            }
        })
        .collect()
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

/// Answer one request: `GET /metrics` gets the text format, anything else 404/405.
pub fn handle_request<B>(mon: &SelfMon, req: &Request<B>) -> Response<Full<Bytes>> {
    if req.uri().path() != "/metrics" {
        return text(StatusCode::NOT_FOUND, "not found; try /metrics\n".into());
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into());
    }
    text(
        StatusCode::OK,
        render_prometheus(&families(&mon.snapshot())),
    )
}

/// Serve `GET /metrics` on an already-bound listener until the runtime stops.
pub async fn serve_prometheus(listener: tokio::net::TcpListener, mon: Arc<SelfMon>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                log::warn!("prometheus endpoint: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let mon = mon.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let resp = handle_request(&mon, &req);
                async move { Ok::<_, Infallible>(resp) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await
            {
                log::debug!("prometheus endpoint: connection error: {e}");
            }
        });
    }
}

#[cfg(test)]
#[path = "selfmon_tests.rs"]
mod tests;
