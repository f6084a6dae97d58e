//! `telegen run`: check the flags and the machine, load and attach the kernel side, start the
//! data plane, wait for SIGINT/SIGTERM (or `--duration`), then detach, drain and flush in order.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use telegen_bpf::{
    preflight, ProcessFilter, ProgramStats, StatsReader, TlsManager, Tracer, TracerOptions,
};
use telegen_dataplane::export::{
    parse_otlp_headers, CpuKernelStats, ExportConfig, KernelStatsSource, ResourceResolver,
};
use telegen_dataplane::runtime::{self, available_cores, RuntimeConfig};
use telegen_dataplane::shard::ShardConfig;
use telegen_dataplane::signal::Attrs;

use crate::cli::RunArgs;
use crate::discovery::Discovery;

/// Auto-discovery as the export core's source of resource attributes.
struct DiscoveryResolver(Discovery);

impl ResourceResolver for DiscoveryResolver {
    fn host(&self) -> Attrs {
        self.0.host_resource()
    }
    fn process(&mut self, pid: u32) -> Attrs {
        self.0.process_resource(pid)
    }
}

struct KernelStats(StatsReader);

impl KernelStatsSource for KernelStats {
    fn read(&mut self) -> Vec<CpuKernelStats> {
        self.0
            .read()
            .iter()
            .enumerate()
            .map(|(cpu, s)| CpuKernelStats {
                cpu: cpu as u32,
                seen: s.seen,
                emitted: s.emitted,
                dropped: s.dropped,
                truncated: s.truncated,
                tls_unmapped: s.tls_unmapped,
                tls_suppressed: s.tls_suppressed,
            })
            .collect()
    }

    fn programs(&mut self) -> Vec<ProgramStats> {
        self.0.programs()
    }
}

/// Everything `run` decided from the flags, checked before anything is loaded.
struct Plan {
    tracer: TracerOptions,
    runtime: RuntimeConfig,
    export: ExportConfig,
    duration: Option<Duration>,
}

fn plan(args: &RunArgs) -> anyhow::Result<Plan> {
    if args.capture_bytes == 0 || args.capture_bytes > telegen_bpf::abi::MAX_CAPTURE {
        bail!(
            "--capture-bytes must be between 1 and {} (got {})",
            telegen_bpf::abi::MAX_CAPTURE,
            args.capture_bytes
        );
    }
    if args.tail_bytes > telegen_bpf::abi::MAX_TAIL {
        bail!(
            "--tail-bytes must be at most {} (got {})",
            telegen_bpf::abi::MAX_TAIL,
            args.tail_bytes
        );
    }
    if args.flow_table_entries == 0 {
        bail!("--flow-table-entries must be at least 1");
    }
    if args.batch_spans == 0 || args.batch_points == 0 {
        bail!("--batch-spans and --batch-points must be at least 1");
    }
    if args.metrics_interval_ms == 0 {
        bail!("the metrics interval must be at least 1 ms");
    }
    for e in &args.exes {
        if e.is_empty() || e.contains('/') {
            bail!("--exe takes an executable name, not a path (got `{e}`)");
        }
    }
    let cores = available_cores();
    let shard_cores = args
        .shard_cores
        .clone()
        .map(|c| c.0)
        .unwrap_or_else(|| cores.clone());
    let export_core = args.export_core.or_else(|| shard_cores.last().copied());
    runtime::validate_cores(&shard_cores, export_core)?;

    let endpoint = args.otlp_endpoint.clone().filter(|e| !e.trim().is_empty());
    let mut headers = match std::env::var("OTEL_EXPORTER_OTLP_HEADERS") {
        Ok(h) if !h.trim().is_empty() => {
            parse_otlp_headers(&h).context("OTEL_EXPORTER_OTLP_HEADERS")?
        }
        _ => Vec::new(),
    };
    for h in &args.otlp_headers {
        headers.extend(parse_otlp_headers(h).with_context(|| format!("--otlp-header {h}"))?);
    }
    let jsonl_path = match (&args.output, args.no_output, &endpoint) {
        (Some(p), _, _) => Some(p.clone()),
        (None, false, None) => Some("telegen-otlp.jsonl".into()),
        _ => None,
    };
    let prometheus_addr: Option<SocketAddr> = if args.no_prometheus {
        None
    } else {
        Some(
            args.prometheus_addr
                .unwrap_or_else(|| ([127, 0, 0, 1], 9464).into()),
        )
    };
    let gzip = args.compression.gzip_for(endpoint.as_deref());
    let export = ExportConfig {
        endpoint,
        headers,
        max_spans_per_batch: args.batch_spans,
        max_points_per_batch: args.batch_points,
        metrics_interval: Duration::from_millis(args.metrics_interval_ms),
        gzip,
        jsonl_path,
        summary_interval: if args.no_summary {
            None
        } else {
            Some(Duration::from_secs(args.summary_interval.unwrap_or(5)))
        },
        prometheus_addr,
        tick: Duration::from_millis(args.drain_interval_ms),
        ..ExportConfig::default()
    };
    let mut shard = ShardConfig::new(0, shard_cores.len());
    shard.flow_capacity = args.flow_table_entries;
    Ok(Plan {
        tracer: TracerOptions {
            capture_bytes: args.capture_bytes,
            tail_bytes: args.tail_bytes,
            ring_bytes_total: args.ring_bytes,
            conn_table_entries: args.conn_table_entries,
            tls: !args.no_tls,
            udp_ports: args.dns_ports.0.clone(),
            filter: ProcessFilter {
                pids: args.pids.clone(),
                names: args.exes.clone(),
            },
            ..TracerOptions::default()
        },
        runtime: RuntimeConfig {
            shard_cores,
            export_core,
            shard,
            tick: Duration::from_millis(args.drain_interval_ms),
            ..RuntimeConfig::default()
        },
        export,
        duration: args.duration.map(Duration::from_secs),
    })
}

