//! Which language runtime a process runs on, and which TLS library it uses. Sources, in order:
//! the executable's ELF (Go build info, Rust/GCC `.comment`, `DT_NEEDED`, symbol names), the
//! shared objects mapped in `/proc/<pid>/maps` (libjvm, libpython, libnode, libruby, libcoreclr,
//! libssl), and the executable's name and path (python3.11, pyenv/nvm version directories, the
//! JDK's `release` file). The TLS library matters to the TLS tracer: it needs to know whether to
//! attach to a shared libssl (and where it is), to a statically linked OpenSSL/BoringSSL, or to
//! Go's crypto/tls.

use std::path::Path;

use telegen_dataplane::signal::{AttrValue, Attrs};

use super::elf::Elf;
use super::process::ProcInfo;
use super::util::{parse_env_file, push_str, warn_once};

/// The TLS library a process uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsLibrary {
    /// A shared libssl (OpenSSL or a compatible fork), with the path mapped in the process.
    OpenSslShared { path: String },
    /// OpenSSL linked into the executable.
    OpenSslStatic,
    /// BoringSSL, shared (path) or linked in (None).
    BoringSsl { path: Option<String> },
    /// Go's crypto/tls.
    GoCryptoTls,
}

impl TlsLibrary {
    pub fn name(&self) -> &'static str {
        match self {
            TlsLibrary::OpenSslShared { .. } | TlsLibrary::OpenSslStatic => "openssl",
            TlsLibrary::BoringSsl { .. } => "boringssl",
            TlsLibrary::GoCryptoTls => "go",
        }
    }
}

/// What we learned about a process's runtime.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeInfo {
    /// `go`, `java`, `python`, `nodejs`, `ruby`, `dotnet`, `rust`, `c++`, `c`.
    pub name: Option<&'static str>,
    pub version: Option<String>,
    pub description: Option<String>,
    /// `Some(true)` when dynamically linked; `None` when the ELF could not be read.
    pub dynamic: Option<bool>,
    /// `Some(true)` when the executable has no symbol table.
    pub stripped: Option<bool>,
    pub tls: Option<TlsLibrary>,
}

impl RuntimeInfo {
    pub fn attrs(&self) -> Attrs {
        let mut a = Attrs::new();
        if let Some(n) = self.name {
            push_str(&mut a, "process.runtime.name", n);
        }
        if let Some(v) = &self.version {
            push_str(&mut a, "process.runtime.version", v);
        }
        if let Some(d) = &self.description {
            push_str(&mut a, "process.runtime.description", d);
        }
        if let Some(d) = self.dynamic {
            push_str(
                &mut a,
                "telegen.process.linkage",
                if d { "dynamic" } else { "static" },
            );
        }
        if let Some(s) = self.stripped {
            a.push(("telegen.process.stripped", AttrValue::Bool(s)));
        }
        if let Some(t) = &self.tls {
            push_str(&mut a, "telegen.tls.library", t.name());
            match t {
                TlsLibrary::OpenSslShared { path } | TlsLibrary::BoringSsl { path: Some(path) } => {
                    push_str(&mut a, "telegen.tls.library.path", path)
                }
                _ => {}
            }
        }
        a
    }
}

/// The file paths mapped into a process, deduplicated, in order of first appearance.
pub fn mapped_files(maps: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in maps.lines() {
        if let Some(path) = line.split_whitespace().nth(5) {
            if path.starts_with('/') && !out.iter().any(|p| p == path) {
                out.push(path.to_string());
            }
        }
    }
    out
}

