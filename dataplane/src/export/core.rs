//! The export core's event loop: one thread, one tokio current-thread runtime. Each tick (the
//! drain interval, 4 ms by default) it drains every shard queue (bounded work per consumer per
//! tick), batches the spans (encoded by the shards) per process, merges histogram deltas into cumulative series, and on its
//! timers flushes partial span batches, exports metrics and self-telemetry, reads kernel
//! counters and prints the summary. Encoded batches go to the transport's bounded queue; the
//! HTTP senders and the Prometheus server run as tasks on the same runtime, so they progress
//! whenever the loop awaits its tick. Making bodies and delivering them is in `core_out.rs`.

use std::collections::{BTreeMap, HashMap};
use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustc_hash::FxHashMap;

use super::otlp::{self, CumulativeHistogram};
use super::pb;
use super::resource::ResourceResolver;
use super::selfmon::{self, DropReason, SelfEvent, SelfMon, SignalKind, Snapshot};
use super::summary::{render_summary, SummaryAgg, SummaryTotals};
use super::transport::{self, SendQueue, Target};
use super::{ExportConfig, ExportError, ExportReport, KernelStatsSource, StopHandle};
use crate::signal::{AttrValue, Attrs, EncodedSpan, ExportMsg, HistogramDelta, SpanChunk};

/// Process names remembered at most (forgotten all at once when full).
const MAX_COMMS: usize = 65_536;

/// Messages taken from one consumer per tick at most (the loop skips its sleep when hit).
const MAX_PER_CONSUMER_PER_TICK: usize = 16_384;
/// Most cumulative histogram series held; new series beyond it are dropped and counted.
pub const MAX_SERIES: usize = 100_000;
/// Longest pause of an idle export core, in ticks: the shard queues hold far more than this
/// much traffic.
const IDLE_PAUSE_MAX: u32 = 16;
const KERNEL_STATS_INTERVAL: Duration = Duration::from_secs(1);
/// Rows printed by the live summary.
const SUMMARY_ROWS: usize = 20;

