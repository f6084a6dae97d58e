//! The host and its operating system: names, ids, architecture, os-release, kernel, CPU, and
//! whether we run inside a virtual machine (and which hypervisor). Every reader takes the proc,
//! sys and etc roots so captured fixtures of other distributions can stand in for the live host.
//! Attributes without a semantic convention (kernel release, CPU count, virtualization) use the
//! `telegen.` prefix.

use std::path::Path;

use telegen_dataplane::signal::{AttrValue, Attrs};

use super::util::{parse_env_file, push_str, read_trim};

/// What os-release says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsRelease {
    pub id: String,
    pub name: String,
    pub version_id: String,
    pub pretty_name: String,
    pub build_id: String,
}

/// Parses an os-release file's text.
pub fn parse_os_release(text: &str) -> OsRelease {
    let mut os = OsRelease::default();
    for (k, v) in parse_env_file(text) {
        match k.as_str() {
            "ID" => os.id = v,
            "NAME" => os.name = v,
            "VERSION_ID" => os.version_id = v,
            "PRETTY_NAME" => os.pretty_name = v,
            "BUILD_ID" => os.build_id = v,
            _ => {}
        }
    }
    os
}

/// Reads os-release from `<etc>/os-release`, falling back to `<etc>/../usr/lib/os-release`.
pub fn read_os_release(etc_root: &Path) -> Option<OsRelease> {
    let text = std::fs::read_to_string(etc_root.join("os-release"))
        .or_else(|_| {
            let usr = etc_root.parent().unwrap_or(Path::new("/"));
            std::fs::read_to_string(usr.join("usr/lib/os-release"))
        })
        .ok()?;
    Some(parse_os_release(&text))
}

/// The CPU as /proc/cpuinfo describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuInfo {
    pub model_name: String,
    pub vendor_id: String,
    pub count: usize,
    /// The `hypervisor` flag is set (x86 guests).
    pub hypervisor_flag: bool,
}

/// Parses /proc/cpuinfo (x86 and ARM layouts).
pub fn parse_cpuinfo(text: &str) -> CpuInfo {
    let mut c = CpuInfo::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        match k {
            "processor" => c.count += 1,
            "model name" | "Model Name" | "cpu model" if c.model_name.is_empty() => {
                c.model_name = v.to_string()
            }
            "Hardware" | "Processor"
                if c.model_name.is_empty() && !v.chars().all(|ch| ch.is_ascii_digit()) =>
            {
                c.model_name = v.to_string()
            }
            "vendor_id" | "CPU implementer" if c.vendor_id.is_empty() => {
                c.vendor_id = v.to_string()
            }
            "flags" | "Features" if v.split_whitespace().any(|f| f == "hypervisor") => {
                c.hypervisor_flag = true;
            }
            _ => {}
        }
    }
    c
}

/// DMI strings from /sys/class/dmi/id; `None` for each file that is missing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dmi {
    /// Whether the DMI directory exists at all.
    pub present: bool,
    pub sys_vendor: String,
    pub product_name: String,
    pub bios_vendor: String,
    pub board_vendor: String,
    pub chassis_asset_tag: String,
    pub product_uuid: String,
    /// /sys/hypervisor/type and /sys/hypervisor/uuid (Xen guests, older EC2).
    pub hypervisor_type: String,
    pub hypervisor_uuid: String,
}

impl Dmi {
    pub fn read(sys_root: &Path) -> Dmi {
        let d = sys_root.join("class/dmi/id");
        let r = |f: &str| read_trim(&d.join(f)).unwrap_or_default();
        Dmi {
            present: d.is_dir(),
            sys_vendor: r("sys_vendor"),
            product_name: r("product_name"),
            bios_vendor: r("bios_vendor"),
            board_vendor: r("board_vendor"),
            chassis_asset_tag: r("chassis_asset_tag"),
            product_uuid: r("product_uuid"),
            hypervisor_type: read_trim(&sys_root.join("hypervisor/type")).unwrap_or_default(),
            hypervisor_uuid: read_trim(&sys_root.join("hypervisor/uuid")).unwrap_or_default(),
        }
    }

    /// All DMI strings, lower-cased, joined: for substring tests.
    pub fn haystack(&self) -> String {
        [
            &self.sys_vendor,
            &self.product_name,
            &self.bios_vendor,
            &self.board_vendor,
            &self.chassis_asset_tag,
        ]
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join("|")
    }
}

/// Names the hypervisor from DMI and sys files, if any says so.
pub fn hypervisor(dmi: &Dmi) -> Option<&'static str> {
    let h = dmi.haystack();
    let table: &[(&str, &str)] = &[
        ("amazon ec2", "kvm"),
        ("google", "kvm"),
        ("qemu", "kvm"),
        ("kvm", "kvm"),
        ("openstack", "kvm"),
        ("alibaba cloud", "kvm"),
        ("vmware", "vmware"),
        ("virtualbox", "virtualbox"),
        ("innotek", "virtualbox"),
        ("xen", "xen"),
        ("parallels", "parallels"),
        ("bochs", "bochs"),
        ("bhyve", "bhyve"),
        ("oraclecloud", "kvm"),
        ("digitalocean", "kvm"),
        ("microsoft corporation", "hyperv"),
    ];
    if dmi.hypervisor_type == "xen" {
        return Some("xen");
    }
    table
        .iter()
        .find(|(needle, _)| h.contains(needle))
        .map(|(_, name)| *name)
}

