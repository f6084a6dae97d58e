//! Direct protobuf encoding of spans: the hot path of span export (run on the shard that built
//! the span, see [`crate::signal::SpanChunk`]).
//!
//! Building `opentelemetry-proto` structs for every span costs an allocation per id, key and
//! string value; this module writes the same wire bytes straight from a [`SpanRecord`] into a
//! reused buffer instead. Only the fields Telegen sets are written, in field order, and the bytes
//! decode (with `prost`) to exactly the message [`super::otlp::span_to_otlp`] builds: the tests
//! below check that, so the two can never drift. Resource and scope messages (a few per batch) are
//! still encoded with `prost`.

use prost::Message;

use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::signal::{AttrValue, SpanKind, SpanRecord};

const LEN: u8 = 2;
const VARINT: u8 = 0;
const FIXED64: u8 = 1;

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// Append one span as field 2 (`spans`) of a `ScopeSpans` message.
///
/// One pass writes the span straight into `out` through a cursor that keeps its position in a
/// register (a `Vec::push` per byte stores the length back each time, and writing the body to
/// a scratch buffer first copied every span twice). A length is only known once what it
/// measures is written: the cursor leaves it a place of the size it usually takes (one byte
/// for an attribute and its value, two for the span) and fills it in after, moving the bytes
/// written since when the length takes more or fewer bytes: an attribute whose value is about
/// 125 bytes or more, a span under 128 bytes or of 16 KiB and more. With the cursor's writes
/// unchecked, this costs fewer instructions than sizing the span exactly in a pass of its own
/// first: the bound the cursor needs only adds up lengths.
pub fn append_span(rec: &SpanRecord, out: &mut Vec<u8>) {
    let start = out.len();
    // SAFETY: `max_span_bytes` counts every byte this function writes at its most (the
    // property test below checks the bytes, and the debug build checks each write's bound).
    let mut w = unsafe { Cursor::append(out, max_span_bytes(rec)) };
    w.tag(2, LEN);
    let span = w.open(2);
    w.bytes_field(1, &rec.trace_id);
    w.bytes_field(2, &rec.span_id);
    if rec.parent_span_id != [0u8; 8] {
        w.bytes_field(4, &rec.parent_span_id);
    }
    if !rec.name.is_empty() {
        w.bytes_field(5, rec.name.as_bytes());
    }
    w.tag(6, VARINT);
    w.varint(kind_code(rec.kind));
    let end = rec.end_unix_ns.max(rec.start_unix_ns);
    if rec.start_unix_ns != 0 {
        w.tag(7, FIXED64);
        w.put(&rec.start_unix_ns.to_le_bytes());
    }
    if end != 0 {
        w.tag(8, FIXED64);
        w.put(&end.to_le_bytes());
    }
    for (k, v) in &rec.attrs {
        w.tag(9, LEN);
        let kv = w.open(1);
        w.bytes_field(1, k.as_bytes());
        w.tag(2, LEN);
        let any = w.open(1);
        match v {
            AttrValue::Str(s) => w.bytes_field(1, s.as_bytes()),
            AttrValue::Text(t) => w.bytes_field(1, t.as_bytes()),
            AttrValue::Bool(b) => {
                w.tag(2, VARINT);
                w.byte(u8::from(*b));
            }
            AttrValue::Int(i) => {
                w.tag(3, VARINT);
                w.varint(*i as u64);
            }
            AttrValue::Double(d) => {
                w.tag(4, FIXED64);
                w.put(&d.to_bits().to_le_bytes());
            }
        }
        w.close(any);
        w.close(kv);
    }
    // Status (always present, as `span_to_otlp` sets it): message and code ERROR, or empty.
    w.tag(15, LEN);
    match &rec.error {
        Some(msg) => {
            let status = w.open(1);
            if !msg.is_empty() {
                w.bytes_field(2, msg.as_bytes());
            }
            w.tag(3, VARINT);
            w.varint(2);
            w.close(status);
        }
        None => w.byte(0),
    }
    w.close(span);
    let n = w.at;
    out.truncate(start + n);
}

