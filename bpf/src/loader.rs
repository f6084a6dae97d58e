//! The one place Telegen talks to the kernel's BPF subsystem.
//!
//! Lifecycle: [`preflight`] names what is missing (root/capabilities, BTF, tracefs) before
//! anything is loaded; [`Tracer::start`] opens the object, sets the `const volatile` knobs and
//! map sizes, loads it (verifier), creates one ring buffer per possible CPU, fills the process
//! filter, and attaches every tracepoint program, naming the hook that failed (the OpenSSL uprobe
//! programs are attached per library file by [`crate::TlsManager`]). Dropping the [`Tracer`]
//! detaches every link and closes every map and program: nothing is pinned, nothing outlives it.

use std::collections::{HashMap, HashSet};
use std::mem::{ManuallyDrop, MaybeUninit};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{Link, MapCore, MapFlags, MapHandle, MapType, OpenObject};

use crate::abi::{self, Stats};
use crate::skel::{TelegenSkel, TelegenSkelBuilder};

/// What went wrong on the kernel side, with what a user needs to fix it.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[error("telegen must run as root or with CAP_BPF, CAP_PERFMON and CAP_SYS_RESOURCE (missing: {missing})")]
    Privileges { missing: String },
    #[error(
        "kernel BTF not found at {path}: the kernel must be built with CONFIG_DEBUG_INFO_BTF=y"
    )]
    NoBtf { path: String },
    #[error("tracefs is not mounted (looked for {path}); mount it with `mount -t tracefs tracefs /sys/kernel/tracing`")]
    NoTracefs { path: String },
    #[error("invalid setting {name}={value}: {why}")]
    Invalid {
        name: &'static str,
        value: u64,
        why: &'static str,
    },
    #[error("{step} failed: {source}")]
    Step {
        step: String,
        #[source]
        source: libbpf_rs::Error,
    },
    #[error("could not attach {hook}: {source}")]
    Attach {
        hook: String,
        #[source]
        source: libbpf_rs::Error,
    },
}

pub(crate) fn step(step: impl Into<String>) -> impl FnOnce(libbpf_rs::Error) -> BpfError {
    let step = step.into();
    move |source| BpfError::Step { step, source }
}

/// Check privileges, BTF and tracefs before touching BPF.
pub fn preflight() -> Result<(), BpfError> {
    // Privileges first: without them tracefs may merely look absent.
    let missing = missing_capabilities();
    if !missing.is_empty() {
        return Err(BpfError::Privileges {
            missing: missing.join(", "),
        });
    }
    let btf = "/sys/kernel/btf/vmlinux";
    if !Path::new(btf).exists() {
        return Err(BpfError::NoBtf { path: btf.into() });
    }
    let tracefs = [
        "/sys/kernel/tracing/events/syscalls",
        "/sys/kernel/debug/tracing/events/syscalls",
    ];
    if !tracefs.iter().any(|p| Path::new(p).exists()) {
        return Err(BpfError::NoTracefs {
            path: tracefs[0].into(),
        });
    }
    let missing = missing_capabilities();
    if !missing.is_empty() {
        return Err(BpfError::Privileges {
            missing: missing.join(", "),
        });
    }
    Ok(())
}

/// Capabilities needed to load and attach tracepoint programs that are not in effect.
fn missing_capabilities() -> Vec<&'static str> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_SYS_RESOURCE: u32 = 24;
    const CAP_PERFMON: u32 = 38;
    const CAP_BPF: u32 = 39;
    let has = |c: u32| eff & (1u64 << c) != 0;
    if has(CAP_SYS_ADMIN) {
        return Vec::new();
    }
    let mut missing = Vec::new();
    for (cap, name) in [
        (CAP_BPF, "CAP_BPF"),
        (CAP_PERFMON, "CAP_PERFMON"),
        (CAP_SYS_RESOURCE, "CAP_SYS_RESOURCE"),
    ] {
        if !has(cap) {
            missing.push(name);
        }
    }
    missing
}

/// Which processes to trace. Empty = every process (but the agent itself).
#[derive(Debug, Clone, Default)]
pub struct ProcessFilter {
    pub pids: Vec<u32>,
    /// Executable names (matched against the kernel's 15-byte `comm`).
    pub names: Vec<String>,
}

impl ProcessFilter {
    pub fn is_empty(&self) -> bool {
        self.pids.is_empty() && self.names.is_empty()
    }
}

