//! Auto-discovery: where Telegen runs and what each traced process is, as OpenTelemetry resource
//! attributes. [`Discovery`] does the host, cloud and Kubernetes-client setup once (bounded by the
//! cloud timeout), then answers [`Discovery::process_resource`] per pid from a bounded cache that
//! is invalidated when the pid's start time changes or the pid is gone. [`run_discover`] is the
//! `telegen discover` command. Nothing here fails hard: unreadable `/proc` entries, processes that
//! exit mid-read and broken metadata services each give one warning and a missing attribute.
//!
//! Keys without a semantic convention (kernel release, CPU count, VM, linkage, TLS library) are
//! prefixed `telegen.`.

pub mod cloud;
pub mod container;
pub mod elf;
pub mod host;
pub mod http;
pub mod k8s;
pub mod naming;
pub mod output;
pub mod process;
pub mod runtime;
pub mod services;
pub mod util;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use telegen_dataplane::signal::{AttrValue, Attrs};

pub use cloud::{CloudOptions, Provider};
pub use host::HostInfo;
pub use output::Report;
pub use services::{DiscoveredService, MatchedBy, ServiceKind};
pub use util::{attr_str, DiscoveryError};

use util::{set_attr, warn_once};

/// `telegen discover`: print what was found for the host and each process, then exit.
#[derive(Debug, Clone, clap::Args)]
pub struct DiscoverArgs {
    /// Print JSON (one document) instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Only these processes (repeatable); default: every process.
    #[arg(long = "pid", value_name = "PID")]
    pub pid: Vec<u32>,
    /// Skip the scan for listening databases and message brokers.
    #[arg(long)]
    pub no_services: bool,
    #[command(flatten)]
    pub env: DiscoveryFlags,
}

/// Where discovery looks (shared by `telegen discover` and `telegen run`).
#[derive(Debug, Clone, clap::Args)]
pub struct DiscoveryFlags {
    /// Where procfs is mounted (point it at a captured tree to replay fixtures).
    #[arg(long, value_name = "PATH", default_value = "/proc")]
    pub proc_root: PathBuf,
    /// Where sysfs is mounted (DMI strings decide which clouds are probed).
    #[arg(long, value_name = "PATH", default_value = "/sys")]
    pub sys_root: PathBuf,
    /// The host's /etc (os-release, machine-id, passwd).
    #[arg(long, value_name = "PATH", default_value = "/etc")]
    pub etc_root: PathBuf,
    /// Docker's data directory, for container names (config.v2.json).
    #[arg(long, value_name = "PATH", default_value = "/var/lib/docker")]
    pub docker_root: PathBuf,
    /// A kubeconfig whose current context names the API server: http:// (such as `kubectl
    /// proxy`) or https:// with its certificate-authority(-data) and a token or token file.
    /// Without it, the in-cluster service account is used when present.
    #[arg(long, value_name = "PATH", env = "TELEGEN_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// This node's Kubernetes name, to list only its pods (defaults to all pods).
    #[arg(long, value_name = "NAME", env = "TELEGEN_NODE_NAME")]
    pub node_name: Option<String>,
    /// Do not ask any cloud metadata service.
    #[arg(long)]
    pub no_cloud: bool,
    /// AWS instance metadata base URL (IMDSv2). Overriding any endpoint probes only the
    /// overridden providers.
    #[arg(long, value_name = "URL", env = "TELEGEN_AWS_METADATA_ENDPOINT")]
    pub aws_endpoint: Option<String>,
    /// GCP metadata server base URL.
    #[arg(long, value_name = "URL", env = "TELEGEN_GCP_METADATA_ENDPOINT")]
    pub gcp_endpoint: Option<String>,
    /// Azure instance metadata service base URL.
    #[arg(long, value_name = "URL", env = "TELEGEN_AZURE_METADATA_ENDPOINT")]
    pub azure_endpoint: Option<String>,
    /// Oracle Cloud instance metadata base URL.
    #[arg(long, value_name = "URL", env = "TELEGEN_ORACLE_METADATA_ENDPOINT")]
    pub oracle_endpoint: Option<String>,
    /// Probe every cloud's metadata service even when DMI is unreadable (micro-VMs, some
    /// containers). Off by default: without a DMI hint no link-local address is contacted.
    #[arg(long)]
    pub cloud_probe_without_dmi: bool,
    /// Budget for all cloud probes together, in milliseconds.
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 400,
        env = "TELEGEN_CLOUD_TIMEOUT_MS"
    )]
    pub cloud_timeout_ms: u64,
}