/// Most bytes [`append_span`] can write for `rec` (before it moves bytes to fill in a length
/// that did not fit its place, the place's bytes included): every length and number counted at
/// its widest, which is what keeps the cursor's writes in bounds. Summed without wrapping: a
/// total past `usize::MAX` (no real span) makes the allocation panic instead of undersizing the
/// buffer.
fn max_span_bytes(rec: &SpanRecord) -> usize {
    const VARINT_MAX: usize = 10;
    // A length-delimited field: tag, length, bytes.
    const FIELD: usize = 1 + VARINT_MAX;
    let attrs: usize = rec
        .attrs
        .iter()
        .map(|(k, v)| {
            let value = match v {
                AttrValue::Str(s) => s.len(),
                AttrValue::Text(t) => t.len(),
                _ => 0,
            };
            // The `KeyValue`, its key, its `AnyValue` and what that holds (a number at most
            // a tag and ten bytes).
            (4 * FIELD).saturating_add(k.len()).saturating_add(value)
        })
        .fold(0, usize::saturating_add);
    let error = rec.error.as_ref().map_or(0, String::len);
    // The span; ids; name; kind, times; status (message, code).
    const FIXED: usize = FIELD + 3 * (FIELD + 16) + FIELD + 3 * (1 + VARINT_MAX) + 3 * FIELD;
    FIXED
        .saturating_add(rec.name.len())
        .saturating_add(attrs)
        .saturating_add(error)
}

fn kind_code(kind: SpanKind) -> u64 {
    match kind {
        SpanKind::Server => 2,
        SpanKind::Client => 3,
    }
}

/// Bytes of a field of `n` bytes with a one-byte tag.
fn len_field(n: usize) -> usize {
    1 + varint_len(n as u64) + n
}

/// A length [`Cursor::open`] left room for.
#[derive(Clone, Copy)]
struct Open {
    at: usize,
    room: usize,
}

