//! HPACK (RFC 7541) header block decoding for one direction of one HTTP/2 connection.
//!
//! A [`Decoder`] owns the dynamic table of the peer's encoder. The agent may start after the
//! connection did: the table's content is then unknown. The decoder remembers only what it has
//! seen inserted since it joined (newest first); a reference to one of those entries is exact,
//! a reference past them is *unknown*: the field is not reported and the block is counted as
//! incomplete ([`Block::unknown`]). Invariants:
//! - a reported field is always the value the encoder meant (never a guess): entries are only
//!   ever trusted by their position from the newest end, which insertions and evictions keep
//!   exact even when older entries, their sizes or the table's size limit are unknown (keeping
//!   an entry too long is harmless, as the encoder never refers to it; dropping one too early
//!   only makes a later reference unknown);
//! - memory is bounded: the table holds at most [`MAX_TABLE_SIZE`] accounted bytes (RFC size,
//!   name + value + 32 each), strings longer than [`MAX_STRING`] are not kept (their entry is
//!   kept as a placeholder so positions stay exact), the entries' bytes live in one ring of at
//!   most twice that, and one scratch buffer is reused;
//! - malformed input returns an error and resets the table to unknown: nothing after it is trusted.

use std::collections::VecDeque;

use super::huffman;

/// The encoder's table size before any size update (SETTINGS_HEADER_TABLE_SIZE default).
pub const DEFAULT_TABLE_SIZE: usize = 4096;
/// Hard cap on the table this decoder keeps, whatever the peers negotiated.
pub const MAX_TABLE_SIZE: usize = 64 * 1024;
/// Longest name or value decoded and kept; longer ones are skipped (and reported unknown).
pub const MAX_STRING: usize = 8 * 1024;
const ENTRY_OVERHEAD: usize = 32;
/// Smallest ring of entry bytes (see [`Decoder::ring`]).
const RING_MIN: usize = 256;
/// Bytes before the end of the newest entry prefetched with the decoder's state.
const RING_PREFETCH: usize = 192;
/// Longest entry (name and value) staged on the stack on its way into the ring.
const STAGED_ON_STACK: usize = 128;

/// RFC 7541 Appendix A.
#[rustfmt::skip]
pub const STATIC_TABLE: [(&str, &str); 61] = [
    (":authority", ""), (":method", "GET"), (":method", "POST"), (":path", "/"),
    (":path", "/index.html"), (":scheme", "http"), (":scheme", "https"), (":status", "200"),
    (":status", "204"), (":status", "206"), (":status", "304"), (":status", "400"),
    (":status", "404"), (":status", "500"), ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"), ("accept-language", ""), ("accept-ranges", ""),
    ("accept", ""), ("access-control-allow-origin", ""), ("age", ""), ("allow", ""),
    ("authorization", ""), ("cache-control", ""), ("content-disposition", ""),
    ("content-encoding", ""), ("content-language", ""), ("content-length", ""),
    ("content-location", ""), ("content-range", ""), ("content-type", ""), ("cookie", ""),
    ("date", ""), ("etag", ""), ("expect", ""), ("expires", ""), ("from", ""), ("host", ""),
    ("if-match", ""), ("if-modified-since", ""), ("if-none-match", ""), ("if-range", ""),
    ("if-unmodified-since", ""), ("last-modified", ""), ("link", ""), ("location", ""),
    ("max-forwards", ""), ("proxy-authenticate", ""), ("proxy-authorization", ""),
    ("range", ""), ("referer", ""), ("refresh", ""), ("retry-after", ""), ("server", ""),
    ("set-cookie", ""), ("strict-transport-security", ""), ("transfer-encoding", ""),
    ("user-agent", ""), ("vary", ""), ("via", ""), ("www-authenticate", ""),
];

/// Why a header block could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HpackError {
    /// The block ends inside a representation.
    Truncated,
    /// An integer longer than 28 bits.
    IntegerOverflow,
    /// Index 0, or a static index that does not exist.
    BadIndex,
    /// Invalid Huffman string (padding, EOS).
    Huffman,
}

/// What one header block held besides the fields reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Block {
    /// Fields that could not be decoded (reference to an entry from before the decoder joined,
    /// or a string too long to keep). Their names are unknown too: any header may be missing.
    pub unknown: u32,
}

