//! Resource attributes: the [`ResourceResolver`] trait the export core asks for host and
//! per-process attributes, and [`ProcResolver`], the default implementation reading `/proc`.
//! It owns the per-pid cache (bounded, invalidated when a pid is reused, i.e. when the start time
//! in `/proc/PID/stat` changes).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::signal::{AttrValue, Attrs};

/// Supplies resource attributes. Called only on the export thread.
pub trait ResourceResolver: Send {
    /// Attributes of the host, added to every resource.
    fn host(&self) -> Attrs;
    /// Attributes of process `pid` (at least `process.pid`). Must not panic when the process is gone.
    fn process(&mut self, pid: u32) -> Attrs;
}

/// Default number of processes kept in the cache.
pub const DEFAULT_CACHE_CAPACITY: usize = 4096;

#[derive(Debug, Clone)]
struct Cached {
    start_time: u64,
    attrs: Attrs,
}

/// Resolves resources from procfs, caching per pid.
#[derive(Debug, Clone)]
pub struct ProcResolver {
    root: PathBuf,
    capacity: usize,
    cache: HashMap<u32, Cached>,
    host: Attrs,
}

impl Default for ProcResolver {
    fn default() -> Self {
        Self::new()
    }
}

impl ProcResolver {
    /// Reads `/proc`, caches up to [`DEFAULT_CACHE_CAPACITY`] processes.
    pub fn new() -> Self {
        Self::with_root("/proc", DEFAULT_CACHE_CAPACITY)
    }

    /// Reads a procfs mounted at `root` (tests use a fake tree), caching up to `capacity` pids.
    pub fn with_root(root: impl Into<PathBuf>, capacity: usize) -> Self {
        let root = root.into();
        let host_name = std::fs::read_to_string(root.join("sys/kernel/hostname"))
            .map(|s| s.trim().to_string())
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "unknown".to_string());
        let host = vec![
            ("host.name", AttrValue::Str(host_name)),
            (
                "host.arch",
                AttrValue::Str(otel_arch(std::env::consts::ARCH).to_string()),
            ),
            ("os.type", AttrValue::Str("linux".to_string())),
        ];
        Self {
            root,
            capacity: capacity.max(1),
            cache: HashMap::new(),
            host,
        }
    }

    /// Number of cached processes.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    fn read_process(&self, pid: u32) -> Attrs {
        let dir = self.root.join(pid.to_string());
        let exe_path = std::fs::read_link(dir.join("exe")).ok().map(|p| {
            p.to_string_lossy()
                .trim_end_matches(" (deleted)")
                .to_string()
        });
        let comm = std::fs::read_to_string(dir.join("comm"))
            .ok()
            .map(|s| s.trim_end_matches('\n').to_string())
            .filter(|s| !s.is_empty());
        let exe_base = exe_path.as_deref().and_then(|p| {
            Path::new(p)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        });
        // comm is truncated to 15 bytes; prefer the exe basename when comm is its prefix.
        let name = match (comm, exe_base) {
            (Some(c), Some(e)) if e.starts_with(&c) => Some(e),
            (Some(c), _) => Some(c),
            (None, e) => e,
        };
        let cmdline = std::fs::read(dir.join("cmdline")).ok().map(|raw| {
            raw.split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        });
        let mut attrs: Attrs = vec![("process.pid", AttrValue::Int(i64::from(pid)))];
        if let Some(n) = &name {
            attrs.push(("process.executable.name", AttrValue::Str(n.clone())));
        }
        if let Some(p) = exe_path {
            attrs.push(("process.executable.path", AttrValue::Str(p)));
        }
        if let Some(c) = cmdline.filter(|c| !c.is_empty()) {
            attrs.push(("process.command_line", AttrValue::Str(c)));
        }
        if let Some(n) = name {
            attrs.push(("service.name", AttrValue::Str(n)));
        }
        attrs
    }
}

/// `/proc/PID/stat` field 22 (start time in clock ticks since boot). The comm field may hold
/// spaces and parentheses, so parsing starts after the last `)`.
pub fn parse_stat_start_time(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After ")": field 3 (state) is the first; start time is field 22 => index 19.
    rest.split_ascii_whitespace().nth(19)?.parse().ok()
}

/// OpenTelemetry `host.arch` value for a Rust target arch.
fn otel_arch(arch: &str) -> &str {
    match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "x86",
        "arm" => "arm32",
        "powerpc64" => "ppc64",
        "s390x" => "s390x",
        other => other,
    }
}

