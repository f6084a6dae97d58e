//! Small helpers every reader shares: the error type, warn-once logging, reading files under a
//! root path, and building attribute lists. Nothing here knows what is being discovered.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use telegen_dataplane::signal::{AttrValue, Attrs};

/// What can go wrong while discovering. Callers mostly turn these into a warning and leave the
/// attribute out; nothing in discovery is fatal.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP request to {url} failed: {reason}")]
    Http { url: String, reason: String },
    #[error("cannot parse {what}: {reason}")]
    Parse { what: String, reason: String },
    #[error("not an ELF file we can read ({path}): {reason}")]
    Elf { path: PathBuf, reason: String },
    #[error("process {pid} is gone")]
    Gone { pid: u32 },
}

impl DiscoveryError {
    pub(crate) fn parse(what: impl Into<String>, reason: impl Into<String>) -> Self {
        DiscoveryError::Parse {
            what: what.into(),
            reason: reason.into(),
        }
    }
}

/// Logs `msg` as a warning the first time `key` is seen in this process, and never again.
pub(crate) fn warn_once(key: &str, msg: impl std::fmt::Display) {
    static SEEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let seen = SEEN.get_or_init(|| Mutex::new(HashSet::new()));
    let first = match seen.lock() {
        Ok(mut s) => {
            if s.len() > 10_000 {
                s.clear();
            }
            s.insert(key.to_string())
        }
        Err(_) => true,
    };
    if first {
        log::warn!("{msg}");
    }
}

/// Reads a small text file, trimmed; `None` when it is missing, unreadable or empty.
pub(crate) fn read_trim(path: &Path) -> Option<String> {
    let s = std::fs::read_to_string(path).ok()?;
    let t = s.trim();
    if t.is_empty() {
        None
    } else {
        Some(t.to_string())
    }
}

/// Reads a text file, with the error naming the path.
pub(crate) fn read_string(path: &Path) -> Result<String, DiscoveryError> {
    std::fs::read_to_string(path).map_err(|source| DiscoveryError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Pushes a string attribute unless the value is empty.
pub(crate) fn push_str(attrs: &mut Attrs, key: &'static str, value: impl Into<String>) {
    let v = value.into();
    if !v.is_empty() {
        attrs.push((key, AttrValue::Str(v)));
    }
}

/// Replaces or adds an attribute.
pub(crate) fn set_attr(attrs: &mut Attrs, key: &'static str, value: AttrValue) {
    if let Some(slot) = attrs.iter_mut().find(|(k, _)| *k == key) {
        slot.1 = value;
    } else {
        attrs.push((key, value));
    }
}

/// The string value of `key`, if present and a string.
pub fn attr_str<'a>(attrs: &'a Attrs, key: &str) -> Option<&'a str> {
    attrs.iter().find_map(|(k, v)| match v {
        AttrValue::Str(s) if *k == key => Some(s.as_str()),
        _ => None,
    })
}

/// Renders an attribute value as plain text.
pub fn value_text(v: &AttrValue) -> String {
    match v {
        AttrValue::Str(s) => s.clone(),
        AttrValue::Text(s) => s.to_string(),
        AttrValue::Int(i) => i.to_string(),
        AttrValue::Bool(b) => b.to_string(),
        AttrValue::Double(d) => d.to_string(),
    }
}

/// Parses `KEY=value` lines (os-release style): quotes removed, comments skipped.
pub(crate) fn parse_env_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') {
                return None;
            }
            let (k, v) = l.split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            Some((k.trim().to_string(), v.replace("\\\"", "\"")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_file_quotes_and_comments() {
        let kv = parse_env_file("# c\nNAME=\"Debian GNU/Linux\"\nID=debian\nX='y z'\n\n");
        assert_eq!(
            kv,
            vec![
                ("NAME".into(), "Debian GNU/Linux".into()),
                ("ID".into(), "debian".into()),
                ("X".into(), "y z".into())
            ]
        );
    }

    #[test]
    fn set_attr_replaces() {
        let mut a: Attrs = vec![("k", AttrValue::Int(1))];
        set_attr(&mut a, "k", AttrValue::Int(2));
        set_attr(&mut a, "j", AttrValue::Bool(true));
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].1, AttrValue::Int(2));
    }
}