/// `t + d`, saturating far in the future instead of overflowing (huge configured intervals).
fn after(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .or_else(|| t.checked_add(Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(t)
}

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Hashable form of an attribute value (doubles by bit pattern).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum AttrKey {
    Str(String),
    Int(i64),
    Bool(bool),
    Double(u64),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SeriesKey {
    name: &'static str,
    pid: u32,
    attrs: Vec<(&'static str, AttrKey)>,
}

impl SeriesKey {
    fn new(d: &HistogramDelta) -> Self {
        Self {
            name: d.name,
            pid: d.pid,
            attrs: d
                .attrs
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        AttrValue::Str(s) => AttrKey::Str(s.clone()),
                        AttrValue::Text(s) => AttrKey::Str(s.to_string()),
                        AttrValue::Int(i) => AttrKey::Int(*i),
                        AttrValue::Bool(b) => AttrKey::Bool(*b),
                        AttrValue::Double(f) => AttrKey::Double(f.to_bits()),
                    };
                    (*k, v)
                })
                .collect(),
        }
    }
}

struct Series {
    unit: &'static str,
    hist: CumulativeHistogram,
}

/// Merge `d` into `h`; false (nothing changed) when the bucket layouts differ.
fn merge_delta(h: &mut CumulativeHistogram, d: &HistogramDelta) -> bool {
    if h.bounds != d.bounds || h.bucket_counts.len() != d.bucket_counts.len() {
        return false;
    }
    for (c, n) in h.bucket_counts.iter_mut().zip(&d.bucket_counts) {
        *c = c.saturating_add(*n);
    }
    if d.count > 0 {
        if h.count == 0 {
            h.min = d.min;
            h.max = d.max;
        } else {
            h.min = h.min.min(d.min);
            h.max = h.max.max(d.max);
        }
    }
    h.count = h.count.saturating_add(d.count);
    h.sum += d.sum;
    true
}

struct Core {
    cfg: ExportConfig,
    consumers: Vec<rtrb::Consumer<ExportMsg>>,
    /// Per consumer: where its span chunks go back to (see `run_export_core_recycling`).
    recycle: Vec<Option<rtrb::Producer<Box<SpanChunk>>>>,
    resolver: Box<dyn ResourceResolver>,
    kstats: Option<Box<dyn KernelStatsSource>>,
    stop: StopHandle,
    mon: Arc<SelfMon>,
    host: Attrs,
    start_unix_ns: u64,
    // span batch
    /// Spans per process, already protobuf-encoded (`pb::append_span`).
    spans: BTreeMap<u32, Vec<u8>>,
    /// A chunk for one span received unencoded ([`ExportMsg::Span`]), reused.
    one_span: SpanChunk,
    /// The request body of a span batch (gzipped: only its groups' heads), reused.
    body_buf: Vec<u8>,
    gzipper: otlp::Gzipper,
    span_count: usize,
    batch_started: Option<Instant>,
    /// End times of the batched spans, kept only for the discard sink.
    span_ends: Vec<u64>,
    // metrics
    series: HashMap<SeriesKey, Series>,
    // outputs
    queue: Option<Arc<SendQueue>>,
    jsonl: Option<BufWriter<std::fs::File>>,
    summary: Option<SummaryAgg>,
    /// Keyed by pid, looked up per span: hashed with Fx, not SipHash (about 2% of the agent's
    /// CPU went to hashing these two).
    service_names: FxHashMap<u32, String>,
    /// Kernel process names seen on spans, for processes gone before they could be resolved.
    comms: FxHashMap<u32, String>,
}

/// Run the export core on the calling thread until `stop` is triggered, then drain the queues,
/// flush partial batches and metrics, try to deliver for up to `cfg.shutdown_timeout`, and
/// return what happened. Errors are returned only at start (bad endpoint/headers, Prometheus
/// bind failure, JSON file, runtime); once running, failures are counted, never fatal.
pub fn run_export_core(
    cfg: ExportConfig,
    consumers: Vec<rtrb::Consumer<ExportMsg>>,
    resolver: Box<dyn ResourceResolver>,
    kstats: Option<Box<dyn KernelStatsSource>>,
    stop: StopHandle,
) -> Result<ExportReport, ExportError> {
    let recycle = consumers.iter().map(|_| None).collect();
    run_export_core_recycling(cfg, consumers, recycle, resolver, kstats, stop)
}

/// [`run_export_core`], handing each span chunk ([`ExportMsg::Spans`]) back to the shard it
/// came from, for reuse, once its spans are copied into the batch: `recycle[i]` goes to the
/// producer of `consumers[i]` (when it is `None` or full, the chunk is freed here).
pub fn run_export_core_recycling(
    cfg: ExportConfig,
    consumers: Vec<rtrb::Consumer<ExportMsg>>,
    recycle: Vec<Option<rtrb::Producer<Box<SpanChunk>>>>,
    resolver: Box<dyn ResourceResolver>,
    kstats: Option<Box<dyn KernelStatsSource>>,
    stop: StopHandle,
) -> Result<ExportReport, ExportError> {
    let invalid = |reason: &str| ExportError::InvalidConfig {
        reason: reason.to_string(),
    };
    if cfg.max_spans_per_batch == 0 {
        return Err(invalid("max_spans_per_batch must be > 0"));
    }
    if cfg.max_points_per_batch == 0 {
        return Err(invalid("max_points_per_batch must be > 0"));
    }
    if cfg.max_pending_batches == 0 {
        return Err(invalid("max_pending_batches must be > 0"));
    }
    if cfg.discard.is_some() && cfg.endpoint.is_some() {
        return Err(invalid(
            "the benchmark discard sink cannot be combined with an endpoint",
        ));
    }
    if cfg.metrics_interval.is_zero() || cfg.summary_interval.is_some_and(|d| d.is_zero()) {
        return Err(invalid("intervals must be > 0"));
    }
    let target = match cfg.endpoint.as_deref() {
        Some(e) => Some(Target::new(&cfg, e)?),
        None => None,
    };
    let jsonl = match &cfg.jsonl_path {
        Some(path) => Some(BufWriter::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| ExportError::Jsonl {
                    path: path.clone(),
                    source,
                })?,
        )),
        None => None,
    };
    let prom = match cfg.prometheus_addr {
        Some(addr) => {
            let l = std::net::TcpListener::bind(addr)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .map_err(|source| ExportError::PrometheusBind { addr, source })?;
            Some((addr, l))
        }
        None => None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| ExportError::Runtime { source })?;
    let mon = Arc::new(SelfMon::new());
    let host = resolver.host();
    let mut core = Core {
        summary: cfg.summary_interval.map(|_| SummaryAgg::new()),
        cfg,
        consumers,
        recycle,
        resolver,
        kstats,
        stop,
        mon: mon.clone(),
        host,
        start_unix_ns: unix_ns(),
        spans: BTreeMap::new(),
        one_span: SpanChunk::default(),
        body_buf: Vec::new(),
        gzipper: otlp::Gzipper::default(),
        span_count: 0,
        batch_started: None,
        span_ends: Vec::new(),
        series: HashMap::new(),
        queue: None,
        jsonl,
        service_names: FxHashMap::default(),
        comms: FxHashMap::default(),
    };
    rt.block_on(core.run(prom, target))?;
    drop(rt);
    Ok(report(&mon.snapshot()))
}