/// Writes into bytes sized beforehand for the most that is written, without checking each
/// write's bound: a span's writes are a few dozen small pieces, and checking each cost a third
/// of the span's encoding. Whoever makes a cursor ([`Cursor::append`]) vouches for the size.
struct Cursor<'a> {
    b: &'a mut [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor over `n` new bytes at the end of `out` (zeroed).
    ///
    /// # Safety
    /// At most `n` bytes may be written through it: every write method relies on that.
    unsafe fn append(out: &'a mut Vec<u8>, n: usize) -> Self {
        let at = out.len();
        // Checked: a wrapped sum would make the cursor smaller than its maker vouched for.
        out.resize(at.checked_add(n).expect("a cursor's size overflows"), 0);
        Cursor {
            b: &mut out[at..],
            at: 0,
        }
    }

    /// The next `n` bytes, unchecked in a release build.
    #[inline(always)]
    fn next(&mut self, n: usize) -> &mut [u8] {
        debug_assert!(
            n <= self.b.len() - self.at,
            "a cursor written past its size"
        );
        // SAFETY: the cursor's maker vouched that no more than its size is written
        // (`Cursor::append`).
        unsafe { self.b.get_unchecked_mut(self.at..self.at + n) }
    }

    #[inline]
    fn byte(&mut self, x: u8) {
        self.next(1)[0] = x;
        self.at += 1;
    }

    /// Copy `data` in. Keys and values are mostly a few to a few dozen bytes, where a call to
    /// `memcpy` costs more than the copy: those go as two overlapping word-sized moves.
    #[inline]
    fn put(&mut self, data: &[u8]) {
        let n = data.len();
        let dst = self.next(n);
        match n {
            0..=3 => {
                for (d, s) in dst.iter_mut().zip(data) {
                    *d = *s;
                }
            }
            4..=8 => {
                dst[..4].copy_from_slice(&data[..4]);
                dst[n - 4..].copy_from_slice(&data[n - 4..]);
            }
            9..=16 => {
                dst[..8].copy_from_slice(&data[..8]);
                dst[n - 8..].copy_from_slice(&data[n - 8..]);
            }
            17..=32 => {
                dst[..16].copy_from_slice(&data[..16]);
                dst[n - 16..].copy_from_slice(&data[n - 16..]);
            }
            _ => dst.copy_from_slice(data),
        }
        self.at += n;
    }

    #[inline]
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.byte((v as u8) | 0x80);
            v >>= 7;
        }
        self.byte(v as u8);
    }

    #[inline]
    fn tag(&mut self, field: u32, wire: u8) {
        self.varint((u64::from(field) << 3) | u64::from(wire));
    }

    /// The tag of length-delimited field `field` (below 16) and the length `len`: one
    /// two-byte store for the usual length below 128, where writing them apart cost two
    /// bounds checks and stores (about a fifth of a span's encoding, four per attribute).
    #[inline]
    fn tag_len(&mut self, field: u32, len: usize) {
        debug_assert!(field < 16);
        let tag = ((field << 3) as u8) | LEN;
        if len < 0x80 {
            self.next(2).copy_from_slice(&[tag, len as u8]);
            self.at += 2;
        } else {
            self.byte(tag);
            self.varint(len as u64);
        }
    }

    /// `n` bytes at `at`, among those written already.
    #[inline(always)]
    fn written(&mut self, at: usize, n: usize) -> &mut [u8] {
        debug_assert!(at + n <= self.at);
        // SAFETY: below `self.at`, which the cursor's size bounds (`Cursor::append`).
        unsafe { self.b.get_unchecked_mut(at..at + n) }
    }

    /// Leave `room` bytes (1 or 2) for a length that [`Cursor::close`] fills in.
    #[inline]
    fn open(&mut self, room: usize) -> Open {
        let o = Open { at: self.at, room };
        self.next(room);
        self.at += room;
        o
    }

    /// Fill in the length of what was written since `o` was opened.
    #[inline]
    fn close(&mut self, o: Open) {
        let len = self.at - o.at - o.room;
        match (o.room, len) {
            (1, 0..0x80) => self.written(o.at, 1)[0] = len as u8,
            (2, 0x80..0x4000) => self
                .written(o.at, 2)
                .copy_from_slice(&[(len as u8) | 0x80, (len >> 7) as u8]),
            _ => self.close_moving(o, len),
        }
    }

    /// [`Cursor::close`] when the length does not take the room left for it: what follows
    /// moves to make it fit.
    #[cold]
    #[inline(never)]
    fn close_moving(&mut self, o: Open, len: usize) {
        let need = varint_len(len as u64);
        let body = o.at + o.room;
        self.b.copy_within(body..self.at, o.at + need);
        self.at = o.at;
        self.varint(len as u64);
        self.at += len;
    }

    #[inline]
    fn bytes_field(&mut self, field: u32, data: &[u8]) {
        self.tag_len(field, data.len());
        self.put(data);
    }
}

/// What the live summary reads of a span [`append_span`] encoded, read back from its bytes
/// (the export core receives spans already encoded: see [`crate::signal::SpanChunk`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpanView<'a> {
    pub name: &'a str,
    pub kind: SpanKind,
    pub start_unix_ns: u64,
    pub end_unix_ns: u64,
    /// The span's status is error.
    pub error: bool,
    /// `http.route`, when the span has one as a string.
    pub route: Option<&'a str>,
    /// `http.response.status_code`, as an integer or a decimal string.
    pub status_code: Option<i64>,
}

/// A protobuf reader over one message's bytes: each call yields (field, wire type, value),
/// `None` at the end or on malformed input.
struct Fields<'a> {
    b: &'a [u8],
}

enum Field<'a> {
    Varint(u64),
    Fixed64(u64),
    Len(&'a [u8]),
    Fixed32,
}

