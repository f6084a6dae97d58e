//! `telegen-perf`: Telegen's performance harness (issue 3). Runs the synthetic data-plane phase
//! (no kernel) and the overhead phase (real kernel, nginx + wrk, three modes), prints a table and
//! writes one JSON report with the headline figures, the raw figures of every run and the
//! targets with met/missed flags. No figure is asserted anywhere; the synthetic phase does fail
//! (exit status 2) when its correctness checks fail, because the speed of a broken path means
//! nothing.

mod feed;
mod otlpcount;
mod overhead;
mod procfs;
mod receiver;
mod synthetic;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use serde_json::{json, Value};
use synthetic::Mix;
use telegen_perf::gen::{Proto, PROTOS};

#[global_allocator]
static GLOBAL: telegen_dataplane::alloc::MiMalloc = telegen_dataplane::alloc::MiMalloc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Phase {
    /// Data-plane throughput with generated kernel records (no kernel needed).
    Synthetic,
    /// nginx + wrk with no agent, the floor and the full agent (root and BPF needed).
    Overhead,
}

/// Telegen's performance harness: data-plane throughput per core (synthetic, no kernel),
/// overhead of the agent on nginx under wrk (baseline, floor, full agent), capture, CPU and
/// memory. Prints a table and writes a JSON report. Needs root, BPF, nginx and wrk for the
/// overhead phase (scripts/perf.sh installs them).
#[derive(Debug, Parser)]
#[command(name = "telegen-perf", version)]
struct Args {
    /// Run only this phase (default: both).
    #[arg(long, value_enum)]
    only: Option<Phase>,

    /// Short smoke run: 2-second phases, one round, fewer connections (for CI; figures are
    /// indicative only).
    #[arg(long)]
    quick: bool,

    /// Where to write the JSON report.
    #[arg(long, value_name = "PATH", default_value = "perf-report.json")]
    out: PathBuf,

    /// Seconds measured per synthetic run (after the warm-up) [default: 10; --quick: 2].
    #[arg(long, value_name = "SECS")]
    synthetic_secs: Option<u64>,

    /// Warm-up seconds before each synthetic measurement [default: 2; --quick: 1].
    #[arg(long, value_name = "SECS")]
    warmup_secs: Option<u64>,

