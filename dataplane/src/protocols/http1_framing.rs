//! HTTP/1.x framing: where a message's head and body end, across chunks.
//!
//! Owns the per-direction message state ([`Side`]), the bounded head buffer and the scan for the
//! end of a head, and the chunked transfer-coding decoder. Nothing here allocates beyond a head
//! buffer capped at [`MAX_HEAD`] bytes, and no input can make it panic or overflow: chunk sizes are
//! limited to 15 hex digits (60 bits).

use std::sync::LazyLock;

use memchr::memmem;

use super::http1::MAX_HEAD;
use super::Chunk;

static HEAD_END: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"\r\n\r\n"));

/// Chunked transfer-coding position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chunked {
    /// Reading a chunk-size line; `ext` once past the hex digits.
    Size {
        value: u64,
        digits: u8,
        ext: bool,
    },
    Data(u64),
    DataCr,
    DataLf,
    /// Trailer section after the last chunk; `empty` while the current line has no bytes.
    Trailer {
        empty: bool,
    },
}

pub(crate) const CHUNK_START: Chunked = Chunked::Size {
    value: 0,
    digits: 0,
    ext: false,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Idle,
    Head,
    Length(u64),
    Chunked(Chunked),
    UntilClose,
    Lost,
    /// Lost inside a chunked body (uncaptured bytes crossed its framing): like `Lost`, but the
    /// message may still be seen to end where a syscall ends with its terminator
    /// ([`Side::lost_chunked_ends`]).
    LostChunked,
}

impl State {
    /// Framing unknown: `Lost` or `LostChunked`.
    pub(crate) fn is_lost(self) -> bool {
        matches!(self, State::Lost | State::LostChunked)
    }
}

pub(crate) enum Flow {
    More,
    Done,
    Error,
}

/// Run the chunked decoder over `data`: bytes consumed, outcome; decoded bytes are added to `body`.
pub(crate) fn run_chunked(st: &mut Chunked, data: &[u8], body: &mut u64) -> (usize, Flow) {
    let mut i = 0;
    while i < data.len() {
        if let Chunked::Data(rem) = *st {
            let take = rem.min((data.len() - i) as u64);
            i += take as usize;
            *body += take;
            *st = if rem == take {
                Chunked::DataCr
            } else {
                Chunked::Data(rem - take)
            };
            continue;
        }
        let b = data[i];
        i += 1;
        *st = match (*st, b) {
            (Chunked::Size { digits: 0, .. }, b'\n') => return (i, Flow::Error),
            (Chunked::Size { value: 0, .. }, b'\n') => Chunked::Trailer { empty: true },
            (Chunked::Size { value, .. }, b'\n') => Chunked::Data(value),
            (s @ Chunked::Size { .. }, b'\r') | (s @ Chunked::Size { ext: true, .. }, _) => s,
            (Chunked::Size { value, digits, .. }, b';' | b' ' | b'\t') => Chunked::Size {
                value,
                digits,
                ext: true,
            },
            (Chunked::Size { value, digits, .. }, _) => match (b as char).to_digit(16) {
                // 15 hex digits = 60 bits: no overflow, and nothing real is that big.
                Some(v) if digits < 15 => Chunked::Size {
                    value: value << 4 | u64::from(v),
                    digits: digits + 1,
                    ext: false,
                },
                _ => return (i, Flow::Error),
            },
            (Chunked::DataCr, b'\r') => Chunked::DataLf,
            (Chunked::DataCr | Chunked::DataLf, b'\n') => CHUNK_START,
            (Chunked::DataCr | Chunked::DataLf, _) => return (i, Flow::Error),
            (Chunked::Trailer { empty: true }, b'\n') => return (i, Flow::Done),
            (Chunked::Trailer { .. }, b'\n') => Chunked::Trailer { empty: true },
            (t @ Chunked::Trailer { .. }, b'\r') => t,
            (Chunked::Trailer { .. }, _) => Chunked::Trailer { empty: false },
            (Chunked::Data(_), _) => unreachable_data(),
        };
    }
    (i, Flow::More)
}

