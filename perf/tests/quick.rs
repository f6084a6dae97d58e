//! Runs `telegen-perf --quick` (2-second phases) and checks that its JSON report is complete
//! and self-consistent. Never asserts a timing: only that every figure is present, that ratios
//! are computed from the real counts, and that the synthetic path encoded exactly one span per
//! generated transaction, per protocol (HTTP/1.1, gRPC, DNS). The overhead phase needs root, BPF, nginx and wrk: under `CI=true`
//! a missing prerequisite fails the test, elsewhere that phase is checked as skipped.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn f(v: &Value, path: &[&str]) -> f64 {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_f64()
        .unwrap_or_else(|| panic!("{path:?} missing or not a number in {v}"))
}

/// What the report says the machine allows the scaling to be, from a round's 1-shard and
/// 2-shard runs: its cores over the CPU the 1-shard run kept busy, and the 2-shard run's
/// transactions per shard-CPU-second over the 1-shard run's.
fn ceiling_and_per_shard_cpu(one: &Value, two: &Value) -> (f64, f64) {
    let busy: f64 = ["shards", "export", "generator"]
        .iter()
        .map(|p| f(one, &["cpu_utilisation", p]))
        .sum();
    (
        f(one, &["cores_available"]) / busy,
        f(two, &["tx_per_shard_cpu_s"]) / f(one, &["tx_per_shard_cpu_s"]),
    )
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs()
}

/// Checks of every synthetic run, whatever the plan.
fn check_runs(r: &Value) {
    let runs = r["synthetic"]["runs"].as_array().expect("synthetic runs");
    assert!(!runs.is_empty());
    for run in runs {
        let tx = f(run, &["generator", "transactions"]);
        assert!(tx > 0.0, "nothing generated: {run}");
        // One span per transaction, counted three independent ways.
        assert_eq!(f(run, &["spans_encoded"]), tx, "{run}");
        assert_eq!(f(run, &["spans_emitted_by_shards"]), tx, "{run}");
        assert_eq!(f(run, &["export", "spans_exported"]), tx, "{run}");
        assert_eq!(f(run, &["drops"]), 0.0, "{run}");
        // Per protocol: generated transactions == spans carrying its attributes (every trace
        // batch decoded under --quick) == its duration histogram's count.
        let protos = run["protocols"].as_object().expect("protocols");
        assert!(!protos.is_empty(), "{run}");
        let mut sum = 0.0;
        let mut share = 0.0;
        for (name, p) in protos {
            let ptx = f(p, &["transactions_generated"]);
            assert!(ptx > 0.0, "{name}: nothing generated");
            assert_eq!(f(p, &["spans_decoded"]), ptx, "{name}: {run}");
            assert_eq!(f(p, &["metric_count"]), ptx, "{name}: {run}");
            let metric = match name.as_str() {
                "http1" => "http.server.request.duration",
                "grpc" => "rpc.server.duration",
                "dns" => "dns.lookup.duration",
                other => panic!("unknown protocol {other}"),
            };
            assert_eq!(p["metric"], metric);
            let per_core = f(p, &["tx_per_s"]) / f(run, &["shards"]);
            assert!((f(p, &["tx_per_s_per_core"]) - per_core).abs() < 1e-6 * per_core.max(1.0));
            sum += ptx;
            share += f(p, &["measured_share"]);
        }
        assert_eq!(sum, tx, "the protocols' transactions add up: {run}");
        assert!((share - 1.0).abs() < 1e-9, "{share}");
        assert_eq!(f(run, &["spans_decoded_other"]), 0.0, "{run}");
        assert_eq!(f(run, &["span_decode_errors"]), 0.0);
        assert_eq!(
            run["checks"]["spans_per_protocol_equal_transactions"],
            Value::Bool(true)
        );
        if protos.contains_key("http1") {
            assert_eq!(
                f(run, &["metric_count_http_server_request_duration"]),
                f(&protos["http1"], &["transactions_generated"])
            );
        }
        assert_eq!(run["checks"]["ok"], Value::Bool(true));
        // Figures are derived from the counts they claim.
        let per_core = f(run, &["tx_per_s"]) / f(run, &["shards"]);
        assert!((f(run, &["tx_per_s_per_core"]) - per_core).abs() < 1e-6 * per_core.max(1.0));
        let rate = f(run, &["transactions"]) / f(run, &["measure_seconds"]);
        assert!((f(run, &["tx_per_s"]) - rate).abs() < 1e-6 * rate.max(1.0));
        assert!(f(run, &["delay_event_to_encoded_batch_ms", "samples"]) > 0.0);
        let p50 = f(run, &["delay_event_to_encoded_batch_ms", "p50"]);
        let p99 = f(run, &["delay_event_to_encoded_batch_ms", "p99"]);
        assert!(p50 <= p99, "{p50} > {p99}");
        let stats = run["shard_stats"].as_array().expect("shard stats");
        assert_eq!(stats.len() as f64, f(run, &["shards"]));
        let fwd: f64 = stats.iter().map(|s| f(s, &["events_forwarded"])).sum();
        let rcv: f64 = stats.iter().map(|s| f(s, &["events_received"])).sum();
        let migrated = f(run, &["generator", "migrated_records"]);
        if run["run"] == "forwarding" {
            // Records of one connection reached different shards and were forwarded.
            assert!(stats.len() > 1, "{run}");
            assert!(f(run, &["generator", "migrate_pct"]) > 0.0);
            assert!(migrated > 0.0);
            assert!(fwd > 0.0 && fwd == rcv, "forwarded {fwd} received {rcv}");
        } else {
            // Every record in its connection's home ring, as the kernel writes them: its
            // owner drains it, nothing is forwarded.
            assert_eq!(f(run, &["generator", "migrate_pct"]), 0.0, "{run}");
            assert_eq!((migrated, fwd, rcv), (0.0, 0.0, 0.0), "{run}");
        }
    }
    assert_eq!(r["synthetic_correct"], Value::Bool(true));
}

