//! Discovery of real processes started here (Python, Redis, Java, Go, C binaries built here):
//! runtime, TLS library and database detection. Every process is killed by a guard, even when a
//! test fails.

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use telegen::discovery::{attr_str, Discovery, MatchedBy, ServiceKind};
use telegen_dataplane::signal::AttrValue;

use common::*;

// ---------------------------------------------------------------------------------------------
// Real processes.

/// Kills and reaps its child on drop, whatever happened.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Guard {
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, g: &mut Guard, secs: u64) -> bool {
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        if let Ok(Some(_)) = g.0.try_wait() {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
    false
}

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(bin))
            .find(|c| c.is_file())
    })
}

fn spawn(cmd: &mut Command) -> Guard {
    Guard(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("telegen-disc-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The process's pid once its executable is no longer a launcher script (pyenv shims exec).
fn settled_exe(pid: u32, want: &str) -> bool {
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if let Ok(p) = std::fs::read_link(format!("/proc/{pid}/exe")) {
            if p.to_string_lossy().contains(want) {
                return true;
            }
        }
        thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn real_python_http_server() {
    let Some(py) = which("python3") else {
        println!("skipped: python3 not on PATH");
        return;
    };
    let port = free_port();
    let mut g = spawn(Command::new(py).args([
        "-m",
        "http.server",
        "--bind",
        "127.0.0.1",
        &port.to_string(),
    ]));
    assert!(
        wait_for_port(port, &mut g, 20),
        "python http.server did not start"
    );
    assert!(settled_exe(g.pid(), "python"));
    let mut d = Discovery::new(live_options());
    let a = d.process_resource(g.pid());
    assert!(has(&a, "process.runtime.name", "python"), "{a:?}");
    let v = attr_str(&a, "process.runtime.version").unwrap_or("");
    assert!(v.starts_with("3."), "python version {v:?}");
    assert!(has(&a, "service.name", "http.server"), "{a:?}");
    // Not a database: the services scan leaves it out.
    assert!(!d.services().iter().any(|s| s.pid == g.pid()));
}

#[test]
fn real_redis_server_is_a_discovered_database() {
    let Some(redis) = which("redis-server")
        .or_else(|| Some(PathBuf::from("/usr/bin/redis-server")).filter(|p| p.is_file()))
    else {
        println!("skipped: redis-server not installed (apt-get install -y redis-server)");
        return;
    };
    let port = free_port();
    let mut g = spawn(Command::new(redis).args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
    ]));
    assert!(
        wait_for_port(port, &mut g, 20),
        "redis-server did not start"
    );
    let mut d = Discovery::new(live_options());
    let svc = d.services();
    let s = svc
        .iter()
        .find(|s| s.pid == g.pid())
        .unwrap_or_else(|| panic!("redis not among {svc:?}"));
    assert_eq!(s.system, "redis");
    assert_eq!(s.kind, ServiceKind::Database);
    assert_eq!(s.matched_by, MatchedBy::Executable);
    assert!(s.listen.iter().any(|a| a.port() == port), "{:?}", s.listen);
    assert!(has(&s.attrs(), "db.system.name", "redis"));
    let a = d.process_resource(g.pid());
    assert!(has(&a, "process.executable.name", "redis-server"), "{a:?}");
    // Redis is C, though Debian's build links libstdc++ (for a C++ float parser): native either way.
    assert!(
        matches!(attr_str(&a, "process.runtime.name"), Some("c" | "c++")),
        "{a:?}"
    );
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", g.pid())).unwrap_or_default();
    if maps.contains("libssl.so") {
        assert!(has(&a, "telegen.tls.library", "openssl"), "{a:?}");
    }
}

#[test]
fn real_java_program() {
    let (Some(javac), Some(java)) = (which("javac"), which("java")) else {
        println!("skipped: no JDK (javac/java) on PATH");
        return;
    };
    let dir = tmpdir("java");
    std::fs::write(
        dir.join("Hold.java"),
        "public class Hold { public static void main(String[] a) throws Exception { \
         java.net.ServerSocket s = new java.net.ServerSocket(Integer.parseInt(a[0]), 1, \
         java.net.InetAddress.getByName(\"127.0.0.1\")); Thread.sleep(60000); } }",
    )
    .unwrap();
    let st = Command::new(javac)
        .arg("Hold.java")
        .current_dir(&dir)
        .status()
        .unwrap();
    assert!(st.success());
    let port = free_port();
    let mut g =
        spawn(Command::new(java).args(["-cp", dir.to_str().unwrap(), "Hold", &port.to_string()]));
    assert!(wait_for_port(port, &mut g, 30), "java did not start");
    let mut d = Discovery::new(live_options());
    let a = d.process_resource(g.pid());
    assert!(has(&a, "process.runtime.name", "java"), "{a:?}");
    let v = attr_str(&a, "process.runtime.version");
    assert!(
        v.is_some_and(|v| v.chars().next().unwrap().is_ascii_digit()),
        "{a:?}"
    );
    assert!(has(&a, "service.name", "Hold"), "{a:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn real_go_binary() {
    let Some(go) = which("go") else {
        println!("skipped: no Go toolchain on PATH");
        return;
    };
    let dir = tmpdir("go");
    std::fs::write(dir.join("go.mod"), "module example.com/hold\n\ngo 1.18\n").unwrap();
    std::fs::write(
        dir.join("main.go"),
        "package main\nimport \"time\"\nfunc main() { time.Sleep(time.Minute) }\n",
    )
    .unwrap();
    let st = Command::new(go)
        .args(["build", "-o", "hold", "."])
        .current_dir(&dir)
        .env("GOFLAGS", "-mod=mod")
        .status()
        .unwrap();
    assert!(st.success());
    let g = spawn(&mut Command::new(dir.join("hold")));
    assert!(settled_exe(g.pid(), "hold"));
    let a = Discovery::new(live_options()).process_resource(g.pid());
    assert!(has(&a, "process.runtime.name", "go"), "{a:?}");
    assert!(attr_str(&a, "process.runtime.version").is_some_and(|v| v.starts_with('1')));
    assert!(has(&a, "telegen.tls.library", "go"));
    // The module path comes from the same build info.
    assert!(
        attr_str(&a, "process.runtime.description").is_some_and(|d| d.contains("example.com/hold")),
        "{a:?}"
    );
    drop(g);
    let _ = std::fs::remove_dir_all(&dir);
}

fn cc(dir: &Path, src: &str, out: &str, args: &[&str]) -> bool {
    let Some(cc) = which("cc").or_else(|| which("gcc")) else {
        return false;
    };
    std::fs::write(dir.join("m.c"), src).unwrap();
    Command::new(cc)
        .arg("m.c")
        .arg("-o")
        .arg(out)
        .args(args)
        .current_dir(dir)
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[test]
fn real_static_stripped_c_binary() {
    let dir = tmpdir("cstatic");
    if !cc(
        &dir,
        "#include <unistd.h>\nint main(void){ sleep(60); return 0; }\n",
        "hold",
        &["-static", "-s"],
    ) {
        println!("skipped: no C compiler or static libc");
        return;
    }
    let g = spawn(&mut Command::new(dir.join("hold")));
    assert!(settled_exe(g.pid(), "hold"));
    let a = Discovery::new(live_options()).process_resource(g.pid());
    assert!(has(&a, "process.runtime.name", "c"), "{a:?}");
    assert!(has(&a, "telegen.process.linkage", "static"), "{a:?}");
    assert!(
        a.contains(&("telegen.process.stripped", AttrValue::Bool(true))),
        "{a:?}"
    );
    drop(g);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn real_c_binary_linking_libssl() {
    let dir = tmpdir("cssl");
    let src = "#include <unistd.h>\nextern int OPENSSL_init_ssl(unsigned long, const void *);\n\
               int main(void){ OPENSSL_init_ssl(0, 0); sleep(60); return 0; }\n";
    if !cc(&dir, src, "hold", &["-l:libssl.so.3"]) {
        println!("skipped: cannot link against libssl.so.3 here");
        return;
    }
    let g = spawn(&mut Command::new(dir.join("hold")));
    assert!(settled_exe(g.pid(), "hold"));
    thread::sleep(Duration::from_millis(100));
    let a = Discovery::new(live_options()).process_resource(g.pid());
    assert!(has(&a, "telegen.tls.library", "openssl"), "{a:?}");
    assert!(
        attr_str(&a, "telegen.tls.library.path").is_some_and(|p| p.contains("libssl.so")),
        "{a:?}"
    );
    assert!(has(&a, "telegen.process.linkage", "dynamic"));
    assert!(
        a.contains(&("telegen.process.stripped", AttrValue::Bool(false))),
        "{a:?}"
    );
    drop(g);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cache_is_per_pid_invalidated_on_exit_and_bounded() {
    let mut o = live_options();
    o.cache_capacity = 4;
    // Every ask checks the start time (the interval is tested on its own, below).
    o.recheck = Duration::ZERO;
    let mut d = Discovery::new(o);
    let mut kids: Vec<Guard> = (0..6)
        .map(|_| spawn(Command::new("sleep").arg("60")))
        .collect();
    for k in &kids {
        assert!(settled_exe(k.pid(), "sleep"));
    }
    let first = kids[0].pid();
    let a1 = d.process_resource(first);
    assert!(has(&a1, "process.executable.name", "sleep"), "{a1:?}");
    assert_eq!(d.process_resource(first), a1);
    for k in &kids {
        d.process_resource(k.pid());
    }
    assert!(d.cached() <= 4, "cache holds {}", d.cached());
    let last = kids.pop().unwrap();
    let pid = last.pid();
    d.process_resource(pid);
    drop(last); // kill + reap
    assert_eq!(
        d.process_resource(pid),
        vec![("process.pid", AttrValue::Int(pid as i64))]
    );
    drop(kids);
}

#[test]
fn live_host_never_panics() {
    let d = Discovery::new(live_options());
    let h = d.host_resource();
    assert!(has(&h, "os.type", "linux"));
    assert!(attr_str(&h, "host.arch").is_some());
}

#[test]
fn discovery_can_move_to_another_thread() {
    fn assert_send<T: Send + 'static>() {}
    assert_send::<Discovery>();
    let d = Discovery::new(fixture_options());
    let h = thread::spawn(move || d.host_resource()).join().unwrap();
    assert!(has(&h, "host.name", "fixture-host"));
}

/// A pid reused by another process is told apart by its start time, read again once the
/// cached entry is older than `recheck` (and not before: the export core asks for every batch).
#[test]
fn a_reused_pid_is_told_apart_after_the_recheck_interval() {
    let root = tmpdir("reuse");
    let pid_dir = root.join("proc/777");
    std::fs::create_dir_all(&pid_dir).unwrap();
    let stat = |comm: &str, start: u64| {
        let line = format!(
            "777 ({comm}) S 1 777 777 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 4 0 {start} 1000 50 1"
        );
        std::fs::write(pid_dir.join("stat"), line).unwrap();
    };
    let discovery = |recheck: Duration| {
        let mut o = fixture_options();
        o.proc_root = root.join("proc");
        o.recheck = recheck;
        Discovery::new(o)
    };
    let name = |d: &mut Discovery| {
        attr_str(&d.process_resource(777), "process.executable.name").map(str::to_string)
    };
    // Two resolvers see the first process; then the pid is reused.
    let (mut trusting, mut checking) = (
        discovery(Duration::from_secs(3600)),
        discovery(Duration::ZERO),
    );
    stat("first", 1000);
    assert_eq!(name(&mut trusting).as_deref(), Some("first"));
    assert_eq!(name(&mut checking).as_deref(), Some("first"));
    stat("second", 2000);
    assert_eq!(
        name(&mut trusting).as_deref(),
        Some("first"),
        "trusted within the interval"
    );
    assert_eq!(
        name(&mut checking).as_deref(),
        Some("second"),
        "re-read after it"
    );
    let _ = std::fs::remove_dir_all(&root);
}
