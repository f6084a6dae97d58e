//! The signals that leave a shard for the export core, and the messages that carry them.
//!
//! A shard produces [`SpanRecord`]s and [`HistogramDelta`]s; the export core owns everything after
//! that (batching, resource attributes, OTLP encoding, transport). Timestamps here are already wall
//! clock (nanoseconds since the Unix epoch). Attribute keys are `&'static str` because every key we
//! emit is an OpenTelemetry semantic-convention name known at compile time.

use std::sync::Arc;

/// A string that is often known at compile time or shared by many signals (a route, a peer
/// address): cloning it never copies more than a few bytes, so the per-event path builds spans
/// without allocating for them. `Static` and `Inline` clone without touching a reference count
/// (an atomic read-modify-write, often on a line not in cache); the shards prefer them.
#[derive(Debug, Clone)]
pub enum Text {
    Static(&'static str),
    Shared(Arc<str>),
    Owned(String),
    Inline(InlineText),
}

impl Text {
    pub fn as_str(&self) -> &str {
        match self {
            Text::Static(s) => s,
            Text::Shared(s) => s,
            Text::Owned(s) => s,
            Text::Inline(s) => s.as_str(),
        }
    }

    /// `s` held in place when it is short enough, else shared.
    pub fn short_or_shared(s: &str) -> Text {
        match InlineText::new(s) {
            Some(i) => Text::Inline(i),
            None => Text::Shared(s.into()),
        }
    }
}

/// Longest text an [`InlineText`] holds: an IPv4 address in dotted form (and with it, [`Text`]
/// stays 24 bytes).
pub const INLINE_TEXT_MAX: usize = 15;

/// A short text held in place: no allocation, no reference count. A connection's IPv4 address
/// is copied into each span of the connection this way.
#[derive(Clone, Copy)]
pub struct InlineText {
    len: u8,
    bytes: [u8; INLINE_TEXT_MAX],
}

impl InlineText {
    /// `None` when `s` is longer than [`INLINE_TEXT_MAX`] bytes.
    pub fn new(s: &str) -> Option<InlineText> {
        let mut bytes = [0; INLINE_TEXT_MAX];
        bytes.get_mut(..s.len())?.copy_from_slice(s.as_bytes());
        Some(InlineText {
            len: s.len() as u8,
            bytes,
        })
    }

    /// The text as two words, equal for equal texts only.
    pub fn words(&self) -> (u64, u64) {
        let mut b = [0u8; 16];
        b[..INLINE_TEXT_MAX].copy_from_slice(&self.bytes);
        b[INLINE_TEXT_MAX] = self.len;
        let lo = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        let hi = u64::from_le_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]);
        (lo, hi)
    }

    pub fn as_str(&self) -> &str {
        let b = &self.bytes[..usize::from(self.len)];
        // SAFETY: `new` copied these bytes from a whole `&str`, so they are valid UTF-8.
        unsafe { std::str::from_utf8_unchecked(b) }
    }
}

impl std::fmt::Debug for InlineText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::ops::Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

/// String equality that skips comparing the bytes when both sides are the same memory (the same
/// constant or the same shared text, the usual case on the per-span path).
#[inline]
pub(crate) fn same_str(a: &str, b: &str) -> bool {
    a.len() == b.len() && (std::ptr::eq(a.as_ptr(), b.as_ptr()) || a == b)
}

impl PartialEq for Text {
    fn eq(&self, other: &Self) -> bool {
        same_str(self.as_str(), other.as_str())
    }
}

impl Eq for Text {}

/// Hashes as its `str`, so a map keyed by `Text` is looked up by `&str`.
impl std::hash::Hash for Text {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.as_str().hash(h)
    }
}

