//! The header fields of an HTTP/2 header block that matter for an exchange, and the
//! per-connection memo that shares the values a connection's calls repeat.

use std::cell::RefCell;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::{H2Exchange, MAX_AUTHORITY, MAX_GRPC_MESSAGE, MAX_PATH, MAX_SHORT, MAX_TRACEPARENT};
use crate::protocols::hpack::{reference, Head, HEAD_FIELDS};
use crate::protocols::owned_text;

fn set(slot: &mut Option<String>, v: &[u8], cap: usize) -> bool {
    if slot.is_some() {
        return false;
    }
    *slot = Some(owned_text(v, cap));
    true
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
    fn set(&mut self, slot: &mut Option<Arc<str>>, which: usize, v: &[u8], cap: usize) -> bool {
        if slot.is_some() {
            return false;
        }
        let v = &v[..v.len().min(cap)];
        let ways = &mut self.ways[which];
        if let Some(hit) = ways.iter().flatten().find(|w| w.as_bytes() == v) {
            *slot = Some(hit.clone());
            return true;
        }
        let fresh = shared_value(v);
        let n = &mut self.next[which];
        ways[usize::from(*n)] = Some(fresh.clone());
        *n = (*n + 1) % MEMO_WAYS as u8;
        *slot = Some(fresh);
        true
    }

    pub(super) fn bytes(&self) -> usize {
        self.ways.iter().flatten().flatten().map(|s| s.len()).sum()
    }
}

/// Values shared by every connection one thread parses (a shard is one thread). The same
/// methods, paths, authorities and content types recur across a gateway's connections; with one
/// copy per thread their bytes and reference count stay in cache, where a copy per connection
/// cost a cache miss at each compare, clone and drop. Bounded: the table starts over when it
/// reaches [`SHARED_VALUES`] values or [`SHARED_VALUE_BYTES`] bytes (values already handed out
/// stay valid; they are only no longer shared with newcomers).
#[derive(Default)]
struct SharedValues {
    map: FxHashMap<Box<[u8]>, Arc<str>>,
    bytes: usize,
}

const SHARED_VALUES: usize = 1024;
const SHARED_VALUE_BYTES: usize = 256 << 10;

thread_local! {
    static SHARED_VALUES_OF_THREAD: RefCell<SharedValues> = RefCell::default();
}

/// `v` (header value bytes, invalid UTF-8 replaced) as this thread's shared text.
fn shared_value(v: &[u8]) -> Arc<str> {
    SHARED_VALUES_OF_THREAD.with_borrow_mut(|t| {
        if let Some(a) = t.map.get(v) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(String::from_utf8_lossy(v).as_ref());
        if t.map.len() >= SHARED_VALUES || t.bytes + v.len() > SHARED_VALUE_BYTES {
            t.map.clear();
            t.bytes = 0;
        }
        t.bytes += v.len();
        t.map.insert(v.into(), a.clone());
        a
    })
}

/// A decimal number as `u32::from_str` reads one (an optional `+`, then digits), without
/// going through `str`.
fn number(v: &[u8]) -> Option<u32> {
    let digits = v.strip_prefix(b"+").unwrap_or(v);
    if digits.is_empty() {
        return None;
    }
    let mut n = 0u32;
    for &b in digits {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u32::from(d))?;
    }
    Some(n)
}

/// The header blocks a direction repeats, decoded: on a busy connection most blocks are
/// indexed fields only (the same request for the same method, `:status 200`, an OK trailer), or
/// start with them (the same request fields, then a `grpc-timeout` or a `traceparent` literal of
/// a new value on every call). A block's indexed start, its [`Head`], names each entry by its
/// insertion number, so it stays the same while the HPACK table only gains entries (see
/// [`crate::protocols::hpack::Decoder::epoch`]), and decodes to the same fields. A hit clones
/// the fields (reference counts) instead of decoding them again, and only the rest of the block
/// is decoded: [`Blocks::longest`] finds the longest remembered head a block starts with.
///
/// All entries share one epoch: a new one makes the others useless for good, so they are
/// dropped. At most [`BLOCK_WAYS`] heads.
#[derive(Default)]
pub(super) struct Blocks {
    entries: Vec<MemoBlock>,
    /// The entry the next block replaces when all are taken.
    next: usize,
}

const BLOCK_WAYS: usize = 4;

struct MemoBlock {
    epoch: u64,
    /// The head's indices, and the decoder's insertions when it was read (see [`reference()`]).
    inserted: u64,
    len: u8,
    index: [u16; HEAD_FIELDS],
    fields: Fields,
    unknown: u32,
}

impl std::fmt::Debug for Blocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blocks")
            .field("entries", &self.entries.len())
            .finish()
    }
}