/// Checks of the default plan's report, run in one round (`--quick`).
fn check_synthetic(r: &Value) {
    check_runs(r);
    let runs = r["synthetic"]["runs"].as_array().expect("synthetic runs");
    assert_eq!(f(r, &["synthetic_rounds"]), 1.0);
    assert!(
        runs.iter().all(|x| x["median_of_rounds"] == true),
        "one round: each run is its configuration's median"
    );
    let scaling: Vec<&Value> = runs.iter().filter(|x| x["run"] == "scaling").collect();
    assert_eq!(
        scaling[0]["mix"], "http1=1",
        "shard runs stay HTTP/1.1 only"
    );
    assert_eq!(
        r["tx_per_s_per_core"], scaling[0]["tx_per_s_per_core"],
        "headline is the 1-shard run"
    );
    let forwarding: Vec<&Value> = runs.iter().filter(|x| x["run"] == "forwarding").collect();
    if scaling.len() > 1 {
        let s = f(scaling[1], &["tx_per_s"]) / f(scaling[0], &["tx_per_s"]);
        assert!((f(r, &["shards_scaling"]) - s).abs() < 1e-9);
        let (ceiling, per_cpu) = ceiling_and_per_shard_cpu(scaling[0], scaling[1]);
        assert!(
            close(f(r, &["shards_scaling_cpu_ceiling"]), ceiling),
            "{ceiling}"
        );
        assert!(
            close(f(r, &["shards_scaling_per_shard_cpu"]), per_cpu),
            "{per_cpu}"
        );
        // The default plan adds the 2-shard forwarding run, a quarter of the records forwarded.
        assert_eq!(forwarding.len(), 1, "{runs:?}");
        assert_eq!(forwarding[0]["mix"], "http1=1");
        assert_eq!(forwarding[0]["shards"], scaling[1]["shards"]);
        assert_eq!(f(forwarding[0], &["generator", "migrate_pct"]), 25.0);
        assert_eq!(f(r, &["forwarding_migrate_pct"]), 25.0);
        let s = f(forwarding[0], &["tx_per_s"]) / f(scaling[0], &["tx_per_s"]);
        assert!((f(r, &["shards_scaling_forwarding"]) - s).abs() < 1e-9);
        assert_eq!(
            r["forwarding_tx_per_shard_cpu_s"],
            forwarding[0]["tx_per_shard_cpu_s"]
        );
    } else {
        assert!(forwarding.is_empty(), "one core: no forwarding run");
        assert!(r["shards_scaling_forwarding"].is_null());
        assert!(r["shards_scaling_cpu_ceiling"].is_null());
        assert!(r["shards_scaling_per_shard_cpu"].is_null());
    }
    // The default plan: gRPC alone, DNS alone and the mix, each at 1 shard.
    let find = |name: &str| {
        runs.iter()
            .find(|x| x["run"] == name)
            .unwrap_or_else(|| panic!("run {name} missing"))
    };
    let grpc = find("protocol:grpc");
    let dns = find("protocol:dns");
    let mix = find("mix");
    assert_eq!(grpc["mix"], "grpc=1");
    assert_eq!(dns["mix"], "dns=1");
    assert_eq!(mix["mix"], "http1=70,grpc=20,dns=10");
    assert_eq!(f(grpc, &["shards"]), 1.0);
    // Headline per-protocol figures are the runs alone.
    assert_eq!(r["grpc_calls_per_s_per_core"], grpc["tx_per_s_per_core"]);
    assert_eq!(r["grpc_calls_per_shard_cpu_s"], grpc["tx_per_shard_cpu_s"]);
    assert_eq!(r["dns_tx_per_s_per_core"], dns["tx_per_s_per_core"]);
    assert_eq!(r["dns_tx_per_shard_cpu_s"], dns["tx_per_shard_cpu_s"]);
    assert!(f(r, &["grpc_calls_per_s_per_core"]) > 0.0);
    assert!(f(r, &["dns_tx_per_s_per_core"]) > 0.0);
    // The mixed run follows its weights (70/20/10 of what was generated, within 1 point).
    let total = f(mix, &["generator", "transactions"]);
    for (p, w) in [("http1", 70.0), ("grpc", 20.0), ("dns", 10.0)] {
        let share = 100.0 * f(mix, &["protocols", p, "transactions_generated"]) / total;
        assert!((share - w).abs() <= 1.0, "{p}: {share}% of {total}");
    }
    let t = r["targets"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["name"] == "grpc_calls_per_s_per_core"))
        .expect("gRPC target");
    assert_eq!(t["target"], ">= 1000000");
    assert_eq!(
        t["met"],
        Value::Bool(f(r, &["grpc_calls_per_s_per_core"]) >= 1e6)
    );
}