impl std::borrow::Borrow<str> for Text {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Text> for String {
    fn from(t: Text) -> Self {
        match t {
            Text::Owned(s) => s,
            other => other.as_str().to_string(),
        }
    }
}

impl From<String> for Text {
    fn from(s: String) -> Self {
        Text::Owned(s)
    }
}

impl From<&'static str> for Text {
    fn from(s: &'static str) -> Self {
        Text::Static(s)
    }
}

impl From<Arc<str>> for Text {
    fn from(s: Arc<str>) -> Self {
        Text::Shared(s)
    }
}

/// One attribute value.
#[derive(Debug, Clone)]
pub enum AttrValue {
    Str(String),
    /// A string value that need not be copied (constant or shared); equal to `Str` of the same
    /// text.
    Text(Text),
    Int(i64),
    Bool(bool),
    Double(f64),
}

impl AttrValue {
    /// The value when it is a string, whichever way it is held.
    #[inline]
    pub fn as_str(&self) -> Option<&str> {
        match self {
            AttrValue::Str(s) => Some(s),
            AttrValue::Text(t) => Some(t),
            _ => None,
        }
    }
}

impl PartialEq for AttrValue {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (AttrValue::Int(a), AttrValue::Int(b)) => a == b,
            (AttrValue::Bool(a), AttrValue::Bool(b)) => a == b,
            (AttrValue::Double(a), AttrValue::Double(b)) => a == b,
            (a, b) => match (a.as_str(), b.as_str()) {
                (Some(x), Some(y)) => same_str(x, y),
                _ => false,
            },
        }
    }
}

/// A list of attributes, keys from the semantic conventions.
pub type Attrs = Vec<(&'static str, AttrValue)>;

/// Span kind, as in OTLP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpanKind {
    Server,
    Client,
}

/// One finished span.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanRecord {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// All zero when the span is a root.
    pub parent_span_id: [u8; 8],
    pub name: Text,
    pub kind: SpanKind,
    pub start_unix_ns: u64,
    pub end_unix_ns: u64,
    /// `Some(message)` marks the span status as error.
    pub error: Option<String>,
    pub attrs: Attrs,
    /// The process the span was observed in; the export core turns it into resource attributes.
    pub pid: u32,
    /// The kernel's name for that process (NUL padded), a fallback for processes that exited
    /// before their attributes could be read.
    pub comm: [u8; 16],
}

impl SpanRecord {
    /// An empty span, to be filled in by a span builder (which sets every field).
    pub fn blank() -> SpanRecord {
        SpanRecord {
            trace_id: [0; 16],
            span_id: [0; 8],
            parent_span_id: [0; 8],
            name: Text::Static(""),
            kind: SpanKind::Server,
            start_unix_ns: 0,
            end_unix_ns: 0,
            error: None,
            attrs: Vec::new(),
            pid: 0,
            comm: [0; 16],
        }
    }

    /// A span a builder (`http_span_into` and the like) writes into a blank box, with what the
    /// builder returns.
    #[cfg(test)]
    pub fn built<T>(build: impl FnOnce(&mut SpanRecord) -> T) -> (SpanRecord, T) {
        let mut s = SpanRecord::blank();
        let t = build(&mut s);
        (s, t)
    }
}

/// Explicit bucket boundaries recommended by the HTTP semantic conventions, in seconds.
pub const DURATION_BOUNDS_S: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// A histogram delta for one series (metric name + process + attributes) accumulated by a shard
/// since its previous flush. `bucket_counts.len() == bounds.len() + 1`.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramDelta {
    pub name: &'static str,
    pub unit: &'static str,
    pub pid: u32,
    pub attrs: Attrs,
    pub bounds: &'static [f64],
    pub bucket_counts: Vec<u64>,
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

