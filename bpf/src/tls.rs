//! Attaches the OpenSSL uprobes (`src/bpf/tls.bpf.h`) to every libssl file traced processes map.
//!
//! Owns: the set of libssl files (libssl.so.1.1 / libssl.so.3, keyed by (dev, inode)) with their
//! uprobe links, and which traced processes map each. Invariants: a file's uprobes are attached
//! once, with pid = -1 (every process mapping that file; the kernel's `skip_tgid` applies the
//! process filter), while at least one traced process maps it, and detached when the last one is
//! gone; dropping the manager detaches everything. A symbol the library lacks (SSL_read_ex in
//! 1.1.0) is skipped; any other attach failure is logged with the hook and reason, counted, and
//! the rest keeps running.
//!
//! [`TlsManager::poll`] rescans cheaply: the /proc listing each time, a process's maps only when
//! it is new, then again with a doubling back-off (1 s up to 64 s) so a library loaded later
//! with `dlopen` (Python's `import ssl`) is found too. The scan logic runs over two small traits
//! ([`Procs`], [`Probes`]) so it is unit-tested without a kernel.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use libbpf_rs::{Link, UprobeOpts};

use crate::loader::{BpfError, Tracer};

/// One uprobe program and the libssl function it goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hook {
    Read,
    ReadRet,
    Write,
    WriteRet,
    ReadEx,
    ReadExRet,
    WriteEx,
    WriteExRet,
    SetFd,
}

impl Hook {
    /// Every hook, in attach order (return probes before entry probes, so an entry never
    /// records a call whose return nobody sees).
    pub const ALL: [Hook; 9] = [
        Hook::ReadRet,
        Hook::Read,
        Hook::WriteRet,
        Hook::Write,
        Hook::ReadExRet,
        Hook::ReadEx,
        Hook::WriteExRet,
        Hook::WriteEx,
        Hook::SetFd,
    ];

    /// The libssl symbol.
    pub fn symbol(self) -> &'static str {
        match self {
            Hook::Read | Hook::ReadRet => "SSL_read",
            Hook::Write | Hook::WriteRet => "SSL_write",
            Hook::ReadEx | Hook::ReadExRet => "SSL_read_ex",
            Hook::WriteEx | Hook::WriteExRet => "SSL_write_ex",
            Hook::SetFd => "SSL_set_fd",
        }
    }

    /// True for the uretprobe half of a pair.
    pub fn retprobe(self) -> bool {
        matches!(
            self,
            Hook::ReadRet | Hook::WriteRet | Hook::ReadExRet | Hook::WriteExRet
        )
    }

    /// `uprobe:SSL_read` / `uretprobe:SSL_read`, for logs and failure reports.
    pub fn name(self) -> String {
        let kind = if self.retprobe() {
            "uretprobe"
        } else {
            "uprobe"
        };
        format!("{kind}:{}", self.symbol())
    }
}

/// True for the file names of OpenSSL's libssl 1.1 and 3.x (`libssl.so.3`, `libssl.so.1.1`,
/// versioned names such as `libssl.so.3.0.7`, and the copies Python wheels vendor, which
/// auditwheel renames `libssl-<hash>.so.1.1`); not NSS's `libssl3.so`.
pub fn is_openssl_lib(file_name: &str) -> bool {
    let Some(mut rest) = file_name.strip_prefix("libssl") else {
        return false;
    };
    if let Some(tagged) = rest.strip_prefix('-') {
        let hash_len = tagged.find('.').unwrap_or(tagged.len());
        if hash_len == 0
            || !tagged[..hash_len]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric())
        {
            return false;
        }
        rest = &tagged[hash_len..];
    }
    [".so.3", ".so.1.1"].iter().any(|version| {
        rest.strip_prefix(version)
            .is_some_and(|tail| tail.is_empty() || tail.starts_with('.'))
    })
}

/// The distinct libssl paths mapped in a `/proc/<pid>/maps` text (deleted files skipped: they
/// cannot be opened by path).
pub fn ssl_paths_in_maps(maps: &str) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for line in maps.lines() {
        // address perms offset dev inode path (the path may contain spaces)
        let mut rest = line;
        for _ in 0..5 {
            rest = rest.trim_start();
            match rest.find(char::is_whitespace) {
                Some(i) => rest = &rest[i..],
                None => {
                    rest = "";
                    break;
                }
            }
        }
        let path = rest.trim();
        if !path.starts_with('/') || path.ends_with(" (deleted)") {
            continue;
        }
        let name = path.rsplit('/').next().unwrap_or(path);
        if is_openssl_lib(name) && !out.contains(&path) {
            out.push(path);
        }
    }
    out
}