/// Most fields a [`Head`] holds.
pub const HEAD_FIELDS: usize = 12;

/// The indexed fields a header block starts with: their indices, and the decoder's insertions
/// then. Each field is named by a [`reference()`] that insertions do not change. While
/// [`Decoder::epoch`] stays, entries change only by insertion at the front and eviction at the
/// back, so two heads with the same references decode to the same fields, whatever was inserted
/// between them (a `grpc-timeout` of a new value on every call shifts every dynamic index by
/// one but refers to the same entries).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Head {
    pub index: [u16; HEAD_FIELDS],
    /// Bytes of the block up to the end of each field.
    pub ends: [u16; HEAD_FIELDS],
    /// Fields in the head.
    pub len: usize,
    /// [`Decoder::inserted`] when the head was read.
    pub inserted: u64,
}

/// What index `index` names after `inserted` insertions, whatever is inserted later: the static
/// index itself (1 to 61), or 64 plus the insertion number (from 0) of the dynamic entry.
pub fn reference(index: u16, inserted: u64) -> u64 {
    match u64::from(index) {
        i @ 0..=61 => i,
        // Index 62 + p is the `inserted - 1 - p`th insertion.
        i => 64 + (inserted + 61).wrapping_sub(i),
    }
}

impl Head {
    /// The [`reference()`] of field `i`.
    pub fn reference(&self, i: usize) -> u64 {
        reference(self.index[i], self.inserted)
    }

    /// Bytes of the block its first `n` fields take.
    pub fn bytes(&self, n: usize) -> usize {
        match n {
            0 => 0,
            n => usize::from(self.ends[n - 1]),
        }
    }
}

#[derive(Debug)]
struct Entry {
    /// Where its bytes (the name's, then the value's) start in the decoder's ring, as a
    /// position in the ring (see [`Decoder::at`]).
    start: u32,
    /// A name or value kept is at most [`MAX_STRING`] bytes.
    name_len: u16,
    value_len: u16,
    /// Accounted size (RFC 7541 section 4.1), at most [`MAX_TABLE_SIZE`].
    size: u32,
    /// Whether the name and the value are known (an unknown one has no bytes).
    name_known: bool,
    value_known: bool,
    /// Its name was taken from an entry older than the `since` of the decoding that inserted
    /// it (see [`Decoder::decode_since`]).
    old_name: bool,
}

impl Entry {
    fn len(&self) -> usize {
        usize::from(self.name_len) + usize::from(self.value_len)
    }
}

/// A name or value as decoded: a slice of the block, of `scratch`, of a table entry, or unknown.
#[derive(Clone, Copy)]
enum Str {
    Block(usize, usize),
    Scratch(usize, usize),
    Static(&'static str),
    Entry(usize, bool),
    /// A string too long to keep, of this length.
    Skipped(usize),
    Unknown,
}

/// The decoder of one direction (the peer's encoder state).
#[derive(Debug)]
pub struct Decoder {
    /// Newest first: index 62 is `entries[0]`.
    entries: VecDeque<Entry>,
    /// The entries' bytes, oldest to newest, in one buffer used as a ring (its length a power
    /// of two, or 0): entries are inserted at one end and evicted at the other, so an insertion
    /// writes after the newest entry and an eviction frees nothing. A gRPC client inserts a
    /// `grpc-timeout` of a new value on every call; one allocation per entry cost an allocation
    /// and a free per call, and left each entry's bytes on a line of their own, out of cache
    /// when a later call names the entry. An entry never wraps around the ring's end (the bytes
    /// before the end are skipped instead), so each is one slice.
    ring: Box<[u8]>,
    size: usize,
    max_size: usize,
    /// Every entry the encoder could refer to is in `entries` (saw the connection start, or a
    /// size update to 0).
    complete: bool,
    /// Insertions seen since joining (only grows).
    inserted: u64,
    /// Bumped by every change of the table or of what is known of it but an insertion (and
    /// the evictions it makes room by).
    epoch: u64,
    scratch: Vec<u8>,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new_unknown()
    }
}