fn base(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// `python3.11` -> `3.11`, `libpython3.12.so.1.0` -> `3.12`.
fn version_after(name: &str, prefix: &str) -> Option<String> {
    let rest = name.strip_prefix(prefix)?;
    let v: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let v = v.trim_end_matches('.').to_string();
    (!v.is_empty() && v.contains('.') || v.chars().all(|c| c.is_ascii_digit()) && !v.is_empty())
        .then_some(v)
}

/// A version directory in a path: `.../versions/3.11.7/...`, `.../node/v20.11.1/...`,
/// `.../Microsoft.NETCore.App/8.0.1/...`.
fn version_dir(path: &str, after: &str) -> Option<String> {
    let mut segs = path.split('/');
    while let Some(s) = segs.next() {
        if s == after {
            let v = segs.next()?.trim_start_matches('v');
            if v.starts_with(|c: char| c.is_ascii_digit()) {
                return Some(v.to_string());
            }
        }
    }
    None
}

/// Detects the runtime of a process already read into `proc`.
pub fn detect(proc_root: &Path, p: &ProcInfo) -> RuntimeInfo {
    let maps = std::fs::read_to_string(proc_root.join(p.pid.to_string()).join("maps"))
        .map(|m| mapped_files(&m))
        .unwrap_or_default();
    let elf = match Elf::open(&p.exe_file(proc_root)) {
        Ok(e) => Some(e),
        Err(super::util::DiscoveryError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            warn_once(
                "proc:exe",
                format!("cannot open /proc/{}/exe ({source}): runtimes are guessed from names only; run as root or with CAP_SYS_PTRACE", p.pid),
            );
            None
        }
        Err(e) => {
            log::debug!("process {}: {e}", p.pid);
            None
        }
    };
    detect_from(proc_root, p, elf.as_ref(), &maps)
}

/// Detection from already-gathered pieces (separated for tests).
pub fn detect_from(
    proc_root: &Path,
    p: &ProcInfo,
    elf: Option<&Elf>,
    maps: &[String],
) -> RuntimeInfo {
    let mut r = RuntimeInfo::default();
    let exe = p.exe_name();
    let lib = |pfx: &str| maps.iter().find(|m| base(m).starts_with(pfx)).cloned();

    if let Some(e) = elf {
        r.dynamic = Some(e.is_dynamic());
        r.stripped = Some(!e.has_symtab());
        if e.is_go() {
            r.name = Some("go");
            if let Some(bi) = e.go_build_info() {
                if !bi.version.is_empty() {
                    r.version = Some(bi.version.trim_start_matches("go").to_string());
                    r.description = Some(if bi.main_path.is_empty() {
                        bi.version.clone()
                    } else {
                        format!("{} {}", bi.version, bi.main_path)
                    });
                }
            }
            r.tls = Some(TlsLibrary::GoCryptoTls);
        }
    }

    if r.name.is_none() {
        if let Some(jvm) = lib("libjvm.so").or_else(|| (exe == "java").then(String::new)) {
            r.name = Some("java");
            // <JAVA_HOME>/bin/java or <JAVA_HOME>/lib/server/libjvm.so: read <JAVA_HOME>/release.
            let home = if !jvm.is_empty() {
                jvm.rsplit_once("/lib/").map(|(h, _)| h.to_string())
            } else {
                p.exe_path.rsplit_once("/bin/").map(|(h, _)| h.to_string())
            };
            if let Some(home) = home {
                if let Ok(t) =
                    std::fs::read_to_string(p.in_root(proc_root, &format!("{home}/release")))
                {
                    let kv = parse_env_file(&t);
                    let get = |k: &str| kv.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone());
                    r.version = get("JAVA_VERSION");
                    r.description = get("IMPLEMENTOR").map(|i| match get("JAVA_RUNTIME_VERSION") {
                        Some(rv) => format!("{i} {rv}"),
                        None => i,
                    });
                }
            }
        } else if let Some(l) = lib("libpython") {
            r.name = Some("python");
            r.version = version_after(base(&l), "libpython");
        } else if exe.starts_with("python") || exe.starts_with("pypy") {
            r.name = Some("python");
            r.version = version_dir(&p.exe_path, "versions")
                .or_else(|| version_after(&exe, "python"))
                .or_else(|| version_after(&exe, "pypy"));
        } else if let Some(l) = lib("libnode.so") {
            r.name = Some("nodejs");
            r.description = Some(format!(
                "libnode ABI {}",
                base(&l).trim_start_matches("libnode.so.")
            ));
        } else if exe == "node" || exe == "nodejs" {
            r.name = Some("nodejs");
            r.version = version_dir(&p.exe_path, "node");
        } else if let Some(l) = lib("libruby") {
            r.name = Some("ruby");
            let b = base(&l);
            r.version = version_after(b, "libruby-").or_else(|| version_after(b, "libruby.so."));
        } else if exe.starts_with("ruby") {
            r.name = Some("ruby");
            r.version =
                version_after(&exe, "ruby").or_else(|| version_dir(&p.exe_path, "versions"));
        } else if let Some(l) = lib("libcoreclr.so") {
            r.name = Some("dotnet");
            r.version = version_dir(&l, "Microsoft.NETCore.App");
        } else if exe == "dotnet" {
            r.name = Some("dotnet");
        } else if let Some(e) = elf {
            let comments = e.comments();
            let needed = e.needed();
            if let Some(rv) = comments
                .iter()
                .find_map(|c| c.strip_prefix("rustc version "))
            {
                r.name = Some("rust");
                r.version = rv.split_whitespace().next().map(str::to_string);
                r.description = Some(format!("rustc {rv}"));
            } else if e.names_symbol(&["rust_begin_unwind", "rust_eh_personality"]) {
                r.name = Some("rust");
            } else {
                let cxx = needed
                    .iter()
                    .any(|n| n.starts_with("libstdc++") || n.starts_with("libc++"))
                    || lib("libstdc++").is_some();
                r.name = Some(if cxx { "c++" } else { "c" });
                r.description = comments
                    .iter()
                    .find(|c| c.starts_with("GCC:") || c.contains("clang"))
                    .cloned();
            }
        }
    }

    if r.tls.is_none() {
        r.tls = detect_tls(elf, maps);
    }
    r
}