/// Names a hypervisor from its CPUID signature (leaf 0x4000_0000).
pub fn hypervisor_from_signature(sig: &[u8; 12]) -> Option<&'static str> {
    Some(match sig {
        b"KVMKVMKVM\0\0\0" => "kvm",
        b"Microsoft Hv" => "hyperv",
        b"VMwareVMware" => "vmware",
        b"XenVMMXenVMM" => "xen",
        b"VBoxVBoxVBox" => "virtualbox",
        b"TCGTCGTCGTCG" => "qemu",
        b"ACRNACRNACRN" => "acrn",
        b"bhyve bhyve " => "bhyve",
        b" lrpepyh  vr" => "parallels",
        _ => return None,
    })
}

/// The running hypervisor's CPUID signature, on x86_64.
#[cfg(target_arch = "x86_64")]
pub fn cpuid_hypervisor() -> Option<&'static str> {
    // SAFETY: CPUID exists on every x86_64 processor and has no side effects; leaf 0x4000_0000
    // is reserved for hypervisors, and whatever it returns elsewhere is only compared.
    #[allow(unused_unsafe)]
    let r = unsafe { std::arch::x86_64::__cpuid(0x4000_0000) };
    let mut sig = [0u8; 12];
    sig[..4].copy_from_slice(&r.ebx.to_le_bytes());
    sig[4..8].copy_from_slice(&r.ecx.to_le_bytes());
    sig[8..].copy_from_slice(&r.edx.to_le_bytes());
    hypervisor_from_signature(&sig)
}

/// The running hypervisor's CPUID signature (not available on this architecture).
#[cfg(not(target_arch = "x86_64"))]
pub fn cpuid_hypervisor() -> Option<&'static str> {
    None
}