/// Knobs applied before load.
#[derive(Debug, Clone)]
pub struct TracerOptions {
    /// Payload bytes copied per syscall (1..=MAX_CAPTURE).
    pub capture_bytes: u32,
    /// When a syscall moved more than `capture_bytes`, this many of its last bytes are copied
    /// too, after the prefix (0..=MAX_TAIL; 0: prefix only). The end of a message is where a
    /// large HTTP/2 response keeps its trailers and a chunked body its last chunk.
    pub tail_bytes: u32,
    /// Total bytes of ring buffer, split evenly over the possible CPUs.
    pub ring_bytes_total: u64,
    /// Connection table (LRU) entries.
    pub conn_table_entries: u32,
    /// A consumer wakeup is forced when this many bytes are pending in a ring.
    pub wakeup_bytes: u64,
    pub filter: ProcessFilter,
    /// Load the OpenSSL uprobe programs (attached per library by [`crate::TlsManager`]) and let
    /// the syscall path tie sockets to `SSL*`s. Off: the programs are not even loaded.
    pub tls: bool,
    /// UDP ports whose datagrams are traced (DNS: 53), at most [`abi::MAX_UDP_PORTS`], none 0.
    /// A datagram is reported when its remote port (a client sending to or receiving from a
    /// server) or its socket's local port (a traced server) is listed; other UDP traffic costs
    /// a map lookup per syscall and no ring record. Empty: UDP sockets are not tracked at all.
    /// (CLI: `--dns-ports`, comma separated; `--dns-ports ''` turns UDP tracing off.)
    pub udp_ports: Vec<u16>,
}

impl Default for TracerOptions {
    fn default() -> Self {
        Self {
            capture_bytes: 1024,
            tail_bytes: 256,
            ring_bytes_total: 16 << 20,
            conn_table_entries: 1 << 18,
            wakeup_bytes: 1 << 20,
            filter: ProcessFilter::default(),
            tls: true,
            udp_ports: vec![53],
        }
    }
}

/// One per-CPU ring, owned by whoever drains it.
#[derive(Debug)]
pub struct CpuRing {
    pub cpu: u32,
    pub map: MapHandle,
}

/// Loaded and attached programs and their maps. Drop detaches everything.
pub struct Tracer {
    links: Vec<(String, Link)>,
    skel: ManuallyDrop<TelegenSkel<'static>>,
    // Referenced by `skel`; dropped after it (see Drop).
    _storage: Box<MaybeUninit<OpenObject>>,
    ring_bytes_per_cpu: u32,
    possible_cpus: usize,
    tls: bool,
    filter_enabled: bool,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer")
            .field("links", &self.links.len())
            .field("ring_bytes_per_cpu", &self.ring_bytes_per_cpu)
            .finish()
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        self.links.clear();
        // SAFETY: `skel` is dropped exactly once, here, before `_storage` (which it borrows) is
        // dropped by the compiler-generated field drops that follow.
        unsafe { ManuallyDrop::drop(&mut self.skel) };
    }
}

/// Round down to a power of two, at least one page.
fn ring_size(total: u64, cpus: usize) -> Result<u32, BpfError> {
    let per = total / cpus.max(1) as u64;
    if per < 4096 {
        return Err(BpfError::Invalid {
            name: "ring-bytes",
            value: total,
            why: "leaves less than one 4 KiB page of ring per CPU",
        });
    }
    let p = 1u64 << (63 - per.leading_zeros());
    u32::try_from(p.min(1 << 30)).map_err(|_| BpfError::Invalid {
        name: "ring-bytes",
        value: total,
        why: "too large",
    })
}

