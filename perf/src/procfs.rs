//! Small readers of `/proc`: per-thread CPU time of this process, CPU time, RSS and peak RSS of
//! another process, the CPU time of a process tree in nanoseconds, and the kernel memory
//! (`memlock`) of the BPF maps a process holds open.

use std::collections::BTreeMap;

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// (utime + stime) in seconds from the text of a `stat` file.
fn stat_cpu_s(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields after the command: state is field 3, utime 14, stime 15.
    let ut: u64 = f.get(11)?.parse().ok()?;
    let st: u64 = f.get(12)?.parse().ok()?;
    Some((ut + st) as f64 / clk_tck())
}

/// CPU seconds of a process (all its threads).
pub fn process_cpu_s(pid: u32) -> Option<f64> {
    stat_cpu_s(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// CPU seconds of this process's threads, summed by thread name.
pub fn threads_cpu_s() -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for e in dir.flatten() {
        let p = e.path();
        let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        let Some(cpu) = std::fs::read_to_string(p.join("stat"))
            .ok()
            .and_then(|s| stat_cpu_s(&s))
        else {
            continue;
        };
        *out.entry(comm.trim().to_string()).or_insert(0.0) += cpu;
    }
    out
}

/// A `kB` field of `/proc/<pid>/status`, in bytes.
pub fn status_bytes(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line[field.len()..]
        .trim_start_matches(':')
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Sum of `memlock:` over the BPF map fds a process holds (kernel memory of its maps).
pub fn bpf_map_bytes(pid: u32) -> Option<u64> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fdinfo")).ok()?;
    let mut total = 0;
    for e in dir.flatten() {
        let Ok(info) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        if !info.lines().any(|l| l.starts_with("map_type:")) {
            continue;
        }
        if let Some(v) = info
            .lines()
            .find_map(|l| l.strip_prefix("memlock:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            total += v;
        }
    }
    Some(total)
}

/// Resident bytes of a process's mappings of BPF maps (its ring buffers, mapped into user space).
/// They are part of `VmRSS` and also of the maps' `memlock`: subtract them from one of the two
/// so RSS + map memory does not count the rings twice.
pub fn bpf_mapped_rss_bytes(pid: u32) -> Option<u64> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    let mut in_map = false;
    let mut kb = 0u64;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && first.chars().next().is_some_and(|c| c.is_ascii_hexdigit()) {
            in_map = line.ends_with("anon_inode:bpf-map");
        } else if in_map {
            if let Some(v) = line.strip_prefix("Rss:") {
                kb += v
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    Some(kb * 1024)
}

/// Nanoseconds a thread has run, the first field of its `schedstat`.
fn schedstat_run_ns(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

/// Nanoseconds run by every thread of `pid` and of its descendants (`task/*/schedstat`, children
/// from `task/*/children`): a server's CPU time, workers included, at the scheduler's precision
/// rather than `stat`'s clock ticks. None if `pid` is gone.
pub fn tree_cpu_ns(pid: u32) -> Option<u64> {
    let mut total = 0u64;
    let mut seen_root = false;
    let mut stack = vec![pid];
    while let Some(p) = stack.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        seen_root |= p == pid;
        for t in tasks.flatten() {
            let dir = t.path();
            if let Some(ns) = std::fs::read_to_string(dir.join("schedstat"))
                .ok()
                .as_deref()
                .and_then(schedstat_run_ns)
            {
                total += ns;
            }
            if let Ok(kids) = std::fs::read_to_string(dir.join("children")) {
                stack.extend(
                    kids.split_whitespace()
                        .filter_map(|k| k.parse::<u32>().ok()),
                );
            }
        }
    }
    seen_root.then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_in_comm() {
        let stat = "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 5 0 0";
        let cpu = stat_cpu_s(stat).unwrap_or(-1.0);
        assert!((cpu - 300.0 / clk_tck()).abs() < 1e-9, "{cpu}");
        assert!(stat_cpu_s("garbage").is_none());
    }

    #[test]
    fn reads_this_process() {
        assert!(status_bytes(std::process::id(), "VmHWM").unwrap_or(0) > 0);
        assert!(process_cpu_s(std::process::id()).is_some());
        assert!(!threads_cpu_s().is_empty());
        assert_eq!(bpf_map_bytes(std::process::id()), Some(0));
    }

    #[test]
    fn schedstat_first_field_is_the_run_time() {
        assert_eq!(
            schedstat_run_ns("146214464 12636647 358\n"),
            Some(146_214_464)
        );
        assert_eq!(schedstat_run_ns(""), None);
        assert_eq!(schedstat_run_ns("x 1 2"), None);
    }

    #[test]
    fn a_tree_counts_its_children() {
        // A shell whose child spins for a while, then sleeps: the shell's tree holds at least
        // what the child ran. A tree of its own, not this test process's: other tests' threads
        // come and go in this process, and an exited thread's time leaves its tree.
        use std::os::unix::process::CommandExt;
        let mut shell = std::process::Command::new("sh")
            .args([
                "-c",
                "sh -c 'i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; sleep 5' & wait",
            ])
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("sh: {e}"));
        let outer = shell.id();
        let (mut inner, mut inner_ns) = (None, 0);
        for _ in 0..500 {
            std::thread::sleep(std::time::Duration::from_millis(10));
            let kids = std::fs::read_to_string(format!("/proc/{outer}/task/{outer}/children"))
                .unwrap_or_default();
            inner = kids.split_whitespace().find_map(|k| k.parse::<u32>().ok());
            let Some(pid) = inner else { continue };
            inner_ns = tree_cpu_ns(pid).unwrap_or(0);
            // The spin loop is over once the child shell sleeps.
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if inner_ns > 0 && state.contains(") S ") {
                break;
            }
        }
        let tree = tree_cpu_ns(outer).unwrap_or(0);
        // SAFETY: a signal to the process group the shell leads (both shells).
        unsafe { libc::kill(-(outer as i32), libc::SIGKILL) };
        let _ = shell.wait();
        assert!(inner.is_some(), "the shell started no child");
        assert!(inner_ns > 1_000_000, "the child ran {inner_ns} ns");
        assert!(tree >= inner_ns, "tree {tree} < child {inner_ns}");
        assert_eq!(tree_cpu_ns(u32::MAX), None);
    }
}