impl<'a> Fields<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.b.split_first()?;
            self.b = rest;
            v |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Some(v);
            }
        }
        None
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.b.len() < n {
            return None;
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Some(head)
    }

    fn next_field(&mut self) -> Option<(u64, Field<'a>)> {
        if self.b.is_empty() {
            return None;
        }
        let key = self.varint()?;
        let value = match key & 7 {
            0 => Field::Varint(self.varint()?),
            1 => Field::Fixed64(u64::from_le_bytes(self.take(8)?.try_into().ok()?)),
            2 => {
                let n = usize::try_from(self.varint()?).ok()?;
                Field::Len(self.take(n)?)
            }
            5 => {
                self.take(4)?;
                Field::Fixed32
            }
            _ => return None,
        };
        Some((key >> 3, value))
    }
}

/// The `AnyValue` of an attribute as a string or an integer.
fn any_str_or_int(b: &[u8]) -> (Option<&str>, Option<i64>) {
    let mut f = Fields { b };
    let (mut s, mut i) = (None, None);
    while let Some((field, v)) = f.next_field() {
        match (field, v) {
            (1, Field::Len(x)) => s = std::str::from_utf8(x).ok(),
            (3, Field::Varint(x)) => i = Some(x as i64),
            _ => {}
        }
    }
    (s, i)
}

impl<'a> SpanView<'a> {
    /// Read a span from the bytes [`append_span`] wrote (field 2 of a `ScopeSpans`); `None`
    /// when they are not that.
    pub fn decode(encoded: &'a [u8]) -> Option<Self> {
        let mut outer = Fields { b: encoded };
        let body = match outer.next_field()? {
            (2, Field::Len(b)) if outer.b.is_empty() => b,
            _ => return None,
        };
        let mut v = SpanView {
            name: "",
            kind: SpanKind::Server,
            start_unix_ns: 0,
            end_unix_ns: 0,
            error: false,
            route: None,
            status_code: None,
        };
        let mut f = Fields { b: body };
        while let Some((field, value)) = f.next_field() {
            match (field, value) {
                (5, Field::Len(x)) => v.name = std::str::from_utf8(x).ok()?,
                (6, Field::Varint(k)) => {
                    v.kind = if k == 3 {
                        SpanKind::Client
                    } else {
                        SpanKind::Server
                    }
                }
                (7, Field::Fixed64(t)) => v.start_unix_ns = t,
                (8, Field::Fixed64(t)) => v.end_unix_ns = t,
                (9, Field::Len(kv)) => {
                    let mut a = Fields { b: kv };
                    let (mut key, mut val) = (&[][..], &[][..]);
                    while let Some((n, x)) = a.next_field() {
                        match (n, x) {
                            (1, Field::Len(k)) => key = k,
                            (2, Field::Len(x)) => val = x,
                            _ => {}
                        }
                    }
                    match key {
                        b"http.route" => v.route = any_str_or_int(val).0,
                        b"http.response.status_code" => {
                            v.status_code = match any_str_or_int(val) {
                                (_, Some(i)) => Some(i),
                                (Some(s), None) => s.parse().ok(),
                                (None, None) => None,
                            }
                        }
                        _ => {}
                    }
                }
                (15, Field::Len(st)) => {
                    let mut a = Fields { b: st };
                    while let Some((n, x)) = a.next_field() {
                        if let (3, Field::Varint(code)) = (n, x) {
                            v.error = code == 2;
                        }
                    }
                }
                _ => {}
            }
        }
        f.b.is_empty().then_some(v)
    }
}

/// An `ExportTraceServiceRequest` from groups of (resource, spans already appended with
/// [`append_span`]), each group under one `ScopeSpans` for `scope`.
pub fn traces_body<'a>(
    groups: impl IntoIterator<Item = (&'a Resource, &'a [u8])>,
    scope: &InstrumentationScope,
) -> Vec<u8> {
    let mut out = Vec::new();
    traces_body_into(groups, scope, &mut out);
    out
}

