//! A small read-only ELF reader: just what runtime detection needs from an executable or shared
//! library — section names, the program interpreter, `DT_NEEDED` entries, whether a symbol table
//! is present, the `.comment` producer strings, whether a string table names a symbol, and Go's
//! `.go.buildinfo`. It reads sections on demand with positioned reads, so multi-hundred-MiB
//! binaries cost only their headers and the few sections asked for.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::util::DiscoveryError;

const PT_INTERP: u32 = 3;
const SHT_DYNAMIC: u32 = 6;
const DT_NEEDED: u64 = 1;
/// The most we read of any one section.
const MAX_SECTION: u64 = 64 << 20;

/// One section header.
#[derive(Debug, Clone)]
pub struct Section {
    pub name: String,
    pub kind: u32,
    pub offset: u64,
    pub size: u64,
    pub link: u32,
}

/// An open ELF file.
pub struct Elf {
    file: File,
    path: PathBuf,
    is64: bool,
    le: bool,
    pub sections: Vec<Section>,
    has_interp: bool,
}

/// What Go's build info says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GoBuildInfo {
    /// e.g. `go1.22.1`; empty for pre-1.18 layouts we don't decode.
    pub version: String,
    /// The main package path, from the module info.
    pub main_path: String,
}

impl Elf {
    pub fn open(path: &Path) -> Result<Elf, DiscoveryError> {
        let err = |r: &str| DiscoveryError::Elf {
            path: path.to_path_buf(),
            reason: r.to_string(),
        };
        let file = File::open(path).map_err(|source| DiscoveryError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut ident = [0u8; 64];
        let n = file
            .read_at(&mut ident, 0)
            .map_err(|e| err(&e.to_string()))?;
        if n < 52 || &ident[..4] != b"\x7fELF" {
            return Err(err("no ELF magic"));
        }
        let is64 = match ident[4] {
            1 => false,
            2 => true,
            _ => return Err(err("bad class")),
        };
        let le = match ident[5] {
            1 => true,
            2 => false,
            _ => return Err(err("bad data encoding")),
        };
        let mut elf = Elf {
            file,
            path: path.to_path_buf(),
            is64,
            le,
            sections: Vec::new(),
            has_interp: false,
        };
        let h = &ident[..];
        let (phoff, shoff, phentsize, phnum, shentsize, shnum, shstrndx) = if is64 {
            (
                elf.u64(&h[32..]),
                elf.u64(&h[40..]),
                elf.u16(&h[54..]),
                elf.u16(&h[56..]),
                elf.u16(&h[58..]),
                elf.u16(&h[60..]),
                elf.u16(&h[62..]),
            )
        } else {
            (
                elf.u32(&h[28..]) as u64,
                elf.u32(&h[32..]) as u64,
                elf.u16(&h[42..]),
                elf.u16(&h[44..]),
                elf.u16(&h[46..]),
                elf.u16(&h[48..]),
                elf.u16(&h[50..]),
            )
        };
        // Program headers: only PT_INTERP matters.
        if phnum > 0 && phentsize >= 4 && phnum < 4096 {
            let ph = elf.read(phoff, phentsize as u64 * phnum as u64)?;
            elf.has_interp = ph
                .chunks_exact(phentsize as usize)
                .any(|p| elf.u32(p) == PT_INTERP);
        }
        // Section headers.
        if shnum == 0 || shnum >= 65000 || shentsize < if is64 { 64 } else { 40 } {
            return Ok(elf);
        }
        let sh = elf.read(shoff, shentsize as u64 * shnum as u64)?;
        let mut raw = Vec::new();
        for s in sh.chunks_exact(shentsize as usize) {
            let (name, kind, offset, size, link) = if is64 {
                (
                    elf.u32(s),
                    elf.u32(&s[4..]),
                    elf.u64(&s[24..]),
                    elf.u64(&s[32..]),
                    elf.u32(&s[40..]),
                )
            } else {
                (
                    elf.u32(s),
                    elf.u32(&s[4..]),
                    elf.u32(&s[16..]) as u64,
                    elf.u32(&s[20..]) as u64,
                    elf.u32(&s[24..]),
                )
            };
            raw.push((name, kind, offset, size, link));
        }
        let names = raw
            .get(shstrndx as usize)
            .map(|&(_, _, off, size, _)| elf.read(off, size.min(1 << 20)))
            .transpose()?
            .unwrap_or_default();
        elf.sections = raw
            .into_iter()
            .map(|(name, kind, offset, size, link)| Section {
                name: cstr(&names, name as usize),
                kind,
                offset,
                size,
                link,
            })
            .collect();
        Ok(elf)
    }

    fn u16(&self, b: &[u8]) -> u16 {
        let a = [b[0], b[1]];
        if self.le {
            u16::from_le_bytes(a)
        } else {
            u16::from_be_bytes(a)
        }
    }
    fn u32(&self, b: &[u8]) -> u32 {
        let a = [b[0], b[1], b[2], b[3]];
        if self.le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    }
    fn u64(&self, b: &[u8]) -> u64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[..8]);
        if self.le {
            u64::from_le_bytes(a)
        } else {
            u64::from_be_bytes(a)
        }
    }

    fn read(&self, off: u64, len: u64) -> Result<Vec<u8>, DiscoveryError> {
        if len > MAX_SECTION {
            return Err(DiscoveryError::Elf {
                path: self.path.clone(),
                reason: format!("section of {len} bytes is too large"),
            });
        }
        let mut buf = vec![0u8; len as usize];
        self.file
            .read_exact_at(&mut buf, off)
            .map_err(|e| DiscoveryError::Elf {
                path: self.path.clone(),
                reason: format!("read at {off}: {e}"),
            })?;
        Ok(buf)
    }

    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    pub fn section_data(&self, name: &str) -> Option<Vec<u8>> {
        let s = self.section(name)?;
        if s.kind == 8 {
            return None; // SHT_NOBITS
        }
        self.read(s.offset, s.size).ok()
    }

    /// Dynamically linked (has a program interpreter).
    pub fn is_dynamic(&self) -> bool {
        self.has_interp || self.sections.iter().any(|s| s.kind == SHT_DYNAMIC)
    }

    /// A full symbol table is present (not stripped).
    pub fn has_symtab(&self) -> bool {
        self.section(".symtab").is_some()
    }

    /// The `DT_NEEDED` libraries.
    pub fn needed(&self) -> Vec<String> {
        let Some(dynsec) = self.sections.iter().find(|s| s.kind == SHT_DYNAMIC) else {
            return Vec::new();
        };
        let Some(strsec) = self.sections.get(dynsec.link as usize) else {
            return Vec::new();
        };
        let (Ok(dynb), Ok(strb)) = (
            self.read(dynsec.offset, dynsec.size),
            self.read(strsec.offset, strsec.size),
        ) else {
            return Vec::new();
        };
        let ent = if self.is64 { 16 } else { 8 };
        dynb.chunks_exact(ent)
            .filter_map(|e| {
                let (tag, val) = if self.is64 {
                    (self.u64(e), self.u64(&e[8..]))
                } else {
                    (self.u32(e) as u64, self.u32(&e[4..]) as u64)
                };
                (tag == DT_NEEDED).then(|| cstr(&strb, val as usize))
            })
            .collect()
    }

    /// Whether `.dynstr` or `.strtab` contains `name` as a whole string.
    pub fn names_symbol(&self, names: &[&str]) -> bool {
        for sec in [".dynstr", ".strtab"] {
            if let Some(data) = self.section_data(sec) {
                for n in names {
                    let mut needle = Vec::with_capacity(n.len() + 2);
                    needle.push(0);
                    needle.extend_from_slice(n.as_bytes());
                    needle.push(0);
                    if data.windows(needle.len()).any(|w| w == needle.as_slice()) {
                        return true;
                    }
                }
            }
        }
        false
    }

    /// The `.comment` strings (compiler identification).
    pub fn comments(&self) -> Vec<String> {
        self.section_data(".comment")
            .map(|d| {
                d.split(|b| *b == 0)
                    .filter(|s| !s.is_empty())
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Go's build info, when this is a Go binary with a `.go.buildinfo` section.
    pub fn go_build_info(&self) -> Option<GoBuildInfo> {
        let s = self.section(".go.buildinfo")?;
        let data = self.read(s.offset, s.size.min(64 << 10)).ok()?;
        Some(parse_go_buildinfo(&data).unwrap_or_default())
    }

    /// Looks like Go even without build info (older toolchains).
    pub fn is_go(&self) -> bool {
        self.section(".go.buildinfo").is_some()
            || self.section(".gopclntab").is_some()
            || self.section(".note.go.buildid").is_some()
    }
}

fn cstr(b: &[u8], off: usize) -> String {
    let Some(rest) = b.get(off..) else {
        return String::new();
    };
    let end = rest.iter().position(|c| *c == 0).unwrap_or(rest.len());
    String::from_utf8_lossy(&rest[..end]).into_owned()
}

fn uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut x = 0u64;
    for (i, byte) in b.iter().enumerate().take(10) {
        x |= ((byte & 0x7f) as u64) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((x, i + 1));
        }
    }
    None
}

