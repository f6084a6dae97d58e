//! HTTP/2 frame reassembly, one reader per direction: the client preface, 9-byte frame headers
//! split across reads, payloads collected (header blocks, GOAWAY, SETTINGS) or skipped by length,
//! bytes the kernel did not capture skipped by frame length, and the *lost* state (framing
//! unknown) with its resynchronisation (after uncaptured bytes, by the rules of
//! `http2_resync.rs`). Whole frames go to the stream side in the parent module
//! ([`Http2Parser::frame_header`], [`Http2Parser::payload`]).

use super::fields::Blocks;
use super::resync::Suspect;
use super::{
    dir_index, BlockMeta, Http2Parser, CONTINUATION, DATA, DEFAULT_MAX_FRAME, FLAG_ACK, GOAWAY,
    HEADERS, PING, PREFACE, PRIORITY, PUSH_PROMISE, RST_STREAM, SETTINGS, WINDOW_UPDATE,
};
use crate::protocols::hpack::Decoder;
use crate::protocols::{Chunk, L7Record};

/// A frame header (RFC 9113 section 4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameHeader {
    pub len: u32,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    /// The reserved bit of the stream id.
    pub reserved: bool,
}

impl FrameHeader {
    pub fn parse(b: &[u8]) -> Option<Self> {
        let b: &[u8; 9] = b.get(..9)?.try_into().ok()?;
        let sid = u32::from_be_bytes([b[5], b[6], b[7], b[8]]);
        Some(Self {
            len: u32::from_be_bytes([0, b[0], b[1], b[2]]),
            kind: b[3],
            flags: b[4],
            stream: sid & 0x7fff_ffff,
            reserved: sid & 0x8000_0000 != 0,
        })
    }

    /// Could this be a real frame? Known type, size at most `max_len`, reserved bit clear, only
    /// the type's defined flags, stream id zero exactly where the type requires, fixed sizes.
    /// Strict: for finding frames in bytes of unknown framing.
    pub fn plausible(&self, max_len: u32) -> bool {
        if self.len > max_len || self.reserved {
            return false;
        }
        let defined = match self.kind {
            DATA => 0x09,
            HEADERS => 0x2d,
            SETTINGS | PING => 0x01,
            PUSH_PROMISE => 0x0c,
            CONTINUATION => 0x04,
            _ => 0x00,
        };
        self.flags & !defined == 0 && self.well_formed()
    }

    /// Is a frame of a known type (or any unknown type) well-formed in a connection whose
    /// framing we follow? Stream id zero exactly where the type requires, fixed sizes. Unknown
    /// flags and the reserved bit are ignored, as RFC 9113 says receivers must.
    pub fn well_formed(&self) -> bool {
        let (on_stream, size_ok) = match self.kind {
            DATA | HEADERS | CONTINUATION => (Some(true), true),
            PRIORITY => (Some(true), self.len == 5),
            RST_STREAM => (Some(true), self.len == 4),
            SETTINGS => (
                Some(false),
                self.len % 6 == 0 && (self.flags & FLAG_ACK == 0 || self.len == 0),
            ),
            PUSH_PROMISE => (Some(true), self.len >= 4),
            PING => (Some(false), self.len == 8),
            GOAWAY => (Some(false), self.len >= 8),
            WINDOW_UPDATE => (None, self.len == 4),
            _ => return false,
        };
        size_ok && on_stream.is_none_or(|want| (self.stream != 0) == want)
    }
}

/// Cheap check: do these bytes start an HTTP/2 connection (the client preface), or are they
/// HTTP/2 frames (mid-stream)? Mid-stream, the bytes must be whole plausible frames end to end:
/// text protocols never pass (their first bytes make a length far above 16 KiB), and binary
/// payloads of other protocols (an HTTP/1 body joined mid-stream) almost never tile exactly
/// into frames; a real HTTP/2 connection soon writes a small frame that does.
pub fn detect(data: &[u8]) -> bool {
    if data.len() >= 4 && PREFACE.starts_with(&data[..data.len().min(PREFACE.len())]) {
        return true;
    }
    plausible_frames(data) == Some(data.len())
}