/// [`traces_body`] into `out` (cleared first), so the caller can reuse one buffer.
pub fn traces_body_into<'a>(
    groups: impl IntoIterator<Item = (&'a Resource, &'a [u8])>,
    scope: &InstrumentationScope,
    out: &mut Vec<u8>,
) {
    out.clear();
    let scope_bytes = scope.encode_to_vec();
    for (resource, spans) in groups {
        // The head through the scope, then the spans appended (not zeroed first, then copied).
        group_head(resource, &scope_bytes, spans.len(), out, true);
        out.extend_from_slice(spans);
    }
}

/// [`traces_body`] as the pieces it is made of: each group's head (written into `heads`, a
/// buffer reused from batch to batch, cleared first), then the group's spans as they are. For
/// a consumer that takes pieces (gzip), which then never copies the spans into one body.
pub fn traces_body_parts<'a>(
    groups: impl IntoIterator<Item = (&'a Resource, &'a [u8])>,
    scope: &InstrumentationScope,
    mut heads: Vec<u8>,
) -> BodyParts<'a> {
    heads.clear();
    let scope_bytes = scope.encode_to_vec();
    let groups = groups
        .into_iter()
        .map(|(resource, spans)| {
            let at = heads.len();
            group_head(resource, &scope_bytes, spans.len(), &mut heads, false);
            (at..heads.len(), spans)
        })
        .collect();
    BodyParts { heads, groups }
}

/// A trace request body in pieces ([`traces_body_parts`]).
#[derive(Debug)]
pub struct BodyParts<'a> {
    heads: Vec<u8>,
    /// Per group: where its head is in `heads`, and its spans.
    groups: Vec<(std::ops::Range<usize>, &'a [u8])>,
}

impl BodyParts<'_> {
    /// The pieces in body order: a head, its group's spans, the next head...
    pub fn pieces(&self) -> Vec<&[u8]> {
        self.groups
            .iter()
            .flat_map(|(head, spans)| [&self.heads[head.clone()], *spans])
            .collect()
    }

    /// The heads' buffer, for the next batch.
    pub fn into_heads(self) -> Vec<u8> {
        self.heads
    }
}