fn check_overhead(r: &Value) {
    let o = &r["overhead"];
    let runs = o["runs"].as_array().expect("overhead runs");
    for mode in ["baseline", "floor", "agent"] {
        let run = runs.iter().find(|x| x["mode"] == mode).expect(mode);
        assert!(f(run, &["requests"]) > 0.0, "{mode}: wrk completed nothing");
        assert!(f(run, &["req_per_s"]) > 0.0);
        // nginx's own CPU time per request, from its schedstat: tens of microseconds here.
        let cpu = f(run, &["server_cpu_us_per_req"]);
        assert!(
            cpu > 0.1 && cpu < 10_000.0,
            "{mode}: nginx CPU {cpu} µs per request"
        );
        assert!(
            f(r, &["server_cpu_us_per_req", mode]) > 0.0,
            "{mode}: median missing"
        );
    }
    // The extra agent flag of the run reached the agent (it started with it) and the report.
    let flags = o["agent_flags"].as_str().unwrap_or("");
    assert!(flags.contains("--drain-interval-ms=2"), "{flags}");
    assert_eq!(o["nginx"]["workers"], 2, "{}", o["nginx"]);
    assert_eq!(o["nginx"]["pinned"], true, "{}", o["nginx"]);
    let floor = runs.iter().find(|x| x["mode"] == "floor").expect("floor");
    assert!(f(floor, &["hooks"]) > 10.0, "{floor}");
    let agent = runs.iter().find(|x| x["mode"] == "agent").expect("agent");
    let req = f(agent, &["requests"]);
    let spans = f(agent, &["server_spans_received"]);
    let metric = f(agent, &["http_server_request_duration_count"]);
    assert!(spans > 0.0 && metric > 0.0, "{agent}");
    // Capture ratios are the real counts over wrk's count.
    assert!((f(agent, &["span_capture_ratio"]) - spans / req).abs() < 1e-9);
    assert!((f(r, &["capture_ratio"]) - spans / req).abs() < 1e-9);
    assert!((f(r, &["metric_capture_ratio"]) - metric / req).abs() < 1e-9);
    let rps = |m: &str| f(r, &["req_per_s", m]);
    assert!((f(r, &["overhead_ratio_vs_baseline"]) - rps("agent") / rps("baseline")).abs() < 1e-9);
    assert!((f(r, &["overhead_ratio_vs_floor"]) - rps("agent") / rps("floor")).abs() < 1e-9);
    assert!(f(r, &["peak_rss_bytes"]) > 1e6);
    assert!(
        f(r, &["bpf_map_bytes"]) > 1e6,
        "rings alone are 16 MiB by default"
    );
    assert!(f(r, &["agent_cpu_s_per_million_req"]) > 0.0);
    assert!(
        r["ring_drops"].is_u64(),
        "ring drops parsed from the agent's exit summary"
    );
    // The BPF programs' cost, from the run with their statistics on: the data syscalls nginx
    // makes for every request ran, and the total is the programs' own figures added up.
    let cost = &o["bpf_cost"];
    assert!(f(cost, &["requests"]) > 0.0, "{cost}");
    let programs = cost["programs"].as_array().expect("programs");
    let ran = |name: &str| {
        programs
            .iter()
            .find(|p| p["program"] == name)
            .map_or(0.0, |p| f(p, &["runs_per_req"]))
    };
    assert!(
        ran("tg_exit_recvfrom") + ran("tg_exit_read") >= 0.5,
        "{cost}"
    );
    let sum: f64 = programs.iter().map(|p| f(p, &["ns_per_req"])).sum();
    assert!(
        (f(r, &["bpf_ns_per_req"]) - sum).abs() <= 1e-6 * sum,
        "{cost}"
    );
    for p in programs {
        let per_run = f(p, &["ns_per_req"]) / f(p, &["runs_per_req"]);
        assert!(
            (f(p, &["ns_per_run"]) - per_run).abs() <= 1e-6 * per_run,
            "{p}"
        );
    }
}

