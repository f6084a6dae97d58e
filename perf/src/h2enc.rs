//! A small HTTP/2 frame writer and HPACK (RFC 7541) encoder for the synthetic gRPC workload.
//!
//! The encoder behaves like real gRPC clients and servers: a header field already in the
//! dynamic table (or the static table) is sent as an index; a new value is sent as a literal
//! with incremental indexing (so the next call on the connection references it), with the name
//! as a table index when the name is there (a `grpc-timeout` of a new value on every call is
//! inserted so, as grpc clients send it); `traceparent` and `grpc-message` are sent as literals
//! without indexing. No Huffman coding
//! (plain literals are valid HPACK and what several clients send). The dynamic table keeps the
//! RFC's size accounting and evicts the oldest entries past the default 4096 bytes.

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};

use rustc_hash::{FxBuildHasher, FxHashMap};
use telegen_dataplane::protocols::hpack::put_integer;

/// The entries of the RFC 7541 static table this workload uses, with their indices.
const STATIC: &[(usize, &[u8], &[u8])] = &[
    (1, b":authority", b""),
    (2, b":method", b"GET"),
    (3, b":method", b"POST"),
    (4, b":path", b"/"),
    (6, b":scheme", b"http"),
    (7, b":scheme", b"https"),
    (8, b":status", b"200"),
    (13, b":status", b"404"),
    (14, b":status", b"500"),
    (31, b"content-type", b""),
    (58, b"user-agent", b""),
];

/// Size of the static table (dynamic indices start after it).
const STATIC_LEN: usize = 61;
/// SETTINGS_HEADER_TABLE_SIZE default.
pub const DEFAULT_TABLE_SIZE: usize = 4096;

/// The key of a field in [`Texts`].
fn hash(name: &[u8], value: &[u8]) -> u64 {
    let mut h = FxBuildHasher.build_hasher();
    h.write(name);
    h.write_u8(0xff);
    h.write(value);
    h.finish()
}

fn string(out: &mut Vec<u8>, s: &[u8]) {
    put_integer(out, 0x00, 7, s.len());
    out.extend_from_slice(s);
}

/// The (name, value) pairs the encoders of one generator have inserted, each kept once: a
/// table entry is a 4-byte id, so a thousand connections' tables (about 70 `grpc-timeout`
/// entries each) stay in cache, as the data plane they feed must not be starved of it. The
/// workload's distinct fields are bounded (10,000 timeouts, a few paths and statuses).
#[derive(Debug, Default)]
pub struct Texts {
    fields: Vec<Field>,
    /// Ids by the field's [`hash`] (a field whose hash collides gets a new id).
    ids: FxHashMap<u64, u32>,
}

/// A field's name and value.
type Field = (Box<[u8]>, Box<[u8]>);

impl Texts {
    fn get(&self, name: &[u8], value: &[u8]) -> Option<u32> {
        let id = *self.ids.get(&hash(name, value))?;
        let (n, v) = &self.fields[id as usize];
        (**n == *name && **v == *value).then_some(id)
    }

    fn intern(&mut self, name: &[u8], value: &[u8]) -> u32 {
        if let Some(id) = self.get(name, value) {
            return id;
        }
        let id = self.fields.len() as u32;
        self.fields.push((name.into(), value.into()));
        self.ids.insert(hash(name, value), id);
        id
    }

    fn name(&self, id: u32) -> &[u8] {
        &self.fields[id as usize].0
    }

    /// RFC 7541 size of the entry.
    fn size(&self, id: u32) -> usize {
        let (n, v) = &self.fields[id as usize];
        n.len() + v.len() + 32
    }
}

/// One direction's HPACK encoder state (one per connection and direction); the field texts
/// are in the generator's [`Texts`], passed to every call.
#[derive(Debug, Clone, Default)]
pub struct Encoder {
    /// [`Texts`] ids, newest first.
    table: VecDeque<u32>,
    size: usize,
    /// Entries ever inserted: the table changes only when this does.
    inserted: u64,
    /// Field lists encoded to indices only, by caller's key: the `inserted` they were encoded
    /// at, and each field's index (dynamic or not).
    blocks: Vec<(usize, u64, Vec<Indexed>)>,
}

/// The index of a field in the tables, and of an entry with its name.
type Found = (Option<usize>, Option<usize>);

/// A field encoded as a table index, and whether that index is a dynamic-table one.
type Indexed = (usize, bool);

impl Encoder {
    /// The index of (`name`, `value`) if the tables hold it, and the index of an entry named
    /// `name` (static first, else the newest).
    fn find(&self, t: &Texts, name: &[u8], value: &[u8]) -> Found {
        let mut name_idx = None;
        for &(i, n, v) in STATIC {
            if n == name {
                if v == value {
                    return (Some(i), Some(i));
                }
                name_idx.get_or_insert(i);
            }
        }
        let id = t.get(name, value);
        if let Some(pos) = id.and_then(|id| self.table.iter().position(|&x| x == id)) {
            let i = STATIC_LEN + 1 + pos;
            return (Some(i), Some(i));
        }
        if name_idx.is_none() {
            name_idx = self
                .table
                .iter()
                .position(|&x| t.name(x) == name)
                .map(|pos| STATIC_LEN + 1 + pos);
        }
        (None, name_idx)
    }