/// Maps Rust's architecture name to the semantic-convention `host.arch` value.
pub fn semconv_arch(arch: &str) -> &str {
    match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "x86",
        "arm" => "arm32",
        "powerpc" => "ppc32",
        "powerpc64" => "ppc64",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// Everything we know about the host, ready to be turned into attributes.
#[derive(Debug, Clone, Default)]
pub struct HostInfo {
    pub hostname: String,
    pub machine_id: String,
    pub arch: String,
    pub os: Option<OsRelease>,
    pub kernel_release: String,
    pub kernel_version: String,
    pub cpu: CpuInfo,
    pub dmi: Dmi,
    pub hypervisor: Option<String>,
    pub is_vm: bool,
}

impl HostInfo {
    /// Reads the host from the given roots. Never fails: what cannot be read is left empty.
    pub fn read(proc_root: &Path, sys_root: &Path, etc_root: &Path) -> HostInfo {
        let hostname = read_trim(&proc_root.join("sys/kernel/hostname"))
            .or_else(|| read_trim(&etc_root.join("hostname")))
            .unwrap_or_default();
        let machine_id = read_trim(&etc_root.join("machine-id"))
            .or_else(|| read_trim(&etc_root.join("../var/lib/dbus/machine-id")))
            .unwrap_or_default();
        let cpu = std::fs::read_to_string(proc_root.join("cpuinfo"))
            .map(|t| parse_cpuinfo(&t))
            .unwrap_or_default();
        let dmi = Dmi::read(sys_root);
        // DMI first; on the live host, a guest without DMI (Firecracker, some containers) can
        // still be asked through CPUID.
        let hv = hypervisor(&dmi).or_else(|| {
            (cpu.hypervisor_flag && proc_root == Path::new("/proc"))
                .then(cpuid_hypervisor)
                .flatten()
        });
        let is_vm = cpu.hypervisor_flag || hv.is_some();
        HostInfo {
            hostname,
            machine_id,
            arch: semconv_arch(std::env::consts::ARCH).to_string(),
            os: read_os_release(etc_root),
            kernel_release: read_trim(&proc_root.join("sys/kernel/osrelease")).unwrap_or_default(),
            kernel_version: read_trim(&proc_root.join("sys/kernel/version")).unwrap_or_default(),
            hypervisor: hv
                .map(str::to_string)
                .or_else(|| is_vm.then(|| "unknown".to_string())),
            is_vm,
            cpu,
            dmi,
        }
    }

    /// The host's resource attributes.
    pub fn attrs(&self) -> Attrs {
        let mut a = Attrs::new();
        push_str(&mut a, "host.name", &self.hostname);
        push_str(&mut a, "host.id", &self.machine_id);
        push_str(&mut a, "host.arch", &self.arch);
        push_str(&mut a, "os.type", "linux");
        if let Some(os) = &self.os {
            let desc = if os.pretty_name.is_empty() {
                os.name.clone()
            } else {
                os.pretty_name.clone()
            };
            let desc = if self.kernel_release.is_empty() {
                desc
            } else {
                format!("{desc} (Linux {})", self.kernel_release)
            };
            push_str(&mut a, "os.description", desc);
            push_str(&mut a, "os.name", &os.name);
            push_str(&mut a, "os.version", &os.version_id);
            push_str(&mut a, "os.build_id", &os.build_id);
        }
        push_str(&mut a, "telegen.host.kernel.release", &self.kernel_release);
        push_str(&mut a, "host.cpu.model.name", &self.cpu.model_name);
        push_str(&mut a, "host.cpu.vendor.id", &self.cpu.vendor_id);
        if self.cpu.count > 0 {
            a.push((
                "telegen.host.cpu.count",
                AttrValue::Int(self.cpu.count as i64),
            ));
        }
        a.push(("telegen.host.vm", AttrValue::Bool(self.is_vm)));
        if let Some(h) = &self.hypervisor {
            push_str(&mut a, "telegen.host.hypervisor", h);
        }
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::util::attr_str;
    use std::path::PathBuf;

    fn fixtures() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/discovery")
    }

    #[test]
    fn os_release_of_several_distributions() {
        let cases = [
            (
                "debian12",
                "debian",
                "Debian GNU/Linux",
                "12",
                "Debian GNU/Linux 12 (bookworm)",
            ),
            (
                "ubuntu2204",
                "ubuntu",
                "Ubuntu",
                "22.04",
                "Ubuntu 22.04.4 LTS",
            ),
            (
                "alpine319",
                "alpine",
                "Alpine Linux",
                "3.19.1",
                "Alpine Linux v3.19",
            ),
            (
                "rhel9",
                "rhel",
                "Red Hat Enterprise Linux",
                "9.3",
                "Red Hat Enterprise Linux 9.3 (Plow)",
            ),
        ];
        for (dir, id, name, ver, pretty) in cases {
            let os = read_os_release(&fixtures().join("etc").join(dir)).unwrap();
            assert_eq!(os.id, id, "{dir}");
            assert_eq!(os.name, name, "{dir}");
            assert_eq!(os.version_id, ver, "{dir}");
            assert_eq!(os.pretty_name, pretty, "{dir}");
        }
    }

    #[test]
    fn cpuinfo_x86_and_arm() {
        let x86 = parse_cpuinfo(
            "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\nflags\t\t: fpu vme hypervisor\n\nprocessor\t: 1\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\nflags\t\t: fpu vme hypervisor\n",
        );
        assert_eq!(x86.count, 2);
        assert_eq!(x86.model_name, "Intel(R) Xeon(R) CPU @ 2.20GHz");
        assert!(x86.hypervisor_flag);
        let arm = parse_cpuinfo("processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd\nCPU implementer\t: 0x41\n\nprocessor\t: 1\n");
        assert_eq!(arm.count, 2);
        assert_eq!(arm.vendor_id, "0x41");
        assert!(!arm.hypervisor_flag);
    }

    #[test]
    fn host_from_fixture_roots() {
        let f = fixtures();
        let h = HostInfo::read(
            &f.join("proc"),
            &f.join("sys/aws"),
            &f.join("etc/ubuntu2204"),
        );
        assert_eq!(h.hostname, "fixture-host");
        assert_eq!(h.machine_id, "0123456789abcdef0123456789abcdef");
        assert_eq!(h.kernel_release, "6.1.0-18-amd64");
        assert_eq!(h.hypervisor.as_deref(), Some("kvm"));
        assert!(h.is_vm);
        let a = h.attrs();
        assert_eq!(attr_str(&a, "os.name"), Some("Ubuntu"));
        assert_eq!(attr_str(&a, "os.version"), Some("22.04"));
        assert_eq!(attr_str(&a, "os.type"), Some("linux"));
        assert_eq!(
            attr_str(&a, "host.cpu.model.name"),
            Some("AMD EPYC 7R13 Processor")
        );
        assert!(a.contains(&("telegen.host.cpu.count", AttrValue::Int(2))));
    }

    #[test]
    fn cpuid_signatures() {
        assert_eq!(hypervisor_from_signature(b"KVMKVMKVM\0\0\0"), Some("kvm"));
        assert_eq!(hypervisor_from_signature(b"Microsoft Hv"), Some("hyperv"));
        assert_eq!(hypervisor_from_signature(b"GenuineIntel"), None);
        // Must not crash wherever it runs.
        let _ = cpuid_hypervisor();
    }

    #[test]
    fn bare_metal_has_no_hypervisor() {
        let f = fixtures();
        let dmi = Dmi::read(&f.join("sys/baremetal"));
        assert!(dmi.present);
        assert_eq!(hypervisor(&dmi), None);
        assert_eq!(hypervisor(&Dmi::read(&f.join("sys/azure"))), Some("hyperv"));
    }
}