    /// Shard counts to run the synthetic phase with (each on the first N cores).
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "1,2"
    )]
    shards: Vec<usize>,

    /// Keep-alive connections in the synthetic workload [default: 1024; --quick: 256].
    #[arg(long, value_name = "N")]
    conns: Option<usize>,

    /// Most transactions in flight (generated, not yet encoded) in the synthetic phase. By
    /// Little's law the rate is at most this over the delay from event to encoded batch, so
    /// it must cover a few milliseconds of traffic at the highest rate: the gRPC workload alone
    /// keeps 2 calls per connection waiting for their responses. A slow build (the debug
    /// binary of the --quick smoke test) keeps fewer, so that a record's wait in the queues
    /// stays within the reorder timeout [default: 16384; --quick: 4096].
    #[arg(long, value_name = "N")]
    window: Option<u64>,

    /// Percent of records put in the ring of a CPU other than their connection's home CPU, to be
    /// forwarded to its owner shard (the agent's kernel programs write records to the home CPU's
    /// ring, spilling elsewhere only from a nearly full one; this keeps the forwarding path in
    /// the measurement)
    #[arg(long, value_name = "PCT", default_value_t = 25, value_parser = clap::value_parser!(u32).range(0..=100))]
    migrate_pct: u32,

    /// Percent of requests carrying a W3C traceparent.
    #[arg(long, value_name = "PCT", default_value_t = 25, value_parser = clap::value_parser!(u32).range(0..=100))]
    traceparent_pct: u32,

    /// Seed of the synthetic workload.
    #[arg(long, default_value_t = 1)]
    seed: u64,

    /// Shard reorder timeout in ms [default: the agent's]. A shard starved of CPU for longer
    /// than this (e.g. on a machine busy with other work) gives up on records still in another
    /// shard's queue, which the report counts as reorder gaps; a CI smoke run raises it.
    #[arg(long, value_name = "MS")]
    reorder_timeout_ms: Option<u64>,

    /// Rounds of the synthetic phase: each round runs every configuration once, so the rounds
    /// interleave and a machine whose speed drifts (a shared one) moves all configurations
    /// alike. Each figure is that of the configuration's median run, the shard scaling the
    /// median of the rounds' own ratios; the table and report give every round's figures too
    /// [default: 3; --quick: 1].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=20))]
    synthetic_rounds: Option<u32>,

    /// Protocols (http1, grpc, dns) to run alone at 1 shard, after the HTTP/1.1 shard runs
    /// (which stay HTTP/1.1 only, so their figures compare across versions); `none` for none.
    #[arg(long, value_name = "LIST", default_value = "grpc,dns")]
    protocol_runs: String,

    /// One more 1-shard run with this mix of protocols (weights of transactions), e.g.
    /// `http1=70,grpc=20,dns=10`; `none` to skip it.
    #[arg(long, value_name = "MIX", default_value = "http1=70,grpc=20,dns=10")]
    mix: String,

    /// Decode every encoded trace batch in the benchmark sink to count spans per protocol
    /// (on by default with --quick; it costs export-thread CPU, so the timed default run
    /// checks per-protocol counts through the RED metrics and the span total instead).
    #[arg(long)]
    decode_spans: bool,

    /// Bytes of each generator-to-shard queue.
    #[arg(long, value_name = "BYTES", default_value_t = 8 << 20)]
    queue_bytes: usize,

    /// Seconds of each wrk run in the overhead phase [default: 10; --quick: 2].
    #[arg(long, value_name = "SECS")]
    overhead_secs: Option<u64>,

    /// Rounds of (baseline, floor, agent); medians are reported [default: 2; --quick: 1].
    #[arg(long, value_name = "N")]
    rounds: Option<u32>,

    /// wrk threads.
    #[arg(long, value_name = "N", default_value_t = 1)]
    wrk_threads: u32,

    /// wrk connections (keep-alive).
    #[arg(long, value_name = "N", default_value_t = 32)]
    wrk_connections: u32,

    /// nginx worker processes in the overhead phase.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    nginx_workers: u32,

    /// Pin each nginx worker to its own CPU (`worker_cpu_affinity auto`), as busy servers
    /// often are: their connections' records are then written on one CPU, and the agent
    /// drains them on the shard that owns them (no forwarding).
    #[arg(long)]
    nginx_pin_workers: bool,

    /// The telegen binary [default: `telegen` next to this binary].
    #[arg(long, value_name = "PATH")]
    telegen_bin: Option<PathBuf>,

    /// `--compression` of the full agent in the overhead phase: `auto` (the agent's default:
    /// uncompressed to this local receiver), `gzip` (as to a remote collector) or `none`.
    #[arg(long, value_name = "KIND", default_value = "auto", value_parser = ["auto", "gzip", "none"])]
    agent_compression: String,

    /// One more flag for the full agent in the overhead phase, as one argument (repeatable),
    /// e.g. `--agent-arg=--shard-cores=1` or `--agent-arg=--drain-interval-ms=8`: to measure
    /// a setting's cost on the traced server.
    #[arg(long, value_name = "FLAG", allow_hyphen_values = true)]
    agent_arg: Vec<String>,

    /// After the overhead rounds, run the full agent under load this long, sampling its RSS and
    /// BPF map memory, to check memory stays flat (0: skip).
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    soak_secs: u64,

    /// Seconds between memory samples of the soak run.
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    soak_sample_secs: u64,
}

const MIB: f64 = 1024.0 * 1024.0;

/// The 1-minute load average (other work competing for the cores).
fn loadavg() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn num(v: &Value, path: &[&str]) -> Option<f64> {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p)?;
    }
    cur.as_f64()
}