    fn insert(&mut self, t: &mut Texts, name: &[u8], value: &[u8]) {
        let id = t.intern(name, value);
        let sz = t.size(id);
        while self.size + sz > DEFAULT_TABLE_SIZE {
            match self.table.pop_back() {
                Some(old) => self.size -= t.size(old),
                None => return,
            }
        }
        self.size += sz;
        self.table.push_front(id);
        self.inserted += 1;
    }

    /// Encode a list of fields (with [`Encoder::field`]) that the caller sends again and
    /// again under `key`. Encoding is a function of the table, and the table changes only by
    /// insertion at the front (and eviction at the back), so a list that encoded to indices
    /// only is encoded again from those indices, each dynamic one moved by the insertions
    /// since, while its entry is still held, instead of searched for again: the generator must
    /// cost the harness far less than the data plane it feeds.
    pub fn fields(
        &mut self,
        t: &mut Texts,
        out: &mut Vec<u8>,
        key: usize,
        fields: &[(&[u8], &[u8])],
    ) {
        if let Some((_, at, idx)) = self.blocks.iter().find(|(k, _, _)| *k == key) {
            let shift = (self.inserted - at) as usize;
            let held = STATIC_LEN + self.table.len();
            if idx
                .iter()
                .all(|&(i, dynamic)| !dynamic || i + shift <= held)
            {
                for &(i, dynamic) in idx {
                    put_integer(out, 0x80, 7, if dynamic { i + shift } else { i });
                }
                return;
            }
        }
        let before = self.inserted;
        let mut idx = Vec::with_capacity(fields.len());
        for (name, value) in fields {
            let found = self.find(t, name, value);
            if let (Some(i), _) = found {
                idx.push((i, i > STATIC_LEN));
            }
            self.emit(t, out, name, value, found);
        }
        // Kept only when every field went as an index and nothing was inserted (an entry
        // larger than the table is sent as a literal, empties the table and is not inserted).
        if self.inserted == before && idx.len() == fields.len() {
            match self.blocks.iter_mut().find(|(k, _, _)| *k == key) {
                Some(b) => *b = (key, before, idx),
                None => self.blocks.push((key, before, idx)),
            }
        }
    }

    /// Encode one field: indexed when the table has it, else a literal with incremental
    /// indexing (the table learns it).
    pub fn field(&mut self, t: &mut Texts, out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
        let found = self.find(t, name, value);
        self.emit(t, out, name, value, found);
    }

    /// [`Encoder::field`] with what [`Encoder::find`] found.
    fn emit(&mut self, t: &mut Texts, out: &mut Vec<u8>, name: &[u8], value: &[u8], f: Found) {
        match f {
            (Some(i), _) => put_integer(out, 0x80, 7, i),
            (None, Some(ni)) => {
                put_integer(out, 0x40, 6, ni);
                string(out, value);
                self.insert(t, name, value);
            }
            (None, None) => {
                out.push(0x40);
                string(out, name);
                string(out, value);
                self.insert(t, name, value);
            }
        }
    }

    /// Encode one field as a literal without indexing (values that change on every message).
    pub fn field_no_index(&self, t: &Texts, out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
        match self.find(t, name, value).1 {
            Some(ni) => put_integer(out, 0x00, 4, ni),
            None => {
                out.push(0x00);
                string(out, name);
            }
        }
        string(out, value);
    }

    /// Entries in the dynamic table.
    #[cfg(test)]
    pub fn entries(&self) -> usize {
        self.table.len()
    }
}

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const SETTINGS: u8 = 0x4;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

/// Append one frame (9-byte header and payload).
pub fn frame(out: &mut Vec<u8>, ty: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len() as u32;
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(ty);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
}

/// A SETTINGS frame with these (id, value) pairs.
pub fn settings(out: &mut Vec<u8>, pairs: &[(u16, u32)]) {
    let mut p = Vec::with_capacity(pairs.len() * 6);
    for (id, v) in pairs {
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&v.to_be_bytes());
    }
    frame(out, SETTINGS, 0, 0, &p);
}