/// Skip `n` uncaptured bytes of a chunked body from `st`: the state after them, when they stay
/// inside the current chunk's data and the CRLF after it (and so cross no chunk-size line).
pub(crate) fn skip_chunked(st: Chunked, n: u64) -> Option<Chunked> {
    // Bytes left in the current chunk up to and including its CRLF.
    let left = match st {
        Chunked::Data(r) => r.checked_add(2)?,
        Chunked::DataCr => 2,
        Chunked::DataLf => 1,
        Chunked::Size { .. } | Chunked::Trailer { .. } => return (n == 0).then_some(st),
    };
    Some(match left.checked_sub(n)? {
        0 => CHUNK_START,
        1 => Chunked::DataLf,
        2 => Chunked::DataCr,
        r => Chunked::Data(r - 2),
    })
}

/// Chunk data bytes (not framing) among `n` bytes skipped from `st` by [`skip_chunked`].
pub(crate) fn chunk_data_skipped(st: Chunked, n: u64) -> u64 {
    match st {
        Chunked::Data(r) => r.min(n),
        _ => 0,
    }
}

/// The state of a chunked body whose framing uncaptured bytes crossed from `st`: still watched
/// for its terminator, unless they hid the end of its trailer section.
pub(crate) fn lost_in(st: Chunked) -> State {
    match st {
        Chunked::Trailer { .. } => State::Lost,
        _ => State::LostChunked,
    }
}

#[cold]
fn unreachable_data() -> Chunked {
    // `Data` is handled before the byte match; keep a harmless value rather than panic.
    CHUNK_START
}

/// One direction's message in progress.
#[derive(Debug)]
pub(crate) struct Side {
    pub(crate) state: State,
    /// Head bytes copied across chunks (only when a head spans chunks), `<= MAX_HEAD`.
    pub(crate) buf: Vec<u8>,
    pub(crate) start_ns: u64,
    pub(crate) seq: u64,
    pub(crate) last_end_ns: u64,
    pub(crate) body_bytes: u64,
    pub(crate) partial: bool,
}

impl Side {
    pub(crate) fn new() -> Self {
        Self {
            state: State::Idle,
            buf: Vec::new(),
            start_ns: 0,
            seq: 0,
            last_end_ns: 0,
            body_bytes: 0,
            partial: false,
        }
    }

    pub(crate) fn begin(&mut self, c: &Chunk<'_>) {
        self.state = State::Head;
        self.buf.clear();
        self.start_ns = c.start_ns;
        self.seq = c.seq;
        self.body_bytes = 0;
        self.partial = false;
    }

    /// Append head bytes, keeping the buffer's capacity within `MAX_HEAD`.
    pub(crate) fn push_head(&mut self, bytes: &[u8]) {
        let take = bytes.len().min(MAX_HEAD - self.buf.len().min(MAX_HEAD));
        let need = self.buf.len() + take;
        if need > self.buf.capacity() {
            let want = (need * 2).clamp(256, MAX_HEAD);
            self.buf.reserve_exact(want - self.buf.len());
        }
        self.buf.extend_from_slice(&bytes[..take]);
    }
}

/// Outcome of scanning for the end of a head.
pub(crate) enum HeadScan {
    /// The head ends after `consumed` bytes of the input; it is in `buf` if `in_buf`.
    Done {
        consumed: usize,
        in_buf: bool,
    },
    NeedMore,
    /// `MAX_HEAD` reached without the end: give up on this message.
    Overflow,
}

pub(crate) fn scan_head(side: &mut Side, rest: &[u8]) -> HeadScan {
    if side.buf.is_empty() {
        if let Some(i) = HEAD_END.find(rest) {
            return if i + 4 <= MAX_HEAD {
                HeadScan::Done {
                    consumed: i + 4,
                    in_buf: false,
                }
            } else {
                side.push_head(rest);
                HeadScan::Overflow
            };
        }
        side.push_head(rest);
    } else {
        let old = side.buf.len();
        side.push_head(rest);
        let from = old.saturating_sub(3);
        if let Some(i) = HEAD_END.find(&side.buf[from..]) {
            let end = from + i + 4;
            side.buf.truncate(end);
            return HeadScan::Done {
                consumed: end - old,
                in_buf: true,
            };
        }
    }
    if side.buf.len() >= MAX_HEAD {
        HeadScan::Overflow
    } else {
        HeadScan::NeedMore
    }
}