fn target(name: &str, want: &str, value: Option<f64>, met: Option<bool>) -> Value {
    json!({"name": name, "target": want, "value": value, "met": met})
}

fn main() {
    let args = Args::parse();
    match run(&args) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("telegen-perf: {e:#}");
            std::process::exit(1);
        }
    }
}

fn run(args: &Args) -> anyhow::Result<i32> {
    let started = Instant::now();
    let load_before = loadavg();
    let mut progress = |line: String| {
        eprintln!("[perf {:>4.0}s] {line}", started.elapsed().as_secs_f64());
    };
    let q = args.quick;
    let want = |p: Phase| args.only.is_none_or(|o| o == p);
    let cores = telegen_dataplane::runtime::available_cores();

    let mut synthetic_runs = Vec::new();
    if want(Phase::Synthetic) {
        // (shards, mix, what the run is for)
        let mut plan: Vec<(usize, Mix, String)> = args
            .shards
            .iter()
            .map(|&n| (n, Mix::only(Proto::Http1), "scaling".to_string()))
            .collect();
        if args.protocol_runs.trim() != "none" {
            for name in args.protocol_runs.split(',').map(str::trim) {
                let mix: Mix = name
                    .parse()
                    .map_err(|e| anyhow::anyhow!("--protocol-runs: {e}"))?;
                let Some(p) = mix.single() else {
                    anyhow::bail!("--protocol-runs takes protocol names: {name}");
                };
                plan.push((1, mix, format!("protocol:{}", p.name())));
            }
        }
        if args.mix.trim() != "none" {
            let mix: Mix = args
                .mix
                .parse()
                .map_err(|e| anyhow::anyhow!("--mix: {e}"))?;
            plan.push((1, mix, "mix".to_string()));
        }
        plan.retain(|(n, _, _)| {
            let fits = *n > 0 && *n <= cores.len();
            if !fits {
                progress(format!(
                    "synthetic: skipping {n} shard(s): this machine has {} core(s)",
                    cores.len()
                ));
            }
            fits
        });
        let rounds = args.synthetic_rounds.unwrap_or(if q { 1 } else { 3 });
        for round in 1..=rounds {
            for (n, mix, purpose) in &plan {
                let mut r = synthetic_run(args, &cores[..*n], *mix, &mut |line| {
                    progress(if rounds > 1 {
                        format!("round {round}/{rounds}: {line}")
                    } else {
                        line
                    })
                })?;
                r["run"] = json!(purpose);
                r["round"] = json!(round);
                synthetic_runs.push(r);
            }
        }
    }

    let mut overhead = Value::Null;
    if want(Phase::Overhead) {
        let bin = match &args.telegen_bin {
            Some(b) => b.clone(),
            None => std::env::current_exe()?
                .parent()
                .map(|d| d.join("telegen"))
                .unwrap_or_else(|| "telegen".into()),
        };
        let cfg = overhead::OverheadConfig {
            secs: args.overhead_secs.unwrap_or(if q { 2 } else { 10 }),
            rounds: args.rounds.unwrap_or(if q { 1 } else { 2 }),
            wrk_threads: args.wrk_threads,
            wrk_conns: args.wrk_connections,
            nginx_workers: args.nginx_workers,
            nginx_pin_workers: args.nginx_pin_workers,
            telegen_bin: bin,
            agent_compression: args.agent_compression.clone(),
            agent_args: args.agent_arg.clone(),
            soak_secs: args.soak_secs,
            soak_sample_secs: args.soak_sample_secs,
        };
        overhead = match overhead::run(&cfg, &mut progress) {
            Ok(v) => v,
            Err(e) => {
                let bpf_missing = telegen_bpf::preflight().err();
                match bpf_missing {
                    Some(b) if std::env::var("CI").as_deref() != Ok("true") => {
                        progress(format!("overhead: SKIPPED: BPF unavailable: {b}"));
                        json!({"skipped": format!("BPF unavailable: {b}")})
                    }
                    _ => return Err(e.context("overhead phase")),
                }
            }
        };
    }

    let mut report = build_report(args, &synthetic_runs, overhead);
    report["machine"]["loadavg_before"] = json!(load_before);
    report["machine"]["loadavg_after"] = json!(loadavg());
    report["machine"]["note"] = json!(
        "other processes on this machine compete for the same cores: compare loadavg with the core count; tx_per_shard_cpu_s is the contention-independent figure"
    );
    std::fs::write(&args.out, serde_json::to_string_pretty(&report)? + "\n")?;
    println!("{}", table(&report));
    println!("report written to {}", args.out.display());
    if report["synthetic_correct"] == json!(false) {
        eprintln!("telegen-perf: the synthetic path lost or miscounted transactions (see checks in the report)");
        return Ok(2);
    }
    Ok(0)
}