/// Counters a shard keeps for itself (plain integers owned by the shard thread) and sends as a
/// snapshot; the export core turns them into self-telemetry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardStats {
    pub shard: u32,
    /// Kernel events drained from this shard's rings.
    pub events_drained: u64,
    /// Events that failed to decode (short, wrong version, ...).
    pub events_malformed: u64,
    /// Events forwarded to another shard / received from one.
    pub events_forwarded: u64,
    pub events_received: u64,
    /// Events dropped because a cross-shard queue was full.
    pub queue_drops: u64,
    /// Sequence gaps given up on (an event that never arrived, e.g. lost in the kernel).
    pub reorder_gaps: u64,
    /// Events that arrived after their gap was given up on (dropped, counted here).
    pub events_late: u64,
    /// Of `reorder_gaps`, those given up to stay within the held-bytes budget (a record that
    /// was late, not lost, when a shard is starved of CPU for long).
    pub reorder_budget_gaps: u64,
    /// Bytes of early records held now, waiting for a missing one.
    pub reorder_held_bytes: u64,
    /// Client spans whose parent server span never showed up in time (exported as roots).
    pub orphan_children: u64,
    /// Flows currently held / evicted because the table was full / expired idle.
    pub flows_active: u64,
    pub flows_evicted: u64,
    pub flows_expired: u64,
    /// Payloads that no parser recognised, and parser errors.
    pub unknown_protocol: u64,
    /// Encrypted TLS payloads seen on sockets and skipped (their plaintext, when the TLS
    /// library is traced, arrives separately).
    pub tls_encrypted: u64,
    pub parse_errors: u64,
    /// Exchanges seen but not emitted because which messages belong together is unknown:
    /// HTTP/1.1 requests seen after uncaptured bytes that may hide pipelined requests, HTTP/2
    /// exchanges on a connection whose client side was never learned.
    pub exchanges_unpaired: u64,
    pub spans_emitted: u64,
    /// Signals dropped because the queue to the export core was full.
    pub export_queue_drops: u64,
}

/// Spans already encoded on the shard that built them (each the bytes
/// [`crate::export::pb::append_span`] writes), sent to the export core together.
///
/// Encoding where the span was built reads it while it is still in that core's cache; a
/// [`SpanRecord`] sent as is would be read by the export core and then freed or reused by the
/// shard long after (a trip through the queues and a batch), from memory gone cold, with the
/// reference counts of its shared strings bouncing between the two cores.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SpanChunk {
    /// The encoded spans, back to back.
    pub bytes: Vec<u8>,
    /// One entry per span, in the order of `bytes`.
    pub spans: Vec<EncodedSpan>,
}

/// What the export core needs of one encoded span without decoding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodedSpan {
    /// Bytes of the span in [`SpanChunk::bytes`].
    pub len: u32,
    pub pid: u32,
    pub end_unix_ns: u64,
    pub comm: [u8; 16],
}

impl SpanChunk {
    /// Encode `rec` at the end of the chunk.
    pub fn push(&mut self, rec: &SpanRecord) {
        let at = self.bytes.len();
        crate::export::pb::append_span(rec, &mut self.bytes);
        self.spans.push(EncodedSpan {
            len: (self.bytes.len() - at) as u32,
            pid: rec.pid,
            end_unix_ns: rec.end_unix_ns,
            comm: rec.comm,
        });
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Empty it, keeping its memory.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.spans.clear();
    }

    /// Each span's entry and its encoded bytes.
    pub fn iter(&self) -> impl Iterator<Item = (&EncodedSpan, &[u8])> {
        let mut at = 0usize;
        self.spans.iter().map(move |e| {
            let end = at + e.len as usize;
            let b = &self.bytes[at..end];
            at = end;
            (e, b)
        })
    }
}

/// What a shard sends to the export core.
#[derive(Debug, Clone, PartialEq)]
pub enum ExportMsg {
    /// One span, as [`crate::shard::ShardIo::export`] receives it; the runtime encodes it on
    /// the shard and sends it on in a [`ExportMsg::Spans`] chunk.
    Span(Box<SpanRecord>),
    Spans(Box<SpanChunk>),
    Histogram(Box<HistogramDelta>),
    Stats(Box<ShardStats>),
}