/// Walk the frame headers at the start of `data` while they are plausible: `None` if one is
/// not (or there is none), else where the last frame ends (possibly past `data`, or before it
/// when fewer than 9 bytes follow).
pub(super) fn plausible_frames(data: &[u8]) -> Option<usize> {
    let mut pos = 0;
    let mut n = 0;
    while let Some(h) = data.get(pos..).and_then(FrameHeader::parse) {
        if !h.plausible(DEFAULT_MAX_FRAME) {
            return None;
        }
        n += 1;
        pos += 9 + h.len as usize;
    }
    (n > 0).then_some(pos)
}

/// What the frame reader of one direction is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum St {
    /// Matched this many bytes of the client preface.
    Preface(u8),
    /// Reading a frame header (`hdr_len` bytes of it so far).
    Header,
    /// Keeping the payload of a header-block frame (`left` bytes still to come).
    Collect { left: u32 },
    /// Skipping a payload; `end` is the stream a DATA frame with END_STREAM ends once skipped.
    Skip { left: u32, end: u32 },
    /// Framing unknown: wait for a chunk that starts with a plausible frame header.
    Lost,
}

#[derive(Debug)]
pub(super) struct Dir {
    pub(super) state: St,
    /// Nothing fed yet.
    pub(super) fresh: bool,
    /// No header block seen and framing never lost: the HPACK table is still as it started.
    pub(super) pristine: bool,
    /// While lost: the first bytes of the chunks fed since, when shorter than a frame header.
    pub(super) probe: [u8; 9],
    pub(super) probe_len: u8,
    pub(super) hdr: [u8; 9],
    pub(super) hdr_len: u8,
    pub(super) frame: FrameHeader,
    pub(super) frame_start: (u64, u64),
    pub(super) buf: Vec<u8>,
    pub(super) block: Vec<u8>,
    pub(super) meta: Option<BlockMeta>,
    pub(super) hpack: Decoder,
    /// The indexed heads of header blocks, decoded (see [`Blocks`]).
    pub(super) blocks: Blocks,
    /// Framing was lost to uncaptured bytes and HPACK is kept until the first header block
    /// since shows whether they could have held one (see `http2_resync.rs`).
    pub(super) suspect: Option<Suspect>,
    /// Largest frame the receiving side accepts (its SETTINGS_MAX_FRAME_SIZE, once seen).
    pub(super) max_frame: u32,
    /// The writing side sent SETTINGS_ENABLE_PUSH = 0.
    pub(super) push_off: bool,
    /// Exit time of the last chunk of the latest lost stretch (when a hidden END_STREAM may
    /// have been moved, at the latest).
    pub(super) lost_ns: u64,
}

impl Dir {
    pub(super) fn new() -> Self {
        Self {
            state: St::Lost,
            fresh: true,
            pristine: true,
            probe: [0; 9],
            probe_len: 0,
            hdr: [0; 9],
            hdr_len: 0,
            frame: FrameHeader::default(),
            frame_start: (0, 0),
            buf: Vec::new(),
            block: Vec::new(),
            meta: None,
            hpack: Decoder::new_unknown(),
            blocks: Blocks::default(),
            suspect: None,
            max_frame: DEFAULT_MAX_FRAME,
            push_off: false,
            lost_ns: 0,
        }
    }
}

impl Http2Parser {
    /// Start loading this parser's state (see [`crate::prefetch`]): the parser, its streams,
    /// and for the direction of the bytes coming, the decoded blocks it remembers and the
    /// newest HPACK entries.
    #[inline]
    pub(crate) fn prefetch(&self, dir: crate::protocols::Direction) {
        crate::prefetch::value(self);
        crate::prefetch::slice(&self.streams);
        let d = &self.dirs[super::dir_index(dir)];
        d.blocks.prefetch();
        d.hpack.prefetch();
    }