/// One synthetic run of `mix` on `cores` with the command line's settings.
fn synthetic_run(
    args: &Args,
    cores: &[usize],
    mix: Mix,
    progress: &mut dyn FnMut(String),
) -> anyhow::Result<Value> {
    let q = args.quick;
    let cfg = synthetic::SyntheticConfig {
        shard_cores: cores.to_vec(),
        warmup: Duration::from_secs(args.warmup_secs.unwrap_or(if q { 1 } else { 2 })),
        measure: Duration::from_secs(args.synthetic_secs.unwrap_or(if q { 2 } else { 10 })),
        conns: args.conns.unwrap_or(if q { 256 } else { 1024 }),
        window: args.window.unwrap_or(if q { 4096 } else { 16384 }),
        migrate_pct: args.migrate_pct,
        traceparent_pct: args.traceparent_pct,
        seed: args.seed,
        queue_bytes: args.queue_bytes,
        reorder_timeout_ns: args.reorder_timeout_ms.map(|ms| ms * 1_000_000),
        mix,
        decode_spans: args.decode_spans || q,
    };
    synthetic::run(&cfg, progress)
}

/// Of the runs `keep` selects (one per round), the one of median `tx_per_s`: the lower middle
/// of an even count, so that every figure reported is one run's own.
fn median_run(runs: &[Value], keep: impl Fn(&Value) -> bool) -> Option<&Value> {
    let mut v: Vec<&Value> = runs.iter().filter(|r| keep(r)).collect();
    v.sort_by(|a, b| {
        let t = |r: &Value| num(r, &["tx_per_s"]).unwrap_or(0.0);
        t(a).total_cmp(&t(b))
    });
    v.get(v.len().saturating_sub(1) / 2).copied()
}

/// The median of `xs` (the mean of the two middle values of an even count).
fn median(mut xs: Vec<f64>) -> Option<f64> {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(xs[n / 2]),
        _ => Some((xs[n / 2 - 1] + xs[n / 2]) / 2.0),
    }
}

/// The same configuration as `run` (purpose, shards, mix): the key its rounds share.
fn config_of(run: &Value) -> (Value, Value, Value) {
    (
        run["run"].clone(),
        run["shards"].clone(),
        run["mix"].clone(),
    )
}

