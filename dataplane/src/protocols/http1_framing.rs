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