impl Tracer {
    /// Open, configure, load, create rings, fill the filter, attach.
    pub fn start(opts: &TracerOptions) -> Result<(Tracer, Vec<CpuRing>), BpfError> {
        if opts.capture_bytes == 0 || opts.capture_bytes > abi::MAX_CAPTURE {
            return Err(BpfError::Invalid {
                name: "capture-bytes",
                value: opts.capture_bytes.into(),
                why: "must be between 1 and 4096",
            });
        }
        if opts.tail_bytes > abi::MAX_TAIL {
            return Err(BpfError::Invalid {
                name: "tail-bytes",
                value: opts.tail_bytes.into(),
                why: "must be at most 1024",
            });
        }
        if opts.conn_table_entries < 1024 {
            return Err(BpfError::Invalid {
                name: "conn-table-entries",
                value: opts.conn_table_entries.into(),
                why: "must be at least 1024",
            });
        }
        if opts.udp_ports.len() > abi::MAX_UDP_PORTS {
            return Err(BpfError::Invalid {
                name: "dns-ports",
                value: opts.udp_ports.len() as u64,
                why: "at most 64 UDP ports",
            });
        }
        if opts.udp_ports.contains(&0) {
            return Err(BpfError::Invalid {
                name: "dns-ports",
                value: 0,
                why: "port 0 is not a port",
            });
        }
        let cpus = libbpf_rs::num_possible_cpus().map_err(step("counting possible CPUs"))?;
        if cpus as u32 > abi::MAX_CPUS {
            return Err(BpfError::Invalid {
                name: "possible-cpus",
                value: cpus as u64,
                why: "more than 1024 CPUs",
            });
        }
        let per_cpu = ring_size(opts.ring_bytes_total, cpus)?;

        let mut storage: Box<MaybeUninit<OpenObject>> = Box::new(MaybeUninit::uninit());
        // SAFETY: the skeleton borrows `storage`, a heap allocation that never moves and that
        // Tracer drops only after the skeleton (see `impl Drop for Tracer`).
        let storage_ref: &'static mut MaybeUninit<OpenObject> =
            unsafe { &mut *(storage.as_mut() as *mut MaybeUninit<OpenObject>) };
        let mut open = TelegenSkelBuilder::default()
            .open(storage_ref)
            .map_err(step("opening the BPF object"))?;

        let ro = open
            .maps
            .rodata_data
            .as_deref_mut()
            .ok_or_else(|| BpfError::Step {
                step: "setting knobs (no .rodata in the BPF object)".into(),
                source: libbpf_rs::Error::from_raw_os_error(libc::ENOENT),
            })?;
        ro.capture_bytes = opts.capture_bytes;
        ro.tail_bytes = opts.tail_bytes;
        ro.self_tgid = std::process::id();
        ro.filter_enabled = u8::from(!opts.filter.is_empty());
        ro.wakeup_bytes = opts.wakeup_bytes.min(u64::from(per_cpu) / 2).max(4096);
        // Past three quarters full, a home ring's records spill into the writing CPU's ring.
        ro.spill_bytes = u64::from(per_cpu) / 4 * 3;
        ro.tls_enabled = u8::from(opts.tls);
        ro.udp_enabled = u8::from(!opts.udp_ports.is_empty());
        if !opts.tls {
            for mut prog in open.open_object_mut().progs_mut() {
                if is_uprobe_section(&prog.section().to_string_lossy()) {
                    prog.set_autoload(false);
                }
            }
            // Its map is still created: keep it at one entry.
            open.maps
                .tg_ssl_fds
                .set_max_entries(1)
                .map_err(step("shrinking the unused TLS map"))?;
        }

        open.maps
            .tg_conns
            .set_max_entries(opts.conn_table_entries)
            .map_err(step("sizing the connection table"))?;
        // The rings exist before load: the first one is the template the verifier checks the
        // array-of-rings against (an inner map's size is part of its type).
        let mut rings = Vec::with_capacity(cpus);
        let create_opts = libbpf_rs::libbpf_sys::bpf_map_create_opts {
            sz: std::mem::size_of::<libbpf_rs::libbpf_sys::bpf_map_create_opts>() as _,
            ..Default::default()
        };
        for cpu in 0..cpus as u32 {
            let map = MapHandle::create(
                MapType::RingBuf,
                Some(format!("tg_ring{cpu}")),
                0,
                0,
                per_cpu,
                &create_opts,
            )
            .map_err(step(format!("creating the ring buffer of CPU {cpu}")))?;
            rings.push(CpuRing { cpu, map });
        }
        {
            use libbpf_rs::AsRawLibbpf;
            let outer = open.maps.tg_rings.as_libbpf_object();
            let fd = rings[0].map.as_fd().as_raw_fd();
            // SAFETY: `outer` is a valid map of the open (not yet loaded) object and `fd` a live
            // ring buffer map; libbpf duplicates the fd for its own use.
            let rc =
                unsafe { libbpf_rs::libbpf_sys::bpf_map__set_inner_map_fd(outer.as_ptr(), fd) };
            if rc != 0 {
                return Err(BpfError::Step {
                    step: "setting the per-CPU ring template".into(),
                    source: libbpf_rs::Error::from_raw_os_error(-rc),
                });
            }
        }

        let skel = open
            .load()
            .map_err(step("loading the BPF programs (verifier)"))?;
        let mut tracer = Tracer {
            links: Vec::new(),
            skel: ManuallyDrop::new(skel),
            _storage: storage,
            ring_bytes_per_cpu: per_cpu,
            possible_cpus: cpus,
            tls: opts.tls,
            filter_enabled: !opts.filter.is_empty(),
        };

        for ring in &rings {
            let fd = ring.map.as_fd().as_raw_fd() as u32;
            tracer
                .skel
                .maps
                .tg_rings
                .update(&ring.cpu.to_ne_bytes(), &fd.to_ne_bytes(), MapFlags::ANY)
                .map_err(step(format!(
                    "installing the ring buffer of CPU {}",
                    ring.cpu
                )))?;
        }

        tracer.fill_filter(&opts.filter)?;
        for port in &opts.udp_ports {
            tracer
                .skel
                .maps
                .tg_udp_ports
                .update(&port.to_ne_bytes(), &[1u8], MapFlags::ANY)
                .map_err(step("filling the UDP port map"))?;
        }
        tracer.attach_all()?;
        Ok((tracer, rings))
    }