/// Append the head of a `ResourceSpans` group whose spans take `spans` bytes to `out`: the
/// group's tag and length, its resource, and its `ScopeSpans` tag, length and scope. With
/// `room_for_spans`, `out` also gets the room for the spans that follow.
fn group_head(
    resource: &Resource,
    scope_bytes: &[u8],
    spans: usize,
    out: &mut Vec<u8>,
    room_for_spans: bool,
) {
    let res = resource.encode_to_vec();
    let scope_spans_len = len_field(scope_bytes.len()) + spans;
    let rs_len = len_field(res.len()) + len_field(scope_spans_len);
    let head = len_field(rs_len) - spans;
    out.reserve(head + if room_for_spans { spans } else { 0 });
    // SAFETY: `head` is the exact size of what is written (checked below in a debug build).
    let mut w = unsafe { Cursor::append(out, head) };
    w.tag(1, LEN);
    w.varint(rs_len as u64);
    w.bytes_field(1, &res);
    w.tag(2, LEN);
    w.varint(scope_spans_len as u64);
    w.bytes_field(1, scope_bytes);
    debug_assert_eq!(w.at, head, "group size and group bytes disagree");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::otlp;
    use crate::signal::Text;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

    proptest::proptest! {
        /// The size agrees with prost's for any value, at every length boundary included.
        #[test]
        fn varint_len_agrees_with_prost(shift in 0u32..64, low in proptest::num::u64::ANY) {
            for v in [1u64 << shift, (1u64 << shift) - 1, low >> shift, 0, u64::MAX] {
                proptest::prop_assert_eq!(varint_len(v), prost::encoding::encoded_len_varint(v));
            }
        }

        /// Any span is written byte for byte as prost writes the message `span_to_otlp`
        /// builds: every length in its fewest bytes, whether it fit the room left for it or
        /// not (attributes and spans from empty to past 16 KiB, where a length takes three).
        #[test]
        fn any_span_is_written_as_prost_writes_it(
            name in 0usize..200,
            parent in proptest::bool::ANY,
            times in (0u64..3, proptest::num::u64::ANY),
            error in proptest::option::of(0usize..300),
            attrs in proptest::collection::vec((0usize..4, 0usize..6, proptest::num::u64::ANY), 0..12),
        ) {
            const KEYS: [&str; 4] = ["k", "url.path", "http.response.status_code", "a.key.of.forty.bytes.............end"];
            // Value lengths around each boundary of a one-, two- and three-byte length.
            const LENS: [usize; 6] = [0, 100, 127, 128, 16_500, 300];
            let r = SpanRecord {
                trace_id: [1; 16],
                span_id: [2; 8],
                parent_span_id: if parent { [3; 8] } else { [0; 8] },
                name: Text::Owned("n".repeat(name)),
                kind: if name % 2 == 0 { SpanKind::Server } else { SpanKind::Client },
                // None, before the end, or after it (the end then written as the start).
                start_unix_ns: match times.0 {
                    0 => 0,
                    1 => times.1 / 2,
                    _ => times.1.saturating_add(5),
                },
                end_unix_ns: times.1,
                error: error.map(|n| "e".repeat(n)),
                attrs: attrs
                    .iter()
                    .map(|&(k, v, x)| {
                        let value = match x % 5 {
                            0 => AttrValue::Str("s".repeat(LENS[v])),
                            1 => AttrValue::Text(Text::Owned("t".repeat(LENS[v] / 3))),
                            2 => AttrValue::Int(x as i64 >> (x % 64)),
                            3 => AttrValue::Bool(x % 2 == 0),
                            _ => AttrValue::Double(x as f64),
                        };
                        (KEYS[k], value)
                    })
                    .collect(),
                pid: 1,
                comm: [0; 16],
            };
            let mut got = vec![0xEE; 3];
            append_span(&r, &mut got);
            let want = opentelemetry_proto::tonic::trace::v1::ScopeSpans {
                spans: vec![otlp::span_to_otlp(r)],
                ..Default::default()
            }
            .encode_to_vec();
            proptest::prop_assert_eq!(&got[..3], &[0xEE; 3], "what was in the buffer stays");
            proptest::prop_assert!(got[3..] == want[..]);
        }
    }

    fn rec(i: u8) -> SpanRecord {
        SpanRecord {
            trace_id: [i; 16],
            span_id: [i.wrapping_add(1); 8],
            parent_span_id: if i % 2 == 0 { [0; 8] } else { [7; 8] },
            // Fields left out when empty or zero: a name (i = 10), a start time (i = 11).
            name: if i == 10 {
                Text::Static("")
            } else if i % 3 == 0 {
                Text::Static("GET /users/{id}")
            } else {
                Text::Owned(format!("POST /x/{i}"))
            },
            kind: if i % 2 == 0 {
                SpanKind::Server
            } else {
                SpanKind::Client
            },
            start_unix_ns: if i == 11 {
                0
            } else {
                1_700_000_000_000_000_000 + u64::from(i)
            },
            end_unix_ns: if i == 5 { 0 } else { 1_700_000_000_100_000_000 },
            error: match i % 3 {
                0 => None,
                1 => Some("HTTP 503".into()),
                _ => Some(String::new()),
            },
            attrs: vec![
                ("http.request.method", AttrValue::Text(Text::Static("GET"))),
                (
                    "http.response.status_code",
                    AttrValue::Int(200 + i64::from(i)),
                ),
                ("neg", AttrValue::Int(-5)),
                ("url.path", AttrValue::Str(format!("/users/{i}"))),
                ("empty", AttrValue::Str(String::new())),
                ("ok", AttrValue::Bool(i % 2 == 0)),
                ("ratio", AttrValue::Double(0.25 * f64::from(i))),
                ("long", AttrValue::Str("x".repeat(300))),
            ],
            pid: 42,
            comm: [0; 16],
        }
    }

    /// What the summary reads back from an encoded span is what the record held.
    #[test]
    fn a_span_view_reads_back_what_was_encoded() {
        for i in 0..12u8 {
            let mut r = rec(i);
            if i % 4 == 0 {
                r.attrs
                    .push(("http.route", AttrValue::Text(Text::Static("/users/{id}"))));
            }
            if i % 4 == 1 {
                r.attrs.retain(|(k, _)| *k != "http.response.status_code");
                r.attrs
                    .push(("http.response.status_code", AttrValue::Str("404".into())));
            }
            let mut b = Vec::new();
            append_span(&r, &mut b);
            let v = SpanView::decode(&b).expect("a span");
            assert_eq!(v.name, r.name.as_str());
            assert_eq!(v.kind, r.kind);
            assert_eq!(v.start_unix_ns, r.start_unix_ns);
            assert_eq!(v.end_unix_ns, r.end_unix_ns.max(r.start_unix_ns));
            assert_eq!(v.error, r.error.is_some());
            assert_eq!(v.route, (i % 4 == 0).then_some("/users/{id}"));
            let code = if i % 4 == 1 { 404 } else { 200 + i64::from(i) };
            assert_eq!(v.status_code, Some(code));
            // Cut short or followed by junk, it is not a span.
            assert_eq!(SpanView::decode(&b[..b.len() - 1]), None);
            b.push(0);
            assert_eq!(SpanView::decode(&b), None);
        }
    }

    #[test]
    fn direct_encoding_decodes_to_the_prost_message() {
        let mut many = rec(7);
        for i in 0..48 {
            many.attrs
                .push(("extra", AttrValue::Str("v".repeat(i * 7))));
        }
        let groups: Vec<(u32, Vec<SpanRecord>)> = vec![
            (1, (0..12).map(rec).collect()),
            (2, vec![rec(200), many]),
            (3, Vec::new()),
        ];
        let resource = |pid: u32| {
            otlp::resource(&vec![
                ("process.pid", AttrValue::Int(i64::from(pid))),
                ("service.name", AttrValue::Str(format!("svc{pid}"))),
            ])
        };
        let encoded: Vec<(u32, Vec<u8>)> = groups
            .iter()
            .map(|(pid, spans)| {
                let mut b = Vec::new();
                for s in spans {
                    append_span(s, &mut b);
                }
                (*pid, b)
            })
            .collect();
        let resources: Vec<Resource> = encoded.iter().map(|(pid, _)| resource(*pid)).collect();
        let body_groups = || {
            resources
                .iter()
                .zip(&encoded)
                .map(|(r, (_, b))| (r, b.as_slice()))
        };
        let body = traces_body(body_groups(), &otlp::scope());
        let expected = otlp::traces_request(
            groups
                .into_iter()
                .map(|(pid, spans)| {
                    (
                        resource(pid),
                        spans.into_iter().map(otlp::span_to_otlp).collect(),
                    )
                })
                .collect(),
        );
        let got = ExportTraceServiceRequest::decode(body.as_slice()).expect("valid protobuf");
        assert_eq!(got, expected);
        assert!(
            body == expected.encode_to_vec(),
            "byte for byte what prost writes"
        );
        // The same body as pieces (what gzip reads): heads and span buffers, in order.
        let parts = traces_body_parts(body_groups(), &otlp::scope(), vec![0xAA; 3]);
        let pieces = parts.pieces();
        assert_eq!(
            pieces.len(),
            2 * 3,
            "a head and the spans of each of the 3 groups"
        );
        assert_eq!(pieces.concat(), body);
    }
}
