//! OTLP/HTTP transport: the bounded queue of encoded batches awaiting send, the sender tasks that
//! POST them with hyper (retrying 429/502/503/504, timeouts and connection errors with jittered,
//! capped exponential backoff, honouring `Retry-After`), and the accounting of every outcome in
//! [`SelfMon`]. Sending runs concurrently with the drain loop on the same current-thread runtime,
//! so an unreachable collector only ever fills (and overflows, counted) this queue.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Notify;

use super::selfmon::{DropReason, SelfEvent, SelfMon, SignalKind};
use super::{ExportConfig, ExportError};

/// Concurrent requests in flight.
pub(crate) const SENDERS: usize = 4;
/// Longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// First backoff step.
const BASE_BACKOFF: Duration = Duration::from_millis(100);

/// An encoded request body.
#[derive(Debug, Clone)]
pub(crate) struct Batch {
    pub kind: SignalKind,
    pub body: Bytes,
    /// Spans or data points inside.
    pub items: u64,
}

/// Where and how to send.
pub(crate) struct Target {
    traces: Uri,
    metrics: Uri,
    headers: HeaderMap,
}

impl Target {
    pub(crate) fn new(cfg: &ExportConfig, endpoint: &str) -> Result<Self, ExportError> {
        let bad = |reason: String| ExportError::InvalidEndpoint {
            endpoint: endpoint.to_string(),
            reason,
        };
        let base = endpoint.trim().trim_end_matches('/');
        let parse = |path: &str| -> Result<Uri, ExportError> {
            let uri: Uri = format!("{base}{path}")
                .parse()
                .map_err(|e| bad(format!("{e}")))?;
            match uri.scheme_str() {
                Some("http") => {}
                Some(s) => return Err(bad(format!("scheme {s:?} not supported (http only)"))),
                None => return Err(bad("missing scheme (expected http://host:port)".into())),
            }
            if uri.host().is_none() {
                return Err(bad("missing host".into()));
            }
            Ok(uri)
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            hyper::header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        );
        headers.insert(
            hyper::header::USER_AGENT,
            HeaderValue::from_static(concat!("telegen/", env!("CARGO_PKG_VERSION"))),
        );
        if cfg.gzip {
            headers.insert(
                hyper::header::CONTENT_ENCODING,
                HeaderValue::from_static("gzip"),
            );
        }
        for (k, v) in &cfg.headers {
            let entry = format!("{k}={v}");
            let name =
                HeaderName::from_bytes(k.as_bytes()).map_err(|e| ExportError::InvalidHeader {
                    entry: entry.clone(),
                    reason: e.to_string(),
                })?;
            let value = HeaderValue::from_str(v).map_err(|e| ExportError::InvalidHeader {
                entry: entry.clone(),
                reason: e.to_string(),
            })?;
            headers.append(name, value);
        }
        Ok(Self {
            traces: parse("/v1/traces")?,
            metrics: parse("/v1/metrics")?,
            headers,
        })
    }
}

/// The bounded queue between the drain loop and the senders.
pub(crate) struct SendQueue {
    queue: Mutex<VecDeque<Batch>>,
    notify: Notify,
    max: usize,
    mon: Arc<SelfMon>,
    /// Items (spans/points) and requests currently being sent.
    inflight_traces: AtomicU64,
    inflight_metrics: AtomicU64,
    inflight_batches: AtomicU64,
}

impl SendQueue {
    pub(crate) fn new(max: usize, mon: Arc<SelfMon>) -> Self {
        Self {
            queue: Mutex::new(VecDeque::new()),
            notify: Notify::new(),
            max: max.max(1),
            mon,
            inflight_traces: AtomicU64::new(0),
            inflight_metrics: AtomicU64::new(0),
            inflight_batches: AtomicU64::new(0),
        }
    }

    /// Enqueue; when full the oldest batch is dropped and counted.
    pub(crate) fn push(&self, b: Batch) {
        let (evicted, len) = match self.queue.lock() {
            Ok(mut q) => {
                let ev = if q.len() >= self.max {
                    q.pop_front()
                } else {
                    None
                };
                q.push_back(b);
                (ev, q.len())
            }
            Err(_) => {
                // A poisoned lock means a sender panicked; count the batch as dropped.
                (Some(b), 0)
            }
        };
        if let Some(ev) = evicted {
            self.mon.record(SelfEvent::Dropped {
                kind: ev.kind,
                items: ev.items,
                reason: DropReason::QueueFull,
                whole_batch: true,
            });
        }
        self.mon.set_pending_batches(len as u64);
        self.notify.notify_one();
    }

    fn pop(&self) -> Option<Batch> {
        let mut q = self.queue.lock().ok()?;
        let b = q.pop_front()?;
        self.mon.set_pending_batches(q.len() as u64);
        self.inflight_batches.fetch_add(1, Ordering::SeqCst);
        self.inflight_counter(b.kind)
            .fetch_add(b.items, Ordering::SeqCst);
        Some(b)
    }