fn report(s: &Snapshot) -> ExportReport {
    let reasons = |v: &[u64]| {
        DropReason::ALL
            .iter()
            .zip(v)
            .filter(|(_, n)| **n > 0)
            .map(|(r, n)| (r.as_str(), *n))
            .collect()
    };
    ExportReport {
        spans_received: s.spans_received,
        spans_exported: s.spans_exported,
        spans_dropped: s.spans_dropped_total(),
        spans_dropped_by_reason: reasons(&s.spans_dropped),
        histogram_deltas_received: s.deltas_received,
        points_exported: s.points_exported,
        points_dropped: s.points_dropped_total(),
        points_dropped_by_reason: reasons(&s.points_dropped),
        batches_sent: s.batches_sent,
        batches_failed: s.batches_failed,
        batches_dropped: s.batches_dropped,
        retries: s.retries,
        jsonl_lines: s.jsonl_lines,
        jsonl_errors: s.jsonl_errors,
    }
}

impl Core {
    async fn run(
        &mut self,
        prom: Option<(std::net::SocketAddr, std::net::TcpListener)>,
        target: Option<Target>,
    ) -> Result<(), ExportError> {
        if let Some((addr, l)) = prom {
            let l = tokio::net::TcpListener::from_std(l)
                .map_err(|source| ExportError::PrometheusBind { addr, source })?;
            tokio::spawn(selfmon::serve_prometheus(l, self.mon.clone()));
        }
        if let Some(target) = target {
            let q = Arc::new(SendQueue::new(
                self.cfg.max_pending_batches,
                self.mon.clone(),
            ));
            let target = Arc::new(target);
            let client = transport::client(&self.cfg);
            for id in 0..transport::SENDERS as u64 {
                tokio::spawn(transport::sender(
                    id,
                    q.clone(),
                    target.clone(),
                    client.clone(),
                    self.cfg.request_timeout,
                    self.cfg.max_retries,
                    self.cfg.max_backoff,
                ));
            }
            self.queue = Some(q);
        }

        let tick_len = self.cfg.tick.max(Duration::from_micros(100));
        let mut tick = tokio::time::interval(tick_len);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut backoff = crate::runtime::Backoff::new(tick_len, tick_len * IDLE_PAUSE_MAX);
        let start = Instant::now();
        let mut next_metrics = after(start, self.cfg.metrics_interval);
        let mut next_kstats = start;
        let mut last_summary = start;
        loop {
            // Read before draining: everything pushed before stop() is drained below.
            let stopping = self.stop.is_stopped();
            let (busy, any) = self.drain(MAX_PER_CONSUMER_PER_TICK);
            let now = Instant::now();
            if self
                .batch_started
                .is_some_and(|t| now.duration_since(t) >= self.cfg.flush_interval)
            {
                self.flush_spans();
            }
            if now >= next_kstats {
                self.read_kernel_stats();
                self.flush_jsonl();
                next_kstats = after(now, KERNEL_STATS_INTERVAL);
            }
            if now >= next_metrics {
                self.export_metrics();
                next_metrics = after(now, self.cfg.metrics_interval);
            }
            if let Some(iv) = self.cfg.summary_interval {
                if now.duration_since(last_summary) >= iv {
                    self.print_summary(now.duration_since(last_summary));
                    last_summary = now;
                }
            }
            if stopping {
                break;
            }
            // Idle for a while (no message at all): back off (up to IDLE_PAUSE_MAX) instead of
            // waking every tick.
            let pause = backoff.next(any);
            if busy {
                tokio::task::yield_now().await;
            } else if pause <= tick_len {
                tick.tick().await;
            } else {
                tokio::time::sleep(pause).await;
            }
        }

        // Stop: drain what is left, flush everything, deliver for a bounded time.
        while self.drain(MAX_PER_CONSUMER_PER_TICK).0 {}
        self.flush_spans();
        self.read_kernel_stats();
        self.export_metrics();
        if self.summary.is_some() {
            let elapsed = Instant::now().duration_since(last_summary);
            self.print_summary(elapsed);
        }
        self.flush_jsonl();
        if let Some(q) = self.queue.clone() {
            let deadline = after(Instant::now(), self.cfg.shutdown_timeout);
            while !q.idle() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            if !q.idle() {
                log::warn!("export core: shutdown timeout reached, dropping undelivered batches");
                q.abandon();
            }
        }
        Ok(())
    }

