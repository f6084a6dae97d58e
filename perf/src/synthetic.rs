//! Synthetic phase: the generator (`gen.rs`) feeds ring records at the highest rate the path
//! sustains into the real data plane (`runtime::start_with_sources`: pinned shards, mesh,
//! reorder, parse, spans, RED) and the real export core (batching, OTLP protobuf, gzip) whose
//! benchmark transport discards the bodies after counting them.
//!
//! The generator is closed-loop: it keeps at most `window` transactions in flight (generated but
//! not yet encoded), so the rate it reaches is the rate the whole path sustains without
//! dropping; any drop that still happens is counted and fails the correctness check. Records of a
//! connection are spread over the shards' queues (see `gen.rs`), so forwarding is exercised.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde_json::{json, Value};
use telegen_dataplane::export::selfmon::SignalKind;
use telegen_dataplane::export::{
    DiscardSink, EncodedBatch, ExportConfig, ExportReport, ResourceResolver,
};
use telegen_dataplane::runtime::{self, RecordSource, RuntimeConfig};
use telegen_dataplane::shard::ShardConfig;
use telegen_dataplane::signal::{AttrValue, Attrs, ShardStats};
use telegen_dataplane::spans::monotonic_now_ns;

use crate::feed;
use crate::otlpcount::{decode_metrics, HistogramCounter};
use crate::procfs;
pub use telegen_perf::gen::Mix;
use telegen_perf::gen::{GenCounts, Generator, Proto, WorkloadConfig, PROTOS};

#[derive(Debug, Clone)]
pub struct SyntheticConfig {
    pub shard_cores: Vec<usize>,
    pub warmup: Duration,
    pub measure: Duration,
    pub conns: usize,
    pub window: u64,
    pub migrate_pct: u32,
    pub traceparent_pct: u32,
    pub seed: u64,
    pub queue_bytes: usize,
    /// `None`: the shard default.
    pub reorder_timeout_ns: Option<u64>,
    /// Share of each protocol in the generated transactions.
    pub mix: Mix,
    /// Decode every encoded trace batch to count spans per protocol (costs export-thread
    /// CPU; without it, per-protocol counts come from the RED metrics and the span total).
    pub decode_spans: bool,
}

/// The duration histogram each protocol's spans count in.
pub fn metric_name(p: Proto) -> &'static str {
    match p {
        Proto::Http1 => "http.server.request.duration",
        Proto::Grpc => "rpc.server.duration",
        Proto::Dns => "dns.lookup.duration",
    }
}

/// Resource attributes for the synthetic processes (no /proc lookups: they do not exist).
struct SyntheticResolver;

impl ResourceResolver for SyntheticResolver {
    fn host(&self) -> Attrs {
        vec![
            ("host.name", AttrValue::Str("perf-host".into())),
            ("os.type", AttrValue::Str("linux".into())),
        ]
    }
    fn process(&mut self, pid: u32) -> Attrs {
        // The generator's pid ranges: nginx 4000.., the gRPC server 5000.., resolver 6000...
        let name = match pid {
            5000..=5999 => "grpc-server",
            6000..=6999 => "resolver",
            _ => "nginx",
        };
        vec![
            ("process.pid", AttrValue::Int(i64::from(pid))),
            ("process.executable.name", AttrValue::Str(name.into())),
            ("service.name", AttrValue::Str(name.into())),
        ]
    }
}

/// What the benchmark transport saw.
struct SinkState {
    spans: AtomicU64,
    trace_batches: AtomicU64,
    encoded_bytes: AtomicU64,
    body_bytes: AtomicU64,
    delay_us: Mutex<Histogram<u64>>,
    metrics_bodies: Mutex<Vec<Vec<u8>>>,
    /// With `decode_spans`: spans seen per protocol (HTTP, gRPC, DNS, other) and trace bodies
    /// that failed to decode.
    decode_spans: bool,
    proto_spans: [AtomicU64; 4],
    decode_errors: AtomicU64,
}