impl DiscoverArgs {
    /// The discovery options these flags describe.
    pub fn options(&self) -> DiscoveryOptions {
        self.env.options()
    }
}

impl DiscoveryFlags {
    /// The discovery options these flags describe.
    pub fn options(&self) -> DiscoveryOptions {
        DiscoveryOptions {
            proc_root: self.proc_root.clone(),
            sys_root: self.sys_root.clone(),
            etc_root: self.etc_root.clone(),
            docker_root: self.docker_root.clone(),
            kubeconfig: self.kubeconfig.clone(),
            node_name: self.node_name.clone(),
            cloud: CloudOptions {
                enabled: !self.no_cloud,
                aws_endpoint: self.aws_endpoint.clone(),
                gcp_endpoint: self.gcp_endpoint.clone(),
                azure_endpoint: self.azure_endpoint.clone(),
                oracle_endpoint: self.oracle_endpoint.clone(),
                probe_without_dmi: self.cloud_probe_without_dmi,
                timeout: Duration::from_millis(self.cloud_timeout_ms),
            },
            ..DiscoveryOptions::default()
        }
    }
}

/// How [`Discovery`] reads the machine.
#[derive(Debug, Clone)]
pub struct DiscoveryOptions {
    pub proc_root: PathBuf,
    pub sys_root: PathBuf,
    pub etc_root: PathBuf,
    pub docker_root: PathBuf,
    pub cloud: CloudOptions,
    pub kubeconfig: Option<PathBuf>,
    /// Use the in-cluster service account when `KUBERNETES_SERVICE_HOST` is set and no kubeconfig
    /// is given.
    pub in_cluster: bool,
    /// The service account directory for in-cluster access.
    pub service_account_dir: PathBuf,
    pub node_name: Option<String>,
    pub k8s_timeout: Duration,
    /// The most processes kept in the cache.
    pub cache_capacity: usize,
    /// How long a cached process is trusted before its start time in `/proc/PID/stat` is read
    /// again to tell a reused pid (the export core asks for every batch: at a few hundred
    /// batches a second, opening `stat` each time was most of its system time).
    pub recheck: Duration,
}

impl Default for DiscoveryOptions {
    fn default() -> Self {
        DiscoveryOptions {
            proc_root: "/proc".into(),
            sys_root: "/sys".into(),
            etc_root: "/etc".into(),
            docker_root: "/var/lib/docker".into(),
            cloud: CloudOptions::default(),
            kubeconfig: None,
            in_cluster: true,
            service_account_dir: "/var/run/secrets/kubernetes.io/serviceaccount".into(),
            node_name: None,
            k8s_timeout: Duration::from_secs(2),
            cache_capacity: 8192,
            recheck: Duration::from_secs(1),
        }
    }
}

struct CacheEntry {
    start_ticks: u64,
    /// When `start_ticks` was last confirmed.
    checked: Instant,
    attrs: Attrs,
    used: u64,
}

/// Host, cloud and Kubernetes context, plus a per-pid cache of process resources.
pub struct Discovery {
    opts: DiscoveryOptions,
    host: HostInfo,
    host_attrs: Attrs,
    k8s: Option<k8s::K8sClient>,
    cache: HashMap<u32, CacheEntry>,
    clock: u64,
}

