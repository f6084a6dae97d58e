//! The basics of one process from `/proc/<pid>`: start time (the cache key that tells a reused
//! pid from the process we saw before), parent, executable, command line, owner, and environment.
//! Reads tolerate processes that exit halfway: whatever was read is kept, the rest is empty.

use std::path::{Path, PathBuf};

use telegen_dataplane::signal::{AttrValue, Attrs};

use super::util::{push_str, warn_once, DiscoveryError};

/// What `/proc/<pid>` says about one process.
#[derive(Debug, Clone, Default)]
pub struct ProcInfo {
    pub pid: u32,
    pub ppid: u32,
    /// Start time in clock ticks since boot (field 22 of stat).
    pub start_ticks: u64,
    pub comm: String,
    /// The executable path as the process sees it (inside its mount namespace).
    pub exe_path: String,
    pub cmdline: Vec<String>,
    pub uid: Option<u32>,
    pub owner: String,
}

/// Parses the `(comm)` and the fields after it in `/proc/<pid>/stat`: (comm, ppid, start ticks).
pub fn parse_stat(text: &str) -> Option<(String, u32, u64)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // rest[0] is field 3 (state); ppid is field 4, starttime field 22.
    let ppid = rest.get(1)?.parse().ok()?;
    let start = rest.get(19)?.parse().ok()?;
    Some((comm, ppid, start))
}

/// The start time of `pid`, or `Gone` when it no longer exists.
pub fn start_ticks(proc_root: &Path, pid: u32) -> Result<u64, DiscoveryError> {
    let text = std::fs::read_to_string(proc_root.join(pid.to_string()).join("stat"))
        .map_err(|_| DiscoveryError::Gone { pid })?;
    parse_stat(&text)
        .map(|(_, _, s)| s)
        .ok_or_else(|| DiscoveryError::parse(format!("/proc/{pid}/stat"), "unexpected layout"))
}

/// The user name for `uid` from `<etc>/passwd`.
pub fn user_name(etc_root: &Path, uid: u32) -> Option<String> {
    let text = std::fs::read_to_string(etc_root.join("passwd")).ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 2 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[0].to_string())
    })
}

/// The process's environment as `(key, value)` pairs (needs the same uid or CAP_SYS_PTRACE).
pub fn environ(proc_root: &Path, pid: u32) -> Vec<(String, String)> {
    std::fs::read(proc_root.join(pid.to_string()).join("environ"))
        .inspect_err(|e| {
            if e.kind() == std::io::ErrorKind::PermissionDenied {
                warn_once(
                    "proc:environ",
                    format!("cannot read /proc/{pid}/environ ({e}): OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES of other users' processes are ignored; run as root or with CAP_SYS_PTRACE"),
                );
            }
        })
        .map(|b| {
            b.split(|c| *c == 0)
                .filter_map(|kv| {
                    let s = String::from_utf8_lossy(kv);
                    let (k, v) = s.split_once('=')?;
                    Some((k.to_string(), v.to_string()))
                })
                .collect()
        })
        .unwrap_or_default()
}

impl ProcInfo {
    /// Reads the process; `Gone` when its stat cannot be read.
    pub fn read(proc_root: &Path, etc_root: &Path, pid: u32) -> Result<ProcInfo, DiscoveryError> {
        let dir = proc_root.join(pid.to_string());
        let stat =
            std::fs::read_to_string(dir.join("stat")).map_err(|_| DiscoveryError::Gone { pid })?;
        let (comm, ppid, start_ticks) = parse_stat(&stat).ok_or_else(|| {
            DiscoveryError::parse(format!("/proc/{pid}/stat"), "unexpected layout")
        })?;
        let exe_path = std::fs::read_link(dir.join("exe"))
            .map(|p| {
                p.to_string_lossy()
                    .trim_end_matches(" (deleted)")
                    .to_string()
            })
            .unwrap_or_default();
        let cmdline = std::fs::read(dir.join("cmdline"))
            .map(|b| {
                b.split(|c| *c == 0)
                    .filter(|s| !s.is_empty())
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let uid = std::fs::read_to_string(dir.join("status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Uid:"))
                    .and_then(|l| l.split_whitespace().next()?.parse().ok())
            });
        let owner = uid.and_then(|u| user_name(etc_root, u)).unwrap_or_default();
        Ok(ProcInfo {
            pid,
            ppid,
            start_ticks,
            comm,
            exe_path,
            cmdline,
            uid,
            owner,
        })
    }