/// Bytes of the visible end of a lost chunked body kept across syscalls (in [`Side::buf`]), so
/// that a terminator split across two syscalls is still seen whole.
pub(crate) const KEEP_END: usize = 64;

impl Side {
    /// The side is (still, or since this syscall's uncaptured bytes) [`State::LostChunked`]:
    /// does the syscall `c` end the chunked body?
    ///
    /// Yes when the bytes seen up to the syscall's end — its `tail` after uncaptured bytes, or
    /// the end kept from the syscall before followed by this one's bytes when nothing between
    /// was missed — end with the chunked terminator: a CRLF, the last-chunk line (`0`, maybe
    /// with extensions), trailer field lines, and the empty line ([`ends_with_terminator`]).
    /// Otherwise it keeps the last [`KEEP_END`] bytes it saw for the next syscall.
    pub(crate) fn lost_chunked_ends(&mut self, c: &Chunk<'_>) -> bool {
        let tail = usable_tail(c);
        let gap = c.hidden() - tail.len() as u64;
        let mut kept = std::mem::take(&mut self.buf);
        let w = if gap > 0 {
            // Only the tail is contiguous with the end (empty if the end was not copied). A
            // side that got lost in this syscall always is here: only a gap loses it.
            kept.clear();
            Window([&[], &[], tail])
        } else {
            Window([&kept, c.data, tail])
        };
        if ends_with_terminator(&w) {
            kept.clear();
            self.buf = kept;
            return true;
        }
        // Keep the window's last KEEP_END bytes.
        let n = w.len();
        let keep = n.min(KEEP_END);
        let mut last = [0u8; KEEP_END];
        for (i, b) in last[..keep].iter_mut().enumerate() {
            *b = w.at(n - keep + i);
        }
        kept.clear();
        kept.extend_from_slice(&last[..keep]);
        self.buf = kept;
        false
    }
}

/// The tail of `c` when it fits in what the syscall moved after `data` (else none).
pub(crate) fn usable_tail<'a>(c: &Chunk<'a>) -> &'a [u8] {
    if c.tail.len() as u64 <= c.hidden() {
        c.tail
    } else {
        &[]
    }
}

/// Contiguous bytes held in up to three slices, read as one.
struct Window<'a>([&'a [u8]; 3]);

impl Window<'_> {
    fn len(&self) -> usize {
        self.0.iter().map(|p| p.len()).sum()
    }

    fn at(&self, mut i: usize) -> u8 {
        for p in self.0 {
            if i < p.len() {
                return p[i];
            }
            i -= p.len();
        }
        0
    }

    fn crlf_at(&self, i: usize) -> bool {
        i + 1 < self.len() && self.at(i) == b'\r' && self.at(i + 1) == b'\n'
    }

    /// Start of the line ending (exclusive) at `end`: just past the CRLF before it, `None` when
    /// no CRLF precedes it in the window (the line starts before what was seen).
    fn line_start(&self, end: usize) -> Option<usize> {
        (0..end.saturating_sub(1))
            .rev()
            .find(|&i| self.crlf_at(i))
            .map(|i| i + 2)
    }

    /// Does the chunked decoder, started in `st` at `from`, read to the window's end without
    /// the body ending or failing (so the body could go on past the window)?
    fn runs_on(&self, from: usize, mut st: Chunked) -> bool {
        let mut skip = from;
        let mut body = 0;
        for p in self.0 {
            let s = skip.min(p.len());
            skip -= s;
            if let (_, Flow::Done | Flow::Error) = run_chunked(&mut st, &p[s..], &mut body) {
                return false;
            }
        }
        true
    }
}