impl Blocks {
    /// The longest remembered head that `head` starts with, if remembered at this epoch: its
    /// fields, its count of unknown fields and its number of fields.
    #[inline]
    pub(super) fn longest(&self, epoch: u64, head: &Head) -> Option<(&Fields, u32, usize)> {
        if self.entries.first()?.epoch != epoch {
            return None;
        }
        let mut refs = [0u64; HEAD_FIELDS];
        for (i, r) in refs.iter_mut().enumerate().take(head.len) {
            *r = head.reference(i);
        }
        self.entries
            .iter()
            .filter(|e| {
                let n = usize::from(e.len);
                n <= head.len && (0..n).all(|i| reference(e.index[i], e.inserted) == refs[i])
            })
            .max_by_key(|e| e.len)
            .map(|e| (&e.fields, e.unknown, usize::from(e.len)))
    }

    /// Remember what `head` decoded to at `epoch`.
    pub(super) fn put(&mut self, epoch: u64, head: &Head, fields: &Fields, unknown: u32) {
        if head.len == 0 {
            return;
        }
        if self.entries.first().is_some_and(|e| e.epoch != epoch) {
            self.entries.clear();
            self.next = 0;
        }
        let e = MemoBlock {
            epoch,
            inserted: head.inserted,
            len: head.len as u8,
            index: head.index,
            fields: fields.clone(),
            unknown,
        };
        if self.entries.len() < BLOCK_WAYS {
            self.entries.push(e);
        } else {
            self.entries[self.next] = e;
            self.next = (self.next + 1) % BLOCK_WAYS;
        }
    }

    /// Start loading the entries (see [`crate::prefetch`]).
    #[inline]
    pub(super) fn prefetch(&self) {
        crate::prefetch::slice(&self.entries);
    }

    pub(super) fn bytes(&self) -> usize {
        let strings: usize = self.entries.iter().map(|e| e.fields.heap_bytes()).sum();
        self.entries.capacity() * std::mem::size_of::<MemoBlock>() + strings
    }
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
    /// The fields (`F_*` bits) whose value came from a dynamic-table entry that may have been
    /// another (`http2_tentative.rs`); [`F_ANY`] if any field did, whatever its name.
    pub(super) doubt: u16,
}

impl Clone for Fields {
    fn clone(&self) -> Self {
        let mut f = Fields::default();
        f.clone_from(self);
        f
    }

    /// Field by field: a remembered block's fields are cloned into a fresh `Fields` once per
    /// header block, and the derived version built a whole copy aside, then moved it in (160
    /// bytes) and dropped what it replaced.
    fn clone_from(&mut self, src: &Self) {
        // Every field named, so that a new one cannot be left out.
        let Fields {
            method,
            path,
            authority,
            host,
            scheme,
            status,
            content_type,
            traceparent,
            grpc_status,
            grpc_message,
            bad,
            doubt,
        } = src;
        self.method.clone_from(method);
        self.path.clone_from(path);
        self.authority.clone_from(authority);
        self.host.clone_from(host);
        self.scheme.clone_from(scheme);
        self.status = *status;
        self.content_type.clone_from(content_type);
        self.traceparent.clone_from(traceparent);
        self.grpc_status = *grpc_status;
        self.grpc_message.clone_from(grpc_message);
        self.bad = *bad;
        self.doubt = *doubt;
    }
}

pub(super) const F_METHOD: u16 = 1 << 0;
pub(super) const F_PATH: u16 = 1 << 1;
pub(super) const F_AUTHORITY: u16 = 1 << 2;
pub(super) const F_SCHEME: u16 = 1 << 3;
pub(super) const F_STATUS: u16 = 1 << 4;
pub(super) const F_CONTENT_TYPE: u16 = 1 << 5;
pub(super) const F_TRACEPARENT: u16 = 1 << 6;
pub(super) const F_GRPC_STATUS: u16 = 1 << 7;
pub(super) const F_GRPC_MESSAGE: u16 = 1 << 8;
pub(super) const F_ANY: u16 = 1 << 9;
/// `host`, kept apart from `:authority` until [`Fields::exchange_doubt`] says which one the
/// exchange's authority came from.
const F_HOST: u16 = 1 << 10;

impl Fields {
    /// One decoded field; `old`: it came from an entry that may have been another.
    pub(super) fn add(&mut self, name: &[u8], v: &[u8], old: bool, memo: &mut Memo) {
        let bit = self.set_field(name, v, memo);
        if old {
            self.doubt |= bit | F_ANY;
        } else {
            self.doubt &= !bit;
        }
    }

