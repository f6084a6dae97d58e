//! The report of a harness run: the figures picked from the runs (the median run of each
//! synthetic configuration, the scaling of each round), the targets of issue 3, and the table
//! printed at the end.

use serde_json::{json, Value};
use telegen_perf::gen::{Proto, PROTOS};

const MIB: f64 = 1024.0 * 1024.0;

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

/// The report of a run from its synthetic runs (every round) and its overhead phase.
pub(crate) fn build_report(quick: bool, runs: &[Value], overhead: Value) -> Value {
    let scaling_run =
        |n: u64| move |r: &Value| r["run"] == "scaling" && r["shards"].as_u64() == Some(n);
    let by_shards = |n: u64| median_run(runs, scaling_run(n));
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
    let mut rounds: Vec<u64> = runs.iter().filter_map(|r| r["round"].as_u64()).collect();
    rounds.sort_unstable();
    rounds.dedup();
    // The run of `round` that `pick` selects.
    let run_in = |round: u64, pick: &dyn Fn(&Value) -> bool| {
        runs.iter()
            .find(|r| pick(r) && r["round"].as_u64() == Some(round))
    };
    // Per round, the figure `key` of the run `of` picks over that of the round's 1-shard run
    // (made minutes apart at most).
    let over_one_shard = |of: &dyn Fn(&Value) -> bool, key: &str| -> Vec<f64> {
        rounds
            .iter()
            .filter_map(|&round| {
                let a = num(run_in(round, &scaling_run(1))?, &[key])?;
                let b = num(run_in(round, of)?, &[key])?;
                (a > 0.0).then(|| b / a)
            })
            .collect()
    };
    let scalings = over_one_shard(&scaling_run(2), "tx_per_s");
    let scaling = median(scalings.clone());
    // What the machine lets the scaling be, per round. The ceiling: its cores over the CPU the
    // 1-shard run kept busy (its shard, the export thread, the generator, which share those
    // cores), the most any number of shards could reach at that run's CPU per transaction with
    // every core busy. Per shard-CPU-second: the 2-shard run's transactions per CPU-second of
    // its shards over the 1-shard run's (1.0 when a second shard costs the first nothing).
    let ceilings: Vec<f64> = rounds
        .iter()
        .filter_map(|&round| {
            let one = run_in(round, &scaling_run(1))?;
            run_in(round, &scaling_run(2))?;
            let busy = ["shards", "export", "generator"]
                .iter()
                .map(|p| num(one, &["cpu_utilisation", p]))
                .sum::<Option<f64>>()?;
            let cores = num(one, &["cores_available"])?;
            (busy > 0.0).then(|| cores / busy)
        })
        .collect();
    let per_shard_cpu = over_one_shard(&scaling_run(2), "tx_per_shard_cpu_s");
    // The same with records on other CPUs' rings, forwarded.
    let forwarding_scalings = over_one_shard(&|r| r["run"] == "forwarding", "tx_per_s");
    let forwarding = median_run(runs, |r| r["run"] == "forwarding");
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
            "shards_scaling (2 vs 1 shard, records in their home rings)",
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
    let mut report = json!({
        "tool": "telegen-perf",
        "version": env!("CARGO_PKG_VERSION"),
        "command": std::env::args().collect::<Vec<_>>(),
        "quick": quick,
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
        "shards_scaling_cpu_ceiling": median(ceilings),
        "shards_scaling_per_shard_cpu": median(per_shard_cpu),
        "shards_scaling_forwarding": median(forwarding_scalings.clone()),
        "shards_scaling_forwarding_per_round": forwarding_scalings,
        "forwarding_migrate_pct": forwarding.and_then(|r| num(r, &["generator", "migrate_pct"])),
        "forwarding_tx_per_shard_cpu_s": forwarding.and_then(|r| num(r, &["tx_per_shard_cpu_s"])),
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
    });
    // Set apart: one more key in the literal above passes `json!`'s recursion limit.
    report["bpf_ns_per_req"] = json!(num(ov, &["bpf_cost", "ns_per_req"]));
    report
}

fn fmt_num(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(x) if x.abs() >= 1e6 => format!("{:.2}M", x / 1e6),
        Some(x) if x.abs() >= 1e4 => format!("{:.0}", x),
        Some(x) => format!("{:.3}", x),
    }
}

/// Each round's figures of a JSON array, " / " between them; `None` for fewer than two (one
/// round's figure is the reported one).
fn each_round(v: &Value) -> Option<String> {
    let v = v.as_array()?;
    (v.len() > 1).then(|| {
        v.iter()
            .map(|x| fmt_num(x.as_f64()))
            .collect::<Vec<_>>()
            .join(" / ")
    })
}

