//! The real agent and real servers, for integration tests: build and start `telegen run` as a
//! child process, start nginx (Debian's) on a free loopback port, run Python scripts. Every
//! process started here is killed and reaped on drop, whatever the test did.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// Tests that start an agent run one at a time (each traces the whole host's syscalls).
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// True when BPF is usable. Under `CI=true` a missing prerequisite fails the test loudly;
/// elsewhere the test prints that it was skipped and why.
pub fn require_bpf() -> bool {
    match telegen_bpf::preflight() {
        Ok(()) => true,
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("BPF unavailable under CI=true: {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED: BPF unavailable: {e}");
            false
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Path of the `telegen` binary, built once per test process.
pub fn telegen_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "-p", "telegen", "--bin", "telegen"])
            .current_dir(workspace_root())
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building telegen failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("target"));
        let bin = target.join("debug").join("telegen");
        assert!(bin.exists(), "{} not found after build", bin.display());
        bin
    })
    .clone()
}

/// A free TCP port on 127.0.0.1 (bound and released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A child process killed and reaped on drop.
#[derive(Debug)]
pub struct Proc {
    pub child: Child,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Wait until something accepts connections on 127.0.0.1:port.
pub fn wait_port(port: u16, timeout: Duration) {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listening on 127.0.0.1:{port} after {timeout:?}");
}

/// What an [`Nginx`] listens on besides plain HTTP/1.1, and its workers.
#[derive(Debug, Clone, Copy, Default)]
pub struct NginxOptions {
    /// HTTP/2 without TLS, with prior knowledge (`curl --http2-prior-knowledge`).
    pub h2c: bool,
    /// TLS (OpenSSL) with a self-signed certificate, HTTP/1.1 and HTTP/2 by ALPN.
    pub tls: bool,
    /// Worker processes (0: one).
    pub workers: u32,
    /// Each worker pinned to its own CPU (`worker_cpu_affinity auto`).
    pub pin_workers: bool,
}

/// nginx from Debian serving a temp directory on free loopback ports.
#[derive(Debug)]
pub struct Nginx {
    pub proc: Proc,
    /// Plain HTTP/1.1.
    pub port: u16,
    /// h2c with prior knowledge, when asked for.
    pub h2c_port: Option<u16>,
    /// TLS, when asked for.
    pub tls_port: Option<u16>,
    pub dir: PathBuf,
}

/// A self-signed certificate and key for `localhost` / 127.0.0.1, made with the openssl CLI.
pub fn self_signed_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl (apt-get install -y openssl)");
    assert!(
        out.status.success(),
        "openssl req failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

impl Nginx {
    pub fn start() -> Nginx {
        Self::start_with(NginxOptions::default())
    }

    pub fn start_with(opts: NginxOptions) -> Nginx {
        let bin = ["/usr/sbin/nginx", "/usr/bin/nginx"].iter().map(PathBuf::from).find(|p| p.exists()).unwrap_or_else(|| {
            panic!("nginx not found: install it with `apt-get install -y nginx-light` (the README's test command does)")
        });
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("telegen-nginx-{}-{port}", std::process::id()));
        std::fs::create_dir_all(dir.join("html")).expect("temp dir");
        std::fs::write(dir.join("html/index.html"), "hello from nginx\n").expect("index");
        let h2c_port = opts.h2c.then(free_port);
        let tls_port = opts.tls.then(free_port);
        let mut listen = format!("listen 127.0.0.1:{port};");
        if let Some(p) = h2c_port {
            listen.push_str(&format!(" listen 127.0.0.1:{p} http2;"));
        }
        if let Some(p) = tls_port {
            let (cert, key) = self_signed_cert(&dir);
            listen.push_str(&format!(
                " listen 127.0.0.1:{p} ssl http2; ssl_certificate {}; ssl_certificate_key {};",
                cert.display(),
                key.display()
            ));
        }
        let workers = format!(
            "worker_processes {};\n{}",
            opts.workers.max(1),
            if opts.pin_workers {
                "worker_cpu_affinity auto;\n"
            } else {
                ""
            }
        );
        let conf = format!(
            "{workers}daemon off;\nerror_log {d}/error.log;\npid {d}/nginx.pid;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n access_log off;\n client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n\
              fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
              keepalive_requests 10000;\n\
              server {{ {listen} root {d}/html;\n\
               location /api/ {{ default_type text/plain; return 200 \"api ok\\n\"; }}\n\
               location = /fail {{ return 503; }}\n }}\n}}\n",
            d = dir.display()
        );
        std::fs::write(dir.join("nginx.conf"), conf).expect("conf");
        let child = Command::new(bin)
            .args([
                "-p",
                &dir.to_string_lossy(),
                "-c",
                &dir.join("nginx.conf").to_string_lossy(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let proc = Proc { child };
        for p in [Some(port), h2c_port, tls_port].into_iter().flatten() {
            wait_port(p, Duration::from_secs(10));
        }
        Nginx {
            proc,
            port,
            h2c_port,
            tls_port,
            dir,
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // Master first (it takes its workers down on SIGQUIT/kill of the group).
        // SAFETY: sending a signal to our own child's pid.
        unsafe { libc::kill(self.proc.pid() as i32, libc::SIGTERM) };
        let _ = self.proc.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Run `curl` and return its stdout; panics with stderr on failure.
pub fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(args)
        .output()
        .expect("curl (apt-get install -y curl)");
    assert!(
        out.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run a Python script to completion and return its stdout; panics with stderr on failure.
pub fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Start a Python script in the background.
pub fn python_bg(script: &str, args: &[&str]) -> Proc {
    let child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .stdout(Stdio::null())
        .spawn()
        .expect("python3");
    Proc { child }
}

/// `telegen run` as a child process.
#[derive(Debug)]
pub struct Agent {
    proc: Proc,
    stderr: std::sync::Arc<Mutex<String>>,
}

impl Agent {
    /// Start the agent with these extra flags and wait until its programs are attached.
    pub fn start(args: &[String]) -> Agent {
        Agent::start_env(args, &[])
    }

    /// [`Agent::start`] with these variables added to its environment.
    pub fn start_env(args: &[String], env: &[(&str, &str)]) -> Agent {
        let mut child = Command::new(telegen_bin())
            .arg("run")
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start telegen");
        let stderr = child.stderr.take().expect("piped");
        let log = std::sync::Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("telegen: tracing") {
                    let _ = tx.send(());
                }
                let mut l = sink.lock().unwrap_or_else(|e| e.into_inner());
                l.push_str(&line);
                l.push('\n');
            }
        });
        let mut agent = Agent {
            proc: Proc { child },
            stderr: log,
        };
        if rx.recv_timeout(Duration::from_secs(60)).is_err() {
            let _ = agent.proc.child.kill();
            let _ = agent.proc.child.wait();
            std::thread::sleep(Duration::from_millis(100));
            panic!("agent did not start:\n{}", agent.log());
        }
        agent
    }

    pub fn log(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// SIGTERM, then wait (bounded) for a clean exit; returns the agent's stderr.
    pub fn stop(mut self) -> String {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.proc.pid() as i32, libc::SIGTERM) };
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.proc.child.try_wait().expect("wait") {
                std::thread::sleep(Duration::from_millis(50));
                let log = self.log();
                assert!(status.success(), "agent exited with {status}:\n{log}");
                return log;
            }
            assert!(
                Instant::now() < end,
                "agent did not stop within 60 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The agent exporting to the OTLP receiver at `endpoint` (no summary, no JSON lines, metrics
/// every 500 ms), tracing the processes `pids` (and their children); `extra` flags are added,
/// and without a `--prometheus-addr` among them the Prometheus endpoint is off.
pub fn otlp_agent(endpoint: &str, pids: &[u32], extra: &[String]) -> Agent {
    otlp_agent_env(endpoint, pids, extra, &[])
}

/// [`otlp_agent`] with these variables added to the agent's environment.
pub fn otlp_agent_env(
    endpoint: &str,
    pids: &[u32],
    extra: &[String],
    env: &[(&str, &str)],
) -> Agent {
    let mut args: Vec<String> = [
        "--otlp-endpoint",
        endpoint,
        "--no-summary",
        "--no-output",
        "--metrics-interval-ms",
        "500",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if !extra.iter().any(|a| a == "--prometheus-addr") {
        args.push("--no-prometheus".into());
    }
    for p in pids {
        args.push("--pid".into());
        args.push(p.to_string());
    }
    args.extend(extra.iter().cloned());
    Agent::start_env(&args, env)
}

/// Child pids of a process (nginx workers), from /proc.
pub fn children(pid: u32) -> Vec<u32> {
    let path = format!("/proc/{pid}/task/{pid}/children");
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// The answer to `GET /metrics` (status line and headers, then the body) from the agent's
/// Prometheus endpoint on 127.0.0.1:port.
pub fn scrape_prometheus(port: u16) -> String {
    try_scrape_prometheus(port).expect("prometheus endpoint")
}

/// The whole answer (status line, headers, body) to `GET /metrics` on 127.0.0.1:port, or why
/// there was none (for callers that must go on without it, such as the perf harness).
pub fn try_scrape_prometheus(port: u16) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body)
}

/// Sum of every sample of the metric family `name` (all label sets) in a Prometheus body.
/// Assert that each of these self-telemetry counters is 0 in a Prometheus scrape.
pub fn assert_prom_zero(body: &str, names: &[&str]) {
    for name in names {
        assert_eq!(prom_value(body, name), 0, "{name} is not 0\n{body}");
    }
}

pub fn prom_value(body: &str, name: &str) -> u64 {
    body.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}