impl ResourceResolver for ProcResolver {
    fn host(&self) -> Attrs {
        self.host.clone()
    }

    fn process(&mut self, pid: u32) -> Attrs {
        let stat = std::fs::read_to_string(self.root.join(pid.to_string()).join("stat")).ok();
        let Some(start_time) = stat.as_deref().and_then(parse_stat_start_time) else {
            // Gone (or unreadable): keep what we knew, else the pid alone.
            return match self.cache.get(&pid) {
                Some(c) => c.attrs.clone(),
                None => vec![("process.pid", AttrValue::Int(i64::from(pid)))],
            };
        };
        if let Some(c) = self.cache.get(&pid) {
            if c.start_time == start_time {
                return c.attrs.clone();
            }
        }
        let attrs = self.read_process(pid);
        if self.cache.len() >= self.capacity && !self.cache.contains_key(&pid) {
            // Evict an arbitrary entry; a re-resolve costs a few procfs reads.
            if let Some(k) = self.cache.keys().next().copied() {
                self.cache.remove(&k);
            }
        }
        self.cache.insert(
            pid,
            Cached {
                start_time,
                attrs: attrs.clone(),
            },
        );
        attrs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a>(a: &'a Attrs, k: &str) -> Option<&'a AttrValue> {
        a.iter().find(|(key, _)| *key == k).map(|(_, v)| v)
    }

    fn stat_line(comm: &str, start: u64) -> String {
        let mut f = vec!["S".to_string()];
        for i in 4..=21 {
            f.push(i.to_string());
        }
        f.push(start.to_string());
        f.push("999".into());
        format!("123 ({comm}) {}", f.join(" "))
    }

    #[test]
    fn stat_start_time_with_odd_comm() {
        assert_eq!(parse_stat_start_time(&stat_line("a) (b c", 777)), Some(777));
        assert_eq!(parse_stat_start_time("garbage"), None);
        assert_eq!(parse_stat_start_time("1 (x) S 2"), None);
    }

    #[test]
    fn own_process_from_real_proc() {
        let mut r = ProcResolver::new();
        let pid = std::process::id();
        let a = r.process(pid);
        assert_eq!(
            get(&a, "process.pid"),
            Some(&AttrValue::Int(i64::from(pid)))
        );
        assert!(get(&a, "process.executable.name").is_some(), "{a:?}");
        assert!(get(&a, "service.name").is_some());
        assert!(get(&a, "process.executable.path").is_some());
        assert!(get(&a, "process.command_line").is_some());
        assert_eq!(r.cached(), 1);
        assert_eq!(r.process(pid), a);
        let h = r.host();
        assert_eq!(get(&h, "os.type"), Some(&AttrValue::Str("linux".into())));
        assert!(get(&h, "host.name").is_some() && get(&h, "host.arch").is_some());
    }

    #[test]
    fn fake_proc_reuse_vanish_and_bound() {
        let root = std::env::temp_dir().join(format!("telegen-proc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let write = |pid: u32, comm: &str, start: u64, cmd: &[u8]| {
            let d = root.join(pid.to_string());
            std::fs::create_dir_all(&d).ok();
            std::fs::write(d.join("stat"), stat_line(comm, start)).ok();
            std::fs::write(d.join("comm"), format!("{comm}\n")).ok();
            std::fs::write(d.join("cmdline"), cmd).ok();
        };
        write(10, "nginx", 100, b"nginx\0-g\0daemon off;\0");
        let mut r = ProcResolver::with_root(&root, 2);
        let a = r.process(10);
        assert_eq!(
            get(&a, "service.name"),
            Some(&AttrValue::Str("nginx".into()))
        );
        assert_eq!(
            get(&a, "process.command_line"),
            Some(&AttrValue::Str("nginx -g daemon off;".into()))
        );
        // pid reused by another program: new start time => re-resolved.
        write(10, "redis", 200, b"redis-server\0");
        let b = r.process(10);
        assert_eq!(
            get(&b, "service.name"),
            Some(&AttrValue::Str("redis".into()))
        );
        // vanished: cached attributes survive.
        std::fs::remove_dir_all(root.join("10")).ok();
        assert_eq!(r.process(10), b);
        // unknown and absent: pid only.
        assert_eq!(r.process(11), vec![("process.pid", AttrValue::Int(11))]);
        // bounded cache.
        for pid in 20..25 {
            write(pid, "w", 1, b"w\0");
            r.process(pid);
        }
        assert!(r.cached() <= 2);
        std::fs::remove_dir_all(&root).ok();
    }
}