impl Decoder {
    /// A decoder that joined an established connection: the table content is unknown.
    pub fn new_unknown() -> Self {
        Self {
            entries: VecDeque::new(),
            ring: Box::default(),
            size: 0,
            max_size: DEFAULT_TABLE_SIZE,
            complete: false,
            inserted: 0,
            epoch: 0,
            scratch: Vec::new(),
        }
    }

    /// A decoder for a connection seen from its start: the table starts empty and known.
    pub fn new_complete() -> Self {
        Self {
            complete: true,
            ..Self::new_unknown()
        }
    }

    /// Forget the table: state was lost (a header block not captured, malformed input).
    pub fn reset_unknown(&mut self) {
        self.epoch += 1;
        self.entries.clear();
        self.size = 0;
        self.complete = false;
        self.max_size = self.max_size.min(MAX_TABLE_SIZE);
    }

    /// The connection starts here (client preface seen): the table is empty and fully known.
    pub fn connection_start(&mut self) {
        self.reset_unknown();
        self.max_size = DEFAULT_TABLE_SIZE;
        self.complete = true;
    }

    /// Whether every entry the encoder can refer to is known.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// Insertions seen since joining. Never reset: a count taken before a reset is below every
    /// entry inserted after it (see [`Decoder::decode_since`]).
    pub fn inserted(&self) -> u64 {
        self.inserted
    }

    /// Start loading the newest entries and their bytes (see [`crate::prefetch`]): the bytes
    /// of the newest entries end where the newest one's do.
    #[inline]
    pub(crate) fn prefetch(&self) {
        let newest = self.entries.as_slices().0;
        let newest = &newest[..newest.len().min(8)];
        crate::prefetch::slice(newest);
        if let Some(e) = newest.first() {
            let end = self.at(e.start) + e.len();
            let from = end.saturating_sub(RING_PREFETCH);
            crate::prefetch::slice(&self.ring[from..end]);
        }
    }

    /// Changes whenever the table changes other than by an insertion, or what is trusted of it
    /// changes (never goes back): while it stays, the entry inserted n-th, while held, is the
    /// same entry (see [`Head`]).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The head of `block`: its first indexed fields (at most [`HEAD_FIELDS`]) whose entries
    /// are static or held, up to the first field that is anything else.
    pub fn head(&self, block: &[u8], head: &mut Head) {
        head.len = 0;
        head.inserted = self.inserted;
        let mut pos = 0;
        while head.len < HEAD_FIELDS && block.get(pos).is_some_and(|b| b & 0x80 != 0) {
            let Ok(idx) = integer(block, &mut pos, 7) else {
                return;
            };
            let known = match idx {
                1..=61 => true,
                62.. => idx - 62 < self.entries.len() as u64,
                0 => false,
            };
            let (Ok(index), Ok(end), true) = (u16::try_from(idx), u16::try_from(pos), known) else {
                return;
            };
            head.index[head.len] = index;
            head.ends[head.len] = end;
            head.len += 1;
        }
    }

    /// Entries currently held (trustworthy dynamic indices are 62..62+len).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Accounted table size (RFC 7541 section 4.1) of the entries held.
    pub fn table_size(&self) -> usize {
        self.size
    }

    /// Heap bytes held: the ring (at most twice [`MAX_TABLE_SIZE`]), the entries' records (at
    /// most one per 32 bytes of it) and the scratch buffer.
    pub fn buffered_bytes(&self) -> usize {
        self.ring.len()
            + self.scratch.capacity()
            + self.entries.capacity() * std::mem::size_of::<Entry>()
    }

    /// Decode one complete header block, calling `field(name, value)` for each field that is
    /// known. On error the table is reset to unknown (and fields already reported stand).
    pub fn decode(
        &mut self,
        block: &[u8],
        mut field: impl FnMut(&[u8], &[u8]),
    ) -> Result<Block, HpackError> {
        self.decode_since(block, None, |n, v, _| field(n, v))
    }

    /// As [`Decoder::decode`]; with `since` (a count of [`Decoder::inserted`] taken earlier),
    /// `field(name, value, old)` also says whether the name or the value came from an entry
    /// inserted before then. Entries inserted since are exact whatever happened to the older
    /// ones (an insertion hidden before `since` shifts only the older ones); see
    /// [`Decoder::forget_before`].
    pub fn decode_since(
        &mut self,
        block: &[u8],
        since: Option<u64>,
        mut field: impl FnMut(&[u8], &[u8], bool),
    ) -> Result<Block, HpackError> {
        let r = self.decode_inner(block, since, &mut field);
        if r.is_err() {
            self.reset_unknown();
        }
        r
    }