/// Do the bytes `w` — the last ones a syscall moved, and what came just before them — end with
/// the end of a chunked body, such that the body can be taken to end exactly there?
///
/// The end of a chunked body is `CRLF` (closing the last data chunk, or the head) then the
/// last-chunk line `0[;ext]CRLF`, trailer fields `name: value CRLF`, and an empty line `CRLF`.
/// It is found reading backwards from the end: the window must end with the empty line, the
/// lines before it must be field lines up to a last-chunk line, and the CRLF before that must
/// be in the window too (a tail shorter than that proves nothing).
///
/// This is strong evidence, not proof. Chunk data is framed by length and may hold any bytes,
/// and a syscall may end anywhere in it (a read ends wherever the bytes that had arrived end; a
/// write wherever the application's buffer ended), so a syscall in the middle of a body can end
/// with these bytes in two ways:
/// 1. its data itself ends, at that point, with `CRLF 0 CRLF CRLF` (or with the data of a
///    chunk ending in `CRLF 0 CRLF`, whose own CRLF then follows): a body whose content is
///    itself a chunked HTTP message, such as a proxy's recording, or a text of CRLF-ended lines
///    where a line `0` is followed by an empty one. Nothing in the bytes can tell this apart;
/// 2. a chunk's size line is followed by data `0 CRLF` (a stream of numbers one per line, in
///    small chunks). This is ruled out: the line before the last-chunk line must not be one
///    that, read as a chunk-size line, makes the body go on past the window; when its start is
///    not in the window it must hold a byte no size line has before its extensions, or the
///    rule gives up.
///
/// So the rule is: a body ends where a syscall ends with its terminator unless case 1 holds,
/// which needs a body that embeds the terminator and a syscall boundary right after it. When
/// that happens the message is ended early; the rest of its body then does not start like a
/// message, which counts a parse error and loses the side until the next message start (the
/// same as any misframed message). Without the terminator at the very end (in the middle of
/// the window it is just data), or with any doubt, the side stays lost: the message ends as
/// before, at the next message or the close.
fn ends_with_terminator(w: &Window<'_>) -> bool {
    let n = w.len();
    if n < 7 || !w.crlf_at(n - 2) || !w.crlf_at(n - 4) {
        return false;
    }
    // Walk back over the lines before the empty one: fields, then the last-chunk line.
    let mut end = n - 4;
    loop {
        let Some(start) = w.line_start(end) else {
            return false;
        };
        if is_last_chunk_line(w, start, end) {
            // `start - 2` is the CRLF before it; the line before that ends there.
            let before = start - 2;
            return match w.line_start(before) {
                Some(s) => !w.runs_on(s, CHUNK_START),
                None => !may_end_size_line(w, before),
            };
        }
        if !is_field_line(w, start, end) {
            return false;
        }
        end = start - 2;
    }
}

/// [`ends_with_terminator`] on one run of bytes.
#[cfg(test)]
pub(crate) fn terminator_ends(bytes: &[u8]) -> bool {
    ends_with_terminator(&Window([&[], &[], bytes]))
}

/// `0` digits, then nothing or an extension (`;`, or whitespace before one), no CR or LF.
fn is_last_chunk_line(w: &Window<'_>, start: usize, end: usize) -> bool {
    let zeros = (start..end).take_while(|&i| w.at(i) == b'0').count();
    zeros > 0
        && (start + zeros == end
            || matches!(w.at(start + zeros), b';' | b' ' | b'\t')
                && (start + zeros..end).all(|i| !matches!(w.at(i), b'\r' | b'\n')))
}

/// A header field line: a token, `:`, then a value without CR or LF.
fn is_field_line(w: &Window<'_>, start: usize, end: usize) -> bool {
    let name = (start..end).take_while(|&i| is_tchar(w.at(i))).count();
    name > 0
        && start + name < end
        && w.at(start + name) == b':'
        && (start + name..end).all(|i| !matches!(w.at(i), b'\r' | b'\n'))
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Could the window's first `end` bytes, a line whose start was not seen, be the end of a
/// chunk-size line? Yes when they are hex digits up to the first `;`, space or tab (or empty).
/// Extensions whose start was not seen are not considered (they are all but unused).
fn may_end_size_line(w: &Window<'_>, end: usize) -> bool {
    (0..end)
        .map(|i| w.at(i))
        .take_while(|b| !matches!(b, b';' | b' ' | b'\t'))
        .all(|b| b.is_ascii_hexdigit())
}