    fn done(&self, b: &Batch) {
        let sub = |c: &AtomicU64, n: u64| {
            // Saturating: `abandon` may already have zeroed the counters.
            let _ = c.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
                Some(v.saturating_sub(n))
            });
        };
        sub(self.inflight_counter(b.kind), b.items);
        sub(&self.inflight_batches, 1);
    }

    fn inflight_counter(&self, kind: SignalKind) -> &AtomicU64 {
        match kind {
            SignalKind::Traces => &self.inflight_traces,
            SignalKind::Metrics => &self.inflight_metrics,
        }
    }

    /// Nothing queued and nothing in flight.
    pub(crate) fn idle(&self) -> bool {
        let empty = self.queue.lock().map(|q| q.is_empty()).unwrap_or(true);
        empty && self.inflight_batches.load(Ordering::SeqCst) == 0
    }

    /// At the shutdown deadline: count everything queued or in flight as dropped.
    pub(crate) fn abandon(&self) {
        let queued: Vec<Batch> = self
            .queue
            .lock()
            .map(|mut q| q.drain(..).collect())
            .unwrap_or_default();
        for b in queued {
            self.mon.record(SelfEvent::Dropped {
                kind: b.kind,
                items: b.items,
                reason: DropReason::Shutdown,
                whole_batch: true,
            });
        }
        for kind in [SignalKind::Traces, SignalKind::Metrics] {
            let items = self.inflight_counter(kind).swap(0, Ordering::SeqCst);
            if items > 0 {
                self.mon.record(SelfEvent::Dropped {
                    kind,
                    items,
                    reason: DropReason::Shutdown,
                    whole_batch: false,
                });
            }
        }
        let batches = self.inflight_batches.swap(0, Ordering::SeqCst);
        if batches > 0 {
            self.mon.record(SelfEvent::BatchesAbandoned(batches));
        }
        self.mon.set_pending_batches(0);
    }
}

/// Backoff before retry number `attempt` (0-based): `BASE * 2^attempt` capped at `max`, with
/// "equal jitter" (half fixed, half scaled by `unit` in [0, 1)).
pub fn backoff_delay(attempt: u32, base: Duration, max: Duration, unit: f64) -> Duration {
    let exp = base.saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX));
    let cap = exp.min(max);
    let half = cap / 2;
    half.saturating_add(half.mul_f64(unit.clamp(0.0, 1.0)))
}