/// Run the harness, check it succeeded, and return its report (read from `out`, then removed)
/// and what it printed.
fn run_report(cmd: &mut Command, out: &Path) -> (Value, String) {
    let run = cmd.output().expect("run telegen-perf");
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(
        run.status.success(),
        "telegen-perf failed: {}\n{stdout}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
    let text = std::fs::read_to_string(out).expect("report written");
    let _ = std::fs::remove_file(out);
    (serde_json::from_str(&text).expect("report is JSON"), stdout)
}

#[test]
fn quick_run_writes_a_complete_consistent_report() {
    let bpf = telegen_tests::agent::require_bpf();
    let tools = ["/usr/bin/wrk", "/usr/sbin/nginx"]
        .iter()
        .all(|p| Path::new(p).exists());
    if bpf && !tools {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "wrk and nginx-light are needed under CI=true (scripts/setup.sh installs them)"
        );
    }
    // The binaries of this build (cargo builds the harness for its own tests; the agent is
    // built once by the shared test helper).
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_telegen-perf"));
    let out = std::env::temp_dir().join(format!("telegen-perf-{}.json", std::process::id()));
    let mut cmd = Command::new(&bin);
    cmd.args(["--quick", "--reorder-timeout-ms", "5000", "--out"])
        .arg(&out);
    if bpf && tools {
        cmd.arg("--telegen-bin")
            .arg(telegen_tests::agent::telegen_bin())
            .arg("--agent-arg=--drain-interval-ms=2")
            .args(["--nginx-workers", "2", "--nginx-pin-workers"]);
    } else {
        cmd.args(["--only", "synthetic"]);
    }
    let (r, stdout) = run_report(&mut cmd, &out);
    assert!(stdout.contains("target: tx_per_s_per_core"), "{stdout}");
    assert!(
        stdout.contains("target: grpc_calls_per_s_per_core"),
        "{stdout}"
    );
    for key in [
        "tx_per_s_per_core",
        "grpc_calls_per_s_per_core",
        "dns_tx_per_s_per_core",
        "shards_scaling",
        "shards_scaling_cpu_ceiling",
        "shards_scaling_per_shard_cpu",
        "overhead_ratio_vs_baseline",
        "overhead_ratio_vs_floor",
        "capture_ratio",
        "agent_cpu_s_per_million_req",
        "bpf_ns_per_req",
        "peak_rss_bytes",
        "bpf_map_bytes",
        "targets",
        "synthetic",
        "overhead",
    ] {
        assert!(r.get(key).is_some(), "key {key} missing");
    }
    for t in r["targets"].as_array().expect("targets") {
        assert!(t["name"].is_string() && t["target"].is_string(), "{t}");
        // met is computed whenever a value is.
        assert_eq!(t["value"].is_null(), t["met"].is_null(), "{t}");
    }
    check_synthetic(&r);
    if bpf && tools {
        check_overhead(&r);
    } else {
        assert!(r["overhead_ratio_vs_baseline"].is_null());
    }
}

