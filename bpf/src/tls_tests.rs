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