    /// One pass over every consumer; true when some consumer hit the per-tick bound.
    /// Take up to `bound` messages from each shard queue. Returns (some queue still had more:
    /// drain again at once, any message taken).
    fn drain(&mut self, bound: usize) -> (bool, bool) {
        let mut consumers = std::mem::take(&mut self.consumers);
        let mut busy = false;
        let mut any = false;
        let mut spans = 0u64;
        let mut deltas = 0u64;
        for (i, c) in consumers.iter_mut().enumerate() {
            let mut n = 0;
            while n < bound {
                let Ok(msg) = c.pop() else { break };
                n += 1;
                match msg {
                    ExportMsg::Span(rec) => {
                        spans += 1;
                        let mut one = std::mem::take(&mut self.one_span);
                        one.clear();
                        one.push(&rec);
                        self.on_chunk(&one);
                        self.one_span = one;
                    }
                    ExportMsg::Spans(chunk) => {
                        spans += chunk.len() as u64;
                        self.on_chunk(&chunk);
                        if let Some(back) = self.recycle.get_mut(i).and_then(Option::as_mut) {
                            // Full: freed here instead.
                            let _ = back.push(chunk);
                        }
                    }
                    ExportMsg::Histogram(d) => {
                        deltas += 1;
                        self.on_delta(&d);
                    }
                    ExportMsg::Stats(s) => self.mon.set_shard_stats(*s),
                }
            }
            busy |= n == bound;
            any |= n > 0;
        }
        self.consumers = consumers;
        if spans > 0 {
            self.mon.record(SelfEvent::SpansReceived(spans));
        }
        if deltas > 0 {
            self.mon.record(SelfEvent::HistogramDeltasReceived(deltas));
        }
        (busy, any)
    }

    fn on_chunk(&mut self, chunk: &SpanChunk) {
        for (e, bytes) in chunk.iter() {
            self.on_encoded(e, bytes);
        }
    }

    fn on_encoded(&mut self, e: &EncodedSpan, bytes: &[u8]) {
        if e.comm[0] != 0 && !self.comms.contains_key(&e.pid) {
            if self.comms.len() >= MAX_COMMS {
                self.comms.clear();
            }
            let end = e.comm.iter().position(|&b| b == 0).unwrap_or(e.comm.len());
            self.comms
                .insert(e.pid, String::from_utf8_lossy(&e.comm[..end]).into_owned());
        }
        if let Some(mut agg) = self.summary.take() {
            // Read back from the bytes: only the live summary needs these fields.
            if let Some(view) = pb::SpanView::decode(bytes) {
                agg.record(self.service_name(e.pid), &view);
            }
            self.summary = Some(agg);
        }
        if self.cfg.discard.is_some() {
            self.span_ends.push(e.end_unix_ns);
        }
        self.spans
            .entry(e.pid)
            .or_default()
            .extend_from_slice(bytes);
        self.span_count += 1;
        if self.batch_started.is_none() {
            self.batch_started = Some(Instant::now());
        }
        if self.span_count >= self.cfg.max_spans_per_batch {
            self.flush_spans();
        }
    }

