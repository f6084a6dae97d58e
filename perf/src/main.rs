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
mod report;
mod synthetic;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use report::{build_report, table};
use serde_json::{json, Value};
use synthetic::Mix;
use telegen_perf::gen::Proto;

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
/// overhead of the agent on nginx under wrk (baseline, floor, full agent), capture, CPU,
/// memory, and the BPF programs' cost per request (one more agent run with the kernel's program
/// statistics on). Prints a table and writes a JSON report. Needs root, BPF, nginx and wrk for the
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

    /// Percent of records the forwarding run (the largest shard count, HTTP/1.1) puts in the ring
    /// of a CPU other than their connection's home CPU, each copied and forwarded to its owner
    /// shard and put back in order there. The scaling runs put every record in its home CPU's
    /// ring, as the agent's kernel programs do unless that ring is three quarters full (under
    /// the overhead phase's load the agent forwarded none); 0 skips the forwarding run
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

    /// Rounds of (baseline, floor, agent), in an order rotated each round; the overhead ratios
    /// are the medians of the rounds' own ratios, req/s the median of each mode [default: 3;
    /// --quick: 1].
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

    /// After the overhead rounds and the BPF cost run, run the full agent under load this long,
    /// sampling its RSS and BPF map memory, to check memory stays flat (0: skip).
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    soak_secs: u64,

    /// Seconds between memory samples of the soak run.
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    soak_sample_secs: u64,
}

/// The 1-minute load average (other work competing for the cores).
fn loadavg() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
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
        // (shards, mix, what the run is for, percent of records on another CPU's ring)
        let mut plan: Vec<(usize, Mix, String, u32)> = args
            .shards
            .iter()
            .map(|&n| (n, Mix::only(Proto::Http1), "scaling".to_string(), 0))
            .collect();
        let most = args.shards.iter().copied().max().unwrap_or(0);
        if args.migrate_pct > 0 && most > 1 {
            let forwarding = "forwarding".to_string();
            plan.push((most, Mix::only(Proto::Http1), forwarding, args.migrate_pct));
        }
        if args.protocol_runs.trim() != "none" {
            for name in args.protocol_runs.split(',').map(str::trim) {
                let mix: Mix = name
                    .parse()
                    .map_err(|e| anyhow::anyhow!("--protocol-runs: {e}"))?;
                let Some(p) = mix.single() else {
                    anyhow::bail!("--protocol-runs takes protocol names: {name}");
                };
                plan.push((1, mix, format!("protocol:{}", p.name()), 0));
            }
        }
        if args.mix.trim() != "none" {
            let mix: Mix = args
                .mix
                .parse()
                .map_err(|e| anyhow::anyhow!("--mix: {e}"))?;
            plan.push((1, mix, "mix".to_string(), 0));
        }
        plan.retain(|(n, _, _, _)| {
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
            for (n, mix, purpose, migrate_pct) in &plan {
                let mut r = synthetic_run(args, &cores[..*n], *mix, *migrate_pct, &mut |line| {
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
            rounds: args.rounds.unwrap_or(if q { 1 } else { 3 }),
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

    let mut report = build_report(args.quick, &synthetic_runs, overhead);
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

/// One synthetic run of `mix` on `cores` with the command line's settings, `migrate_pct`
/// percent of its records written on a CPU other than their connection's home one.
fn synthetic_run(
    args: &Args,
    cores: &[usize],
    mix: Mix,
    migrate_pct: u32,
    progress: &mut dyn FnMut(String),
) -> anyhow::Result<Value> {
    let q = args.quick;
    let cfg = synthetic::SyntheticConfig {
        shard_cores: cores.to_vec(),
        warmup: Duration::from_secs(args.warmup_secs.unwrap_or(if q { 1 } else { 2 })),
        measure: Duration::from_secs(args.synthetic_secs.unwrap_or(if q { 2 } else { 10 })),
        conns: args.conns.unwrap_or(if q { 256 } else { 1024 }),
        window: args.window.unwrap_or(if q { 4096 } else { 16384 }),
        migrate_pct,
        traceparent_pct: args.traceparent_pct,
        seed: args.seed,
        queue_bytes: args.queue_bytes,
        reorder_timeout_ns: args.reorder_timeout_ms.map(|ms| ms * 1_000_000),
        mix,
        decode_spans: args.decode_spans || q,
    };
    synthetic::run(&cfg, progress)
}
