//! Overhead phase (real kernel): nginx (Debian) serving a small static file on loopback, loaded
//! by `wrk` with keep-alive, with the same duration, threads and connections in three modes on
//! the same machine: no agent; the floor (`telegen run --floor`: do-nothing programs on the
//! tracer's hooks); the full agent exporting to a local OTLP receiver. The modes alternate per
//! round, in an order rotated each round; each ratio is the median of the rounds' own
//! ratios. The agent traces only nginx (`--pid <master>`,
//! which covers its workers), as a user watching one service would run it; everything else is
//! the agent's defaults (shards on every core, 16 MiB of rings, 1 KiB captured per syscall).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::procfs;
use crate::receiver::Receiver;

#[derive(Debug, Clone)]
pub struct OverheadConfig {
    pub secs: u64,
    pub rounds: u32,
    pub wrk_threads: u32,
    pub wrk_conns: u32,
    /// nginx worker processes, and whether each is pinned to its own CPU.
    pub nginx_workers: u32,
    pub nginx_pin_workers: bool,
    pub telegen_bin: PathBuf,
    /// The agent's `--compression`.
    pub agent_compression: String,
    /// More flags for the full agent (`--agent-arg`).
    pub agent_args: Vec<String>,
    pub soak_secs: u64,
    pub soak_sample_secs: u64,
}

/// What one wrk run reported.
#[derive(Debug, Clone, Copy, Default)]
pub struct WrkResult {
    pub requests: u64,
    pub req_per_s: f64,
    pub socket_errors: u64,
    pub non_2xx: u64,
}

/// Parse wrk's text output.
pub fn parse_wrk(out: &str) -> Option<WrkResult> {
    let mut r = WrkResult::default();
    let mut have = (false, false);
    for line in out.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            r.req_per_s = v.trim().parse().ok()?;
            have.0 = true;
        } else if line.contains(" requests in ") {
            r.requests = line.split_whitespace().next()?.parse().ok()?;
            have.1 = true;
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            r.socket_errors = v
                .split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                .sum();
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            r.non_2xx = v.trim().parse().unwrap_or(0);
        }
    }
    (have.0 && have.1).then_some(r)
}

/// A child killed and reaped on drop.
struct Kid(Child);
impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, sig) };
}

/// Run wrk against `url` (see [`wrk`]) and measure the CPU time the server tree `server_pid`
/// (nginx's master and worker) spent meanwhile: microseconds per request. The traced process
/// pays the BPF programs in its own syscalls, so this is the agent's cost where it lands, and a
/// steadier figure than requests/s on a shared machine (another tenant's load slows a run down
/// but does not add to the server's own CPU time per request).
fn wrk_on(
    cfg: &OverheadConfig,
    secs: u64,
    url: &str,
    label: &str,
    server_pid: u32,
    progress: &mut dyn FnMut(String),
) -> anyhow::Result<(WrkResult, Option<f64>)> {
    let c0 = procfs::tree_cpu_ns(server_pid);
    let w = wrk(cfg, secs, url, label, progress)?;
    let c1 = procfs::tree_cpu_ns(server_pid);
    let per_req = match (c0, c1) {
        (Some(a), Some(b)) if w.requests > 0 => {
            Some(b.saturating_sub(a) as f64 / 1e3 / w.requests as f64)
        }
        _ => None,
    };
    Ok((w, per_req))
}

/// Run wrk for `secs` against `url`, printing progress each second.
fn wrk(
    cfg: &OverheadConfig,
    secs: u64,
    url: &str,
    label: &str,
    progress: &mut dyn FnMut(String),
) -> anyhow::Result<WrkResult> {
    let child = Command::new("wrk")
        .args([
            format!("-t{}", cfg.wrk_threads),
            format!("-c{}", cfg.wrk_conns),
            format!("-d{secs}s"),
            url.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| anyhow::anyhow!("starting wrk (apt-get install wrk): {e}"))?;
    let mut kid = Kid(child);
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    loop {
        if let Some(status) = kid.0.try_wait()? {
            let mut out = String::new();
            if let Some(mut s) = kid.0.stdout.take() {
                std::io::Read::read_to_string(&mut s, &mut out)?;
            }
            anyhow::ensure!(status.success(), "wrk failed ({status}): {out}");
            return parse_wrk(&out).ok_or_else(|| anyhow::anyhow!("unexpected wrk output: {out}"));
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(secs + 60),
            "wrk did not finish"
        );
        progress(format!(
            "{label}: {:.0} s left",
            end.saturating_duration_since(Instant::now())
                .as_secs_f64()
                .ceil()
        ));
        std::thread::sleep(
            Duration::from_secs(1).min(
                end.saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(100)),
            ),
        );
    }
}