    fn fill_filter(&mut self, filter: &ProcessFilter) -> Result<(), BpfError> {
        if filter.is_empty() {
            return Ok(());
        }
        let mut names: HashSet<[u8; 16]> = HashSet::new();
        for n in &filter.names {
            names.insert(comm_key(n));
        }
        for key in &names {
            self.skel
                .maps
                .tg_comm_filter
                .update(key, &[1u8], MapFlags::ANY)
                .map_err(step("filling the process-name filter"))?;
        }
        // Processes already running: by pid, by name, and their descendants.
        let procs = scan_proc();
        let mut allowed: HashMap<u32, u8> = HashMap::new();
        for &pid in &filter.pids {
            allowed.insert(pid, abi::ALLOW_BY_PID);
        }
        for p in &procs {
            if names.contains(&comm_key(&p.comm)) {
                allowed.entry(p.pid).or_insert(abi::ALLOW_BY_NAME);
            }
        }
        // Descendants inherit how their ancestor was allowed (a few passes cover deep trees).
        for _ in 0..8 {
            let mut changed = false;
            for p in &procs {
                if allowed.contains_key(&p.pid) {
                    continue;
                }
                if let Some(&how) = allowed.get(&p.ppid) {
                    allowed.insert(p.pid, how);
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        for (pid, how) in allowed {
            self.skel
                .maps
                .tg_allowed
                .update(&pid.to_ne_bytes(), &[how], MapFlags::ANY)
                .map_err(step("filling the process filter"))?;
        }
        Ok(())
    }

    fn attach_all(&mut self) -> Result<(), BpfError> {
        let mut links = Vec::new();
        // Every program is attached by its section name; `crate::tracer_hooks` reads the same
        // names, so the overhead floor attaches to exactly these hooks.
        for prog in self.skel.object_mut().progs_mut() {
            let hook = prog.section().to_string_lossy().into_owned();
            if is_uprobe_section(&hook) {
                // Attached per library file by the TLS manager.
                continue;
            }
            let link = prog.attach().map_err(|source| BpfError::Attach {
                hook: hook.clone(),
                source,
            })?;
            links.push((hook, link));
        }
        self.links = links;
        Ok(())
    }

    /// The hooks attached (section names such as `tracepoint/syscalls/sys_exit_read`).
    pub fn hooks(&self) -> Vec<&str> {
        self.links.iter().map(|(h, _)| h.as_str()).collect()
    }

    /// Whether the OpenSSL uprobe programs were loaded ([`TracerOptions::tls`]).
    pub fn tls_enabled(&self) -> bool {
        self.tls
    }

    /// The loaded OpenSSL uprobe program of `hook`, if TLS is enabled.
    pub(crate) fn tls_program(
        &self,
        hook: crate::tls::Hook,
    ) -> Option<&libbpf_rs::ProgramMut<'static>> {
        use crate::tls::Hook;
        if !self.tls {
            return None;
        }
        let p = &self.skel.progs;
        Some(match hook {
            Hook::Read => &p.tg_sslr,
            Hook::ReadRet => &p.tg_sslr_ret,
            Hook::Write => &p.tg_sslw,
            Hook::WriteRet => &p.tg_sslw_ret,
            Hook::ReadEx => &p.tg_sslrx,
            Hook::ReadExRet => &p.tg_sslrx_ret,
            Hook::WriteEx => &p.tg_sslwx,
            Hook::WriteExRet => &p.tg_sslwx_ret,
            Hook::SetFd => &p.tg_ssl_set_fd,
        })
    }

    /// Whether the kernel traces process `pid` (not the agent, and allowed by the filter).
    pub(crate) fn traces_pid(&self, pid: u32) -> bool {
        if pid == std::process::id() {
            return false;
        }
        if !self.filter_enabled {
            return true;
        }
        matches!(
            self.skel
                .maps
                .tg_allowed
                .lookup(&pid.to_ne_bytes(), MapFlags::ANY),
            Ok(Some(_))
        )
    }

    pub fn ring_bytes_per_cpu(&self) -> u32 {
        self.ring_bytes_per_cpu
    }

    pub fn possible_cpus(&self) -> usize {
        self.possible_cpus
    }

    /// Per-CPU kernel counters, index = CPU.
    pub fn stats(&self) -> Vec<Stats> {
        read_stats(&self.skel.maps.tg_stats)
    }

    /// A handle on the per-CPU counters that another thread can read (it keeps the map alive,
    /// not the programs).
    pub fn stats_reader(&self) -> Result<StatsReader, BpfError> {
        let map = MapHandle::try_from(&self.skel.maps.tg_stats)
            .map_err(step("sharing the counter map"))?;
        let mut progs = Vec::new();
        for prog in self.skel.object().progs() {
            // Negative for a program left unloaded (the uprobes without TLS): never borrowed.
            // SAFETY: `prog` is a live program of this object.
            let raw = unsafe {
                use libbpf_rs::AsRawLibbpf;
                libbpf_rs::libbpf_sys::bpf_program__fd(prog.as_libbpf_object().as_ptr())
            };
            if raw < 0 {
                continue;
            }
            // SAFETY: a loaded program's fd stays open as long as `self` (borrowed here).
            let fd = unsafe { BorrowedFd::borrow_raw(raw) }
                .try_clone_to_owned()
                .map_err(|e| BpfError::Step {
                    step: format!("sharing program {}", prog.name().to_string_lossy()),
                    source: libbpf_rs::Error::from(e),
                })?;
            progs.push((prog.name().to_string_lossy().into_owned(), fd));
        }
        Ok(StatsReader { map, progs })
    }

    /// Bytes of kernel memory held by our maps (approximate: key+value per entry, rings).
    pub fn map_bytes(&self) -> u64 {
        let mut total = 0u64;
        for m in self.skel.object().maps() {
            let per = u64::from(m.key_size()) + u64::from(m.value_size());
            let n = u64::from(m.max_entries());
            total += match m.map_type() {
                MapType::PercpuArray | MapType::PercpuHash | MapType::LruPercpuHash => {
                    per * n * self.possible_cpus as u64
                }
                MapType::RingBuf => n,
                _ => per * n,
            };
        }
        total + u64::from(self.ring_bytes_per_cpu) * self.possible_cpus as u64
    }
}

/// uprobe programs are attached per library file (bpf/src/tls.rs), not at start.
pub(crate) fn is_uprobe_section(section: &str) -> bool {
    section.starts_with("uprobe") || section.starts_with("uretprobe")
}

/// Turn on the kernel's run statistics of every BPF program ([`StatsReader::programs`]) for as
/// long as the returned fd is open (`BPF_ENABLE_STATS`: closing it turns them off again, even
/// if the process dies; the sysctl `kernel.bpf_stats_enabled` is another way, left as it is).
pub fn enable_program_stats() -> Result<OwnedFd, BpfError> {
    // SAFETY: a plain syscall wrapper; a non-negative result is a new fd we own.
    let fd = unsafe {
        libbpf_rs::libbpf_sys::bpf_enable_stats(libbpf_rs::libbpf_sys::BPF_STATS_RUN_TIME)
    };
    if fd < 0 {
        return Err(BpfError::Step {
            step: "enabling BPF run statistics (BPF_ENABLE_STATS)".into(),
            source: libbpf_rs::Error::from_raw_os_error(-fd),
        });
    }
    // SAFETY: see above.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
}

/// Reads the per-CPU counters, and each program's run statistics, from any thread.
#[derive(Debug)]
pub struct StatsReader {
    map: MapHandle,
    /// Every loaded program, by name (its own fd: it keeps the program, not its link).
    progs: Vec<(String, OwnedFd)>,
}

/// The kernel's run statistics of one program: counted only while BPF statistics are on (the
/// sysctl `kernel.bpf_stats_enabled`, or [`enable_program_stats`]; it costs two clock reads per
/// run, so it is off by default), and standing still while they are off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProgramStats {
    pub name: String,
    /// Nanoseconds spent running it, in all.
    pub run_ns: u64,
    /// Times it ran.
    pub runs: u64,
}

impl StatsReader {
    /// Per-CPU kernel counters, index = CPU.
    pub fn read(&self) -> Vec<Stats> {
        read_stats(&self.map)
    }