/// With `--synthetic-rounds 3`, every configuration runs three times, interleaved; each
/// headline figure is its configuration's median run, and the shard scaling is the median of
/// the rounds' own ratios. Checks the arithmetic against the runs in the report (no timing).
#[test]
fn synthetic_rounds_report_the_median_run_and_the_median_scaling() {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_telegen-perf"));
    let out = std::env::temp_dir().join(format!("telegen-perf-rounds-{}.json", std::process::id()));
    let mut cmd = Command::new(&bin);
    cmd.args([
        "--quick",
        "--only",
        "synthetic",
        "--synthetic-rounds",
        "3",
        "--shards",
        "1,2",
        "--protocol-runs",
        "none",
        "--mix",
        "none",
        // No forwarding run: the rounds' medians of the scaling runs are what is checked.
        "--migrate-pct",
        "0",
        "--synthetic-secs",
        "1",
        "--warmup-secs",
        "1",
        "--reorder-timeout-ms",
        "5000",
        "--out",
    ])
    .arg(&out);
    let (r, stdout) = run_report(&mut cmd, &out);
    check_runs(&r);
    let runs = r["synthetic"]["runs"].as_array().expect("runs");
    // The cores the harness runs shards on (its affinity mask), as the report says.
    let two_cores = f(&r, &["machine", "cores"]) >= 2.0;
    let configs: &[u64] = if two_cores { &[1, 2] } else { &[1] };
    assert_eq!(runs.len(), 3 * configs.len(), "{runs:?}");
    assert_eq!(f(&r, &["synthetic_rounds"]), 3.0);
    let tx = |shards: u64, round: u64| -> f64 {
        let run = runs
            .iter()
            .find(|x| x["shards"] == shards && x["round"] == round)
            .unwrap_or_else(|| panic!("{shards} shard(s), round {round}"));
        f(run, &["tx_per_s"])
    };
    for &n in configs {
        // Rounds interleave: round k of each configuration comes before round k+1 of any.
        let of_n: Vec<&Value> = runs.iter().filter(|x| x["shards"] == n).collect();
        let marked: Vec<&&Value> = of_n
            .iter()
            .filter(|x| x["median_of_rounds"] == true)
            .collect();
        assert_eq!(marked.len(), 1, "one run of {n} shard(s) is the median");
        let mut rates: Vec<f64> = (1..=3).map(|k| tx(n, k)).collect();
        rates.sort_by(f64::total_cmp);
        assert_eq!(f(marked[0], &["tx_per_s"]), rates[1], "median of {rates:?}");
        if n == 1 {
            assert_eq!(r["tx_per_s_per_core"], marked[0]["tx_per_s_per_core"]);
        }
    }
    let order: Vec<u64> = runs.iter().map(|x| x["round"].as_u64().unwrap()).collect();
    assert!(order.windows(2).all(|w| w[0] <= w[1]), "{order:?}");
    if two_cores {
        let per_round: Vec<f64> = (1..=3).map(|k| tx(2, k) / tx(1, k)).collect();
        let reported: Vec<f64> = r["shards_scaling_per_round"]
            .as_array()
            .expect("scaling per round")
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(reported.len(), 3);
        assert!(
            reported.iter().zip(&per_round).all(|(a, b)| close(*a, *b)),
            "{reported:?} against {per_round:?}"
        );
        let mut sorted = per_round.clone();
        sorted.sort_by(f64::total_cmp);
        assert!(close(f(&r, &["shards_scaling"]), sorted[1]), "{sorted:?}");
        assert!(stdout.contains("shards_scaling of each round"), "{stdout}");
        // The machine's ceiling and the per-shard-CPU ratio: medians of the rounds' own.
        let run = |n: u64, k: u64| {
            runs.iter()
                .find(|x| x["shards"] == n && x["round"] == k)
                .unwrap_or_else(|| panic!("{n} shard(s), round {k}"))
        };
        let (mut ceilings, mut per_cpu): (Vec<f64>, Vec<f64>) = (1..=3)
            .map(|k| ceiling_and_per_shard_cpu(run(1, k), run(2, k)))
            .unzip();
        ceilings.sort_by(f64::total_cmp);
        per_cpu.sort_by(f64::total_cmp);
        assert!(
            close(f(&r, &["shards_scaling_cpu_ceiling"]), ceilings[1]),
            "{ceilings:?}"
        );
        assert!(
            close(f(&r, &["shards_scaling_per_shard_cpu"]), per_cpu[1]),
            "{per_cpu:?}"
        );
        assert!(stdout.contains("shards_scaling ceiling here"), "{stdout}");
    }
    assert!(stdout.contains("tx/s of each round"), "{stdout}");
}