    /// Feed one chunk; finished exchanges are appended to `out`.
    pub fn feed(&mut self, c: &Chunk<'_>, out: &mut Vec<L7Record>) {
        self.expire_trust(c.start_ns, out);
        let d = dir_index(c.dir);
        let data = c.data;
        let fresh = std::mem::replace(&mut self.dirs[d].fresh, false);
        let mut pos = 0;
        if self.dirs[d].state == St::Lost {
            if fresh && !data.is_empty() && PREFACE.starts_with(&data[..data.len().min(24)]) {
                self.dirs[d].state = St::Preface(0);
            } else if self.dirs[d].probe_len == 0 && data.len() >= 9 {
                if !self.resyncs_at(d, c) {
                    self.dirs[d].lost_ns = c.end_ns;
                    return;
                }
                self.dirs[d].state = St::Header;
                self.dirs[d].hdr_len = 0;
            } else {
                pos = self.probe(d, c, out);
                if self.dirs[d].state == St::Lost {
                    self.dirs[d].lost_ns = c.end_ns;
                    return;
                }
            }
        }
        if !self.walk(d, c, &data[pos..], out) {
            return;
        }
        // The captured end, if it fits in what the syscall moved after `data`.
        let tail = if c.tail.len() as u64 <= c.hidden() {
            c.tail
        } else {
            &[]
        };
        let gap = c.hidden() - tail.len() as u64;
        if gap > 0 {
            self.hidden(d, c, gap, out);
        }
        if !tail.is_empty() && self.dirs[d].state != St::Lost {
            // The gap lay inside one frame's payload: we know where the tail stands in the
            // framing (the trailers of a large response are here).
            self.walk(d, c, tail, out);
        }
    }

    /// Consume `bytes` (contiguous with what came before in direction `d`); `false` once the
    /// framing is lost.
    fn walk(&mut self, d: usize, c: &Chunk<'_>, bytes: &[u8], out: &mut Vec<L7Record>) -> bool {
        let mut pos = 0;
        while pos < bytes.len() {
            pos += self.step(d, c, &bytes[pos..], out);
            if self.dirs[d].state == St::Lost {
                return false;
            }
        }
        true
    }

    /// Lost, and a frame header may be split across small reads: gather its first 9 bytes
    /// (only from fully captured chunks) and resync if they make a plausible header. Returns the
    /// bytes of `c` consumed.
    fn probe(&mut self, d: usize, c: &Chunk<'_>, out: &mut Vec<L7Record>) -> usize {
        let dir = &mut self.dirs[d];
        if c.total_len as usize != c.data.len() {
            dir.probe_len = 0;
            return c.data.len();
        }
        let have = usize::from(dir.probe_len);
        let take = (9 - have).min(c.data.len());
        dir.probe[have..have + take].copy_from_slice(&c.data[..take]);
        dir.probe_len += take as u8;
        if dir.probe_len < 9 {
            return take;
        }
        dir.probe_len = 0;
        let hdr = dir.probe;
        if !FrameHeader::parse(&hdr).is_some_and(|h| self.resync_frame(d, &h, &[])) {
            return c.data.len();
        }
        let dir = &mut self.dirs[d];
        dir.state = St::Header;
        dir.hdr_len = 0;
        self.step(d, c, &hdr, out);
        take
    }

