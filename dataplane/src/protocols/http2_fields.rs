//! The header fields of an HTTP/2 header block that matter for an exchange, and the
//! per-connection memo that shares the values a connection's calls repeat.

use std::sync::Arc;

use super::{MAX_AUTHORITY, MAX_GRPC_MESSAGE, MAX_PATH, MAX_SHORT, MAX_TRACEPARENT};

fn owned(bytes: &[u8], cap: usize) -> String {
    let bytes = &bytes[..bytes.len().min(cap)];
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

fn set(slot: &mut Option<String>, v: &[u8], cap: usize) {
    if slot.is_none() {
        *slot = Some(owned(v, cap));
    }
}

/// The fields a connection's calls usually repeat (method, path, authority, scheme, content
/// type): the last few values of each are kept per connection, and a field equal to one of them
/// is shared (a reference count) instead of validated and copied again. A gateway connection
/// typically cycles through a handful of paths, hence a few ways per field.
#[derive(Debug, Default)]
pub(super) struct Memo {
    pub(super) ways: [[Option<Arc<str>>; MEMO_WAYS]; 5],
    /// Per field, the way the next new value replaces.
    next: [u8; 5],
}

pub(super) const MEMO_WAYS: usize = 4;
const M_METHOD: usize = 0;
pub(super) const M_PATH: usize = 1;
const M_AUTHORITY: usize = 2;
const M_SCHEME: usize = 3;
const M_CONTENT_TYPE: usize = 4;

impl Memo {
    fn set(&mut self, slot: &mut Option<Arc<str>>, which: usize, v: &[u8], cap: usize) {
        if slot.is_some() {
            return;
        }
        let v = &v[..v.len().min(cap)];
        let ways = &mut self.ways[which];
        if let Some(hit) = ways.iter().flatten().find(|w| w.as_bytes() == v) {
            *slot = Some(hit.clone());
            return;
        }
        let fresh: Arc<str> = match std::str::from_utf8(v) {
            Ok(s) => s.into(),
            Err(_) => String::from_utf8_lossy(v).into(),
        };
        let n = &mut self.next[which];
        ways[usize::from(*n)] = Some(fresh.clone());
        *n = (*n + 1) % MEMO_WAYS as u8;
        *slot = Some(fresh);
    }

    pub(super) fn bytes(&self) -> usize {
        self.ways.iter().flatten().flatten().map(|s| s.len()).sum()
    }
}

fn number<T: std::str::FromStr>(v: &[u8]) -> Option<T> {
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// Header fields of one block that matter for an exchange.
#[derive(Default)]
pub(super) struct Fields {
    pub(super) method: Option<Arc<str>>,
    pub(super) path: Option<Arc<str>>,
    pub(super) authority: Option<Arc<str>>,
    pub(super) host: Option<Arc<str>>,
    pub(super) scheme: Option<Arc<str>>,
    pub(super) status: Option<u16>,
    pub(super) content_type: Option<Arc<str>>,
    pub(super) traceparent: Option<String>,
    pub(super) grpc_status: Option<u32>,
    pub(super) grpc_message: Option<String>,
    pub(super) bad: bool,
}

impl Fields {
    pub(super) fn add(&mut self, name: &[u8], v: &[u8], memo: &mut Memo) {
        match name {
            b":method" => memo.set(&mut self.method, M_METHOD, v, MAX_SHORT),
            b":path" => memo.set(&mut self.path, M_PATH, v, MAX_PATH),
            b":authority" => memo.set(&mut self.authority, M_AUTHORITY, v, MAX_AUTHORITY),
            b"host" => memo.set(&mut self.host, M_AUTHORITY, v, MAX_AUTHORITY),
            b":scheme" => memo.set(&mut self.scheme, M_SCHEME, v, MAX_SHORT),
            b":status" => match number::<u16>(v).filter(|s| (100..=999).contains(s)) {
                Some(s) if v.len() == 3 => self.status = Some(s),
                _ => self.bad = true,
            },
            b"content-type" => memo.set(&mut self.content_type, M_CONTENT_TYPE, v, MAX_SHORT),
            b"traceparent" => set(&mut self.traceparent, v, MAX_TRACEPARENT),
            b"grpc-status" => match number::<u32>(v) {
                Some(s) => self.grpc_status = Some(s),
                None => self.bad = true,
            },
            b"grpc-message" => set(&mut self.grpc_message, v, MAX_GRPC_MESSAGE),
            _ => {}
        }
    }
}