    /// Store a field; returns its `F_*` bit if a slot was written.
    fn set_field(&mut self, name: &[u8], v: &[u8], memo: &mut Memo) -> u16 {
        let (wrote, bit) = match name {
            b":method" => (memo.set(&mut self.method, M_METHOD, v, MAX_SHORT), F_METHOD),
            b":path" => (memo.set(&mut self.path, M_PATH, v, MAX_PATH), F_PATH),
            b":authority" => (
                memo.set(&mut self.authority, M_AUTHORITY, v, MAX_AUTHORITY),
                F_AUTHORITY,
            ),
            b"host" => (
                memo.set(&mut self.host, M_AUTHORITY, v, MAX_AUTHORITY),
                F_HOST,
            ),
            b":scheme" => (memo.set(&mut self.scheme, M_SCHEME, v, MAX_SHORT), F_SCHEME),
            b":status" => match number(v).filter(|s| (100..=999).contains(s)) {
                Some(s) if v.len() == 3 => {
                    self.status = Some(s as u16);
                    (true, F_STATUS)
                }
                _ => {
                    self.bad = true;
                    (false, 0)
                }
            },
            b"content-type" => (
                memo.set(&mut self.content_type, M_CONTENT_TYPE, v, MAX_SHORT),
                F_CONTENT_TYPE,
            ),
            b"traceparent" => (
                set(&mut self.traceparent, v, MAX_TRACEPARENT),
                F_TRACEPARENT,
            ),
            b"grpc-status" => match number(v) {
                Some(s) => {
                    self.grpc_status = Some(s);
                    (true, F_GRPC_STATUS)
                }
                None => {
                    self.bad = true;
                    (false, 0)
                }
            },
            b"grpc-message" => (
                set(&mut self.grpc_message, v, MAX_GRPC_MESSAGE),
                F_GRPC_MESSAGE,
            ),
            _ => (false, 0),
        };
        if wrote {
            bit
        } else {
            0
        }
    }
}

impl Fields {
    /// Heap bytes of the strings held only here (shared ones are counted by the memo).
    fn heap_bytes(&self) -> usize {
        [&self.traceparent, &self.grpc_message]
            .iter()
            .map(|s| s.as_ref().map_or(0, String::capacity))
            .sum()
    }

    /// The doubtful fields in the exchange's terms ([`Fields::apply`] takes the authority from
    /// `:authority`, else from `host`).
    pub(super) fn exchange_doubt(&self) -> u16 {
        let authority = if self.authority.is_some() {
            self.doubt & F_AUTHORITY
        } else if self.doubt & F_HOST != 0 {
            F_AUTHORITY
        } else {
            0
        };
        (self.doubt & !(F_AUTHORITY | F_HOST)) | authority
    }