/// A whole percentage.
fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |x| format!("{x:.0}"))
}

/// A table row: label, value, target, verdict.
type Row = (String, String, String, String);

/// A row that only reports (no target).
fn info(label: impl Into<String>, value: String) -> Row {
    (label.into(), value, String::new(), String::new())
}

/// A run's (or protocol's) throughput per core and per shard-CPU-second.
fn per_core(v: &Value) -> String {
    format!(
        "{} | {}",
        fmt_num(num(v, &["tx_per_s_per_core"])),
        fmt_num(num(v, &["tx_per_shard_cpu_s"]))
    )
}

/// The table printed at the end of a run.
pub(crate) fn table(r: &Value) -> String {
    let mut rows: Vec<Row> = Vec::new();
    rows.push(info(
        "machine: cores, load average before / after",
        format!(
            "{}, {} / {}",
            r["machine"]["cores"], r["machine"]["loadavg_before"], r["machine"]["loadavg_after"]
        ),
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
        let g = |p: &[&str]| num(run, p);
        let name = match run["run"].as_str() {
            Some("mix") => format!("synthetic mix ({})", run["mix"].as_str().unwrap_or("")),
            Some(p) if p.starts_with("protocol:") => {
                format!("synthetic {} alone, {n} shard", &p["protocol:".len()..])
            }
            Some("forwarding") => format!(
                "synthetic {n} shards, {}% of records forwarded",
                pct(g(&["generator", "migrate_pct"]))
            ),
            _ => format!("synthetic {n} shard(s)"),
        };
        let rounds: Vec<String> = all_runs
            .iter()
            .filter(|x| config_of(x) == config_of(run))
            .map(|x| fmt_num(num(x, &["tx_per_s"])))
            .collect();
        if rounds.len() > 1 {
            rows.push(info(
                format!(
                    "{name}: tx/s of each round ({} run below)",
                    if rounds.len() % 2 == 0 {
                        "lower middle"
                    } else {
                        "median"
                    }
                ),
                rounds.join(" / "),
            ));
        }
        rows.push(info(
            format!("{name}: tx/s (events/s)"),
            format!(
                "{} ({})",
                fmt_num(g(&["tx_per_s"])),
                fmt_num(g(&["events_per_s"]))
            ),
        ));
        rows.push(info(
            format!("{name}: tx/s per core | per shard-CPU-s"),
            per_core(run),
        ));
        rows.push(info(
            format!("{name}: delay p50 / p99 (ms)"),
            format!(
                "{} / {}",
                fmt_num(g(&["delay_event_to_encoded_batch_ms", "p50"])),
                fmt_num(g(&["delay_event_to_encoded_batch_ms", "p99"]))
            ),
        ));
        rows.push(info(
            format!("{name}: CPU shards/export/gen"),
            format!(
                "{:.2} / {:.2} / {:.2}",
                g(&["cpu_utilisation", "shards"]).unwrap_or(0.0),
                g(&["cpu_utilisation", "export"]).unwrap_or(0.0),
                g(&["cpu_utilisation", "generator"]).unwrap_or(0.0)
            ),
        ));
        if run["run"] == "mix" {
            for (p, v) in run["protocols"].as_object().into_iter().flatten() {
                rows.push(info(
                    format!("{name}: {p} tx/s per core | per shard-CPU-s"),
                    per_core(v),
                ));
            }
        }
        rows.push(info(
            format!("{name}: spans == tx, drops"),
            format!(
                "{} ({} / {}), {}",
                run["checks"]["ok"],
                run["spans_encoded"],
                run["generator"]["transactions"],
                run["drops"]
            ),
        ));
    }
    for (p, v) in r["per_protocol"].as_object().into_iter().flatten() {
        rows.push((
            format!("{p}: tx/s per shard core | per shard-CPU-s"),
            per_core(v),
            format!("({} run)", v["from_run"].as_str().unwrap_or("no")),
            String::new(),
        ));
    }
    if let Some(scalings) = each_round(&r["shards_scaling_per_round"]) {
        rows.push(info(
            "shards_scaling of each round (target row: their median)",
            scalings,
        ));
    }
    if r["shards_scaling_cpu_ceiling"].is_number() {
        rows.push(info(
            "shards_scaling ceiling here: cores / CPU busy in the 1-shard run (median of rounds)",
            fmt_num(num(r, &["shards_scaling_cpu_ceiling"])),
        ));
        rows.push(info(
            "tx per shard-CPU-s, 2 shards / 1 shard (median of rounds)",
            fmt_num(num(r, &["shards_scaling_per_shard_cpu"])),
        ));
    }
    if r["shards_scaling_forwarding"].is_number() {
        rows.push(info(
            format!(
                "shards_scaling with {}% of records forwarded (median of rounds)",
                pct(num(r, &["forwarding_migrate_pct"]))
            ),
            fmt_num(num(r, &["shards_scaling_forwarding"])),
        ));
    }
    if let Some(rps) = r["req_per_s"].as_object() {
        rows.push(info(
            "overhead: req/s baseline / floor / agent",
            format!(
                "{} / {} / {}",
                fmt_num(rps.get("baseline").and_then(Value::as_f64)),
                fmt_num(rps.get("floor").and_then(Value::as_f64)),
                fmt_num(rps.get("agent").and_then(Value::as_f64))
            ),
        ));
        // Each round's own ratios, whose medians the targets take: their spread is this
        // machine's noise.
        let per_round = |k: &str| each_round(&r["overhead"]["ratio_rounds"][k]);
        if let (Some(a), Some(b)) = (per_round("vs_baseline"), per_round("vs_floor")) {
            rows.push(info("overhead: agent / baseline, each round", a));
            rows.push(info("overhead: agent / floor, each round", b));
        }
        if let Some(cpu) = r["server_cpu_us_per_req"].as_object() {
            let us = |k: &str| {
                cpu.get(k)
                    .and_then(Value::as_f64)
                    .map_or("-".to_string(), |v| format!("{v:.1}"))
            };
            rows.push(info(
                "overhead: nginx CPU µs per req baseline / floor / agent",
                format!("{} / {} / {}", us("baseline"), us("floor"), us("agent")),
            ));
        }
        rows.push(info(
            "overhead: agent CPU s per million req",
            fmt_num(num(r, &["agent_cpu_s_per_million_req"])),
        ));
        if let Some(e) = r["overhead"]["bpf_cost"]["error"].as_str() {
            rows.push(info("overhead: BPF cost run failed", e.to_string()));
        }
        if let Some(ns) = num(r, &["bpf_ns_per_req"]) {
            rows.push(info(
                "overhead: BPF programs, ns per req (one run with their statistics on)",
                format!("{ns:.0}"),
            ));
            // The costliest programs, a row each (with its runs per request).
            for p in r["overhead"]["bpf_cost"]["programs"]
                .as_array()
                .into_iter()
                .flatten()
                .take(4)
            {
                rows.push(info(
                    format!(
                        "overhead: BPF ns per req, {} ({:.2} runs per req)",
                        p["program"].as_str().unwrap_or("?"),
                        p["runs_per_req"].as_f64().unwrap_or(0.0)
                    ),
                    format!("{:.0}", p["ns_per_req"].as_f64().unwrap_or(0.0)),
                ));
            }
        }
        rows.push(info(
            "overhead: peak RSS / BPF maps (MiB)",
            format!(
                "{:.1} / {:.1}",
                num(r, &["peak_rss_bytes"]).unwrap_or(0.0) / MIB,
                num(r, &["bpf_map_bytes"]).unwrap_or(0.0) / MIB
            ),
        ));
    }
    if let Some(s) = r["overhead"].get("soak") {
        rows.push(info(
            "soak: RSS without rings first / warm / last / max (MiB)",
            format!(
                "{:.1} / {:.1} / {:.1} / {:.1}",
                num(s, &["first", "rss_without_rings_bytes"]).unwrap_or(0.0) / MIB,
                num(s, &["warm", "rss_without_rings_bytes"]).unwrap_or(0.0) / MIB,
                num(s, &["last", "rss_without_rings_bytes"]).unwrap_or(0.0) / MIB,
                num(s, &["max", "rss_without_rings_bytes"]).unwrap_or(0.0) / MIB
            ),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_each_rounds_overhead_ratios() {
        let r = json!({
            "req_per_s": {"baseline": 100.0, "floor": 90.0, "agent": 80.0},
            "overhead": {"ratio_rounds": {
                "vs_baseline": [0.8, 0.75, 0.9],
                "vs_floor": [0.85, 0.8, 0.95],
            }},
        });
        let t = table(&r);
        let row = |name: &str| {
            t.lines()
                .find(|l| l.contains(name))
                .unwrap_or_else(|| panic!("no row {name:?} in\n{t}"))
                .to_string()
        };
        assert!(row("agent / baseline, each round").contains("0.800 / 0.750 / 0.900"));
        assert!(row("agent / floor, each round").contains("0.850 / 0.800 / 0.950"));
        // One round: its ratio is the target's own value, no row of its own.
        let one = json!({
            "req_per_s": {"baseline": 100.0, "floor": 90.0, "agent": 80.0},
            "overhead": {"ratio_rounds": {"vs_baseline": [0.8], "vs_floor": [0.85]}},
        });
        assert!(!table(&one).contains("each round"));
    }
}