    /// Forget every entry inserted before [`Decoder::inserted`] was `since`: the older part of
    /// the table may have been changed out of our sight, the newer part is still exact.
    pub fn forget_before(&mut self, since: u64) {
        self.epoch += 1;
        let keep = usize::try_from(self.inserted.saturating_sub(since)).unwrap_or(usize::MAX);
        while self.entries.len() > keep {
            if let Some(e) = self.entries.pop_back() {
                self.size -= e.size as usize;
            }
        }
        for e in &mut self.entries {
            if e.old_name {
                // Named after an entry that may have been another: the name is unknown.
                e.name_known = false;
                e.old_name = false;
            }
        }
        self.complete = false;
    }

    /// What was decoded since a `since` is confirmed: every entry is trusted as it stands.
    pub fn trust_all(&mut self) {
        self.epoch += 1;
        for e in &mut self.entries {
            e.old_name = false;
        }
    }

    /// Did `s` come from an entry inserted before `inserted` was `since`? (Entry `i` is the
    /// `inserted - i`th insertion.)
    fn is_old(&self, s: Str, since: Option<u64>) -> bool {
        match (s, since) {
            (Str::Entry(i, name), Some(since)) => {
                self.inserted.saturating_sub(i as u64) <= since
                    || (name && self.entries.get(i).is_some_and(|e| e.old_name))
            }
            _ => false,
        }
    }

    fn decode_inner(
        &mut self,
        block: &[u8],
        since: Option<u64>,
        field: &mut impl FnMut(&[u8], &[u8], bool),
    ) -> Result<Block, HpackError> {
        let mut info = Block::default();
        let mut pos = 0;
        while pos < block.len() {
            let b = block[pos];
            self.scratch.clear();
            if b & 0x80 != 0 {
                let idx = integer(block, &mut pos, 7)?;
                let (name, value) = (self.name_of(idx)?, self.value_of(idx)?);
                let old = self.is_old(name, since);
                self.report(block, name, value, old, &mut info, field);
            } else if b & 0xe0 == 0x20 {
                let size = integer(block, &mut pos, 5)?;
                self.size_update(size);
            } else {
                let (prefix, index) = if b & 0xc0 == 0x40 {
                    (6, true)
                } else {
                    (4, false)
                };
                let idx = integer(block, &mut pos, prefix)?;
                let name = if idx == 0 {
                    self.string(block, &mut pos)?
                } else {
                    self.name_of(idx)?
                };
                let value = self.string(block, &mut pos)?;
                let old = self.is_old(name, since);
                self.report(block, name, value, old, &mut info, field);
                if index {
                    self.insert(block, name, value, old);
                }
            }
        }
        Ok(info)
    }

    fn resolve<'a>(&'a self, block: &'a [u8], s: Str) -> Option<&'a [u8]> {
        match s {
            Str::Block(a, b) => Some(&block[a..b]),
            Str::Scratch(a, b) => Some(&self.scratch[a..b]),
            Str::Static(s) => Some(s.as_bytes()),
            Str::Entry(i, name) => {
                let e = &self.entries[i];
                let (known, skip, len) = if name {
                    (e.name_known, 0, e.name_len)
                } else {
                    (e.value_known, e.name_len, e.value_len)
                };
                let at = self.at(e.start) + usize::from(skip);
                known.then(|| &self.ring[at..at + usize::from(len)])
            }
            Str::Skipped(_) | Str::Unknown => None,
        }
    }

    fn report(
        &self,
        block: &[u8],
        name: Str,
        value: Str,
        old: bool,
        info: &mut Block,
        field: &mut impl FnMut(&[u8], &[u8], bool),
    ) {
        match (self.resolve(block, name), self.resolve(block, value)) {
            (Some(n), Some(v)) => field(n, v, old),
            _ => info.unknown += 1,
        }
    }