    /// The executable's base name (from the exe link, else `argv[0]`, else comm).
    pub fn exe_name(&self) -> String {
        let from = if !self.exe_path.is_empty() {
            self.exe_path.as_str()
        } else if let Some(a) = self.cmdline.first() {
            a.as_str()
        } else {
            self.comm.as_str()
        };
        from.rsplit('/').next().unwrap_or(from).to_string()
    }

    /// The name the process goes by: its `comm` (what `/proc/<pid>/status` calls Name, as the
    /// semantic conventions suggest), else the executable's base name. Differs from
    /// [`exe_name`](Self::exe_name) for multi-call binaries (Debian's redis-server is a link to
    /// redis-check-rdb).
    pub fn name(&self) -> String {
        if self.comm.is_empty() {
            self.exe_name()
        } else {
            self.comm.clone()
        }
    }

    /// Every name the process could be known by: comm, executable, `argv[0]` (deduplicated).
    pub fn names(&self) -> Vec<String> {
        let mut v = vec![self.comm.clone(), self.exe_name()];
        if let Some(a) = self.cmdline.first() {
            let first = a.split_whitespace().next().unwrap_or(a);
            v.push(
                first
                    .rsplit('/')
                    .next()
                    .unwrap_or(first)
                    .trim_end_matches(':')
                    .to_string(),
            );
        }
        v.retain(|n| !n.is_empty());
        v.dedup();
        v
    }

    /// Where the executable can be opened from here: `/proc/<pid>/exe` works across mount
    /// namespaces for live processes; fixtures may hold a regular file there instead.
    pub fn exe_file(&self, proc_root: &Path) -> PathBuf {
        proc_root.join(self.pid.to_string()).join("exe")
    }

    /// A path inside the process's root filesystem, reachable from here.
    pub fn in_root(&self, proc_root: &Path, path: &str) -> PathBuf {
        proc_root
            .join(self.pid.to_string())
            .join("root")
            .join(path.trim_start_matches('/'))
    }

    pub fn attrs(&self) -> Attrs {
        let mut a: Attrs = vec![("process.pid", AttrValue::Int(self.pid as i64))];
        if self.ppid > 0 {
            a.push(("process.parent_pid", AttrValue::Int(self.ppid as i64)));
        }
        push_str(&mut a, "process.executable.name", self.name());
        push_str(&mut a, "process.executable.path", &self.exe_path);
        if let Some(c) = self.cmdline.first() {
            push_str(&mut a, "process.command", c);
        }
        if !self.cmdline.is_empty() {
            let mut line = self.cmdline.join(" ");
            if line.len() > 1024 {
                let mut cut = 1024;
                while !line.is_char_boundary(cut) {
                    cut -= 1;
                }
                line.truncate(cut);
            }
            push_str(&mut a, "process.command_line", line);
        }
        push_str(&mut a, "process.owner", &self.owner);
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_spaces_and_parens_in_comm() {
        let s = "4121 (my (odd) prog) S 1 4121 4121 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 4 0 123456 1000 50 18446744073709551615";
        assert_eq!(
            parse_stat(s),
            Some(("my (odd) prog".to_string(), 1, 123456))
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn reads_self() {
        let me = std::process::id();
        let p = ProcInfo::read(Path::new("/proc"), Path::new("/etc"), me).unwrap();
        assert!(p.start_ticks > 0);
        assert!(!p.exe_path.is_empty());
        assert_eq!(start_ticks(Path::new("/proc"), me).unwrap(), p.start_ticks);
        assert!(matches!(
            ProcInfo::read(Path::new("/proc"), Path::new("/etc"), u32::MAX - 1),
            Err(DiscoveryError::Gone { .. })
        ));
        let a = p.attrs();
        assert!(a.contains(&("process.pid", AttrValue::Int(me as i64))));
    }
}