fn unix_now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn sink(state: Arc<SinkState>) -> DiscardSink {
    DiscardSink::new(move |b: &EncodedBatch<'_>| match b.kind {
        SignalKind::Traces => {
            let now = unix_now_ns();
            if let Ok(mut h) = state.delay_us.lock() {
                for &end in b.span_end_unix_ns {
                    h.saturating_record(now.saturating_sub(end) / 1000);
                }
            }
            state.trace_batches.fetch_add(1, Ordering::Relaxed);
            state
                .encoded_bytes
                .fetch_add(b.encoded_bytes as u64, Ordering::Relaxed);
            state
                .body_bytes
                .fetch_add(b.body.len() as u64, Ordering::Relaxed);
            if state.decode_spans {
                match crate::otlpcount::count_spans_by_protocol(b.body) {
                    Ok(c) => {
                        for (i, n) in c.iter().enumerate() {
                            state.proto_spans[i].fetch_add(*n, Ordering::Relaxed);
                        }
                    }
                    Err(_) => {
                        state.decode_errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            // Last: the generator's window reads this.
            state.spans.fetch_add(b.items, Ordering::Release);
        }
        SignalKind::Metrics => {
            if let Ok(mut m) = state.metrics_bodies.lock() {
                m.push(b.body.to_vec());
            }
        }
    })
}

#[derive(Debug, Default, Clone, Copy)]
struct GenResult {
    counts: GenCounts,
    /// Times the generator waited: window full / a queue full.
    window_waits: u64,
    queue_waits: u64,
}

fn generate(
    mut g: Generator,
    mut writers: Vec<feed::FeedWriter>,
    state: Arc<SinkState>,
    window: u64,
    stop: Arc<AtomicBool>,
    progress: Arc<[AtomicU64; 3]>,
) -> GenResult {
    let mut r = GenResult::default();
    let flush_all = |writers: &mut Vec<feed::FeedWriter>, r: &mut GenResult| {
        for w in writers.iter_mut() {
            while !w.flush() {
                r.queue_waits += 1;
                wait_for_shards();
            }
        }
    };
    let mut now = monotonic_now_ns();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        if g.counts.transactions - state.spans.load(Ordering::Acquire) >= window {
            flush_all(&mut writers, &mut r);
            r.window_waits += 1;
            wait_for_shards();
            continue;
        }
        if i % 16 == 0 {
            now = monotonic_now_ns();
        }
        i += 1;
        let mut full = [false; 64];
        g.next_transaction(now, &mut |cpu, rec| {
            if writers[cpu].push(rec) {
                full[cpu % 64] = true;
            }
        });
        for (cpu, w) in writers.iter_mut().enumerate() {
            if full[cpu % 64] {
                while !w.flush() {
                    r.queue_waits += 1;
                    wait_for_shards();
                }
            }
        }
        if i % 256 == 0 {
            flush_all(&mut writers, &mut r);
            for (k, n) in g.counts.per_proto.iter().enumerate() {
                progress[k].store(*n, Ordering::Relaxed);
            }
        }
    }
    // Answer the gRPC calls still open, so every counted transaction can complete.
    g.finish(monotonic_now_ns(), &mut |cpu, rec| {
        if writers[cpu].push(rec) {
            while !writers[cpu].flush() {
                r.queue_waits += 1;
                wait_for_shards();
            }
        }
    });
    flush_all(&mut writers, &mut r);
    r.counts = g.counts;
    r
}

/// Wait for the shards to drain a full queue or to finish transactions of a full window: a
/// sleep, not a spin, since on a machine with few cores a spinning generator takes the very CPU
/// the shards need. Each wake-up of the generator preempts a shard on such a machine (the
/// shards sleep only between drains, a millisecond or more apart), so it waits about as long as
/// a shard's cycle: the queues hold tens of milliseconds of records and the window as much, so
/// nothing runs dry meanwhile. At 20-50 us it woke about 6,000 times a second and preempted the
/// shards 28,000 times in a 5-second 2-shard run (`perf record -e sched:sched_switch`).
fn wait_for_shards() {
    std::thread::sleep(Duration::from_micros(500));
}

/// CPU seconds per role: shard threads (glommio names them `shard<N>-<id>`; the pinned wrapper
/// threads are `telegen-shard<N>`), the export thread, the generator.
fn role_cpu(t: &std::collections::BTreeMap<String, f64>) -> [f64; 3] {
    let mut out = [0.0; 3];
    for (name, cpu) in t {
        if name.starts_with("shard") || name.starts_with("telegen-shard") {
            out[0] += cpu;
        } else if name.starts_with("telegen-export") {
            out[1] += cpu;
        } else if name.starts_with("perf-gen") {
            out[2] += cpu;
        }
    }
    out
}

fn shard_stats_json(s: &ShardStats) -> Value {
    json!({
        "shard": s.shard,
        "events_drained": s.events_drained,
        "events_malformed": s.events_malformed,
        "events_forwarded": s.events_forwarded,
        "events_received": s.events_received,
        "queue_drops": s.queue_drops,
        "reorder_gaps": s.reorder_gaps,
        "events_late": s.events_late,
        "reorder_budget_gaps": s.reorder_budget_gaps,
        "reorder_held_bytes": s.reorder_held_bytes,
        "orphan_children": s.orphan_children,
        "flows_active": s.flows_active,
        "flows_evicted": s.flows_evicted,
        "flows_expired": s.flows_expired,
        "unknown_protocol": s.unknown_protocol,
        "tls_encrypted": s.tls_encrypted,
        "parse_errors": s.parse_errors,
        "exchanges_unpaired": s.exchanges_unpaired,
        "spans_emitted": s.spans_emitted,
        "export_queue_drops": s.export_queue_drops,
    })
}

pub fn export_report_json(e: &ExportReport) -> Value {
    let reasons = |v: &[(&'static str, u64)]| -> Value {
        v.iter()
            .map(|(k, n)| ((*k).to_string(), json!(n)))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    json!({
        "spans_received": e.spans_received,
        "spans_exported": e.spans_exported,
        "spans_dropped": e.spans_dropped,
        "spans_dropped_by_reason": reasons(&e.spans_dropped_by_reason),
        "histogram_deltas_received": e.histogram_deltas_received,
        "points_exported": e.points_exported,
        "points_dropped": e.points_dropped,
        "points_dropped_by_reason": reasons(&e.points_dropped_by_reason),
        "batches_sent": e.batches_sent,
        "batches_failed": e.batches_failed,
        "batches_dropped": e.batches_dropped,
        "retries": e.retries,
    })
}

/// One synthetic run; `progress` receives a line about once a second.
pub fn run(cfg: &SyntheticConfig, progress: &mut dyn FnMut(String)) -> anyhow::Result<Value> {
    let n = cfg.shard_cores.len();
    anyhow::ensure!(n > 0 && n <= 64, "1 to 64 shards");
    let state = Arc::new(SinkState {
        spans: AtomicU64::new(0),
        trace_batches: AtomicU64::new(0),
        encoded_bytes: AtomicU64::new(0),
        body_bytes: AtomicU64::new(0),
        delay_us: Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3)?),
        metrics_bodies: Mutex::new(Vec::new()),
        decode_spans: cfg.decode_spans,
        proto_spans: Default::default(),
        decode_errors: AtomicU64::new(0),
    });
    let mut writers = Vec::new();
    let mut sources: Vec<Box<dyn RecordSource>> = Vec::new();
    for _ in 0..n {
        let (w, s) = feed::queue(cfg.queue_bytes);
        writers.push(w);
        sources.push(Box::new(s));
    }
    let mut shard = ShardConfig::new(0, n);
    if let Some(t) = cfg.reorder_timeout_ns {
        shard.reorder_timeout_ns = t;
    }
    let reorder_timeout_ms = shard.reorder_timeout_ns as f64 / 1e6;
    // A core no shard runs on, if any: the export thread and the generator run there, so that a
    // shard's core does the shard's work only. Unpinned, they were scheduled onto the 1-shard
    // run's shard core often enough to preempt its shard about 80 times a second.
    let spare = runtime::available_cores()
        .into_iter()
        .find(|c| !cfg.shard_cores.contains(c));
    let rcfg = RuntimeConfig {
        shard_cores: cfg.shard_cores.clone(),
        export_core: spare,
        shard,
        ..RuntimeConfig::default()
    };
    let ecfg = ExportConfig {
        discard: Some(sink(state.clone())),
        ..ExportConfig::default()
    };
    let dp = runtime::start_with_sources(rcfg, sources, ecfg, Box::new(SyntheticResolver), None)?;

    let g = Generator::new(WorkloadConfig {
        conns: cfg.conns,
        cpus: n,
        migrate_pct: cfg.migrate_pct,
        traceparent_pct: cfg.traceparent_pct,
        seed: cfg.seed,
        mix: cfg.mix,
    });
    let stop = Arc::new(AtomicBool::new(false));
    let generated: Arc<[AtomicU64; 3]> = Arc::new(Default::default());
    let gen = {
        let (state, stop, generated) = (state.clone(), stop.clone(), generated.clone());
        let window = cfg.window.max(1);
        std::thread::Builder::new()
            .name("perf-gen".into())
            .spawn(move || {
                if let Some(c) = spare {
                    core_affinity::set_for_current(core_affinity::CoreId { id: c });
                }
                generate(g, writers, state, window, stop, generated)
            })?
    };

    let mut label = format!("synthetic, {n} shard(s), {}", cfg.mix.label());
    if cfg.migrate_pct > 0 && n > 1 {
        label.push_str(&format!(", {}% of records forwarded", cfg.migrate_pct));
    }
    let started = Instant::now();
    let warm_end = started + cfg.warmup;
    while Instant::now() < warm_end {
        progress(format!(
            "{label}: warming up, {:.0} s left",
            (warm_end - Instant::now()).as_secs_f64().ceil()
        ));
        std::thread::sleep((warm_end - Instant::now()).min(Duration::from_secs(1)));
    }
    // Measurement window.
    if let Ok(mut h) = state.delay_us.lock() {
        h.reset();
    }
    let t0 = Instant::now();
    let spans0 = state.spans.load(Ordering::Acquire);
    let gen_at =
        |g: &[AtomicU64; 3]| -> [u64; 3] { std::array::from_fn(|k| g[k].load(Ordering::Relaxed)) };
    let gen0 = gen_at(&generated);
    let cpu0 = role_cpu(&procfs::threads_cpu_s());
    let end = t0 + cfg.measure;
    while Instant::now() < end {
        std::thread::sleep((end - Instant::now()).min(Duration::from_secs(1)));
        let el = t0.elapsed().as_secs_f64();
        let done = state.spans.load(Ordering::Acquire) - spans0;
        progress(format!(
            "{label}: measuring, {:.0} s left, {:.0} tx/s so far",
            (end.saturating_duration_since(Instant::now()))
                .as_secs_f64()
                .ceil(),
            done as f64 / el.max(1e-9)
        ));
    }
    let spans1 = state.spans.load(Ordering::Acquire);
    let gen1 = gen_at(&generated);
    let cpu1 = role_cpu(&procfs::threads_cpu_s());
    let secs = t0.elapsed().as_secs_f64();
    let delay = state
        .delay_us
        .lock()
        .map(|h| h.clone())
        .map_err(|_| anyhow::anyhow!("delay histogram lock poisoned"))?;

    stop.store(true, Ordering::Relaxed);
    let gres = gen
        .join()
        .map_err(|_| anyhow::anyhow!("generator panicked"))?;
    progress(format!("{label}: stopping (drain and flush)"));
    let report = dp.stop()?;

    let tx = spans1 - spans0;
    let tx_per_s = tx as f64 / secs;
    let counts = gres.counts;
    let events_per_tx = counts.records as f64 / counts.transactions.max(1) as f64;
    let events_per_s = tx_per_s * events_per_tx;
    let cpu = [cpu1[0] - cpu0[0], cpu1[1] - cpu0[1], cpu1[2] - cpu0[2]];
    let shard_cpu_s = cpu[0];

    let mut hcs: [HistogramCounter; 3] = Default::default();
    let bodies = state
        .metrics_bodies
        .lock()
        .map(|m| m.clone())
        .unwrap_or_default();
    let mut buf = Vec::new();
    for b in &bodies {
        // Decoded once, counted for each protocol's metric.
        let req = decode_metrics(b, &mut buf)?;
        for (p, hc) in PROTOS.iter().zip(hcs.iter_mut()) {
            hc.add(&req, metric_name(*p));
        }
    }
    let hc = &hcs[Proto::Http1.idx()];
    let spans_encoded = state.spans.load(Ordering::Acquire);
    let sum = |f: fn(&ShardStats) -> u64| report.shards.iter().map(f).sum::<u64>();
    let shard_drops = sum(|s| {
        s.queue_drops
            + s.export_queue_drops
            + s.reorder_gaps
            + s.events_late
            + s.events_malformed
            + s.parse_errors
            + s.unknown_protocol
            + s.flows_evicted
    });
    let spans_emitted = sum(|s| s.spans_emitted);
    let spans_eq_tx = spans_encoded == counts.transactions
        && report.export.spans_exported == counts.transactions
        && spans_emitted == counts.transactions;
    // Per protocol: its histogram counts exactly its transactions, and (when decoded) the spans
    // carrying its attributes are exactly its transactions.
    let decoded: [u64; 4] = std::array::from_fn(|k| state.proto_spans[k].load(Ordering::Relaxed));
    let decode_errors = state.decode_errors.load(Ordering::Relaxed);
    let metric_eq_tx = PROTOS
        .iter()
        .all(|p| hcs[p.idx()].total() == counts.per_proto[p.idx()]);
    let proto_spans_ok = !cfg.decode_spans
        || (decode_errors == 0
            && decoded[3] == 0
            && PROTOS
                .iter()
                .all(|p| decoded[p.idx()] == counts.per_proto[p.idx()]));
    // Share of the measured transactions per protocol (from what was generated in the window).
    let gen_window: [u64; 3] = std::array::from_fn(|k| gen1[k] - gen0[k]);
    let gen_window_total = gen_window.iter().sum::<u64>().max(1);
    let mut protocols = serde_json::Map::new();
    for p in PROTOS {
        let k = p.idx();
        if cfg.mix.0[k] == 0 {
            continue;
        }
        let share = gen_window[k] as f64 / gen_window_total as f64;
        let ptx = tx as f64 * share;
        protocols.insert(
            p.name().into(),
            json!({
                "weight": cfg.mix.0[k],
                "transactions_generated": counts.per_proto[k],
                "measured_share": share,
                "tx_per_s": ptx / secs,
                "tx_per_s_per_core": ptx / secs / n as f64,
                "tx_per_shard_cpu_s": if shard_cpu_s > 0.0 { ptx / shard_cpu_s } else { 0.0 },
                "spans_decoded": if cfg.decode_spans { json!(decoded[k]) } else { Value::Null },
                "metric": metric_name(p),
                "metric_count": hcs[k].total(),
            }),
        );
    }
    let no_drops = shard_drops == 0 && report.export.spans_dropped == 0;
    let batches = state.trace_batches.load(Ordering::Relaxed).max(1);
    let q = |p: f64| delay.value_at_quantile(p) as f64 / 1000.0;
    Ok(json!({
        "shards": n,
        "shard_cores": cfg.shard_cores,
        "cores_available": runtime::available_cores().len(),
        "shared_cores_note": match spare {
            Some(_) => "each shard has a core; the export thread and the generator share another",
            None => "shards, the export thread and the generator share the available cores (measured as is)",
        },
        "export_and_generator_core": spare,
        "measure_seconds": secs,
        "reorder_timeout_ms": reorder_timeout_ms,
        "transactions": tx,
        "tx_per_s": tx_per_s,
        "events_per_s": events_per_s,
        "tx_per_s_per_core": tx_per_s / n as f64,
        "events_per_s_per_core": events_per_s / n as f64,
        "tx_per_shard_cpu_s": if shard_cpu_s > 0.0 { tx as f64 / shard_cpu_s } else { 0.0 },
        "cpu_seconds": {"shards": cpu[0], "export": cpu[1], "generator": cpu[2]},
        "cpu_utilisation": {"shards": cpu[0] / secs, "export": cpu[1] / secs, "generator": cpu[2] / secs},
        "delay_event_to_encoded_batch_ms": {
            "p50": q(0.5), "p99": q(0.99), "max": delay.max() as f64 / 1000.0, "samples": delay.len(),
        },
        "encoding": {
            "trace_batches": batches,
            "protobuf_bytes_per_span": state.encoded_bytes.load(Ordering::Relaxed) as f64 / spans_encoded.max(1) as f64,
            "gzip_bytes_per_span": state.body_bytes.load(Ordering::Relaxed) as f64 / spans_encoded.max(1) as f64,
        },
        "generator": {
            "transactions": counts.transactions,
            "records": counts.records,
            "closes": counts.closes,
            "migrate_pct": cfg.migrate_pct,
            "migrated_records": counts.migrated,
            "traceparent_requests": counts.traced,
            "connections": cfg.conns,
            "window": cfg.window,
            "window_waits": gres.window_waits,
            "queue_waits": gres.queue_waits,
        },
        "shard_stats": report.shards.iter().map(shard_stats_json).collect::<Vec<_>>(),
        "export": export_report_json(&report.export),
        "spans_encoded": spans_encoded,
        "spans_emitted_by_shards": spans_emitted,
        "metric_count_http_server_request_duration": hc.total(),
        "metric_series": hcs.iter().map(|h| h.series()).sum::<usize>(),
        "mix": cfg.mix.label(),
        "protocols": protocols,
        "spans_decoded": cfg.decode_spans,
        "spans_decoded_other": if cfg.decode_spans { json!(decoded[3]) } else { Value::Null },
        "span_decode_errors": decode_errors,
        "drops": shard_drops + report.export.spans_dropped + report.export.points_dropped,
        "checks": {
            "spans_equal_transactions": spans_eq_tx,
            "metric_count_equals_transactions": metric_eq_tx,
            "spans_per_protocol_equal_transactions": if cfg.decode_spans { json!(proto_spans_ok) } else { Value::Null },
            "no_drops": no_drops,
            "ok": spans_eq_tx && metric_eq_tx && proto_spans_ok && no_drops,
        },
    }))
}