    fn name_of(&self, idx: u64) -> Result<Str, HpackError> {
        self.lookup(idx, true)
    }

    fn value_of(&self, idx: u64) -> Result<Str, HpackError> {
        self.lookup(idx, false)
    }

    fn lookup(&self, idx: u64, name: bool) -> Result<Str, HpackError> {
        match idx {
            0 => Err(HpackError::BadIndex),
            1..=61 => {
                let (n, v) = STATIC_TABLE[idx as usize - 1];
                Ok(Str::Static(if name { n } else { v }))
            }
            _ => {
                let i = (idx - 62) as usize;
                if i < self.entries.len() {
                    Ok(Str::Entry(i, name))
                } else if self.complete {
                    // The whole table is known and has no such entry: the block is not HPACK
                    // we understand (or our framing is off).
                    Err(HpackError::BadIndex)
                } else {
                    Ok(Str::Unknown)
                }
            }
        }
    }

    /// Read a string literal; Huffman strings are decoded into `scratch`.
    fn string(&mut self, block: &[u8], pos: &mut usize) -> Result<Str, HpackError> {
        let huff = block.get(*pos).ok_or(HpackError::Truncated)? & 0x80 != 0;
        let len = integer(block, pos, 7)?;
        let len = usize::try_from(len).map_err(|_| HpackError::Truncated)?;
        if len > block.len() - *pos {
            return Err(HpackError::Truncated);
        }
        let raw = &block[*pos..*pos + len];
        *pos += len;
        if !huff {
            return Ok(if len > MAX_STRING {
                Str::Skipped(len)
            } else {
                Str::Block(*pos - len, *pos)
            });
        }
        let start = self.scratch.len();
        match huffman::decode(raw, &mut self.scratch, MAX_STRING) {
            Ok(()) => Ok(Str::Scratch(start, self.scratch.len())),
            Err(huffman::HuffmanError::TooLong) => {
                // Too long to keep; its exact decoded length is unknown (more than kept).
                self.scratch.truncate(start);
                Ok(Str::Skipped(MAX_STRING + 1))
            }
            Err(_) => Err(HpackError::Huffman),
        }
    }

    fn size_update(&mut self, size: u64) {
        self.epoch += 1;
        if size > MAX_TABLE_SIZE as u64 {
            // We will keep less than the encoder: references past what we keep become unknown
            // (instead of impossible, which a complete table would call malformed).
            self.complete = false;
        }
        self.max_size = usize::try_from(size)
            .unwrap_or(MAX_TABLE_SIZE)
            .min(MAX_TABLE_SIZE);
        if size == 0 {
            // Everything the encoder had is gone: from now on the table is fully known.
            self.entries.clear();
            self.size = 0;
            self.complete = true;
        }
        self.evict(0);
    }

    fn insert(&mut self, block: &[u8], name: Str, value: Str, old_name: bool) {
        let (n, v) = (self.resolve(block, name), self.resolve(block, value));
        let (n_len, v_len) = (n.map_or(0, <[u8]>::len), v.map_or(0, <[u8]>::len));
        let (name_known, value_known) = (n.is_some(), v.is_some());
        // An unknown name's length is unknown: count what is known (see the module invariants).
        let len = |s: Str, known: usize| match s {
            Str::Skipped(n) => n,
            _ => known,
        };
        let size = len(name, n_len) + len(value, v_len) + ENTRY_OVERHEAD;
        if size > self.max_size {
            // RFC 7541 4.4: an entry larger than the table empties it and is not added (it
            // still counts as inserted), so it is not staged.
            self.inserted += 1;
            self.epoch += 1;
            self.entries.clear();
            self.size = 0;
            return;
        }
        // Staged first: the name may be an entry's, which making room could evict or move. On
        // the stack when short (the usual case), else on the heap.
        let mut short = [0u8; STAGED_ON_STACK];
        let mut long = Vec::new();
        let bytes: &mut [u8] = match short.get_mut(..n_len + v_len) {
            Some(b) => b,
            None => {
                long.resize(n_len + v_len, 0);
                &mut long
            }
        };
        bytes[..n_len].copy_from_slice(n.unwrap_or_default());
        bytes[n_len..].copy_from_slice(v.unwrap_or_default());
        self.inserted += 1;
        self.evict(size);
        self.size += size;
        let start = self.place(bytes.len());
        let at = self.at(start);
        self.ring[at..at + bytes.len()].copy_from_slice(bytes);
        self.entries.push_front(Entry {
            start,
            // Strings longer than MAX_STRING are skipped (no bytes), and an entry larger than
            // the table (at most MAX_TABLE_SIZE) is not inserted.
            name_len: n_len as u16,
            value_len: v_len as u16,
            size: size as u32,
            name_known,
            value_known,
            old_name,
        });
    }