/// `telegen` as a child, with its stderr collected; ready once `ready` appears on stderr.
struct Telegen {
    kid: Kid,
    log: Arc<Mutex<String>>,
}

impl Telegen {
    fn start(bin: &Path, args: &[String], ready: &'static str) -> anyhow::Result<Telegen> {
        let mut child = Command::new(bin)
            .arg("run")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| anyhow::anyhow!("starting {}: {e}", bin.display()))?;
        let stderr = child.stderr.take();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            let Some(stderr) = stderr else { return };
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains(ready) {
                    let _ = tx.send(());
                }
                if let Ok(mut l) = sink.lock() {
                    l.push_str(&line);
                    l.push('\n');
                }
            }
        });
        let t = Telegen {
            kid: Kid(child),
            log,
        };
        if rx.recv_timeout(Duration::from_secs(60)).is_err() {
            anyhow::bail!("telegen did not start:\n{}", t.log());
        }
        Ok(t)
    }

    fn pid(&self) -> u32 {
        self.kid.0.id()
    }

    fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// SIGTERM and wait (bounded) for a clean exit; returns its stderr.
    fn stop(mut self) -> anyhow::Result<String> {
        signal(&self.kid.0, libc::SIGTERM);
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.kid.0.try_wait()? {
                std::thread::sleep(Duration::from_millis(100));
                let log = self.log();
                anyhow::ensure!(status.success(), "telegen exited with {status}:\n{log}");
                return Ok(log);
            }
            anyhow::ensure!(
                Instant::now() < end,
                "telegen did not stop:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The number after `key` in `text` (e.g. "ring drops 0").
fn number_after(text: &str, key: &str) -> Option<u64> {
    let rest = &text[text.rfind(key)? + key.len()..];
    rest.trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Memory samples of a process taken by a background thread: (seconds, RSS without the
/// resident pages of its BPF ring mappings, BPF map bytes). The rings are allocated whole when
/// the maps are created and counted in full in the map bytes; their pages only become resident
/// in the process as the producer first writes through them, which on a slower run takes
/// minutes and would look like growth.
struct Sampler {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<Vec<(f64, u64, u64)>>,
}

impl Sampler {
    fn start(pid: u32, every: Duration) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            let t0 = Instant::now();
            let mut out = Vec::new();
            let mut next = t0;
            while !s.load(Ordering::Relaxed) {
                if Instant::now() >= next {
                    let rss = procfs::status_bytes(pid, "VmRSS").unwrap_or(0);
                    let mapped = procfs::bpf_mapped_rss_bytes(pid).unwrap_or(0);
                    let maps = procfs::bpf_map_bytes(pid).unwrap_or(0);
                    out.push((t0.elapsed().as_secs_f64(), rss.saturating_sub(mapped), maps));
                    next += every;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            out
        });
        Sampler { stop, handle }
    }
    fn finish(self) -> Vec<(f64, u64, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_default()
    }
}

/// The agent's counters of its BPF programs (`telegen_kernel_program_*` on its Prometheus
/// endpoint): (runs, nanoseconds) by program.
fn program_stats(prom_port: u16) -> anyhow::Result<BTreeMap<String, (u64, u64)>> {
    let body = telegen_tests::agent::try_scrape_prometheus(prom_port)?;
    let status = body.lines().next().unwrap_or_default();
    anyhow::ensure!(
        status.split(' ').nth(1) == Some("200"),
        "the agent's /metrics answered {status:?}"
    );
    let mut out: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for line in body.lines() {
        let (runs, rest) = if let Some(r) = line.strip_prefix("telegen_kernel_program_runs_total") {
            (true, r)
        } else if let Some(r) = line.strip_prefix("telegen_kernel_program_run_nanoseconds_total") {
            (false, r)
        } else {
            continue;
        };
        let Some((label, value)) = rest.rsplit_once(' ') else {
            continue;
        };
        let Some(name) = label
            .strip_prefix("{program=\"")
            .and_then(|l| l.strip_suffix("\"}"))
        else {
            continue;
        };
        let v: u64 = value.parse()?;
        let e = out.entry(name.to_string()).or_default();
        if runs {
            e.0 = v;
        } else {
            e.1 = v;
        }
    }
    Ok(out)
}

/// The agent's program counters from a reading it made after this call began. Its export core
/// reads them about once a second, later while idle (up to 16 drain intervals), so a scrape may
/// still show the reading before: poll until the counted runs change (a newer reading; after a
/// load there were runs since the one before), for at most 5 s. Runs unchanged for that long
/// mean the reading seen first already came after the load.
fn program_stats_fresh(prom_port: u16) -> anyhow::Result<BTreeMap<String, (u64, u64)>> {
    let runs = |m: &BTreeMap<String, (u64, u64)>| m.values().map(|v| v.0).sum::<u64>();
    let first = program_stats(prom_port)?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = program_stats(prom_port)?;
        if runs(&now) != runs(&first) || Instant::now() >= deadline {
            return Ok(now);
        }
    }
}

/// Per program, what one request cost between two readings of [`program_stats`]: runs and
/// nanoseconds per request, nanoseconds per run; the costliest first.
fn programs_per_request(
    before: &BTreeMap<String, (u64, u64)>,
    after: &BTreeMap<String, (u64, u64)>,
    requests: u64,
) -> Value {
    let req = requests.max(1) as f64;
    let mut rows: Vec<(String, u64, u64)> = after
        .iter()
        .map(|(name, &(runs, ns))| {
            let (r0, n0) = before.get(name).copied().unwrap_or_default();
            (name.clone(), runs.saturating_sub(r0), ns.saturating_sub(n0))
        })
        .filter(|r| r.1 > 0)
        .collect();
    rows.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
    let total: u64 = rows.iter().map(|r| r.2).sum();
    json!({
        "requests": requests,
        "ns_per_req": total as f64 / req,
        "programs": rows.iter().map(|(name, runs, ns)| json!({
            "program": name,
            "runs_per_req": *runs as f64 / req,
            "ns_per_run": *ns as f64 / *runs as f64,
            "ns_per_req": *ns as f64 / req,
        })).collect::<Vec<_>>(),
    })
}

/// One run of the full agent under wrk. With `program_costs`, the kernel's run statistics of
/// every BPF program are on during the load (`BPF_ENABLE_STATS`, off again when the run ends:
/// they cost each program run two clock reads, so the rounds run without them) and the run
/// reports what each program cost per request (`bpf_cost`).
#[allow(clippy::too_many_arguments)]
fn agent_run(
    cfg: &OverheadConfig,
    nginx_pid: u32,
    url: &str,
    secs: u64,
    sample_every: Duration,
    label: &str,
    program_costs: bool,
    progress: &mut dyn FnMut(String),
) -> anyhow::Result<Value> {
    let receiver = Receiver::start()?;
    let prom = telegen_tests::agent::free_port();
    let mut args = vec![
        "--pid".to_string(),
        nginx_pid.to_string(),
        "--otlp-endpoint".into(),
        receiver.endpoint(),
        "--no-summary".into(),
        "--compression".into(),
        cfg.agent_compression.clone(),
        "--prometheus-addr".into(),
        format!("127.0.0.1:{prom}"),
    ];
    args.extend(cfg.agent_args.iter().cloned());
    let agent = Telegen::start(&cfg.telegen_bin, &args, "telegen: tracing")?;
    let pid = agent.pid();
    std::thread::sleep(Duration::from_millis(300));
    let sampler = Sampler::start(pid, sample_every);
    // Program statistics on for this run only; a failure (an old kernel, no privilege, an
    // agent that does not answer) is reported in `bpf_cost` and costs no other figure.
    let mut bpf_error = None;
    let stats_on = if program_costs {
        telegen_bpf::enable_program_stats()
            .map_err(|e| bpf_error = Some(e.to_string()))
            .ok()
    } else {
        None
    };
    // The counters before the load: any reading since the statistics went on (the runs it
    // missed, if any, are the idle ones before wrk starts).
    let programs0 = stats_on.as_ref().and_then(|_| {
        std::thread::sleep(Duration::from_millis(1500));
        program_stats(prom)
            .map_err(|e| bpf_error = Some(e.to_string()))
            .ok()
    });
    let cpu0 = procfs::process_cpu_s(pid).unwrap_or(0.0);
    let (w, server_cpu) = wrk_on(cfg, secs, url, label, nginx_pid, progress)?;
    let cpu1 = procfs::process_cpu_s(pid).unwrap_or(0.0);
    // After it: a reading made after the load ended.
    let programs1 = programs0.as_ref().and_then(|_| {
        program_stats_fresh(prom)
            .map_err(|e| bpf_error = Some(e.to_string()))
            .ok()
    });
    drop(stats_on);
    let hwm = procfs::status_bytes(pid, "VmHWM").unwrap_or(0);
    let rss = procfs::status_bytes(pid, "VmRSS").unwrap_or(0);
    let maps = procfs::bpf_map_bytes(pid).unwrap_or(0);
    let mapped = procfs::bpf_mapped_rss_bytes(pid).unwrap_or(0);
    let samples = sampler.finish();
    progress(format!("{label}: stopping the agent (flush)"));
    let log = agent.stop()?;
    let got = receiver.take();
    let summary = log
        .lines()
        .rev()
        .find(|l| l.contains("telegen: stopped."))
        .unwrap_or("")
        .to_string();
    let cpu = cpu1 - cpu0;
    let req = w.requests.max(1) as f64;
    let max_rss = samples
        .iter()
        .map(|s| s.1)
        .max()
        .unwrap_or(rss.saturating_sub(mapped));
    let max_maps = samples.iter().map(|s| s.2).max().unwrap_or(maps);
    let bpf_cost = match (&programs0, &programs1, bpf_error) {
        (Some(a), Some(b), None) => programs_per_request(a, b, w.requests),
        (_, _, Some(e)) => json!({ "error": e }),
        _ => Value::Null,
    };
    Ok(json!({
        "bpf_cost": bpf_cost,
        "mode": "agent",
        "req_per_s": w.req_per_s,
        "requests": w.requests,
        "socket_errors": w.socket_errors,
        "non_2xx": w.non_2xx,
        "agent_cpu_s": cpu,
        "agent_cpu_s_per_million_req": cpu / req * 1e6,
        "server_cpu_us_per_req": server_cpu,
        // VmHWM minus the resident pages of the mapped BPF rings, which `bpf_map_bytes`
        // already counts (their memlock): RSS + maps counts every byte once.
        "peak_rss_bytes": hwm.saturating_sub(mapped),
        "vm_hwm_bytes": hwm,
        "bpf_mapped_rss_bytes": mapped,
        "rss_bytes_at_end": rss,
        "bpf_map_bytes": maps.max(max_maps),
        "max_sampled_rss_without_rings_bytes": max_rss,
        "spans_received": got.spans,
        "server_spans_received": got.server_spans,
        "http_server_request_duration_count": got.server_duration_count,
        "trace_requests": got.trace_requests,
        "metric_requests": got.metric_requests,
        "bad_requests": got.bad_requests,
        "span_capture_ratio": got.server_spans as f64 / req,
        "metric_capture_ratio": got.server_duration_count as f64 / req,
        "ring_drops": number_after(&summary, "ring drops"),
        "kernel_events": number_after(&summary, "kernel events"),
        "queue_drops": number_after(&summary, "queue drops"),
        "export_dropped_spans": number_after(&summary, "dropped at export: spans"),
        "sequence_gaps": number_after(&summary, "sequence gaps"),
        "reorder_budget_gaps": number_after(&summary, "over the reorder budget"),
        "late_events": number_after(&summary, "late events"),
        "parse_errors": number_after(&summary, "parse errors"),
        "exchanges_unpaired": number_after(&summary, "exchanges not paired"),
        "exit_summary": summary,
        "samples": samples.iter().map(|(t, r, m)| json!({"t_s": t, "rss_without_rings_bytes": r, "bpf_map_bytes": m})).collect::<Vec<_>>(),
    }))
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The order of the three modes in round `round` (from 1): rotated each round, so that a
/// machine whose speed drifts during a round does not always favour the same mode, and no mode
/// always runs right after another's agent or floor has exited.
fn round_order(round: u32) -> [&'static str; 3] {
    let modes = ["baseline", "floor", "agent"];
    let k = (round.max(1) - 1) as usize % 3;
    [modes[k], modes[(k + 1) % 3], modes[(k + 2) % 3]]
}

/// req/s of mode `a` over mode `b` in each round that ran both: each round's ratio compares
/// runs made minutes apart at most, so the drift of a shared machine over the whole phase
/// cancels in it, where a ratio of medians taken over all rounds would keep it.
fn round_ratios(runs: &[Value], a: &str, b: &str) -> Vec<f64> {
    let rounds: std::collections::BTreeSet<u64> =
        runs.iter().filter_map(|r| r["round"].as_u64()).collect();
    let rate = |round: u64, mode: &str| {
        runs.iter()
            .find(|r| r["round"].as_u64() == Some(round) && r["mode"] == mode)
            .map(|r| f(r, "req_per_s"))
    };
    rounds
        .into_iter()
        .filter_map(|round| match (rate(round, a), rate(round, b)) {
            (Some(x), Some(y)) if y > 0.0 => Some(x / y),
            _ => None,
        })
        .collect()
}

fn f(v: &Value, k: &str) -> f64 {
    v.get(k).and_then(Value::as_f64).unwrap_or(0.0)
}

pub fn run(cfg: &OverheadConfig, progress: &mut dyn FnMut(String)) -> anyhow::Result<Value> {
    anyhow::ensure!(
        cfg.telegen_bin.exists(),
        "{} not found (build it: cargo build --release -p telegen)",
        cfg.telegen_bin.display()
    );
    anyhow::ensure!(
        ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .iter()
            .any(|p| Path::new(p).exists()),
        "nginx not found: apt-get install -y nginx-light (scripts/perf.sh does)"
    );
    telegen_bpf::preflight()?;
    let nginx = telegen_tests::agent::Nginx::start_with(telegen_tests::agent::NginxOptions {
        workers: cfg.nginx_workers,
        pin_workers: cfg.nginx_pin_workers,
        ..Default::default()
    });
    let url = format!("http://127.0.0.1:{}/index.html", nginx.port);
    let nginx_pid = nginx.proc.pid();
    progress("overhead: warming nginx up".into());
    wrk(cfg, 1, &url, "overhead: warm-up", progress)?;

    let mut runs = Vec::new();
    for round in 1..=cfg.rounds.max(1) {
        for mode in round_order(round) {
            let label = format!("overhead round {round}/{}: {mode}", cfg.rounds.max(1));
            let mut v = match mode {
                "baseline" => {
                    let (w, server_cpu) = wrk_on(cfg, cfg.secs, &url, &label, nginx_pid, progress)?;
                    json!({"mode": mode, "req_per_s": w.req_per_s, "requests": w.requests,
                           "socket_errors": w.socket_errors, "non_2xx": w.non_2xx,
                           "server_cpu_us_per_req": server_cpu})
                }
                "floor" => {
                    let fl = Telegen::start(&cfg.telegen_bin, &["--floor".into()], "floor mode:")?;
                    std::thread::sleep(Duration::from_millis(200));
                    let (w, server_cpu) = wrk_on(cfg, cfg.secs, &url, &label, nginx_pid, progress)?;
                    let log = fl.stop()?;
                    json!({"mode": mode, "req_per_s": w.req_per_s, "requests": w.requests,
                           "socket_errors": w.socket_errors, "non_2xx": w.non_2xx,
                           "server_cpu_us_per_req": server_cpu,
                           "hooks": number_after(&log, "floor mode:")})
                }
                _ => agent_run(
                    cfg,
                    nginx_pid,
                    &url,
                    cfg.secs,
                    Duration::from_secs(1),
                    &label,
                    false,
                    progress,
                )?,
            };
            v["round"] = json!(round);
            runs.push(v);
        }
    }
    let of = |m: &str| -> Vec<&Value> { runs.iter().filter(|r| r["mode"] == m).collect() };
    let med = |m: &str, k: &str| median(of(m).iter().map(|r| f(r, k)).collect());
    // Null when no run of the mode could read the server's CPU time.
    let med_known = |m: &str, k: &str| {
        let v: Vec<f64> = of(m).iter().filter_map(|r| r[k].as_f64()).collect();
        (!v.is_empty()).then(|| median(v))
    };
    let base = med("baseline", "req_per_s");
    let floor = med("floor", "req_per_s");
    let agent = med("agent", "req_per_s");
    let vs_base = round_ratios(&runs, "agent", "baseline");
    let vs_floor = round_ratios(&runs, "agent", "floor");
    let floor_vs_base = round_ratios(&runs, "floor", "baseline");
    let agents = of("agent");
    let sum = |k: &str| agents.iter().map(|r| f(r, k)).sum::<f64>();
    let requests = sum("requests").max(1.0);
    let ring_drops: u64 = agents.iter().filter_map(|r| r["ring_drops"].as_u64()).sum();
    let ring_drops_known = agents.iter().all(|r| r["ring_drops"].is_u64());
    let mut out = json!({
        "nginx": {"workers": cfg.nginx_workers, "pinned": cfg.nginx_pin_workers, "file": "/index.html (17 bytes)", "url": url},
        "wrk": {"threads": cfg.wrk_threads, "connections": cfg.wrk_conns, "seconds": cfg.secs, "keep_alive": true},
        "agent_flags": format!("--pid <nginx master> --otlp-endpoint <local receiver> --no-summary --compression {}{}{} (defaults otherwise)", cfg.agent_compression,
            if cfg.agent_args.is_empty() { "" } else { " " }, cfg.agent_args.join(" ")),
        "rounds": cfg.rounds.max(1),
        "req_per_s": {"baseline": base, "floor": floor, "agent": agent},
        "overhead_ratio_vs_baseline": median(vs_base.clone()),
        "overhead_ratio_vs_floor": median(vs_floor.clone()),
        "floor_ratio_vs_baseline": median(floor_vs_base.clone()),
        "ratio_rounds": {"vs_baseline": vs_base, "vs_floor": vs_floor, "floor_vs_baseline": floor_vs_base},
        "agent_cpu_s_per_million_req": sum("agent_cpu_s") / requests * 1e6,
        "server_cpu_us_per_req": {"baseline": med_known("baseline", "server_cpu_us_per_req"),
                                  "floor": med_known("floor", "server_cpu_us_per_req"),
                                  "agent": med_known("agent", "server_cpu_us_per_req")},
        "peak_rss_bytes": agents.iter().map(|r| f(r, "peak_rss_bytes") as u64).max().unwrap_or(0),
        "bpf_map_bytes": agents.iter().map(|r| f(r, "bpf_map_bytes") as u64).max().unwrap_or(0),
        "requests_completed": requests as u64,
        "server_spans_received": sum("server_spans_received") as u64,
        "http_server_request_duration_count": sum("http_server_request_duration_count") as u64,
        "capture_ratio": sum("server_spans_received") / requests,
        "metric_capture_ratio": sum("http_server_request_duration_count") / requests,
        "ring_drops": if ring_drops_known { json!(ring_drops) } else { Value::Null },
        "runs": runs,
    });
    // What the BPF programs cost per request, from one more agent run with the kernel's
    // program statistics on (a run of its own: counting slows every program run a little).
    let label = "BPF cost (full agent, program statistics on)";
    let b = agent_run(
        cfg,
        nginx_pid,
        &url,
        cfg.secs,
        Duration::from_secs(1),
        label,
        true,
        progress,
    )?;
    out["bpf_cost"] = b["bpf_cost"].clone();
    out["bpf_cost"]["req_per_s"] = b["req_per_s"].clone();
    if cfg.soak_secs > 0 {
        let label = format!("soak ({} s, full agent)", cfg.soak_secs);
        let s = agent_run(
            cfg,
            nginx_pid,
            &url,
            cfg.soak_secs,
            Duration::from_secs(cfg.soak_sample_secs.max(1)),
            &label,
            false,
            progress,
        )?;
        let samples: Vec<(f64, u64, u64)> = s["samples"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|x| {
                        (
                            x["t_s"].as_f64().unwrap_or(0.0),
                            x["rss_without_rings_bytes"].as_u64().unwrap_or(0),
                            x["bpf_map_bytes"].as_u64().unwrap_or(0),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let first = samples.first().copied().unwrap_or_default();
        let last = samples.last().copied().unwrap_or_default();
        // Growth is measured from a warmed-up sample (allocator pools, flow tables and maps
        // fill during the first part of the load): the first at or after 20% of the run (at
        // most 60 s in).
        let warm_at = (cfg.soak_secs as f64 * 0.2).min(60.0);
        let warm = samples
            .iter()
            .find(|x| x.0 >= warm_at)
            .copied()
            .unwrap_or(first);
        let max_rss = samples.iter().map(|x| x.1).max().unwrap_or(0);
        let max_maps = samples.iter().map(|x| x.2).max().unwrap_or(0);
        let total = |x: (f64, u64, u64)| x.1 as i64 + x.2 as i64;
        let growth = total(last) - total(warm);
        out["soak"] = json!({
            "seconds": cfg.soak_secs,
            "sample_every_s": cfg.soak_sample_secs.max(1),
            "first": {"t_s": first.0, "rss_without_rings_bytes": first.1, "bpf_map_bytes": first.2},
            "warm": {"t_s": warm.0, "rss_without_rings_bytes": warm.1, "bpf_map_bytes": warm.2},
            "last": {"t_s": last.0, "rss_without_rings_bytes": last.1, "bpf_map_bytes": last.2},
            "max": {"rss_without_rings_bytes": max_rss, "bpf_map_bytes": max_maps},
            "growth_bytes": growth,
            "growth_ratio": growth as f64 / total(warm).max(1) as f64,
            "growth_from_first_bytes": total(last) - total(first),
            "run": s,
        });
    }
    drop(nginx);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_rotate_the_modes_and_ratios_pair_runs_of_one_round() {
        // Each mode runs once per round, and first, second and last in turn.
        let orders: Vec<[&str; 3]> = (1..=4).map(round_order).collect();
        assert_eq!(orders[0], ["baseline", "floor", "agent"]);
        assert_eq!(orders[1], ["floor", "agent", "baseline"]);
        assert_eq!(orders[2], ["agent", "baseline", "floor"]);
        assert_eq!(orders[3], orders[0]);
        // The machine slows down by half from round 1 to round 2: each round's own ratio holds,
        // and a round missing a run gives no ratio.
        let run = |round: u64, mode: &str, rate: f64| json!({"round": round, "mode": mode, "req_per_s": rate});
        let runs = vec![
            run(1, "baseline", 100.0),
            run(1, "agent", 80.0),
            run(1, "floor", 90.0),
            run(2, "floor", 45.0),
            run(2, "agent", 40.0),
            run(2, "baseline", 50.0),
            run(3, "baseline", 70.0),
        ];
        assert_eq!(round_ratios(&runs, "agent", "baseline"), [0.8, 0.8]);
        let vs_floor = round_ratios(&runs, "agent", "floor");
        assert!(
            (vs_floor[0] - 80.0 / 90.0).abs() < 1e-12 && (vs_floor[1] - 40.0 / 45.0).abs() < 1e-12
        );
        // The ratio of the medians over all rounds would say 60 / 70 = 0.857.
        assert_eq!(median(round_ratios(&runs, "agent", "baseline")), 0.8);
    }

    #[test]
    fn parses_wrk_output() {
        let out = "Running 2s test @ http://127.0.0.1:1/index.html\n  1 threads and 32 connections\n  Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency   1.00ms  200.00us   5.00ms   90.00%\n    Req/Sec    30.00k     1.00k   32.00k    80.00%\n  60123 requests in 2.00s, 15.00MB read\n  Socket errors: connect 0, read 2, write 0, timeout 1\n  Non-2xx or 3xx responses: 5\nRequests/sec:  30061.50\nTransfer/sec:      7.50MB\n";
        let r = parse_wrk(out).unwrap_or_default();
        assert_eq!(r.requests, 60123);
        assert!((r.req_per_s - 30061.5).abs() < 1e-9);
        assert_eq!(r.socket_errors, 3);
        assert_eq!(r.non_2xx, 5);
        assert!(parse_wrk("nonsense").is_none());
    }

    #[test]
    fn numbers_in_the_exit_summary() {
        let s = "telegen: stopped. kernel events 1200 (ring drops 0); spans 600 (queue drops 3); exported spans 600 / points 9; dropped at export: spans 2, points 0; sequence gaps 4 (over the reorder budget 3; late events 1); parse errors 7; exchanges not paired 2; JSON lines written 5 (write errors 0)";
        assert_eq!(number_after(s, "sequence gaps"), Some(4));
        assert_eq!(number_after(s, "over the reorder budget"), Some(3));
        assert_eq!(number_after(s, "late events"), Some(1));
        assert_eq!(number_after(s, "parse errors"), Some(7));
        assert_eq!(number_after(s, "exchanges not paired"), Some(2));
        assert_eq!(number_after(s, "kernel events"), Some(1200));
        assert_eq!(number_after(s, "ring drops"), Some(0));
        assert_eq!(number_after(s, "queue drops"), Some(3));
        assert_eq!(number_after(s, "dropped at export: spans"), Some(2));
        assert_eq!(number_after(s, "absent"), None);
    }
}
