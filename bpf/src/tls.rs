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
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    #[test]
    fn library_names() {
        for yes in [
            "libssl.so.3",
            "libssl.so.1.1",
            "libssl.so.3.0.7",
            "libssl.so.1.1.1k",
            "libssl-5babfe3f.so.1.1",
            "libssl-8248cfc9.so.1.1.1k",
            "libssl-8bd944e8.so.3",
        ] {
            assert!(is_openssl_lib(yes), "{yes}");
        }
        for no in [
            "libssl3.so",
            "libssl.so",
            "libssl.so.30",
            "libssl.so.1.0.2",
            "libcrypto.so.3",
            "libssl.so.1.10",
            "libssl-.so.1.1",
            "libssl-a/b.so.3",
            "libssl-47.dll",
            "libssl-5babfe3f.so.1.0.0",
            "libcrypto-5babfe3f.so.1.1",
        ] {
            assert!(!is_openssl_lib(no), "{no}");
        }
    }

    #[test]
    fn maps_parsing() {
        let maps = "\
55d0c0a00000-55d0c0a2a000 r--p 00000000 fd:01 1311 /usr/sbin/nginx
7f3581900000-7f358191f000 r--p 00000000 fd:01 4242 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f358191f000-7f3581981000 r-xp 0001f000 fd:01 4242 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f3581a00000-7f3581a10000 r-xp 00000000 fd:01 77 /opt/my app/lib/libssl.so.1.1
7f3581b00000-7f3581b10000 r-xp 00000000 fd:01 78 /old/libssl.so.3 (deleted)
7f3581c00000-7f3581c10000 rw-p 00000000 00:00 0
7ffd1c1d3000-7ffd1c1f4000 rw-p 00000000 00:00 0                          [stack]
7f3581d00000-7f3581d10000 r-xp 00000000 fd:01 79 /usr/lib/libssl3.so
";
        assert_eq!(
            ssl_paths_in_maps(maps),
            vec![
                "/usr/lib/x86_64-linux-gnu/libssl.so.3",
                "/opt/my app/lib/libssl.so.1.1"
            ]
        );
        assert!(ssl_paths_in_maps("garbage\n\n1 2 3 4 5").is_empty());
    }

    #[derive(Default)]
    struct World {
        /// pid -> libs it maps
        procs: HashMap<u32, Vec<LibFile>>,
        untraced: HashSet<u32>,
        /// symbol missing in every library
        missing: HashSet<&'static str>,
        /// path of a library every attach fails on
        broken: Option<PathBuf>,
        live_links: usize,
        maps_reads: Vec<u32>,
    }

    #[derive(Clone, Default)]
    struct Fake(Rc<RefCell<World>>);

    struct FakeLink(Rc<RefCell<World>>);
    impl Drop for FakeLink {
        fn drop(&mut self) {
            self.0.borrow_mut().live_links -= 1;
        }
    }

    impl Procs for Fake {
        fn pids(&mut self) -> Vec<u32> {
            self.0.borrow().procs.keys().copied().collect()
        }
        fn ssl_libs(&mut self, pid: u32) -> Vec<LibFile> {
            let mut w = self.0.borrow_mut();
            w.maps_reads.push(pid);
            w.procs.get(&pid).cloned().unwrap_or_default()
        }
    }

    impl Probes for Fake {
        type Link = FakeLink;
        fn traces(&self, pid: u32) -> bool {
            !self.0.borrow().untraced.contains(&pid)
        }
        fn attach(&self, hook: Hook, path: &Path) -> Result<FakeLink, AttachError> {
            let mut w = self.0.borrow_mut();
            if w.missing.contains(hook.symbol()) {
                return Err(AttachError::MissingSymbol);
            }
            if w.broken.as_deref() == Some(path) {
                return Err(AttachError::Failed("permission denied".into()));
            }
            w.live_links += 1;
            Ok(FakeLink(self.0.clone()))
        }
    }

    fn lib(ino: u64, path: &str) -> LibFile {
        LibFile {
            id: LibId { dev: 1, ino },
            path: path.into(),
        }
    }

    #[test]
    fn attaches_once_per_file_and_detaches_after_the_last_user() {
        let f = Fake::default();
        let l3 = lib(10, "/proc/100/root/usr/lib/libssl.so.3");
        let l3_other_path = lib(10, "/proc/101/root/usr/lib/libssl.so.3");
        {
            let mut w = f.0.borrow_mut();
            w.procs.insert(100, vec![l3.clone()]);
            w.procs.insert(101, vec![l3_other_path]);
            w.procs.insert(102, vec![]);
        }
        let mut core = Core::new(f.clone(), f.clone());
        let t0 = Instant::now();
        core.scan(t0);
        let s = core.stats();
        assert_eq!(s.libraries_attached, 1, "same (dev, inode) = one library");
        assert_eq!(s.links, Hook::ALL.len());
        assert_eq!(f.0.borrow().live_links, Hook::ALL.len());
        assert_eq!(s.processes, 2);

        f.0.borrow_mut().procs.remove(&100);
        core.scan(t0 + Duration::from_millis(10));
        assert_eq!(core.stats().libraries_attached, 1, "101 still maps it");
        f.0.borrow_mut().procs.remove(&101);
        core.scan(t0 + Duration::from_millis(20));
        let s = core.stats();
        assert_eq!(s.libraries_attached, 0);
        assert_eq!(s.links, 0);
        assert_eq!(s.libraries_detached, 1);
        assert_eq!(f.0.borrow().live_links, 0, "links dropped = detached");

        // A new process mapping it attaches again.
        f.0.borrow_mut().procs.insert(103, vec![l3]);
        core.scan(t0 + Duration::from_millis(30));
        assert_eq!(core.stats().libraries_attached, 1);
        drop(core);
        assert_eq!(f.0.borrow().live_links, 0, "drop detaches everything");
    }

    #[test]
    fn maps_are_reread_with_backoff_so_dlopen_is_found() {
        let f = Fake::default();
        f.0.borrow_mut().procs.insert(200, vec![]);
        let mut core = Core::new(f.clone(), f.clone());
        let t0 = Instant::now();
        core.scan(t0);
        core.scan(t0 + Duration::from_millis(500));
        assert_eq!(f.0.borrow().maps_reads, vec![200], "not re-read before 1 s");
        // The process loads libssl later (Python's `import ssl`).
        f.0.borrow_mut()
            .procs
            .insert(200, vec![lib(20, "/proc/200/root/lib/libssl.so.3")]);
        core.scan(t0 + Duration::from_millis(1000));
        assert_eq!(core.stats().libraries_attached, 1);
        assert_eq!(f.0.borrow().maps_reads.len(), 2);
        // Next re-read after 2 s more, then 4 s.
        core.scan(t0 + Duration::from_millis(2500));
        assert_eq!(f.0.borrow().maps_reads.len(), 2);
        core.scan(t0 + Duration::from_millis(3000));
        assert_eq!(f.0.borrow().maps_reads.len(), 3);
        // It exec'd something without libssl: the library is released.
        f.0.borrow_mut().procs.insert(200, vec![]);
        core.scan(t0 + Duration::from_millis(7000));
        assert_eq!(core.stats().libraries_attached, 0);
        assert_eq!(f.0.borrow().live_links, 0);
    }

    #[test]
    fn untraced_processes_do_not_hold_libraries() {
        let f = Fake::default();
        {
            let mut w = f.0.borrow_mut();
            w.procs.insert(300, vec![lib(30, "/a/libssl.so.3")]);
            w.untraced.insert(300);
        }
        let mut core = Core::new(f.clone(), f.clone());
        core.scan(Instant::now());
        assert_eq!(core.stats().libraries_attached, 0);
        assert!(f.0.borrow().maps_reads.is_empty(), "maps not even read");
    }

    #[test]
    fn missing_symbols_are_skipped_and_failures_reported() {
        let f = Fake::default();
        {
            let mut w = f.0.borrow_mut();
            w.missing.insert("SSL_read_ex");
            w.missing.insert("SSL_write_ex");
            w.procs.insert(400, vec![lib(40, "/lib/libssl.so.1.1")]);
            w.procs.insert(401, vec![lib(41, "/broken/libssl.so.3")]);
            w.broken = Some("/broken/libssl.so.3".into());
        }
        let mut core = Core::new(f.clone(), f.clone());
        let t0 = Instant::now();
        core.scan(t0);
        let s = core.stats();
        assert_eq!(s.libraries_attached, 1, "1.1 without the _ex symbols");
        assert_eq!(s.links, 5);
        assert_eq!(
            core.attached(),
            vec![AttachedLibrary {
                path: "/lib/libssl.so.1.1".into(),
                hooks: vec![
                    Hook::ReadRet,
                    Hook::Read,
                    Hook::WriteRet,
                    Hook::Write,
                    Hook::SetFd
                ],
            }]
        );
        assert_eq!(s.symbols_missing, 4 + 4);
        assert_eq!(
            s.attach_failures, 5,
            "every present hook of the broken file"
        );
        assert_eq!(core.failures.len(), 5);
        let fail = &core.failures[0];
        assert_eq!(fail.library, PathBuf::from("/broken/libssl.so.3"));
        assert_eq!(fail.hook, "uretprobe:SSL_read");
        assert_eq!(fail.reason, "permission denied");

        // A failed library is not retried while processes still map it...
        f.0.borrow_mut()
            .procs
            .insert(402, vec![lib(41, "/broken/libssl.so.3")]);
        core.scan(t0 + Duration::from_millis(10));
        assert_eq!(core.stats().attach_failures, 5);
        // ...but is once they are gone and another maps it.
        {
            let mut w = f.0.borrow_mut();
            w.procs.remove(&401);
            w.procs.remove(&402);
        }
        core.scan(t0 + Duration::from_millis(20));
        f.0.borrow_mut()
            .procs
            .insert(403, vec![lib(41, "/broken/libssl.so.3")]);
        core.scan(t0 + Duration::from_millis(30));
        assert_eq!(core.stats().attach_failures, 10);
    }

    #[test]
    fn hook_names() {
        assert_eq!(Hook::ReadExRet.name(), "uretprobe:SSL_read_ex");
        assert_eq!(Hook::SetFd.name(), "uprobe:SSL_set_fd");
        assert_eq!(
            Hook::ALL.iter().filter(|h| h.retprobe()).count(),
            4,
            "one return probe per data function"
        );
    }
}