/// A gRPC length-prefixed message (uncompressed) holding `msg`.
pub fn grpc_message(out: &mut Vec<u8>, msg: &[u8]) {
    out.push(0);
    out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    out.extend_from_slice(msg);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cached lists give exactly the bytes field-by-field encoding gives, before and after an
    /// insertion shifts the dynamic indices.
    #[test]
    fn cached_field_lists_match_plain_encoding() {
        let list_a: [(&[u8], &[u8]); 3] = [
            (b":method", b"POST"),
            (b":path", b"/a.S/A"),
            (b"te", b"trailers"),
        ];
        let list_b: [(&[u8], &[u8]); 2] = [(b":path", b"/a.S/B"), (b"te", b"trailers")];
        let (mut cached, mut plain) = (Encoder::default(), Encoder::default());
        let mut t = Texts::default();
        for round in [
            &list_a[..],
            &list_a,
            &list_a,
            &list_b,
            &list_a,
            &list_a,
            &list_b,
        ] {
            let key = round.len();
            let (mut x, mut y) = (Vec::new(), Vec::new());
            cached.fields(&mut t, &mut x, key, round);
            for (n, v) in round {
                plain.field(&mut t, &mut y, n, v);
            }
            assert_eq!(x, y);
        }
    }

    #[test]
    fn second_block_references_the_dynamic_table() {
        let mut e = Encoder::default();
        let mut t = Texts::default();
        let mut a = Vec::new();
        e.field(&mut t, &mut a, b":method", b"POST");
        e.field(&mut t, &mut a, b":path", b"/pkg.Svc/Call");
        e.field(&mut t, &mut a, b"te", b"trailers");
        // Static exact match, then two literals with incremental indexing.
        assert_eq!(a[0], 0x83);
        assert_eq!(a[1], 0x44, "literal, incremental indexing, name = static 4");
        assert_eq!(e.entries(), 2);
        let mut b = Vec::new();
        e.field(&mut t, &mut b, b":method", b"POST");
        e.field(&mut t, &mut b, b":path", b"/pkg.Svc/Call");
        e.field(&mut t, &mut b, b"te", b"trailers");
        // te was inserted last (index 62), the path before it (63).
        assert_eq!(b, [0x83, 0x80 | 63, 0x80 | 62]);
    }

    /// Field lists, values new on every call and repeated ones, through many evictions: the
    /// data plane's HPACK decoder reads every block back as encoded, so the encoder's lookups
    /// (by map, by moved indices) always name the entry the decoder holds.
    #[test]
    fn a_decoder_reads_back_every_block_through_evictions() {
        use telegen_dataplane::protocols::hpack::Decoder;
        let mut e = Encoder::default();
        let mut t = Texts::default();
        let mut d = Decoder::new_complete();
        let paths = ["/a.S/A", "/a.S/Bbbbbbbbbbbbbbbbbbbbbbb", "/a.S/C"];
        for call in 0..600usize {
            let path = paths[call % 3].as_bytes();
            let list: [(&[u8], &[u8]); 4] = [
                (b":method", b"POST"),
                (b":path", path),
                (b":authority", b"svc.internal:50051"),
                (b"te", b"trailers"),
            ];
            // Mostly values not held (cycling through more than the table holds), a quarter
            // from a few held ones.
            let v = if call % 4 == 0 {
                call / 4 % 5
            } else {
                100 + call % 150
            };
            let timeout = format!("{}u", 4_990_000 + v);
            let mut want: Vec<(Vec<u8>, Vec<u8>)> =
                list.iter().map(|(n, v)| (n.to_vec(), v.to_vec())).collect();
            want.push((b"grpc-timeout".to_vec(), timeout.clone().into_bytes()));
            let mut block = Vec::new();
            e.fields(&mut t, &mut block, call % 3, &list);
            e.field(&mut t, &mut block, b"grpc-timeout", timeout.as_bytes());
            let mut got = Vec::new();
            d.decode(&block, |n, v| got.push((n.to_vec(), v.to_vec())))
                .unwrap();
            assert_eq!(got, want, "call {call}: {block:x?}");
        }
        assert!(e.inserted > 400, "{}", e.inserted);
    }

    /// A field larger than the table goes as a literal every time, also in a remembered list.
    #[test]
    fn a_field_larger_than_the_table_is_never_dropped_from_a_list() {
        use telegen_dataplane::protocols::hpack::Decoder;
        let (mut e, mut t, mut d) = (
            Encoder::default(),
            Texts::default(),
            Decoder::new_complete(),
        );
        let big = vec![b'x'; DEFAULT_TABLE_SIZE];
        let list: [(&[u8], &[u8]); 2] = [(b":method", b"POST"), (b"x-big", &big)];
        for _ in 0..3 {
            let mut block = Vec::new();
            e.fields(&mut t, &mut block, 0, &list);
            let mut n = 0;
            d.decode(&block, |_, _| n += 1).unwrap();
            assert_eq!(n, 2);
        }
    }

    #[test]
    fn the_table_evicts_past_its_size() {
        let mut e = Encoder::default();
        let mut t = Texts::default();
        let mut o = Vec::new();
        for i in 0..200 {
            e.field(&mut t, &mut o, b"x-key", format!("value-{i:04}").as_bytes());
        }
        assert!(e.size <= DEFAULT_TABLE_SIZE);
        assert_eq!(e.entries(), DEFAULT_TABLE_SIZE / (5 + 10 + 32));
    }
}
