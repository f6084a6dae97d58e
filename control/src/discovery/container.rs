//! Containers, from what the kernel shows about a process: `/proc/<pid>/cgroup` (v1 and v2 paths
//! as written by Docker, containerd, CRI-O and Podman, with the cgroupfs and systemd drivers) and,
//! when the cgroup path says nothing (cgroup namespaces show `0::/`), the bind-mount sources in
//! `/proc/<pid>/mountinfo`. Yields the container id, the runtime, and the Kubernetes pod uid (and
//! sometimes the container name) without asking any API.

use std::path::Path;

use telegen_dataplane::signal::Attrs;

use super::util::push_str;

/// What a process's cgroup and mounts say about its container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerInfo {
    /// The 64-hex container id.
    pub id: Option<String>,
    /// `docker`, `containerd`, `cri-o` or `podman`.
    pub runtime: Option<&'static str>,
    /// The Kubernetes pod uid (with dashes).
    pub pod_uid: Option<String>,
    /// The Kubernetes container name, when a kubelet mount reveals it.
    pub k8s_container_name: Option<String>,
}

impl ContainerInfo {
    pub fn is_empty(&self) -> bool {
        self.id.is_none() && self.pod_uid.is_none()
    }

    pub fn attrs(&self) -> Attrs {
        let mut a = Attrs::new();
        if let Some(id) = &self.id {
            push_str(&mut a, "container.id", id);
        }
        if let Some(rt) = self.runtime {
            push_str(&mut a, "container.runtime", rt);
        }
        if let Some(uid) = &self.pod_uid {
            push_str(&mut a, "k8s.pod.uid", uid);
        }
        if let Some(n) = &self.k8s_container_name {
            push_str(&mut a, "k8s.container.name", n);
        }
        a
    }
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_uid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| {
            if [8, 13, 18, 23].contains(&i) {
                b == b'-'
            } else {
                b.is_ascii_hexdigit()
            }
        })
}

/// A pod uid from one cgroup path segment: `pod<uid>` (cgroupfs) or
/// `kubepods-<qos>-pod<uid_with_underscores>.slice` (systemd).
fn pod_uid_of(seg: &str) -> Option<String> {
    let seg = seg.strip_suffix(".slice").unwrap_or(seg);
    let i = seg.rfind("pod")?;
    let uid = seg[i + 3..].replace('_', "-");
    is_uid(&uid).then_some(uid)
}

/// Reads one cgroup path (`/kubepods/burstable/pod<uid>/<id>`, `/system.slice/docker-<id>.scope`...).
fn parse_cgroup_path(path: &str, info: &mut ContainerInfo) {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let in_k8s = segs.iter().any(|s| s.starts_with("kubepods"));
    for (i, seg) in segs.iter().enumerate() {
        if info.pod_uid.is_none() && in_k8s {
            if let Some(uid) = pod_uid_of(seg) {
                info.pod_uid = Some(uid);
                continue;
            }
        }
        let s = seg.strip_suffix(".scope").unwrap_or(seg);
        let prefixed: &[(&str, &'static str)] = &[
            ("docker-", "docker"),
            ("cri-containerd-", "containerd"),
            ("nerdctl-", "containerd"),
            ("crio-", "cri-o"),
            ("libpod-", "podman"),
        ];
        let mut hit = None;
        for (p, rt) in prefixed {
            if let Some(id) = s.strip_prefix(p) {
                if is_hex64(id) {
                    hit = Some((id.to_string(), Some(*rt)));
                }
            }
        }
        if hit.is_none() && is_hex64(s) {
            let parent = if i > 0 { segs[i - 1] } else { "" };
            let rt = match parent {
                "docker" | "moby" => Some("docker"),
                "libpod_parent" => Some("podman"),
                _ if parent.starts_with("libpod-") => Some("podman"),
                _ => None,
            };
            hit = Some((s.to_string(), rt));
        }
        if let Some((id, rt)) = hit {
            if info.id.is_none() {
                info.id = Some(id);
            }
            if info.runtime.is_none() {
                info.runtime = rt;
            }
        }
    }
}

/// Parses the text of `/proc/<pid>/cgroup` (v1 lines and the v2 `0::` line).
pub fn parse_cgroup(text: &str) -> ContainerInfo {
    let mut info = ContainerInfo::default();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, _, Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        parse_cgroup_path(path, &mut info);
        if info.id.is_some() && info.runtime.is_some() && info.pod_uid.is_some() {
            break;
        }
    }
    info
}

/// Parses the text of `/proc/<pid>/mountinfo`: only the root-of-mount field (the 4th) is used,
/// since that is where bind mounts of a container's hostname, hosts and resolv.conf come from.
pub fn parse_mountinfo(text: &str) -> ContainerInfo {
    let mut info = ContainerInfo::default();
    let mut overlay_containers = None;
    let mut kubelet = false;
    let mut containerd = false;
    for line in text.lines() {
        let Some(root) = line.split_whitespace().nth(3) else {
            continue;
        };
        let segs: Vec<&str> = root.split('/').filter(|s| !s.is_empty()).collect();
        for (i, seg) in segs.iter().enumerate() {
            let next = segs.get(i + 1).copied().unwrap_or("");
            match *seg {
                "containers" if is_hex64(next) && segs[..i].contains(&"docker") => {
                    info.id.get_or_insert_with(|| next.to_string());
                    info.runtime.get_or_insert("docker");
                }
                "overlay-containers" if is_hex64(next) => {
                    overlay_containers.get_or_insert_with(|| next.to_string());
                }
                "pods" if i > 0 && segs[i - 1] == "kubelet" && is_uid(next) => {
                    kubelet = true;
                    info.pod_uid.get_or_insert_with(|| next.to_string());
                    if segs.get(i + 2) == Some(&"containers") {
                        if let Some(name) = segs.get(i + 3) {
                            info.k8s_container_name
                                .get_or_insert_with(|| name.to_string());
                        }
                    }
                }
                s if s.starts_with("io.containerd.") => {
                    containerd = true;
                    // .../io.containerd.runtime.v2.task/<namespace>/<id>/...
                    if s.starts_with("io.containerd.runtime.") {
                        if let Some(id) = segs.get(i + 2).filter(|id| is_hex64(id)) {
                            info.id.get_or_insert_with(|| id.to_string());
                        }
                    }
                }
                _ => {}
            }
        }
    }
    if let Some(id) = overlay_containers {
        info.id.get_or_insert(id);
        info.runtime
            .get_or_insert(if kubelet { "cri-o" } else { "podman" });
    }
    if containerd {
        info.runtime.get_or_insert("containerd");
    }
    info
}