impl Discovery {
    /// Reads the host, asks the clouds (concurrently, within `opts.cloud.timeout`), and sets up
    /// the Kubernetes client (without contacting it yet).
    pub fn new(opts: DiscoveryOptions) -> Self {
        let host = HostInfo::read(&opts.proc_root, &opts.sys_root, &opts.etc_root);
        let mut host_attrs = host.attrs();
        for (k, v) in cloud::detect(&host.dmi, &opts.cloud) {
            set_attr(&mut host_attrs, k, v);
        }
        let cfg = match &opts.kubeconfig {
            Some(path) => match util::read_string(path).and_then(|t| k8s::parse_kubeconfig(&t)) {
                Ok(c) => Some(c),
                Err(e) => {
                    warn_once(
                        "k8s:kubeconfig",
                        format!("kubeconfig {}: {e}", path.display()),
                    );
                    None
                }
            },
            None if opts.in_cluster => k8s::in_cluster(&opts.service_account_dir),
            None => None,
        };
        let node = opts
            .node_name
            .clone()
            .or_else(|| std::env::var("NODE_NAME").ok().filter(|n| !n.is_empty()));
        if let Some(n) = &node {
            util::push_str(&mut host_attrs, "k8s.node.name", n);
        }
        let k8s = cfg.and_then(|c| k8s::K8sClient::new(c, node, opts.k8s_timeout));
        Discovery {
            opts,
            host,
            host_attrs,
            k8s,
            cache: HashMap::new(),
            clock: 0,
        }
    }

    /// The host's (and cloud's) resource attributes.
    pub fn host_resource(&self) -> Attrs {
        self.host_attrs.clone()
    }

    /// What was read about the host.
    pub fn host_info(&self) -> &HostInfo {
        &self.host
    }

    /// Whether a Kubernetes API client is configured.
    pub fn has_kubernetes(&self) -> bool {
        self.k8s.is_some()
    }

    /// The resource attributes of one process (not including the host's). Cached per pid until
    /// the pid's start time changes, which is checked at most once per `opts.recheck`; a pid
    /// that is gone gets only `process.pid`.
    pub fn process_resource(&mut self, pid: u32) -> Attrs {
        self.clock += 1;
        if let Some(e) = self.cache.get_mut(&pid) {
            if e.checked.elapsed() < self.opts.recheck {
                e.used = self.clock;
                return e.attrs.clone();
            }
        }
        let start = match process::start_ticks(&self.opts.proc_root, pid) {
            Ok(s) => s,
            Err(_) => {
                self.cache.remove(&pid);
                return vec![("process.pid", AttrValue::Int(pid as i64))];
            }
        };
        if let Some(e) = self.cache.get_mut(&pid) {
            if e.start_ticks == start {
                e.used = self.clock;
                e.checked = Instant::now();
                return e.attrs.clone();
            }
        }
        let attrs = match self.read_process(pid) {
            Ok(a) => a,
            Err(e) => {
                log::debug!("process {pid}: {e}");
                self.cache.remove(&pid);
                return vec![("process.pid", AttrValue::Int(pid as i64))];
            }
        };
        if self.cache.len() >= self.opts.cache_capacity.max(1) {
            self.evict();
        }
        self.cache.insert(
            pid,
            CacheEntry {
                start_ticks: start,
                checked: Instant::now(),
                attrs: attrs.clone(),
                used: self.clock,
            },
        );
        attrs
    }

    /// Drops a pid from the cache (call on process exit).
    pub fn forget(&mut self, pid: u32) {
        self.cache.remove(&pid);
    }