/// A library file as the kernel sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LibId {
    pub dev: u64,
    pub ino: u64,
}

/// A libssl file one process maps: its identity and a path to it that works from here
/// (`/proc/<pid>/root/...`, so files inside containers resolve).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibFile {
    pub id: LibId,
    pub path: PathBuf,
}

/// Where the manager learns about processes. Real: /proc. Faked in unit tests.
pub trait Procs {
    /// Every live process id.
    fn pids(&mut self) -> Vec<u32>;
    /// The libssl files `pid` maps now (empty if it exited or cannot be read).
    fn ssl_libs(&mut self, pid: u32) -> Vec<LibFile>;
}

/// Why an attach failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachError {
    /// The library does not export the symbol (skipped, not an error).
    MissingSymbol,
    Failed(String),
}

/// The kernel side of the manager. Real: the tracer's uprobe programs. Faked in unit tests.
pub trait Probes {
    type Link;
    /// Whether the kernel traces `pid` (process filter, not the agent itself).
    fn traces(&self, pid: u32) -> bool;
    /// Attach `hook` to the library at `path` for every process (pid = -1).
    fn attach(&self, hook: Hook, path: &Path) -> Result<Self::Link, AttachError>;
}

/// An attach that failed, as reported by [`TlsManager::failures`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachFailure {
    pub library: PathBuf,
    pub hook: String,
    pub reason: String,
}

/// Counters of the manager.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TlsStats {
    /// libssl files with uprobes attached now.
    pub libraries_attached: usize,
    /// uprobe links attached now.
    pub links: usize,
    /// Traced processes known to map a libssl file now.
    pub processes: usize,
    /// Attaches that failed (see [`TlsManager::failures`]).
    pub attach_failures: u64,
    /// Hooks skipped because the library lacks the symbol.
    pub symbols_missing: u64,
    /// Libraries whose uprobes were detached because no traced process maps them any more.
    pub libraries_detached: u64,
    /// `/proc/<pid>/maps` files read.
    pub maps_read: u64,
}

/// A libssl file with uprobes attached now, as reported by [`TlsManager::attached`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachedLibrary {
    /// The path it was attached through (`/proc/<pid>/root/...` of the first process seen
    /// mapping it).
    pub path: PathBuf,
    /// The hooks attached, in [`Hook::ALL`] order (a symbol the library lacks is not there).
    pub hooks: Vec<Hook>,
}

/// Most recent attach failures kept for reporting.
const FAILURES_KEPT: usize = 32;
/// First and largest re-read interval of a process's maps.
const RECHECK_FIRST: Duration = Duration::from_secs(1);
const RECHECK_MAX: Duration = Duration::from_secs(64);

struct PidState {
    libs: BTreeSet<LibId>,
    next_check: Instant,
    backoff: Duration,
}

struct Attached<L> {
    path: PathBuf,
    links: Vec<(Hook, L)>,
    users: HashSet<u32>,
}

/// The scan logic, generic over where processes and probes come from.
pub(crate) struct Core<P: Procs, K: Probes> {
    procs: P,
    probes: K,
    pids: HashMap<u32, PidState>,
    libs: HashMap<LibId, Attached<K::Link>>,
    /// Libraries whose attach failed entirely, with the processes mapping them; retried when a
    /// process maps them after all of those are gone.
    failed: HashMap<LibId, HashSet<u32>>,
    failures: VecDeque<AttachFailure>,
    stats: TlsStats,
}

impl<P: Procs, K: Probes> Core<P, K> {
    pub(crate) fn new(procs: P, probes: K) -> Self {
        Core {
            procs,
            probes,
            pids: HashMap::new(),
            libs: HashMap::new(),
            failed: HashMap::new(),
            failures: VecDeque::new(),
            stats: TlsStats::default(),
        }
    }