/// Decodes the Go 1.18+ inline layout of `.go.buildinfo`.
pub fn parse_go_buildinfo(data: &[u8]) -> Option<GoBuildInfo> {
    const MAGIC: &[u8] = b"\xff Go buildinf:";
    if data.len() < 32 || &data[..14] != MAGIC {
        return None;
    }
    let flags = data[15];
    if flags & 0x2 == 0 {
        return Some(GoBuildInfo::default());
    }
    let mut p = &data[32..];
    let mut next = || -> Option<String> {
        let (n, used) = uvarint(p)?;
        let s = p.get(used..used + n as usize)?;
        let out = String::from_utf8_lossy(s).into_owned();
        p = &p[used + n as usize..];
        Some(out)
    };
    let version = next()?;
    let modinfo = next().unwrap_or_default();
    // The module info is framed by 16-byte sentinels; its first line is `path\t<main package>`.
    let main_path = modinfo
        .find("path\t")
        .map(|i| {
            modinfo[i + 5..]
                .lines()
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .unwrap_or_default();
    Some(GoBuildInfo { version, main_path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_buildinfo_inline_layout() {
        let mut d = b"\xff Go buildinf:".to_vec();
        d.push(8);
        d.push(2);
        d.resize(32, 0);
        let v = b"go1.22.1";
        d.push(v.len() as u8);
        d.extend_from_slice(v);
        let m = b"0123456789abcdefpath\texample.com/cmd/app\nmod\texample.com\t(devel)\t\n0123456789abcdef";
        d.push(m.len() as u8);
        d.extend_from_slice(m);
        let bi = parse_go_buildinfo(&d).unwrap();
        assert_eq!(bi.version, "go1.22.1");
        assert_eq!(bi.main_path, "example.com/cmd/app");
        assert!(parse_go_buildinfo(b"not build info at all, nope......").is_none());
    }

    #[test]
    fn reads_own_test_binary() {
        let exe = std::env::current_exe().unwrap();
        let elf = Elf::open(&exe).unwrap();
        assert!(elf.section(".text").is_some());
        assert!(!elf.is_go());
        assert!(
            elf.comments().iter().any(|c| c.contains("rustc")),
            "{:?}",
            elf.comments()
        );
        if elf.is_dynamic() {
            assert!(
                elf.needed().iter().any(|n| n.starts_with("libc.so")),
                "{:?}",
                elf.needed()
            );
        }
    }

    #[test]
    fn rejects_non_elf() {
        let p = std::env::temp_dir().join(format!("telegen-not-elf-{}", std::process::id()));
        std::fs::write(&p, b"#!/bin/sh\necho hi\n").unwrap();
        assert!(matches!(Elf::open(&p), Err(DiscoveryError::Elf { .. })));
        let _ = std::fs::remove_file(&p);
        assert!(matches!(
            Elf::open(Path::new("/nonexistent/x")),
            Err(DiscoveryError::Io { .. })
        ));
    }
}