    /// How many processes are cached.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    fn evict(&mut self) {
        // First the dead, then the least recently used eighth.
        let root = self.opts.proc_root.clone();
        self.cache
            .retain(|pid, _| root.join(pid.to_string()).exists());
        if self.cache.len() < self.opts.cache_capacity.max(1) {
            return;
        }
        let mut by_use: Vec<(u64, u32)> = self.cache.iter().map(|(p, e)| (e.used, *p)).collect();
        by_use.sort_unstable();
        let n = (by_use.len() / 8).max(1);
        for (_, pid) in by_use.into_iter().take(n) {
            self.cache.remove(&pid);
        }
    }

    fn read_process(&mut self, pid: u32) -> Result<Attrs, DiscoveryError> {
        let root = self.opts.proc_root.clone();
        let p = process::ProcInfo::read(&root, &self.opts.etc_root, pid)?;
        let mut attrs = p.attrs();
        let rt = runtime::detect(&root, &p);
        attrs.extend(rt.attrs());
        let c = container::read(&root, pid);
        naming::merge_into(&mut attrs, c.attrs());
        let pod = match (&mut self.k8s, &c.pod_uid) {
            (Some(k), Some(uid)) => k.pod(uid),
            _ => None,
        };
        if let Some(pod) = &pod {
            naming::merge_into(
                &mut attrs,
                pod.attrs(c.id.as_deref(), c.k8s_container_name.as_deref()),
            );
        }
        let docker_name = match (c.runtime, &c.id) {
            (Some("docker"), Some(id)) => docker_container_name(&self.opts.docker_root, id),
            _ => None,
        };
        if let Some(n) = &docker_name {
            util::push_str(&mut attrs, "container.name", n);
        }
        let env = process::environ(&root, pid);
        let svc = naming::service_attrs(&naming::NamingInput {
            env: &env,
            pod: pod.as_ref(),
            container_id: c.id.as_deref(),
            k8s_container_name: c.k8s_container_name.as_deref(),
            container_name: docker_name.as_deref(),
            exe_name: &p.name(),
            cmdline: &p.cmdline,
            host_name: &self.host.hostname,
            pid,
            start_ticks: p.start_ticks,
        });
        naming::merge_into(&mut attrs, svc);
        Ok(attrs)
    }

    /// Databases and message brokers listening on this host.
    pub fn services(&self) -> Vec<DiscoveredService> {
        services::discover(&self.opts.proc_root, &self.opts.etc_root, &[])
    }

    /// The options this discovery runs with.
    pub fn options(&self) -> &DiscoveryOptions {
        &self.opts
    }
}

/// Docker's name for a container, from `<docker_root>/containers/<id>/config.v2.json`.
pub fn docker_container_name(docker_root: &Path, id: &str) -> Option<String> {
    let p = docker_root
        .join("containers")
        .join(id)
        .join("config.v2.json");
    let text = std::fs::read_to_string(p).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let n = v.get("Name")?.as_str()?.trim_start_matches('/');
    (!n.is_empty()).then(|| n.to_string())
}

/// Runs discovery as `args` describe and returns the report.
pub fn discover_report(args: &DiscoverArgs) -> Report {
    let mut d = Discovery::new(args.options());
    let explicit = !args.pid.is_empty();
    let pids = if explicit {
        args.pid.clone()
    } else {
        services::pids(&args.env.proc_root)
    };
    let mut processes = Vec::new();
    for pid in pids {
        if !explicit && is_kernel_thread(&args.env.proc_root, pid) {
            continue;
        }
        let a = d.process_resource(pid);
        if a.len() > 1 || explicit {
            processes.push((pid, a));
        }
    }
    let services = if args.no_services {
        Vec::new()
    } else {
        services::discover(&args.env.proc_root, &args.env.etc_root, &args.pid)
    };
    Report {
        host: d.host_resource(),
        processes,
        services,
    }
}

fn is_kernel_thread(proc_root: &Path, pid: u32) -> bool {
    std::fs::read(proc_root.join(pid.to_string()).join("cmdline"))
        .map(|c| c.is_empty())
        .unwrap_or(true)
}

/// `telegen discover`: discovers and prints a table, or JSON with `--json`, to stdout.
pub fn run_discover(args: &DiscoverArgs) -> anyhow::Result<()> {
    let report = discover_report(args);
    let text = if args.json {
        serde_json::to_string_pretty(&report.to_json())?
    } else {
        report.to_table()
    };
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        out.write_all(b"\n")?;
    }
    Ok(())
}