/// Block SIGINT/SIGTERM in this thread (threads spawned later inherit the mask), so they are
/// taken with `sigtimedwait` here and never interrupt a shard.
fn block_signals() -> libc::sigset_t {
    // SAFETY: plain libc signal-set manipulation on a set we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        // A shell starts background jobs with SIGINT ignored; an ignored signal is discarded
        // before sigtimedwait can take it, so restore the default disposition first.
        libc::signal(libc::SIGINT, libc::SIG_DFL);
        libc::signal(libc::SIGTERM, libc::SIG_DFL);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn wait_signal(set: &libc::sigset_t, timeout: Duration) -> Option<i32> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as _,
        tv_nsec: timeout.subsec_nanos() as _,
    };
    // SAFETY: `set` is initialised; a null siginfo pointer is allowed.
    let sig = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &ts) };
    (sig > 0).then_some(sig)
}

/// `telegen run --floor`: the overhead floor of the perf harness (see `telegen_bpf::Floor`).
fn run_floor(args: &RunArgs) -> anyhow::Result<()> {
    preflight()?;
    let signals = block_signals();
    let floor = telegen_bpf::Floor::attach()?;
    eprintln!(
        "telegen: floor mode: {} hooks attached to a program that returns at once",
        floor.hooks().len()
    );
    let deadline = args
        .duration
        .map(|d| Instant::now() + Duration::from_secs(d));
    loop {
        if let Some(sig) = wait_signal(&signals, Duration::from_millis(200)) {
            eprintln!("telegen: signal {sig}, detaching");
            break;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
    }
    drop(floor);
    eprintln!("telegen: floor detached");
    Ok(())
}

/// Say which TLS uprobe failed to attach and why, once per failure (the rest keeps running).
fn report_tls_failures(m: &TlsManager<'_>, seen: &mut u64) {
    let total = m.stats().attach_failures;
    if total <= *seen {
        return;
    }
    let new = (total - *seen) as usize;
    let failures = m.failures();
    for f in failures.iter().skip(failures.len().saturating_sub(new)) {
        eprintln!(
            "telegen: TLS uprobe {} on {} failed: {}",
            f.hook,
            f.library.display(),
            f.reason
        );
    }
    *seen = total;
}

/// Say which libssl files got their TLS uprobes (with the symbols hooked) and which lost them,
/// once per change; `known` is what was said before.
fn report_tls_libraries(m: &TlsManager<'_>, known: &mut BTreeSet<PathBuf>) {
    let now = m.attached();
    for lib in &now {
        if known.contains(&lib.path) {
            continue;
        }
        let mut symbols: Vec<&str> = Vec::new();
        for h in &lib.hooks {
            if !symbols.contains(&h.symbol()) {
                symbols.push(h.symbol());
            }
        }
        eprintln!(
            "telegen: TLS uprobes attached to {}: {} hooks on {}",
            lib.path.display(),
            lib.hooks.len(),
            symbols.join(", ")
        );
    }
    let paths: BTreeSet<PathBuf> = now.into_iter().map(|l| l.path).collect();
    for gone in known.difference(&paths) {
        eprintln!("telegen: TLS uprobes detached from {}", gone.display());
    }
    *known = paths;
}

pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    if args.floor {
        return run_floor(args);
    }
    let plan = plan(args)?;
    preflight()?;
    let signals = block_signals();

    let started = Instant::now();
    let discovery = Discovery::new(args.discovery.options());
    let (tracer, rings) = Tracer::start(&plan.tracer)?;
    let kstats = tracer.stats_reader()?;
    // Attaches the OpenSSL uprobes to every libssl a traced process maps, as they appear; it
    // borrows the tracer, so it is dropped (uprobes detached) before the tracer.
    let mut tls = if tracer.tls_enabled() {
        let mut m = TlsManager::new(&tracer)?;
        m.scan_now();
        Some(m)
    } else {
        None
    };
    eprintln!(
        "telegen: tracing {} hooks; {} shard(s) on cores {:?}, export on core {}; rings {} KiB x {} CPUs; ready in {} ms",
        tracer.hooks().len(),
        plan.runtime.shard_cores.len(),
        plan.runtime.shard_cores,
        plan.runtime.export_core.map(|c| c.to_string()).unwrap_or_else(|| "any".into()),
        tracer.ring_bytes_per_cpu() / 1024,
        tracer.possible_cpus(),
        started.elapsed().as_millis()
    );
    match (&plan.export.endpoint, &plan.export.jsonl_path) {
        (Some(e), _) => eprintln!(
            "telegen: exporting OTLP/HTTP to {e} ({})",
            if plan.export.gzip {
                "gzip"
            } else {
                "uncompressed"
            }
        ),
        (None, Some(p)) => eprintln!(
            "telegen: no collector set (--otlp-endpoint); writing OTLP JSON lines to {}",
            p.display()
        ),
        (None, None) => eprintln!("telegen: no collector and no output file: live summary only"),
    }
    if let Some(a) = plan.export.prometheus_addr {
        eprintln!("telegen: self-telemetry at http://{a}/metrics");
    }
    let dp = runtime::start(
        plan.runtime,
        rings,
        plan.export,
        Box::new(DiscoveryResolver(discovery)),
        Some(Box::new(KernelStats(kstats))),
    );
    let dp = match dp {
        Ok(dp) => dp,
        Err(e) => {
            drop(tls);
            drop(tracer);
            return Err(e.into());
        }
    };

    let deadline = plan.duration.map(|d| Instant::now() + d);
    let mut tls_failures_seen = 0u64;
    let mut tls_libraries = BTreeSet::new();
    if let Some(m) = tls.as_ref() {
        report_tls_failures(m, &mut tls_failures_seen);
        report_tls_libraries(m, &mut tls_libraries);
    }
    loop {
        if let Some(sig) = wait_signal(&signals, Duration::from_millis(200)) {
            eprintln!("telegen: signal {sig}, stopping");
            break;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        if dp.finished() {
            eprintln!("telegen: a data-plane thread exited early; stopping");
            break;
        }
        if let Some(m) = tls.as_mut() {
            m.poll();
            report_tls_failures(m, &mut tls_failures_seen);
            report_tls_libraries(m, &mut tls_libraries);
        }
    }
    if let Some(m) = tls.take() {
        report_tls_failures(&m, &mut tls_failures_seen);
        drop(m);
    }
    // Detach first so no new event arrives, then drain and flush everything in flight.
    let kernel = tracer.stats();
    drop(tracer);
    let report = dp.stop()?;
    let ring_drops: u64 = kernel.iter().map(|s| s.dropped).sum();
    let emitted: u64 = kernel.iter().map(|s| s.emitted).sum();
    let spans: u64 = report.shards.iter().map(|s| s.spans_emitted).sum();
    let queue_drops: u64 = report
        .shards
        .iter()
        .map(|s| s.queue_drops + s.export_queue_drops)
        .sum();
    let sum = |f: fn(&telegen_dataplane::signal::ShardStats) -> u64| -> u64 {
        report.shards.iter().map(f).sum()
    };
    let (gaps, budget_gaps, late, parse_errors, unpaired) = (
        sum(|s| s.reorder_gaps),
        sum(|s| s.reorder_budget_gaps),
        sum(|s| s.events_late),
        sum(|s| s.parse_errors),
        sum(|s| s.exchanges_unpaired),
    );
    // Without a collector the spans go to the JSON-lines file, which "exported" (acknowledged by
    // a collector) does not count: say what was written there.
    let jsonl = match (report.export.jsonl_lines, report.export.jsonl_errors) {
        (0, 0) => String::new(),
        (lines, errors) => format!("; JSON lines written {lines} (write errors {errors})"),
    };
    eprintln!(
        "telegen: stopped. kernel events {emitted} (ring drops {ring_drops}); spans {spans} (queue drops {queue_drops}); \
         exported spans {} / points {}; dropped at export: spans {}, points {}; \
         sequence gaps {gaps} (over the reorder budget {budget_gaps}; late events {late}); parse errors {parse_errors}; \
         exchanges not paired {unpaired}{jsonl}",
        report.export.spans_exported, report.export.points_exported, report.export.spans_dropped, report.export.points_dropped
    );
    Ok(())
}
