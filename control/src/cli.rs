//! Command-line flags. Every flag is documented (the doc comments are `--help`), `OTEL_*`
//! environment variables are honoured where the OpenTelemetry specification defines one, and
//! unknown or contradictory input is rejected with a message that names the problem.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::discovery::{DiscoverArgs, DiscoveryFlags};

/// Telegen: an eBPF telemetry agent. Traces HTTP/1.1, HTTP/2, gRPC and DNS on every process of
/// this host from the kernel (syscall tracepoints, OpenSSL uprobes for TLS plaintext; no kprobes,
/// no change to the applications) and exports spans and RED metrics over OTLP/HTTP (with no
/// collector, as JSON lines in a file), with a live summary on the terminal.
#[derive(Debug, Parser)]
#[command(name = "telegen", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Trace this host and export what is seen (needs root, BTF and tracefs).
    Run(Box<RunArgs>),
    /// Print what auto-discovery finds for the host and each process, then exit.
    Discover(Box<DiscoverArgs>),
}

/// Parse a size such as `16M`, `512K`, `1G` or a plain number of bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1u64 << 10),
        Some((i, 'm' | 'M')) => (&s[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a size (examples: 16M, 512K, 1048576)"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{s}` is too large"))
}

/// A list of cores, as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreList(pub Vec<usize>);

/// Parse a core list such as `0,2-3`.
pub fn parse_cores(s: &str) -> Result<CoreList, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("`{part}` is not a core number or range (examples: 0, 1-3)");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (
                    a.trim().parse().map_err(|_| bad())?,
                    b.trim().parse().map_err(|_| bad())?,
                );
                if a > b {
                    return Err(format!("core range `{part}` is backwards"));
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().map_err(|_| bad())?),
        }
    }
    if out.is_empty() {
        return Err("no cores listed".into());
    }
    Ok(CoreList(out))
}

/// A list of ports, as given on the command line (may be empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortList(pub Vec<u16>);

/// Parse a port list such as `53,5353`; an empty string is the empty list.
pub fn parse_ports(s: &str) -> Result<PortList, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.parse::<u16>() {
            Ok(0) | Err(_) => {
                return Err(format!("`{part}` is not a port (1-65535)"));
            }
            Ok(p) if !out.contains(&p) => out.push(p),
            Ok(_) => {}
        }
    }
    Ok(PortList(out))
}