fn build_report(args: &Args, runs: &[Value], overhead: Value) -> Value {
    let by_shards = |n: u64| {
        median_run(runs, |r| {
            r["run"] == "scaling" && r["shards"].as_u64() == Some(n)
        })
    };
    // Per protocol: its run alone (1 shard), else its share of the mixed run.
    let proto_fig = |p: Proto, key: &str| -> (Option<f64>, Option<&'static str>) {
        let alone = median_run(runs, |r| {
            r["run"] == format!("protocol:{}", p.name()).as_str()
        });
        let alone = alone.or_else(|| {
            if p == Proto::Http1 {
                by_shards(1)
            } else {
                None
            }
        });
        if let Some(v) = alone.and_then(|r| num(r, &["protocols", p.name(), key])) {
            return (Some(v), Some("alone"));
        }
        let mixed = median_run(runs, |r| r["run"] == "mix");
        match mixed.and_then(|r| num(r, &["protocols", p.name(), key])) {
            Some(v) => (Some(v), Some("mix")),
            None => (None, None),
        }
    };
    let (grpc_per_core, grpc_src) = proto_fig(Proto::Grpc, "tx_per_s_per_core");
    let (grpc_per_cpu, _) = proto_fig(Proto::Grpc, "tx_per_shard_cpu_s");
    let (dns_per_core, dns_src) = proto_fig(Proto::Dns, "tx_per_s_per_core");
    let (dns_per_cpu, _) = proto_fig(Proto::Dns, "tx_per_shard_cpu_s");
    let mut per_protocol = serde_json::Map::new();
    for p in PROTOS {
        let (c, src) = proto_fig(p, "tx_per_s_per_core");
        let (cpu, _) = proto_fig(p, "tx_per_shard_cpu_s");
        per_protocol.insert(
            p.name().into(),
            json!({"tx_per_s_per_core": c, "tx_per_shard_cpu_s": cpu, "from_run": src}),
        );
    }
    let one = by_shards(1);
    // Each round's 2-shard rate over its own 1-shard rate, made minutes apart at most.
    let scaling_of_round = |round: &Value| {
        let tx = |n: u64| {
            runs.iter()
                .find(|r| {
                    r["run"] == "scaling" && r["shards"].as_u64() == Some(n) && r["round"] == *round
                })
                .and_then(|r| num(r, &["tx_per_s"]))
        };
        match (tx(1), tx(2)) {
            (Some(a), Some(b)) if a > 0.0 => Some(b / a),
            _ => None,
        }
    };
    let mut rounds: Vec<u64> = runs.iter().filter_map(|r| r["round"].as_u64()).collect();
    rounds.sort_unstable();
    rounds.dedup();
    let scalings: Vec<f64> = rounds
        .iter()
        .filter_map(|r| scaling_of_round(&json!(r)))
        .collect();
    let scaling = median(scalings.clone());
    let per_core = one.and_then(|r| num(r, &["tx_per_s_per_core"]));
    // The run each configuration's figures come from, marked for the table; every round
    // stays in the report.
    let mut configs: Vec<(Value, Value, Value)> = Vec::new();
    for r in runs {
        if !configs.contains(&config_of(r)) {
            configs.push(config_of(r));
        }
    }
    let chosen: Vec<usize> = configs
        .iter()
        .filter_map(|k| {
            let m = median_run(runs, |r| config_of(r) == *k)?;
            runs.iter().position(|r| std::ptr::eq(r, m))
        })
        .collect();
    let runs_marked: Vec<Value> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut r = r.clone();
            r["median_of_rounds"] = json!(chosen.contains(&i));
            r
        })
        .collect();
    let ov = if overhead.get("skipped").is_some() {
        &Value::Null
    } else {
        &overhead
    };
    let o = |k: &str| num(ov, &[k]);
    let peak = o("peak_rss_bytes");
    let maps = o("bpf_map_bytes");
    let mem = match (peak, maps) {
        (Some(a), Some(b)) => Some(a + b),
        _ => None,
    };
    let ring_drops = ov.get("ring_drops").and_then(Value::as_u64);
    let capture = o("capture_ratio");
    let mcapture = o("metric_capture_ratio");
    let soak_growth = num(ov, &["soak", "growth_ratio"]);
    let ge = |v: Option<f64>, t: f64| v.map(|v| v >= t);
    let synthetic_correct =
        (!runs.is_empty()).then(|| runs.iter().all(|r| r["checks"]["ok"] == json!(true)));
    let targets = vec![
        target(
            "tx_per_s_per_core (1 shard)",
            ">= 2000000",
            per_core,
            ge(per_core, 2_000_000.0),
        ),
        target(
            "grpc_calls_per_s_per_core",
            ">= 1000000",
            grpc_per_core,
            ge(grpc_per_core, 1_000_000.0),
        ),
        target(
            "shards_scaling (2 vs 1 shard)",
            ">= 1.8",
            scaling,
            ge(scaling, 1.8),
        ),
        target(
            "overhead_ratio_vs_baseline",
            ">= 0.97",
            o("overhead_ratio_vs_baseline"),
            ge(o("overhead_ratio_vs_baseline"), 0.97),
        ),
        target(
            "overhead_ratio_vs_floor",
            ">= 0.90",
            o("overhead_ratio_vs_floor"),
            ge(o("overhead_ratio_vs_floor"), 0.90),
        ),
        target(
            "capture_ratio (spans / requests)",
            ">= 1.0",
            capture,
            ge(capture, 1.0),
        ),
        target(
            "metric_capture_ratio",
            ">= 1.0",
            mcapture,
            ge(mcapture, 1.0),
        ),
        target(
            "ring_drops",
            "== 0",
            ring_drops.map(|d| d as f64),
            ring_drops.map(|d| d == 0),
        ),
        target(
            "peak_rss_bytes + bpf_map_bytes",
            "<= 256 MiB",
            mem,
            mem.map(|m| m <= 256.0 * MIB),
        ),
        target(
            "memory growth over the soak run",
            "<= 5%",
            soak_growth,
            soak_growth.map(|g| g <= 0.05),
        ),
    ];
    json!({
        "tool": "telegen-perf",
        "version": env!("CARGO_PKG_VERSION"),
        "command": std::env::args().collect::<Vec<_>>(),
        "quick": args.quick,
        "machine": {
            "cores": telegen_dataplane::runtime::available_cores().len(),
            "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        },
        "tx_per_s_per_core": per_core,
        "events_per_s_per_core": one.and_then(|r| num(r, &["events_per_s_per_core"])),
        "tx_per_shard_cpu_s": one.and_then(|r| num(r, &["tx_per_shard_cpu_s"])),
        "grpc_calls_per_s_per_core": grpc_per_core,
        "grpc_calls_per_shard_cpu_s": grpc_per_cpu,
        "grpc_calls_from_run": grpc_src,
        "dns_tx_per_s_per_core": dns_per_core,
        "dns_tx_per_shard_cpu_s": dns_per_cpu,
        "dns_tx_from_run": dns_src,
        "per_protocol": per_protocol,
        "shards_scaling": scaling,
        "delay_p50_ms": one.and_then(|r| num(r, &["delay_event_to_encoded_batch_ms", "p50"])),
        "delay_p99_ms": one.and_then(|r| num(r, &["delay_event_to_encoded_batch_ms", "p99"])),
        "synthetic_drops": runs.iter().filter_map(|r| r["drops"].as_u64()).sum::<u64>(),
        "synthetic_correct": synthetic_correct,
        "overhead_ratio_vs_baseline": o("overhead_ratio_vs_baseline"),
        "overhead_ratio_vs_floor": o("overhead_ratio_vs_floor"),
        "capture_ratio": capture,
        "metric_capture_ratio": mcapture,
        "ring_drops": ring_drops,
        "agent_cpu_s_per_million_req": o("agent_cpu_s_per_million_req"),
        "peak_rss_bytes": peak.map(|v| v as u64),
        "bpf_map_bytes": maps.map(|v| v as u64),
        "req_per_s": ov.get("req_per_s").cloned().unwrap_or(Value::Null),
        "server_cpu_us_per_req": ov.get("server_cpu_us_per_req").cloned().unwrap_or(Value::Null),
        "targets": targets,
        "synthetic_rounds": rounds.len(),
        "shards_scaling_per_round": scalings,
        "synthetic": {"runs": runs_marked},
        "overhead": overhead,
    })
}