    /// One scan at time `now`.
    pub(crate) fn scan(&mut self, now: Instant) {
        let live: HashSet<u32> = self.procs.pids().into_iter().collect();
        let gone: Vec<u32> = self
            .pids
            .keys()
            .filter(|p| !live.contains(p))
            .copied()
            .collect();
        for pid in gone {
            if let Some(st) = self.pids.remove(&pid) {
                for lib in st.libs {
                    self.release(lib, pid);
                }
            }
        }
        for pid in live {
            let st = self.pids.entry(pid).or_insert_with(|| PidState {
                libs: BTreeSet::new(),
                next_check: now,
                backoff: RECHECK_FIRST,
            });
            if st.next_check > now {
                continue;
            }
            st.next_check = now + st.backoff;
            st.backoff = (st.backoff * 2).min(RECHECK_MAX);
            let files = if self.probes.traces(pid) {
                self.stats.maps_read += 1;
                self.procs.ssl_libs(pid)
            } else {
                Vec::new()
            };
            let now_libs: BTreeSet<LibId> = files.iter().map(|f| f.id).collect();
            let old = std::mem::replace(&mut st.libs, now_libs.clone());
            for lib in old.difference(&now_libs) {
                self.release(*lib, pid);
            }
            for f in files {
                if !old.contains(&f.id) {
                    self.acquire(&f, pid);
                }
            }
        }
        self.stats.libraries_attached = self.libs.len();
        self.stats.links = self.libs.values().map(|a| a.links.len()).sum();
        self.stats.processes = self.pids.values().filter(|s| !s.libs.is_empty()).count();
    }

    fn acquire(&mut self, f: &LibFile, pid: u32) {
        if let Some(a) = self.libs.get_mut(&f.id) {
            a.users.insert(pid);
            return;
        }
        if let Some(users) = self.failed.get_mut(&f.id) {
            users.insert(pid);
            return;
        }
        let mut links = Vec::new();
        for hook in Hook::ALL {
            match self.probes.attach(hook, &f.path) {
                Ok(l) => links.push((hook, l)),
                Err(AttachError::MissingSymbol) => {
                    self.stats.symbols_missing += 1;
                    log::debug!(
                        "tls: {} has no {}: {} skipped",
                        f.path.display(),
                        hook.symbol(),
                        hook.name()
                    );
                }
                Err(AttachError::Failed(reason)) => {
                    self.stats.attach_failures += 1;
                    log::warn!(
                        "tls: could not attach {} to {}: {reason}",
                        hook.name(),
                        f.path.display()
                    );
                    if self.failures.len() == FAILURES_KEPT {
                        self.failures.pop_front();
                    }
                    self.failures.push_back(AttachFailure {
                        library: f.path.clone(),
                        hook: hook.name(),
                        reason,
                    });
                }
            }
        }
        if links.is_empty() {
            self.failed.insert(f.id, HashSet::from([pid]));
            return;
        }
        log::info!(
            "tls: {} uprobes attached to {}",
            links.len(),
            f.path.display()
        );
        self.libs.insert(
            f.id,
            Attached {
                path: f.path.clone(),
                links,
                users: HashSet::from([pid]),
            },
        );
    }

    fn release(&mut self, lib: LibId, pid: u32) {
        if let Some(users) = self.failed.get_mut(&lib) {
            users.remove(&pid);
            if users.is_empty() {
                self.failed.remove(&lib);
            }
            return;
        }
        let Some(a) = self.libs.get_mut(&lib) else {
            return;
        };
        a.users.remove(&pid);
        if a.users.is_empty() {
            if let Some(a) = self.libs.remove(&lib) {
                log::info!(
                    "tls: no traced process maps {} any more: {} uprobes detached",
                    a.path.display(),
                    a.links.len()
                );
                self.stats.libraries_detached += 1;
            }
        }
    }

    pub(crate) fn stats(&self) -> TlsStats {
        self.stats
    }

    pub(crate) fn libraries(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = self.libs.values().map(|a| a.path.clone()).collect();
        v.sort();
        v
    }

    pub(crate) fn attached(&self) -> Vec<AttachedLibrary> {
        let mut v: Vec<AttachedLibrary> = self
            .libs
            .values()
            .map(|a| AttachedLibrary {
                path: a.path.clone(),
                hooks: a.links.iter().map(|(h, _)| *h).collect(),
            })
            .collect();
        v.sort_by(|a, b| a.path.cmp(&b.path));
        v
    }
}