/// `telegen run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// OTLP/HTTP collector base URL (spans go to `<URL>/v1/traces`, metrics to `<URL>/v1/metrics`).
    /// Headers from OTEL_EXPORTER_OTLP_HEADERS (k=v,k2=v2) are sent with every request.
    /// Without an endpoint, telegen writes the OTLP data as JSON lines (see --output).
    #[arg(long, value_name = "URL", env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,

    /// Extra header for the collector (repeatable, `key=value`), added to OTEL_EXPORTER_OTLP_HEADERS.
    #[arg(long = "otlp-header", value_name = "KEY=VALUE")]
    pub otlp_headers: Vec<String>,

    /// Write every export as OTLP/JSON lines to this file (default without an endpoint:
    /// ./telegen-otlp.jsonl).
    #[arg(long, value_name = "PATH")]
    pub output: Option<PathBuf>,

    /// Do not write the JSON-lines file when no endpoint is set.
    #[arg(long, conflicts_with = "output")]
    pub no_output: bool,

    /// Seconds between live summaries on the terminal [default: 5].
    #[arg(long, value_name = "SECS", conflicts_with = "no_summary", value_parser = clap::value_parser!(u64).range(1..))]
    pub summary_interval: Option<u64>,

    /// No live summary.
    #[arg(long)]
    pub no_summary: bool,

    /// Cores that run a shard each (list or ranges, e.g. `0,1` or `0-3`). Default: every core
    /// this process may use.
    #[arg(long, value_name = "LIST", value_parser = parse_cores)]
    pub shard_cores: Option<CoreList>,

    /// Core the export thread is pinned to. Default: the last shard core.
    #[arg(long, value_name = "CORE")]
    pub export_core: Option<usize>,

    /// Milliseconds between two drains of the kernel rings by a busy shard (1-100). Each drain
    /// is a wake-up of the shard thread; a longer interval costs less CPU and adds that much
    /// delay before a span reaches the export batch. A shard draining more than 64 records per
    /// ms drains every ms; a ring filling past half its size (1 MiB at most) wakes its shard
    /// before the interval is up.
    #[arg(long, value_name = "MS", default_value_t = telegen_dataplane::runtime::DEFAULT_DRAIN_INTERVAL_MS, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub drain_interval_ms: u64,

    /// Total kernel ring-buffer memory (e.g. 16M), split over the possible CPUs, each ring
    /// rounded down to a power of two (so 16M on 3 CPUs is 3 rings of 4 MiB).
    #[arg(long, value_name = "SIZE", default_value = "16M", value_parser = parse_size)]
    pub ring_bytes: u64,

    /// UDP ports whose datagrams are traced as DNS (comma separated, at most 64). A datagram
    /// counts when it is sent to or received from one of them, or on a local one (a DNS server).
    /// `--dns-ports ''` turns UDP tracing off. DNS over TCP is recognised on any port.
    #[arg(long, value_name = "PORTS", default_value = "53", value_parser = parse_ports)]
    pub dns_ports: PortList,

    /// Do not attach the OpenSSL uprobes (SSL_read/SSL_write...): TLS connections are then seen
    /// only as encrypted bytes, which are recognised and skipped.
    #[arg(long)]
    pub no_tls: bool,

    /// Entries of the kernel's connection table (an LRU hash, about 150 bytes of kernel memory
    /// each, allocated up front): the traced processes' sockets, traced or found not to be
    /// (Unix, netlink and other non-TCP ones; UDP ones under `--dns-ports ''`). Raise it for
    /// hosts with more open sockets than this; a socket evicted from a full table is found again
    /// on its next read or write.
    #[arg(long, value_name = "N", default_value_t = 1 << 18)]
    pub conn_table_entries: u32,

    /// Connections each shard tracks at most (user-space flow table, CLOCK eviction). Memory
    /// follows the connections held, not this bound: about 1.2 KiB for an HTTP/1.1
    /// connection and 6 KiB for an HTTP/2 one (its HPACK tables), parser state included.
    #[arg(long, value_name = "N", default_value_t = 1 << 16)]
    pub flow_table_entries: usize,

    /// Payload bytes copied from each socket syscall (1-4096).
    #[arg(long, value_name = "BYTES", default_value_t = 1024)]
    pub capture_bytes: u32,

    /// When a syscall moved more than --capture-bytes, also copy its last BYTES (0-1024; 0:
    /// only the first bytes). The end is where a large HTTP/2 response carries its trailers
    /// (gRPC status), and where a large HTTP/1.1 chunked body shows its terminator (so its span
    /// ends there, not at the next request). DNS does not use it.
    #[arg(long, value_name = "BYTES", default_value_t = 256)]
    pub tail_bytes: u32,

    /// Trace only this process and its descendants (repeatable).
    #[arg(long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,

    /// Trace only processes with this executable name (repeatable; the kernel compares the
    /// first 15 bytes).
    #[arg(long = "exe", value_name = "NAME")]
    pub exes: Vec<String>,

    /// Address of the Prometheus endpoint with telegen's own counters (GET /metrics)
    /// [default: 127.0.0.1:9464].
    #[arg(long, value_name = "ADDR", conflicts_with = "no_prometheus")]
    pub prometheus_addr: Option<SocketAddr>,

    /// No Prometheus endpoint.
    #[arg(long)]
    pub no_prometheus: bool,

    /// Most spans per OTLP request.
    #[arg(
        long,
        value_name = "N",
        env = "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
        default_value_t = 512
    )]
    pub batch_spans: usize,

    /// Most metric points per OTLP request.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub batch_points: usize,

    /// Milliseconds between metric exports.
    #[arg(
        long,
        value_name = "MS",
        env = "OTEL_METRIC_EXPORT_INTERVAL",
        default_value_t = 10_000
    )]
    pub metrics_interval_ms: u64,

    /// Compression of OTLP request bodies: `gzip`, `none`, or `auto`: gzip, except to a
    /// collector on this host (a loopback address or `localhost` in the endpoint), where gzip
    /// costs the agent CPU (about half of the export thread's) and saves nothing.
    #[arg(
        long,
        value_name = "KIND",
        env = "OTEL_EXPORTER_OTLP_COMPRESSION",
        default_value = "auto"
    )]
    pub compression: Compression,

    /// Stop by itself after this many seconds (default: run until SIGINT/SIGTERM).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<u64>,

    /// Benchmark mode for the perf harness's overhead floor: attach a program that returns at
    /// once to every tracepoint the tracer attaches at start (syscalls and sched; not the TLS
    /// uprobes), wait for SIGINT/SIGTERM (or --duration), detach, exit.
    /// Nothing is traced or exported.
    #[arg(long, hide = true)]
    pub floor: bool,

    #[command(flatten)]
    pub discovery: DiscoveryFlags,
}

