//! The export core: one thread that drains every shard's SPSC queue, batches spans, merges
//! histogram deltas into cumulative series, and ships both as OTLP/HTTP protobuf (and/or OTLP JSON
//! lines), while serving Telegen's own counters on a Prometheus endpoint and printing a live
//! summary. This file owns the public surface: configuration, errors, the stop handle, the report,
//! the kernel-stats source trait and `OTEL_EXPORTER_OTLP_HEADERS` parsing.

mod core;
pub mod gzip;
pub mod otlp;
pub mod pb;
pub mod resource;
pub mod selfmon;
pub mod summary;
mod transport;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use self::core::{run_export_core, run_export_core_recycling};
pub use self::resource::{ProcResolver, ResourceResolver};
pub use self::transport::backoff_delay;

/// Export configuration. `Default` gives the documented defaults (no endpoint, no JSON file, no
/// summary, no Prometheus endpoint: the caller decides those).
#[derive(Debug, Clone, PartialEq)]
pub struct ExportConfig {
    /// OTLP/HTTP base URL (`http://host:port`); requests go to `<endpoint>/v1/traces` and
    /// `<endpoint>/v1/metrics`. `None`: nothing is sent over the network.
    pub endpoint: Option<String>,
    /// Extra request headers (e.g. from `OTEL_EXPORTER_OTLP_HEADERS`).
    pub headers: Vec<(String, String)>,
    /// A span batch is sent as soon as it holds this many spans (512).
    pub max_spans_per_batch: usize,
    /// A metrics request holds at most this many data points (1000).
    pub max_points_per_batch: usize,
    /// A partial span batch is sent this long after its first span arrived (1 s).
    pub flush_interval: Duration,
    /// How often a busy export core takes what the shards queued (the shards' drain
    /// interval, [`crate::runtime::DEFAULT_DRAIN_INTERVAL_MS`]).
    pub tick: Duration,
    /// Cumulative metric points (and self-telemetry) are exported this often and at stop (10 s).
    pub metrics_interval: Duration,
    /// Gzip request bodies (`Content-Encoding: gzip`) (true).
    pub gzip: bool,
    /// Timeout of one HTTP attempt, connect included (10 s).
    pub request_timeout: Duration,
    /// Retries after the first attempt for retryable failures (5).
    pub max_retries: u32,
    /// Upper bound of the exponential backoff between attempts (5 s).
    pub max_backoff: Duration,
    /// Encoded batches waiting to be sent; when full the OLDEST is dropped and counted (64).
    pub max_pending_batches: usize,
    /// Also write OTLP/JSON, one request object per line, to this file (appended).
    pub jsonl_path: Option<PathBuf>,
    /// Print a live summary table to stdout this often.
    pub summary_interval: Option<Duration>,
    /// Serve self-telemetry as Prometheus text on `GET /metrics` at this address.
    pub prometheus_addr: Option<SocketAddr>,
    /// How long, after stop, the core keeps trying to deliver what is pending (5 s).
    pub shutdown_timeout: Duration,
    /// Benchmark transport (not a user option): every batch is encoded and gzipped exactly as
    /// for a collector, then handed to this sink and counted as sent, instead of going over
    /// HTTP. Cannot be combined with `endpoint`. Used by the `perf/` harness.
    pub discard: Option<DiscardSink>,
}

/// One encoded batch, as given to a [`DiscardSink`].
#[derive(Debug)]
pub struct EncodedBatch<'a> {
    pub kind: selfmon::SignalKind,
    /// Spans or metric data points inside.
    pub items: u64,
    /// Size of the protobuf encoding before gzip.
    pub encoded_bytes: usize,
    /// The request body as it would be sent (gzipped when `gzip` is on).
    pub body: &'a [u8],
    /// End time (Unix ns) of every span in a traces batch; empty for metrics.
    pub span_end_unix_ns: &'a [u64],
}