    fn service_name(&mut self, pid: u32) -> &str {
        if !self.service_names.contains_key(&pid) {
            let attrs = self.process_attrs(pid);
            let pick = |key: &str| {
                attrs.iter().find_map(|(k, v)| match v {
                    AttrValue::Str(s) if *k == key => Some(s.clone()),
                    _ => None,
                })
            };
            let name = pick("service.name")
                .or_else(|| pick("process.executable.name"))
                .unwrap_or_else(|| format!("pid {pid}"));
            self.service_names.insert(pid, name);
        }
        self.service_names.get(&pid).map_or("", String::as_str)
    }

    fn on_delta(&mut self, d: &HistogramDelta) {
        let key = SeriesKey::new(d);
        let drop = |mon: &SelfMon, reason| {
            mon.record(SelfEvent::Dropped {
                kind: SignalKind::Metrics,
                items: 1,
                reason,
                whole_batch: false,
            })
        };
        if let Some(s) = self.series.get_mut(&key) {
            if !merge_delta(&mut s.hist, d) {
                drop(&self.mon, DropReason::BoundsMismatch);
            }
            return;
        }
        if d.bucket_counts.len() != d.bounds.len() + 1 {
            drop(&self.mon, DropReason::BoundsMismatch);
            return;
        }
        if self.series.len() >= MAX_SERIES {
            drop(&self.mon, DropReason::SeriesLimit);
            return;
        }
        let mut hist = CumulativeHistogram {
            attrs: d.attrs.clone(),
            bounds: d.bounds,
            bucket_counts: vec![0; d.bucket_counts.len()],
            count: 0,
            sum: 0.0,
            min: 0.0,
            max: 0.0,
            start_unix_ns: unix_ns(),
        };
        merge_delta(&mut hist, d);
        self.series.insert(key, Series { unit: d.unit, hist });
    }

    /// The resolver's attributes, completed from the kernel's process name when the process
    /// was already gone.
    fn process_attrs(&mut self, pid: u32) -> Attrs {
        let mut attrs = self.resolver.process(pid);
        if let Some(comm) = self.comms.get(&pid) {
            for key in ["process.executable.name", "service.name"] {
                if !attrs.iter().any(|(k, _)| *k == key) {
                    attrs.push((key, AttrValue::Str(comm.clone())));
                }
            }
        }
        attrs
    }

    fn resource_for(&mut self, pid: u32) -> Attrs {
        let mut attrs = self.host.clone();
        for (k, v) in self.process_attrs(pid) {
            match attrs.iter_mut().find(|(hk, _)| *hk == k) {
                Some(slot) => slot.1 = v,
                None => attrs.push((k, v)),
            }
        }
        attrs
    }

    fn read_kernel_stats(&mut self) {
        if let Some(k) = self.kstats.as_mut() {
            let stats = k.read();
            self.mon.set_kernel_stats(stats);
            let programs = k.programs();
            self.mon.set_program_stats(programs);
        }
    }

    fn print_summary(&mut self, interval: Duration) {
        let Some(agg) = self.summary.as_mut() else {
            return;
        };
        let rows = agg.take_rows();
        self.service_names.clear();
        let s = self.mon.snapshot();
        let totals = SummaryTotals {
            spans: s.spans_received,
            kernel_drops: s.kernel_dropped_total(),
            queue_drops: s.queue_dropped_total(),
            export_drops: s.spans_dropped_total(),
        };
        let text = render_summary(&rows, &totals, interval, SUMMARY_ROWS);
        let mut out = std::io::stdout().lock();
        if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
            log::debug!("summary: stdout write failed: {e}");
        }
    }
}

#[path = "core_out.rs"]
mod out;

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