/// Processes from /proc.
struct ProcFs;

impl Procs for ProcFs {
    fn pids(&mut self) -> Vec<u32> {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        dir.flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
            .collect()
    }

    fn ssl_libs(&mut self, pid: u32) -> Vec<LibFile> {
        let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
            return Vec::new();
        };
        let mut out: Vec<LibFile> = Vec::new();
        for p in ssl_paths_in_maps(&maps) {
            let path = PathBuf::from(format!("/proc/{pid}/root{p}"));
            let Ok(md) = std::fs::metadata(&path) else {
                continue;
            };
            let id = LibId {
                dev: md.dev(),
                ino: md.ino(),
            };
            if !out.iter().any(|f| f.id == id) {
                out.push(LibFile { id, path });
            }
        }
        out
    }
}

/// The tracer's uprobe programs.
struct TracerProbes<'t>(&'t Tracer);

impl Probes for TracerProbes<'_> {
    type Link = Link;

    fn traces(&self, pid: u32) -> bool {
        self.0.traces_pid(pid)
    }

    fn attach(&self, hook: Hook, path: &Path) -> Result<Link, AttachError> {
        let prog = self
            .0
            .tls_program(hook)
            .ok_or_else(|| AttachError::Failed("TLS programs not loaded".into()))?;
        let opts = UprobeOpts {
            func_name: Some(hook.symbol().into()),
            retprobe: hook.retprobe(),
            ..Default::default()
        };
        prog.attach_uprobe_with_opts(-1, path, 0, opts)
            .map_err(|e| {
                // libbpf says ENOENT both for a missing symbol and a missing file.
                if e.kind() == libbpf_rs::ErrorKind::NotFound && path.exists() {
                    AttachError::MissingSymbol
                } else {
                    AttachError::Failed(e.to_string())
                }
            })
    }
}

/// Keeps the OpenSSL uprobes attached to every libssl file a traced process maps.
///
/// Borrowing the [`Tracer`] makes it drop first: dropping the manager detaches every uprobe.
pub struct TlsManager<'t> {
    core: Core<ProcFs, TracerProbes<'t>>,
    last_scan: Option<Instant>,
}

impl std::fmt::Debug for TlsManager<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsManager")
            .field("stats", &self.core.stats())
            .finish()
    }
}

impl<'t> TlsManager<'t> {
    /// How often [`TlsManager::poll`] really scans.
    pub const SCAN_INTERVAL: Duration = Duration::from_secs(1);

    /// A manager for `tracer`'s uprobe programs; nothing is attached until the first poll.
    /// Fails if the tracer was started with `tls: false`.
    pub fn new(tracer: &'t Tracer) -> Result<Self, BpfError> {
        if !tracer.tls_enabled() {
            return Err(BpfError::Invalid {
                name: "tls",
                value: 0,
                why: "the tracer was started without its TLS programs (TracerOptions::tls)",
            });
        }
        Ok(TlsManager {
            core: Core::new(ProcFs, TracerProbes(tracer)),
            last_scan: None,
        })
    }

    /// Call periodically (any rate): scans at most once per [`Self::SCAN_INTERVAL`].
    pub fn poll(&mut self) {
        let now = Instant::now();
        if self
            .last_scan
            .is_some_and(|t| now.duration_since(t) < Self::SCAN_INTERVAL)
        {
            return;
        }
        self.scan_now();
    }

    /// Scan now, whatever the time since the last scan.
    pub fn scan_now(&mut self) {
        let now = Instant::now();
        self.last_scan = Some(now);
        self.core.scan(now);
    }

    pub fn stats(&self) -> TlsStats {
        self.core.stats()
    }

    /// The most recent attach failures (at most 32), oldest first.
    pub fn failures(&self) -> Vec<AttachFailure> {
        self.core.failures.iter().cloned().collect()
    }

    /// Paths of the libssl files with uprobes attached now.
    pub fn libraries(&self) -> Vec<PathBuf> {
        self.core.libraries()
    }

    /// The libssl files with uprobes attached now and which hooks each has, by path.
    pub fn attached(&self) -> Vec<AttachedLibrary> {
        self.core.attached()
    }
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