/// `Retry-After` in its delay-seconds form.
pub(crate) fn parse_retry_after(v: Option<&HeaderValue>) -> Option<Duration> {
    let secs: u64 = v?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

/// Cheap per-task PRNG (xorshift64*) for jitter.
struct Jitter(u64);
impl Jitter {
    fn new(seed: u64) -> Self {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9_7F4A_7C15);
        Self((t ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1)
    }
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

enum Attempt {
    Ok,
    Retry(Option<Duration>, String),
    Fatal(StatusCode),
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

async fn attempt(
    client: &HttpClient,
    uri: &Uri,
    target: &Target,
    b: &Batch,
    timeout: Duration,
) -> Attempt {
    let mut req = Request::post(uri.clone());
    if let Some(h) = req.headers_mut() {
        h.extend(target.headers.clone());
    }
    let req = match req.body(Full::new(b.body.clone())) {
        Ok(r) => r,
        Err(e) => return Attempt::Retry(None, format!("building request: {e}")),
    };
    let fut = async {
        let resp = client.request(req).await.map_err(|e| format!("{e}"))?;
        let status = resp.status();
        let retry_after = parse_retry_after(resp.headers().get(hyper::header::RETRY_AFTER));
        // Read the body so the connection can be reused.
        let _ = resp.into_body().collect().await;
        Ok::<_, String>((status, retry_after))
    };
    match tokio::time::timeout(timeout, fut).await {
        Err(_) => Attempt::Retry(None, "request timed out".into()),
        Ok(Err(e)) => Attempt::Retry(None, e),
        Ok(Ok((status, ra))) => {
            if status.is_success() {
                Attempt::Ok
            } else if matches!(status.as_u16(), 429 | 502 | 503 | 504) {
                Attempt::Retry(ra, format!("HTTP {status}"))
            } else {
                Attempt::Fatal(status)
            }
        }
    }
}

/// One sender task: pops batches and delivers them until the runtime goes away.
pub(crate) async fn sender(
    id: u64,
    queue: Arc<SendQueue>,
    target: Arc<Target>,
    client: HttpClient,
    timeout: Duration,
    max_retries: u32,
    max_backoff: Duration,
) {
    let mut jitter = Jitter::new(id + 1);
    loop {
        let Some(b) = queue.pop() else {
            queue.notify.notified().await;
            continue;
        };
        let uri = match b.kind {
            SignalKind::Traces => &target.traces,
            SignalKind::Metrics => &target.metrics,
        };
        let mut tries = 0u32;
        loop {
            match attempt(&client, uri, &target, &b, timeout).await {
                Attempt::Ok => {
                    queue.mon.record(SelfEvent::BatchSent {
                        kind: b.kind,
                        items: b.items,
                    });
                    break;
                }
                Attempt::Fatal(status) => {
                    log::warn!(
                        "OTLP collector rejected a {:?} batch: HTTP {status}",
                        b.kind
                    );
                    queue.mon.record(SelfEvent::BatchFailed {
                        kind: b.kind,
                        items: b.items,
                        reason: DropReason::Rejected,
                    });
                    break;
                }
                Attempt::Retry(retry_after, why) => {
                    if tries >= max_retries {
                        log::warn!(
                            "OTLP {:?} batch dropped after {tries} retries: {why}",
                            b.kind
                        );
                        queue.mon.record(SelfEvent::BatchFailed {
                            kind: b.kind,
                            items: b.items,
                            reason: DropReason::RetriesExhausted,
                        });
                        break;
                    }
                    let delay = retry_after.unwrap_or_else(|| {
                        backoff_delay(tries, BASE_BACKOFF, max_backoff, jitter.unit())
                    });
                    log::debug!(
                        "OTLP {:?} send failed ({why}); retrying in {delay:?}",
                        b.kind
                    );
                    tries += 1;
                    queue.mon.record(SelfEvent::Retry);
                    tokio::time::sleep(delay).await;
                }
            }
        }
        queue.done(&b);
    }
}

/// The HTTP client shared by the senders.
pub(crate) fn client(cfg: &ExportConfig) -> HttpClient {
    let mut conn = HttpConnector::new();
    conn.set_connect_timeout(Some(cfg.request_timeout));
    conn.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_jitters() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        assert_eq!(backoff_delay(0, base, max, 0.0), Duration::from_millis(50));
        assert_eq!(backoff_delay(0, base, max, 1.0), Duration::from_millis(100));
        assert_eq!(backoff_delay(3, base, max, 0.0), Duration::from_millis(400));
        assert_eq!(backoff_delay(10, base, max, 1.0), max);
        assert_eq!(backoff_delay(10, base, max, 0.0), max / 2);
        assert_eq!(
            backoff_delay(u32::MAX, base, max, 0.5),
            Duration::from_millis(1500)
        );
        let mut j = Jitter::new(7);
        for _ in 0..1000 {
            let u = j.unit();
            assert!((0.0..1.0).contains(&u));
        }
    }

    #[test]
    fn retry_after_seconds() {
        assert_eq!(
            parse_retry_after(Some(&HeaderValue::from_static("3"))),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            parse_retry_after(Some(&HeaderValue::from_static(" 1 "))),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            parse_retry_after(Some(&HeaderValue::from_static("999999"))),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(
            parse_retry_after(Some(&HeaderValue::from_static(
                "Wed, 21 Oct 2015 07:28:00 GMT"
            ))),
            None
        );
        assert_eq!(parse_retry_after(None), None);
    }

    #[test]
    fn target_validation() {
        let cfg = ExportConfig {
            headers: vec![("x-key".into(), "v".into())],
            ..Default::default()
        };
        let t = Target::new(&cfg, "http://127.0.0.1:4318/");
        assert!(t.is_ok());
        if let Ok(t) = t {
            assert_eq!(t.traces.to_string(), "http://127.0.0.1:4318/v1/traces");
            assert_eq!(t.metrics.path(), "/v1/metrics");
            assert_eq!(
                t.headers.get("content-encoding").map(|v| v.as_bytes()),
                Some(&b"gzip"[..])
            );
            assert!(t.headers.contains_key("x-key"));
        }
        for bad in ["https://x:1", "127.0.0.1:4318", "http://", "not a url"] {
            assert!(
                matches!(
                    Target::new(&cfg, bad),
                    Err(ExportError::InvalidEndpoint { .. })
                ),
                "{bad}"
            );
        }
        let cfg = ExportConfig {
            headers: vec![("bad header".into(), "v".into())],
            ..Default::default()
        };
        assert!(matches!(
            Target::new(&cfg, "http://127.0.0.1:1"),
            Err(ExportError::InvalidHeader { .. })
        ));
    }

    #[test]
    fn queue_overflow_drops_oldest_and_counts() {
        let mon = Arc::new(SelfMon::new());
        let q = SendQueue::new(2, mon.clone());
        for i in 0..5 {
            q.push(Batch {
                kind: SignalKind::Traces,
                body: Bytes::new(),
                items: 10 + i,
            });
        }
        let s = mon.snapshot();
        assert_eq!(s.batches_dropped, 3);
        assert_eq!(s.spans_dropped_total(), 10 + 11 + 12);
        assert_eq!(s.pending_batches, 2);
        let b = q.pop().map(|b| b.items);
        assert_eq!(b, Some(13));
        assert!(!q.idle());
        q.abandon();
        let s = mon.snapshot();
        assert_eq!(s.spans_dropped_total(), 10 + 11 + 12 + 13 + 14);
        assert_eq!(s.batches_dropped, 5);
        assert!(q.idle());
    }
}