    /// Give exchange `x` what this block says (a field already known stays, except the final
    /// status and the gRPC status); returns the `F_*` bits of the fields written.
    pub(super) fn apply(&mut self, x: &mut H2Exchange) -> u16 {
        let mut wrote = 0;
        fn take<T>(slot: &mut Option<T>, v: &mut Option<T>, bit: u16, wrote: &mut u16) {
            if slot.is_none() && v.is_some() {
                *slot = v.take();
                *wrote |= bit;
            }
        }
        take(&mut x.method, &mut self.method, F_METHOD, &mut wrote);
        take(&mut x.path, &mut self.path, F_PATH, &mut wrote);
        let authority = if self.authority.is_some() {
            &mut self.authority
        } else {
            &mut self.host
        };
        take(&mut x.authority, authority, F_AUTHORITY, &mut wrote);
        take(&mut x.scheme, &mut self.scheme, F_SCHEME, &mut wrote);
        take(
            &mut x.content_type,
            &mut self.content_type,
            F_CONTENT_TYPE,
            &mut wrote,
        );
        take(
            &mut x.traceparent,
            &mut self.traceparent,
            F_TRACEPARENT,
            &mut wrote,
        );
        if let Some(st) = self.status.filter(|s| *s >= 200 || x.status.is_none()) {
            x.status = Some(st);
            wrote |= F_STATUS;
        }
        if self.grpc_status.is_some() {
            x.grpc_status = self.grpc_status;
            x.grpc_message = self.grpc_message.take();
            wrote |= F_GRPC_STATUS | F_GRPC_MESSAGE;
        }
        wrote
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_remembered_head_a_head_starts_with_is_found() {
        let (mut f, mut memo) = (Fields::default(), Memo::default());
        f.add(b":path", b"/one", false, &mut memo);
        // Heads of indices read after `inserted` insertions.
        let head = |inserted: u64, index: &[u16]| {
            let mut h = Head {
                len: index.len(),
                inserted,
                ..Head::default()
            };
            h.index[..index.len()].copy_from_slice(index);
            h
        };
        let mut b = Blocks::default();
        // 62 after 100 insertions: the entry inserted 99th (from 0).
        b.put(7, &head(100, &[2, 6, 62]), &f, 1);
        let found = |b: &Blocks, epoch: u64, h: Head| {
            b.longest(epoch, &h)
                .map(|(f, unknown, n)| (f.path.as_deref().map(str::to_string), unknown, n))
        };
        let one = Some((Some("/one".to_string()), 1, 3));
        // Starting with it; the whole of it; the same after an insertion; not starting with it;
        // another epoch.
        assert_eq!(found(&b, 7, head(100, &[2, 6, 62, 63])), one);
        assert_eq!(found(&b, 7, head(100, &[2, 6, 62])), one);
        assert_eq!(found(&b, 7, head(101, &[2, 6, 63])), one);
        assert_eq!(found(&b, 7, head(101, &[2, 6, 62])), None);
        assert_eq!(found(&b, 7, head(100, &[2, 6, 63, 62])), None);
        assert_eq!(found(&b, 7, head(100, &[2])), None);
        assert_eq!(found(&b, 8, head(100, &[2, 6, 62, 63])), None);
        // The longest of several.
        b.put(7, &head(100, &[2, 6, 62, 63]), &Fields::default(), 0);
        assert_eq!(
            found(&b, 7, head(100, &[2, 6, 62, 63, 3])).map(|x| x.2),
            Some(4)
        );
        assert_eq!(
            found(&b, 7, head(100, &[2, 6, 62, 64])).map(|x| x.2),
            Some(3)
        );
        assert_eq!(
            found(&b, 7, head(100, &[2, 6, 62, 63])).map(|x| x.2),
            Some(4)
        );
        // A new epoch drops the others.
        b.put(9, &head(100, &[2]), &Fields::default(), 0);
        assert_eq!(found(&b, 7, head(100, &[2, 6, 62])), None);
        assert_eq!(found(&b, 9, head(100, &[2, 6, 62])).map(|x| x.2), Some(1));
    }

    fn doubt_of(fields: &[(&[u8], &[u8], bool)]) -> u16 {
        let (mut f, mut memo) = (Fields::default(), Memo::default());
        for &(n, v, old) in fields {
            f.add(n, v, old, &mut memo);
        }
        f.exchange_doubt() & F_AUTHORITY
    }

    proptest::proptest! {
        #[test]
        fn numbers_read_as_u32_from_str_reads_them(v in "[+0-9 a-]{0,12}") {
            proptest::prop_assert_eq!(number(v.as_bytes()), v.parse::<u32>().ok());
        }
    }

    /// Two connections decoding the same path on one thread share one copy of it; the table
    /// starts over once full, and what it handed out stays valid.
    #[test]
    fn connections_of_a_thread_share_their_values_and_the_table_is_bounded() {
        let (mut a, mut b) = (Fields::default(), Fields::default());
        let (mut ma, mut mb) = (Memo::default(), Memo::default());
        a.add(b":path", b"/pkg.Svc/Shared", false, &mut ma);
        b.add(b":path", b"/pkg.Svc/Shared", false, &mut mb);
        let (Some(pa), Some(pb)) = (&a.path, &b.path) else {
            panic!("no path");
        };
        assert!(Arc::ptr_eq(pa, pb), "one copy for both connections");

        for i in 0..SHARED_VALUES + 1 {
            shared_value(format!("/v{i}").as_bytes());
        }
        let fresh = shared_value(b"/pkg.Svc/Shared");
        assert!(!Arc::ptr_eq(pa, &fresh), "the table started over");
        assert_eq!(&**pa, "/pkg.Svc/Shared");
        SHARED_VALUES_OF_THREAD.with_borrow(|t| {
            assert!(t.map.len() <= SHARED_VALUES && t.bytes <= SHARED_VALUE_BYTES)
        });
    }

    /// The authority's doubt is that of the field it is taken from: `:authority` when present,
    /// else `host`; a sure `host` does not vouch for a doubtful `:authority`.
    #[test]
    fn the_authority_is_as_doubtful_as_its_source() {
        let (a, h): (&[u8], &[u8]) = (b":authority", b"host");
        assert_eq!(doubt_of(&[(a, b"x", true), (h, b"y", false)]), F_AUTHORITY);
        assert_eq!(doubt_of(&[(a, b"x", false), (h, b"y", true)]), 0);
        assert_eq!(doubt_of(&[(h, b"y", true)]), F_AUTHORITY);
        assert_eq!(doubt_of(&[(h, b"y", false)]), 0);
    }
}