    /// Index in the ring of the position `pos`. Positions count the bytes written since the
    /// ring was last laid out, modulo 2^32 (the ring's length divides it).
    #[inline]
    fn at(&self, pos: u32) -> usize {
        (pos as usize) & self.ring.len().wrapping_sub(1)
    }

    /// Where the next entry's bytes go: right after the newest entry's.
    fn next_pos(&self) -> u32 {
        self.entries
            .front()
            .map_or(0, |e| e.start.wrapping_add(e.len() as u32))
    }

    /// Room for an entry of `len` bytes after the newest: its position. The bytes up to the
    /// ring's end are skipped when it does not fit before it; the ring is laid out again when
    /// the entries would not fit in it.
    fn place(&mut self, len: usize) -> u32 {
        let cap = self.ring.len();
        let next = self.next_pos();
        let oldest = self.entries.back().map_or(next, |e| e.start);
        let mut start = next;
        if cap != 0 {
            let at = self.at(start);
            if at + len > cap {
                start = start.wrapping_add((cap - at) as u32);
            }
        }
        if cap == 0 || start.wrapping_sub(oldest) as usize + len > cap {
            self.lay_out(len);
            start = self.next_pos();
        }
        start
    }

    /// Copy the entries, oldest first, to the start of a new ring with room for them and `len`
    /// bytes more, twice over: the entries fit in [`MAX_TABLE_SIZE`], so the ring in twice
    /// that, and a new layout leaves at least as much room free as the entries take (so the
    /// copy is rare).
    fn lay_out(&mut self, len: usize) {
        let live: usize = self.entries.iter().map(Entry::len).sum();
        let cap = (2 * (live + len)).next_power_of_two().max(RING_MIN);
        let mut ring = vec![0u8; cap].into_boxed_slice();
        let mut pos = 0;
        let mask = self.ring.len().wrapping_sub(1);
        for e in self.entries.iter_mut().rev() {
            let (from, n) = ((e.start as usize) & mask, e.len());
            ring[pos..pos + n].copy_from_slice(&self.ring[from..from + n]);
            // At most twice MAX_TABLE_SIZE.
            e.start = pos as u32;
            pos += n;
        }
        self.ring = ring;
    }

    /// Evict oldest entries until `extra` more bytes fit.
    fn evict(&mut self, extra: usize) {
        while self.size + extra > self.max_size {
            match self.entries.pop_back() {
                Some(e) => self.size -= e.size as usize,
                None => break,
            }
        }
    }
}

/// Write `v` as an RFC 7541 5.1 integer with an `n`-bit prefix, the first byte's other bits
/// being `first`'s, as the decoder reads it. For encoders of HPACK blocks outside the agent (the
/// perf harness's synthetic gRPC workload, tests).
pub fn put_integer(out: &mut Vec<u8>, first: u8, n: u8, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 0x80 {
        out.push((v & 0x7f) as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// RFC 7541 5.1 integer with an `n`-bit prefix starting at `block[*pos]`.
fn integer(block: &[u8], pos: &mut usize, n: u8) -> Result<u64, HpackError> {
    let max = (1u64 << n) - 1;
    let first = *block.get(*pos).ok_or(HpackError::Truncated)?;
    *pos += 1;
    let mut v = u64::from(first) & max;
    if v < max {
        return Ok(v);
    }
    let mut shift = 0;
    loop {
        let b = *block.get(*pos).ok_or(HpackError::Truncated)?;
        *pos += 1;
        v += u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
        shift += 7;
        if shift > 28 {
            return Err(HpackError::IntegerOverflow);
        }
    }
}

#[cfg(test)]
#[path = "hpack_tests.rs"]
mod tests;