/// Combines cgroup and mountinfo for one process under `proc_root`.
pub fn read(proc_root: &Path, pid: u32) -> ContainerInfo {
    let dir = proc_root.join(pid.to_string());
    let cg = std::fs::read_to_string(dir.join("cgroup"))
        .map(|t| parse_cgroup(&t))
        .unwrap_or_default();
    if cg.id.is_some() && cg.runtime.is_some() {
        return cg;
    }
    let mi = std::fs::read_to_string(dir.join("mountinfo"))
        .map(|t| parse_mountinfo(&t))
        .unwrap_or_default();
    merge(cg, mi)
}

/// Fills what the cgroup left open from mountinfo. A mountinfo id is used only when the cgroup
/// gave none (the cgroup id is the container the process is in; mounts may show a sandbox).
pub fn merge(mut cg: ContainerInfo, mi: ContainerInfo) -> ContainerInfo {
    if cg.id.is_none() {
        cg.id = mi.id.clone();
    }
    if cg.runtime.is_none() && cg.id.is_some() {
        cg.runtime = mi.runtime;
    }
    if cg.pod_uid.is_none() {
        cg.pod_uid = mi.pod_uid;
    }
    if cg.k8s_container_name.is_none() {
        cg.k8s_container_name = mi.k8s_container_name;
    }
    // Under Kubernetes with the cgroupfs driver a bare id does not name its runtime; when the
    // mounts don't either, containerd is by far the most common CRI.
    if cg.runtime.is_none() && cg.id.is_some() && cg.pod_uid.is_some() {
        cg.runtime = Some("containerd");
    }
    cg
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    const ID: &str = "3f4e8a1c2b5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7";
    const UID: &str = "8a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9";

    fn proc_fixtures() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/discovery/cgroup")
    }

    fn case(name: &str) -> ContainerInfo {
        let dir = proc_fixtures().join(name);
        let mi = std::fs::read_to_string(dir.join("mountinfo")).unwrap_or_default();
        let cg = std::fs::read_to_string(dir.join("cgroup")).unwrap();
        merge(parse_cgroup(&cg), parse_mountinfo(&mi))
    }

    #[test]
    fn docker_v1_and_v2() {
        for n in ["docker-v1", "docker-v2"] {
            let c = case(n);
            assert_eq!(c.id.as_deref(), Some(ID), "{n}");
            assert_eq!(c.runtime, Some("docker"), "{n}");
            assert_eq!(c.pod_uid, None, "{n}");
        }
    }

    #[test]
    fn containerd_kubernetes_v1_and_v2() {
        for n in ["containerd-k8s-v1", "containerd-k8s-v2"] {
            let c = case(n);
            assert_eq!(c.id.as_deref(), Some(ID), "{n}");
            assert_eq!(c.runtime, Some("containerd"), "{n}");
            assert_eq!(c.pod_uid.as_deref(), Some(UID), "{n}");
        }
        assert_eq!(
            case("containerd-k8s-v1").k8s_container_name.as_deref(),
            Some("web")
        );
    }

    #[test]
    fn crio_v1_and_v2() {
        for n in ["crio-v1", "crio-v2"] {
            let c = case(n);
            assert_eq!(c.id.as_deref(), Some(ID), "{n}");
            assert_eq!(c.runtime, Some("cri-o"), "{n}");
            assert_eq!(c.pod_uid.as_deref(), Some(UID), "{n}");
        }
    }

    #[test]
    fn podman_v1_and_v2() {
        for n in ["podman-v1", "podman-v2"] {
            let c = case(n);
            assert_eq!(c.id.as_deref(), Some(ID), "{n}");
            assert_eq!(c.runtime, Some("podman"), "{n}");
        }
    }

    #[test]
    fn cgroup_namespace_falls_back_to_mountinfo() {
        let c = case("docker-cgroupns");
        assert_eq!(c.id.as_deref(), Some(ID));
        assert_eq!(c.runtime, Some("docker"));
        let c = case("podman-cgroupns");
        assert_eq!(c.id.as_deref(), Some(ID));
        assert_eq!(c.runtime, Some("podman"));
    }

    #[test]
    fn host_process_has_no_container() {
        let c = case("host");
        assert!(c.is_empty(), "{c:?}");
        assert!(c.attrs().is_empty());
    }

    #[test]
    fn read_from_proc_root() {
        let root = proc_fixtures().join("proc");
        let c = read(&root, 4121);
        assert_eq!(c.id.as_deref(), Some(ID));
        assert_eq!(c.runtime, Some("containerd"));
        assert_eq!(c.pod_uid.as_deref(), Some(UID));
        assert!(read(&root, 999_999).is_empty());
    }
}