/// `--compression` / `OTEL_EXPORTER_OTLP_COMPRESSION`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Compression {
    Gzip,
    None,
    Auto,
}

impl Compression {
    /// Whether bodies sent to `endpoint` are gzipped.
    pub fn gzip_for(self, endpoint: Option<&str>) -> bool {
        match self {
            Compression::Gzip => true,
            Compression::None => false,
            Compression::Auto => !endpoint.is_some_and(endpoint_is_loopback),
        }
    }
}

/// The host of an OTLP endpoint (`scheme://host[:port][/path]`, with or without the scheme) is
/// `localhost` or a loopback address.
pub fn endpoint_is_loopback(endpoint: &str) -> bool {
    let rest = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, r)| r)
        .trim();
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_cores() {
        assert_eq!(parse_size("16M").unwrap(), 16 << 20);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999G").is_err());
        assert_eq!(parse_cores("0,2-3").unwrap().0, vec![0, 2, 3]);
        assert!(parse_cores("3-1").is_err());
        assert!(parse_cores("x").is_err());
        assert_eq!(parse_ports("53, 5353,53").unwrap().0, vec![53, 5353]);
        assert_eq!(parse_ports("").unwrap().0, Vec::<u16>::new());
        assert!(parse_ports("0").is_err());
        assert!(parse_ports("70000").is_err());
    }

    #[test]
    fn contradictions_are_rejected() {
        assert!(Cli::try_parse_from(["telegen", "run", "--output", "a", "--no-output"]).is_err());
        assert!(Cli::try_parse_from(["telegen", "run", "--bogus"]).is_err());
        assert!(Cli::try_parse_from([
            "telegen",
            "run",
            "--no-prometheus",
            "--prometheus-addr",
            "127.0.0.1:1"
        ])
        .is_err());
        assert!(
            Cli::try_parse_from(["telegen", "run", "--no-summary", "--summary-interval", "2"])
                .is_err()
        );
        assert!(Cli::try_parse_from(["telegen", "run", "--ring-bytes", "many"]).is_err());
        let ok = Cli::try_parse_from(["telegen", "run", "--exe", "nginx", "--pid", "1"]).unwrap();
        let Command::Run(r) = ok.command else {
            panic!("run")
        };
        assert_eq!(r.exes, vec!["nginx"]);
    }

    #[test]
    fn compression_is_auto_unless_asked() {
        let run = |args: &[&str]| match Cli::try_parse_from(args).map(|c| c.command) {
            Ok(Command::Run(r)) => Ok(r.compression),
            Ok(_) => panic!("run"),
            Err(e) => Err(e),
        };
        // The environment variable is covered by clap's `env`; flags are checked here so
        // that the test does not depend on (or change) the environment it runs in.
        if std::env::var_os("OTEL_EXPORTER_OTLP_COMPRESSION").is_none() {
            assert_eq!(run(&["telegen", "run"]).ok(), Some(Compression::Auto));
        }
        assert_eq!(
            run(&["telegen", "run", "--compression", "none"]).ok(),
            Some(Compression::None)
        );
        assert!(run(&["telegen", "run", "--compression", "zstd"]).is_err());
    }

    /// `auto` gzips unless the collector is on this host; `gzip` and `none` are as asked.
    #[test]
    fn auto_compression_skips_gzip_only_for_a_collector_on_this_host() {
        for local in [
            "http://127.0.0.1:4318",
            "http://localhost:4318/",
            "https://LOCALHOST",
            "127.0.0.2:4318",
            "http://[::1]:4318/v1/traces",
            "http://user:pw@127.0.0.1:4318",
        ] {
            assert!(endpoint_is_loopback(local), "{local}");
            assert!(!Compression::Auto.gzip_for(Some(local)), "{local}");
            assert!(Compression::Gzip.gzip_for(Some(local)), "{local}");
        }
        for remote in [
            "http://10.0.0.5:4318",
            "https://collector.example.com",
            "http://[2001:db8::1]:4318",
            "http://localhost.example.com:4318",
            "http://127.0.0.1.example.com",
            "",
        ] {
            assert!(!endpoint_is_loopback(remote), "{remote}");
            assert!(Compression::Auto.gzip_for(Some(remote)), "{remote}");
            assert!(!Compression::None.gzip_for(Some(remote)), "{remote}");
        }
        assert!(Compression::Auto.gzip_for(None));
    }
}