    /// Consume a prefix of `data` in direction `d`; returns how much.
    fn step(&mut self, d: usize, c: &Chunk<'_>, data: &[u8], out: &mut Vec<L7Record>) -> usize {
        match self.dirs[d].state {
            St::Preface(n) => {
                let n = usize::from(n);
                let take = (PREFACE.len() - n).min(data.len());
                if data[..take] != PREFACE[n..n + take] {
                    self.errors += 1;
                    self.lose(d);
                    return data.len();
                }
                if n + take == PREFACE.len() {
                    self.preface(d);
                    self.dirs[d].state = St::Header;
                } else {
                    self.dirs[d].state = St::Preface((n + take) as u8);
                }
                take
            }
            St::Header => {
                let dir = &mut self.dirs[d];
                let have = usize::from(dir.hdr_len);
                if have == 0 {
                    if let Some(h) = FrameHeader::parse(data) {
                        // The whole header is here (the usual case): read in place, no copy.
                        self.frame_header(d, c, h, out);
                        return 9;
                    }
                }
                let take = (9 - have).min(data.len());
                dir.hdr[have..have + take].copy_from_slice(&data[..take]);
                dir.hdr_len += take as u8;
                if dir.hdr_len == 9 {
                    dir.hdr_len = 0;
                    let h = FrameHeader::parse(&dir.hdr).unwrap_or_default();
                    self.frame_header(d, c, h, out);
                }
                take
            }
            St::Collect { left } => {
                let dir = &mut self.dirs[d];
                let take = (left as usize).min(data.len());
                if dir.buf.is_empty() && take == left as usize {
                    // The whole payload is here: no copy.
                    self.payload(d, c, &data[..take], out);
                } else {
                    dir.buf.extend_from_slice(&data[..take]);
                    if take == left as usize {
                        let buf = std::mem::take(&mut self.dirs[d].buf);
                        self.payload(d, c, &buf, out);
                        self.dirs[d].buf = buf;
                        self.dirs[d].buf.clear();
                    } else {
                        dir.state = St::Collect {
                            left: left - take as u32,
                        };
                    }
                }
                take
            }
            St::Skip { left, end } => {
                let take = (left as usize).min(data.len());
                self.skipped(d, c, left - take as u32, end, out);
                take
            }
            St::Lost => data.len(),
        }
    }

    /// `left` bytes of a skipped payload remain; at zero the frame is done.
    pub(super) fn skipped(
        &mut self,
        d: usize,
        c: &Chunk<'_>,
        left: u32,
        end: u32,
        out: &mut Vec<L7Record>,
    ) {
        if left > 0 {
            self.dirs[d].state = St::Skip { left, end };
            return;
        }
        self.dirs[d].state = St::Header;
        if end != 0 {
            self.end_stream(d, end, c.end_ns, out);
        }
    }

    /// `hidden` bytes of the chunk were not captured. Skipped exactly when they lie inside the
    /// payload of the frame being read (a header block cut this way resets HPACK); if they run
    /// past its end, they may hold any frame (a HEADERS block changing the HPACK table): the
    /// direction is lost.
    fn hidden(&mut self, d: usize, c: &Chunk<'_>, hidden: u64, out: &mut Vec<L7Record>) {
        let (left, end) = match self.dirs[d].state {
            St::Skip { left, end } => (left, end),
            St::Collect { left } => {
                // A header-block frame cut short: its block cannot be decoded (a GOAWAY or
                // SETTINGS cut short is just skipped).
                self.dirs[d].buf.clear();
                let h = self.dirs[d].frame;
                if !matches!(h.kind, GOAWAY | SETTINGS) {
                    self.truncated_block(d, c, h, out);
                }
                (left, 0)
            }
            St::Preface(_) => {
                self.lose(d);
                return;
            }
            St::Header | St::Lost => {
                self.lose_gap(d, c);
                return;
            }
        };
        if hidden < u64::from(left) {
            self.dirs[d].state = St::Skip {
                left: left - hidden as u32,
                end,
            };
            return;
        }
        self.skipped(d, c, 0, end, out);
        if hidden > u64::from(left) {
            self.lose_gap(d, c);
        }
    }

    /// Framing is lost in direction `d` because bytes made no sense as frames: whatever was
    /// decoded lately may have been garbage, HPACK is forgotten now.
    pub(super) fn lose(&mut self, d: usize) {
        if self.request_dir() == Some(d) {
            self.hidden_ids.garbage();
        }
        self.lose_framing(d);
        self.dirs[d].suspect = None;
        self.dirs[d].hpack.reset_unknown();
    }

    /// Framing is lost in direction `d` (HPACK is the caller's business).
    pub(super) fn lose_framing(&mut self, d: usize) {
        let dir = &mut self.dirs[d];
        dir.state = St::Lost;
        dir.pristine = false;
        dir.probe_len = 0;
        dir.hdr_len = 0;
        dir.buf.clear();
        dir.block.clear();
        dir.meta = None;
        // Whatever the lost bytes held (END_STREAM, headers) is unknown.
        for s in &mut self.streams {
            s.x.partial = true;
        }
    }
}