fn detect_tls(elf: Option<&Elf>, maps: &[String]) -> Option<TlsLibrary> {
    if let Some(ssl) = maps.iter().find(|m| base(m).starts_with("libssl.so")) {
        let is_boring = ssl.to_ascii_lowercase().contains("boringssl")
            || Elf::open(Path::new(ssl))
                .map(|e| e.names_symbol(&["BORINGSSL_self_test", "BORINGSSL_integrity_test"]))
                .unwrap_or(false);
        return Some(if is_boring {
            TlsLibrary::BoringSsl {
                path: Some(ssl.clone()),
            }
        } else {
            TlsLibrary::OpenSslShared { path: ssl.clone() }
        });
    }
    let e = elf?;
    if let Some(n) = e.needed().into_iter().find(|n| n.starts_with("libssl.so")) {
        return Some(TlsLibrary::OpenSslShared { path: n });
    }
    if e.names_symbol(&["BORINGSSL_self_test", "BORINGSSL_integrity_test"]) {
        return Some(TlsLibrary::BoringSsl { path: None });
    }
    if e.names_symbol(&["SSL_read", "SSL_write", "SSL_read_ex"]) {
        return Some(TlsLibrary::OpenSslStatic);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc_with(exe: &str) -> ProcInfo {
        ProcInfo {
            pid: 1,
            exe_path: exe.to_string(),
            ..Default::default()
        }
    }

    #[test]
    fn maps_parsing() {
        let m = "55d0 r--p 00000000 08:01 123 /usr/bin/python3.11\n7f00 r-xp 00000000 08:01 9 /usr/lib/x86_64-linux-gnu/libssl.so.3\n7f01 r--p 0 00:00 0 [heap]\n7f02 r-xp 0 08:01 9 /usr/lib/x86_64-linux-gnu/libssl.so.3\n7f03 rw-p 0 00:00 0\n";
        assert_eq!(
            mapped_files(m),
            vec![
                "/usr/bin/python3.11",
                "/usr/lib/x86_64-linux-gnu/libssl.so.3"
            ]
        );
    }

    #[test]
    fn interpreters_by_name_and_library() {
        let root = Path::new("/nonexistent");
        let r = detect_from(
            root,
            &proc_with("/root/.pyenv/versions/3.11.7/bin/python3.11"),
            None,
            &[],
        );
        assert_eq!(
            (r.name, r.version.as_deref()),
            (Some("python"), Some("3.11.7"))
        );
        let r = detect_from(root, &proc_with("/usr/bin/python3.12"), None, &[]);
        assert_eq!(
            (r.name, r.version.as_deref()),
            (Some("python"), Some("3.12"))
        );
        let r = detect_from(
            root,
            &proc_with("/usr/bin/uwsgi"),
            None,
            &["/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0".into()],
        );
        assert_eq!(
            (r.name, r.version.as_deref()),
            (Some("python"), Some("3.11"))
        );
        let r = detect_from(
            root,
            &proc_with("/home/u/.nvm/versions/node/v20.11.1/bin/node"),
            None,
            &[],
        );
        assert_eq!(
            (r.name, r.version.as_deref()),
            (Some("nodejs"), Some("20.11.1"))
        );
        let r = detect_from(
            root,
            &proc_with("/usr/bin/ruby3.1"),
            None,
            &["/usr/lib/x86_64-linux-gnu/libruby-3.1.so.3.1.2".into()],
        );
        assert_eq!((r.name, r.version.as_deref()), (Some("ruby"), Some("3.1")));
        let r = detect_from(
            root,
            &proc_with("/app/myapi"),
            None,
            &["/usr/share/dotnet/shared/Microsoft.NETCore.App/8.0.1/libcoreclr.so".into()],
        );
        assert_eq!(
            (r.name, r.version.as_deref()),
            (Some("dotnet"), Some("8.0.1"))
        );
        let r = detect_from(root, &proc_with("/usr/lib/jvm/x/bin/java"), None, &[]);
        assert_eq!(r.name, Some("java"));
    }

    #[test]
    fn shared_libssl_and_boringssl_paths() {
        let r = detect_from(
            Path::new("/x"),
            &proc_with("/usr/sbin/nginx"),
            None,
            &["/usr/lib/x86_64-linux-gnu/libssl.so.3".into()],
        );
        assert_eq!(
            r.tls,
            Some(TlsLibrary::OpenSslShared {
                path: "/usr/lib/x86_64-linux-gnu/libssl.so.3".into()
            })
        );
        let r = detect_from(
            Path::new("/x"),
            &proc_with("/opt/envoy"),
            None,
            &["/opt/boringssl/lib/libssl.so".into()],
        );
        assert_eq!(r.tls.as_ref().map(|t| t.name()), Some("boringssl"));
    }

    #[test]
    fn own_test_binary_is_rust() {
        let me = std::process::id();
        let p = ProcInfo::read(Path::new("/proc"), Path::new("/etc"), me).unwrap();
        let r = detect(Path::new("/proc"), &p);
        assert_eq!(r.name, Some("rust"), "{r:?}");
        assert!(r.version.is_some());
        assert_eq!(r.stripped, Some(false));
    }
}