fn fmt_num(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(x) if x.abs() >= 1e6 => format!("{:.2}M", x / 1e6),
        Some(x) if x.abs() >= 1e4 => format!("{:.0}", x),
        Some(x) => format!("{:.3}", x),
    }
}

fn table(r: &Value) -> String {
    let mut rows: Vec<(String, String, String, String)> = Vec::new();
    rows.push((
        "machine: cores, load average before / after".into(),
        format!(
            "{}, {} / {}",
            r["machine"]["cores"], r["machine"]["loadavg_before"], r["machine"]["loadavg_after"]
        ),
        String::new(),
        String::new(),
    ));
    let all_runs = r["synthetic"]["runs"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    // In the order of the plan (the first round's), each configuration's median run.
    let mut medians: Vec<&Value> = Vec::new();
    for x in all_runs {
        if medians.iter().all(|m| config_of(m) != config_of(x)) {
            if let Some(m) = all_runs
                .iter()
                .find(|m| config_of(m) == config_of(x) && m["median_of_rounds"] == true)
            {
                medians.push(m);
            }
        }
    }
    for run in medians {
        let n = run["shards"].as_u64().unwrap_or(0);
        let name = match run["run"].as_str() {
            Some("mix") => format!("synthetic mix ({})", run["mix"].as_str().unwrap_or("")),
            Some(p) if p.starts_with("protocol:") => {
                format!("synthetic {} alone, {n} shard", &p["protocol:".len()..])
            }
            _ => format!("synthetic {n} shard(s)"),
        };
        let g = |p: &[&str]| num(run, p);
        let rounds: Vec<String> = all_runs
            .iter()
            .filter(|x| config_of(x) == config_of(run))
            .map(|x| fmt_num(num(x, &["tx_per_s"])))
            .collect();
        if rounds.len() > 1 {
            rows.push((
                format!(
                    "{name}: tx/s of each round ({} run below)",
                    if rounds.len() % 2 == 0 {
                        "lower middle"
                    } else {
                        "median"
                    }
                ),
                rounds.join(" / "),
                String::new(),
                String::new(),
            ));
        }
        rows.push((
            format!("{name}: tx/s (events/s)"),
            format!(
                "{} ({})",
                fmt_num(g(&["tx_per_s"])),
                fmt_num(g(&["events_per_s"]))
            ),
            String::new(),
            String::new(),
        ));
        rows.push((
            format!("{name}: tx/s per core | per shard-CPU-s"),
            format!(
                "{} | {}",
                fmt_num(g(&["tx_per_s_per_core"])),
                fmt_num(g(&["tx_per_shard_cpu_s"]))
            ),
            String::new(),
            String::new(),
        ));
        rows.push((
            format!("{name}: delay p50 / p99 (ms)"),
            format!(
                "{} / {}",
                fmt_num(g(&["delay_event_to_encoded_batch_ms", "p50"])),
                fmt_num(g(&["delay_event_to_encoded_batch_ms", "p99"]))
            ),
            String::new(),
            String::new(),
        ));
        rows.push((
            format!("{name}: CPU shards/export/gen"),
            format!(
                "{:.2} / {:.2} / {:.2}",
                g(&["cpu_utilisation", "shards"]).unwrap_or(0.0),
                g(&["cpu_utilisation", "export"]).unwrap_or(0.0),
                g(&["cpu_utilisation", "generator"]).unwrap_or(0.0)
            ),
            String::new(),
            String::new(),
        ));
        if run["run"] == "mix" {
            for (p, v) in run["protocols"].as_object().into_iter().flatten() {
                rows.push((
                    format!("{name}: {p} tx/s per core | per shard-CPU-s"),
                    format!(
                        "{} | {}",
                        fmt_num(num(v, &["tx_per_s_per_core"])),
                        fmt_num(num(v, &["tx_per_shard_cpu_s"]))
                    ),
                    String::new(),
                    String::new(),
                ));
            }
        }
        rows.push((
            format!("{name}: spans == tx, drops"),
            format!(
                "{} ({} / {}), {}",
                run["checks"]["ok"],
                run["spans_encoded"],
                run["generator"]["transactions"],
                run["drops"]
            ),
            String::new(),
            String::new(),
        ));
    }
    for (p, v) in r["per_protocol"].as_object().into_iter().flatten() {
        rows.push((
            format!("{p}: tx/s per shard core | per shard-CPU-s"),
            format!(
                "{} | {}",
                fmt_num(num(v, &["tx_per_s_per_core"])),
                fmt_num(num(v, &["tx_per_shard_cpu_s"]))
            ),
            format!("({} run)", v["from_run"].as_str().unwrap_or("no")),
            String::new(),
        ));
    }
    let scalings: Vec<String> = r["shards_scaling_per_round"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| fmt_num(v.as_f64()))
        .collect();
    if scalings.len() > 1 {
        rows.push((
            "shards_scaling of each round (target row: their median)".into(),
            scalings.join(" / "),
            String::new(),
            String::new(),
        ));
    }
    if let Some(rps) = r["req_per_s"].as_object() {
        rows.push((
            "overhead: req/s baseline / floor / agent".into(),
            format!(
                "{} / {} / {}",
                fmt_num(rps.get("baseline").and_then(Value::as_f64)),
                fmt_num(rps.get("floor").and_then(Value::as_f64)),
                fmt_num(rps.get("agent").and_then(Value::as_f64))
            ),
            String::new(),
            String::new(),
        ));
        if let Some(cpu) = r["server_cpu_us_per_req"].as_object() {
            let us = |k: &str| {
                cpu.get(k)
                    .and_then(Value::as_f64)
                    .map_or("-".to_string(), |v| format!("{v:.1}"))
            };
            rows.push((
                "overhead: nginx CPU µs per req baseline / floor / agent".into(),
                format!("{} / {} / {}", us("baseline"), us("floor"), us("agent")),
                String::new(),
                String::new(),
            ));
        }
        rows.push((
            "overhead: agent CPU s per million req".into(),
            fmt_num(num(r, &["agent_cpu_s_per_million_req"])),
            String::new(),
            String::new(),
        ));
        rows.push((
            "overhead: peak RSS / BPF maps (MiB)".into(),
            format!(
                "{:.1} / {:.1}",
                num(r, &["peak_rss_bytes"]).unwrap_or(0.0) / MIB,
                num(r, &["bpf_map_bytes"]).unwrap_or(0.0) / MIB
            ),
            String::new(),
            String::new(),
        ));
    }
    if let Some(s) = r["overhead"].get("soak") {
        rows.push((
            "soak: RSS without rings first / warm / last / max (MiB)".into(),
            format!(
                "{:.1} / {:.1} / {:.1} / {:.1}",
                num(s, &["first", "rss_without_rings_bytes"]).unwrap_or(0.0) / MIB,
                num(s, &["warm", "rss_without_rings_bytes"]).unwrap_or(0.0) / MIB,
                num(s, &["last", "rss_without_rings_bytes"]).unwrap_or(0.0) / MIB,
                num(s, &["max", "rss_without_rings_bytes"]).unwrap_or(0.0) / MIB
            ),
            String::new(),
            String::new(),
        ));
    }
    for t in r["targets"].as_array().into_iter().flatten() {
        let v = t["value"].as_f64();
        let shown = if t["name"].as_str().is_some_and(|n| n.contains("bytes")) {
            v.map(|x| format!("{:.1} MiB", x / MIB))
                .unwrap_or("-".into())
        } else {
            fmt_num(v)
        };
        rows.push((
            format!("target: {}", t["name"].as_str().unwrap_or("")),
            shown,
            t["target"].as_str().unwrap_or("").to_string(),
            match t["met"].as_bool() {
                Some(true) => "met".into(),
                Some(false) => "MISSED".into(),
                None => "not run".into(),
            },
        ));
    }
    let w0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let w1 = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
    let w2 = rows.iter().map(|r| r.2.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (a, b, c, d) in rows {
        out.push_str(&format!("{a:<w0$}  {b:>w1$}  {c:<w2$}  {d}\n"));
    }
    out
}