    /// Run statistics of every loaded program (a program whose information cannot be read is
    /// left out).
    pub fn programs(&self) -> Vec<ProgramStats> {
        self.progs
            .iter()
            .filter_map(|(name, fd)| {
                // SAFETY: bpf_prog_info is plain data, zero a valid value; the kernel fills at
                // most `len` bytes of it.
                let mut info: libbpf_rs::libbpf_sys::bpf_prog_info = unsafe { std::mem::zeroed() };
                let mut len = std::mem::size_of_val(&info) as u32;
                let rc = unsafe {
                    libbpf_rs::libbpf_sys::bpf_prog_get_info_by_fd(
                        fd.as_raw_fd(),
                        &mut info,
                        &mut len,
                    )
                };
                (rc == 0).then(|| ProgramStats {
                    name: name.clone(),
                    run_ns: info.run_time_ns,
                    runs: info.run_cnt,
                })
            })
            .collect()
    }
}

fn read_stats(map: &dyn MapCore) -> Vec<Stats> {
    let key = 0u32.to_ne_bytes();
    match map.lookup_percpu(&key, MapFlags::ANY) {
        Ok(Some(per_cpu)) => per_cpu.iter().map(|v| decode_stats(v)).collect(),
        _ => Vec::new(),
    }
}

fn decode_stats(v: &[u8]) -> Stats {
    let mut s = Stats::default();
    let n = std::mem::size_of::<Stats>();
    if v.len() >= n {
        // SAFETY: Stats is repr(C) plain u64 fields; `v` holds at least its size.
        s = unsafe { std::ptr::read_unaligned(v.as_ptr().cast::<Stats>()) };
    }
    s
}

/// The kernel's `comm` form of an executable name: at most 15 bytes, NUL padded.
pub fn comm_key(name: &str) -> [u8; 16] {
    let mut k = [0u8; 16];
    let b = name.as_bytes();
    let n = b.len().min(15);
    k[..n].copy_from_slice(&b[..n]);
    k
}

struct ProcInfo {
    pid: u32,
    ppid: u32,
    comm: String,
}

fn scan_proc() -> Vec<ProcInfo> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // comm is inside the last parentheses; ppid is the second field after them.
        let (Some(l), Some(r)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[l + 1..r].to_string();
        let ppid = stat[r + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        out.push(ProcInfo { pid, ppid, comm });
    }
    out
}

/// Names of Telegen's programs (`tg_*`) currently loaded in the kernel, by anyone. Used by tests
/// and at exit to prove nothing was left behind.
pub fn loaded_programs() -> Vec<String> {
    libbpf_rs::query::ProgInfoIter::default()
        .map(|p| p.name.to_string_lossy().into_owned())
        .filter(|n| n.starts_with("tg_"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_sizes() {
        assert_eq!(ring_size(16 << 20, 2).unwrap(), 8 << 20);
        assert_eq!(ring_size(16 << 20, 3).unwrap(), 4 << 20);
        assert!(ring_size(4096, 2).is_err());
    }

    #[test]
    fn comm_keys() {
        assert_eq!(&comm_key("nginx")[..6], b"nginx\0");
        assert_eq!(comm_key("a-very-long-executable-name")[15], 0);
    }
}