/// Callback of the benchmark transport; runs on the export thread, so it must be cheap.
type DiscardFn = dyn Fn(&EncodedBatch<'_>) + Send + Sync;

/// The benchmark transport's sink (see [`ExportConfig::discard`]).
#[derive(Clone)]
pub struct DiscardSink(Arc<DiscardFn>);

impl DiscardSink {
    pub fn new(f: impl Fn(&EncodedBatch<'_>) + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }
    pub(crate) fn deliver(&self, b: &EncodedBatch<'_>) {
        (self.0)(b)
    }
}

impl std::fmt::Debug for DiscardSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DiscardSink")
    }
}

impl PartialEq for DiscardSink {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Default for ExportConfig {
    fn default() -> Self {
        Self {
            endpoint: None,
            headers: Vec::new(),
            max_spans_per_batch: 512,
            max_points_per_batch: 1000,
            flush_interval: Duration::from_secs(1),
            tick: Duration::from_millis(crate::runtime::DEFAULT_DRAIN_INTERVAL_MS),
            metrics_interval: Duration::from_secs(10),
            gzip: true,
            request_timeout: Duration::from_secs(10),
            max_retries: 5,
            max_backoff: Duration::from_secs(5),
            max_pending_batches: 64,
            jsonl_path: None,
            summary_interval: None,
            prometheus_addr: None,
            shutdown_timeout: Duration::from_secs(5),
            discard: None,
        }
    }
}

/// Everything that can go wrong starting or running the export core.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("malformed OTLP header entry {entry:?}: {reason}")]
    InvalidHeader { entry: String, reason: String },
    #[error("invalid OTLP endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint { endpoint: String, reason: String },
    #[error("invalid export configuration: {reason}")]
    InvalidConfig { reason: String },
    #[error("cannot bind the Prometheus endpoint on {addr}: {source}")]
    PrometheusBind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot open the OTLP JSON file {path}: {source}")]
    Jsonl {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start the export runtime: {source}")]
    Runtime { source: std::io::Error },
}

/// Cheap, cloneable stop trigger: `stop()` from any thread; the export core polls it once per
/// tick (never on the per-event path).
#[derive(Debug, Clone, Default)]
pub struct StopHandle(Arc<AtomicBool>);

impl StopHandle {
    pub fn new() -> Self {
        Self::default()
    }
    /// Ask the export core to drain, flush, deliver (bounded) and return.
    pub fn stop(&self) {
        self.0.store(true, Ordering::Release);
    }
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Per-CPU kernel counters, as read by the caller from the BPF per-CPU maps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuKernelStats {
    pub cpu: u32,
    pub seen: u64,
    pub emitted: u64,
    pub dropped: u64,
    /// Payloads longer than the capture size (only their prefix was copied).
    pub truncated: u64,
    /// TLS plaintext dropped because its `SSL*` was never tied to a tracked socket.
    pub tls_unmapped: u64,
    /// Encrypted payloads not emitted because the connection carries TLS plaintext.
    pub tls_suppressed: u64,
}

/// Source of kernel counters; the export core calls `read` and `programs` once per second.
pub trait KernelStatsSource: Send {
    fn read(&mut self) -> Vec<CpuKernelStats>;

    /// Run statistics of the tracer's programs (none by default).
    fn programs(&mut self) -> Vec<telegen_bpf::ProgramStats> {
        Vec::new()
    }
}

/// What the export core did, returned when it stops.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportReport {
    pub spans_received: u64,
    /// Spans acknowledged (2xx) by the collector.
    pub spans_exported: u64,
    /// Spans dropped for any reason (sum of `spans_dropped_by_reason`).
    pub spans_dropped: u64,
    pub spans_dropped_by_reason: Vec<(&'static str, u64)>,
    pub histogram_deltas_received: u64,
    /// Metric data points acknowledged by the collector (application and self-telemetry).
    pub points_exported: u64,
    pub points_dropped: u64,
    pub points_dropped_by_reason: Vec<(&'static str, u64)>,
    /// Requests acknowledged by the collector.
    pub batches_sent: u64,
    /// Batches given up on after sending (rejected, retries exhausted).
    pub batches_failed: u64,
    /// Batches dropped before being sent (pending queue full, shutdown timeout).
    pub batches_dropped: u64,
    pub retries: u64,
    pub jsonl_lines: u64,
    pub jsonl_errors: u64,
}

/// Parse `OTEL_EXPORTER_OTLP_HEADERS`: `key=value` pairs separated by commas, values
/// percent-decoded, surrounding whitespace trimmed, empty entries ignored.
pub fn parse_otlp_headers(s: &str) -> Result<Vec<(String, String)>, ExportError> {
    let mut out = Vec::new();
    for entry in s.split(',') {
        if entry.trim().is_empty() {
            continue;
        }
        let bad = |reason: &str| ExportError::InvalidHeader {
            entry: entry.to_string(),
            reason: reason.to_string(),
        };
        let (k, v) = entry
            .split_once('=')
            .ok_or_else(|| bad("expected key=value"))?;
        let key = percent_decode(k.trim()).map_err(|r| bad(&r))?;
        if key.is_empty() {
            return Err(bad("empty key"));
        }
        if !key.bytes().all(is_token_char) {
            return Err(bad("key is not a valid HTTP header name"));
        }
        let value = percent_decode(v.trim()).map_err(|r| bad(&r))?;
        if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(bad("value contains a control character"));
        }
        out.push((key, value));
    }
    Ok(out)
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .ok_or_else(|| format!("truncated percent escape at byte {i}"))?;
            let hi = (hex[0] as char).to_digit(16);
            let lo = (hex[1] as char).to_digit(16);
            match (hi, lo) {
                (Some(h), Some(l)) => out.push((h * 16 + l) as u8),
                _ => return Err(format!("invalid percent escape at byte {i}")),
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "percent-decoded text is not UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_basic() {
        let h = parse_otlp_headers("api-key=secret, x-tenant = acme ,,").unwrap_or_default();
        assert_eq!(
            h,
            vec![
                ("api-key".to_string(), "secret".to_string()),
                ("x-tenant".to_string(), "acme".to_string())
            ]
        );
    }

    #[test]
    fn headers_percent_decoded_and_equals_in_value() {
        let h =
            parse_otlp_headers("Authorization=Basic%20dXNlcjpwYXNz,k=a=b%2Cc").unwrap_or_default();
        assert_eq!(h[0], ("Authorization".into(), "Basic dXNlcjpwYXNz".into()));
        assert_eq!(h[1], ("k".into(), "a=b,c".into()));
        assert_eq!(parse_otlp_headers("").map(|v| v.len()).ok(), Some(0));
    }

    #[test]
    fn headers_malformed() {
        for bad in [
            "novalue",
            "=v",
            "k=%zz",
            "k=%4",
            "bad key=v",
            "k=%0a",
            "k=%ff",
        ] {
            match parse_otlp_headers(bad) {
                Err(ExportError::InvalidHeader { entry, .. }) => assert_eq!(entry, bad),
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
        let msg = parse_otlp_headers("a=b,oops")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains("oops") && msg.contains("key=value"), "{msg}");
    }

    #[test]
    fn stop_handle() {
        let s = StopHandle::new();
        let c = s.clone();
        assert!(!c.is_stopped());
        s.stop();
        assert!(c.is_stopped());
    }
}
