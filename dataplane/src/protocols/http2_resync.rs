//! Framing lost to the uncaptured middle of a syscall, and what stays true across it.
//!
//! A syscall that moves several frames (a gRPC message larger than the peer's frame size, several
//! messages queued behind flow control, a read that caught up with several writes) can hide a
//! frame header between its captured start and end: the direction is *lost* (`http2_framing.rs`)
//! and the bytes up to where framing is found again may have held anything. Two questions:
//!
//! - **Where does framing come back?** Writers hand whole frames to a syscall, so the next
//!   syscall usually starts on a frame boundary (a read does when the reader has caught up). A
//!   direction that had framing resyncs at a chunk whose first bytes walk as frames that all fit
//!   what the connection is doing: known type and flags, reserved bit clear, length within the
//!   receiver's SETTINGS_MAX_FRAME_SIZE (grpcio allows 4 MiB: its messages are one DATA frame),
//!   DATA on a stream open that way, HEADERS on one too or opening the next client stream, frames
//!   of other types only where they can start a resync; the walk goes on into the captured end of
//!   the syscall when the gap falls inside a frame ([`Http2Parser::resyncs_at`]). Bytes in the
//!   middle of a payload that pass all that are the same accepted risk as before (only the
//!   bound on lengths is wider, the stream checks are new).
//! - **Can HPACK still be trusted?** Only a header block changes the dynamic table. The table is
//!   kept (not decoded from) while lost; at the first header block after the resync it is kept
//!   if the hidden bytes provably held no header block, else forgotten before decoding (as if
//!   joining mid-connection: only entries inserted since are trusted). Proof, by direction:
//!   - requests: client stream ids only grow (RFC 9113 5.1.1), so a HEADERS that opens the next
//!     id after the last one known when framing was lost means no stream was opened in the
//!     hidden bytes; the only other request header blocks are trailers, which gRPC calls never
//!     send (not trusted while a request that was not a gRPC call could still send some, even
//!     one no longer tracked, one opened in hidden request bytes and not ruled out yet, one
//!     opened in bytes that were not frames, or one opened before we joined: on a connection
//!     joined mid-stream, never);
//!   - answers: a stream's header blocks are its response headers (and 1xx before them) and
//!     then only trailers, which end it. The first block must be the trailers (END_STREAM) of a
//!     stream whose final headers were seen before the loss, and every other stream that could
//!     have answered in the hidden bytes must have sent a DATA or HEADERS frame since (nothing
//!     follows trailers, and DATA never comes before headers); push must be off, and no stream
//!     given up before its answer ended (reset by the client, evicted) may still have frames in
//!     flight (a side that sent RST_STREAM sends nothing more on that stream, RFC 9113 5.1: the
//!     server's own resets leave nothing in flight in the answers, the client's none in the
//!     requests; nor does a GOAWAY in the answers, for the streams it gives up that the server
//!     had not answered: it took no action on them, RFC 9113 6.8).
//!     Streams we do not track at all prove nothing. Those opened in request bytes that were
//!     not frames, or whose hidden ids were forgotten, may answer at any time: the table is
//!     then always forgotten (`HiddenIds::untracked`). Those opened before we joined may answer
//!     at any time and no id we see rules them out: on a connection joined mid-stream the table
//!     is always forgotten (`Http2Parser::untracked_blocks`; only the preface clears it). Those
//!     opened in request bytes that were hidden too: while the requests may still tell whether
//!     there are any, the table is kept on trust (`http2_tentative.rs`), else forgotten.
//!
//! Anything else forgets the table: a value is then unknown, never wrong. A stream whose
//! END_STREAM may have been hidden is not ended at a guessed time: it stays open (a frame of it
//! seen later proves it was not over) until something closes it for sure (its trailers, a
//! reset, a GOAWAY, the connection's close); emitted then as partial, its end is bounded by the
//! exit of the last chunk of the lost stretch, when the hidden END_STREAM was moved at the latest.

use super::framing::FrameHeader;
use super::hidden::Doubt;
use super::{
    Chunk, Http2Parser, L7Record, Stream, DATA, DEFAULT_MAX_FRAME, FLAG_END_STREAM, GOAWAY,
    HEADERS, PING, RST_STREAM, SETTINGS, WINDOW_UPDATE,
};
use crate::protocols::grpc::is_grpc_exchange;

/// SETTINGS_ENABLE_PUSH and SETTINGS_MAX_FRAME_SIZE (RFC 9113 6.5.2).
const SETTINGS_ENABLE_PUSH: u16 = 0x2;
const SETTINGS_MAX_FRAME_SIZE: u16 = 0x5;
const MAX_FRAME_LIMIT: u32 = (1 << 24) - 1;

/// HPACK of one direction kept across a lost stretch, awaiting the first header block since.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Suspect {
    /// The highest client stream id known when framing was lost.
    last_stream: u32,
    /// A hidden header block can no longer be ruled out.
    tainted: bool,
}

impl Http2Parser {
    /// Framing of direction `d` was lost to bytes the kernel did not copy (`c` is the chunk).
    pub(super) fn lose_gap(&mut self, d: usize, c: &Chunk<'_>) {
        // Mid-block, the rest of the block changes the table in unknown ways. A stream opened out
        // of sight and neither tracked nor kept (`HiddenIds::untracked`) is as one no longer
        // tracked.
        let mut tainted =
            self.untracked_blocks[d] || self.hidden_ids.untracked() || self.dirs[d].meta.is_some();
        self.lose_framing(d);
        self.dirs[d].lost_ns = c.end_ns;
        if self.request_dir().is_none() {
            // Which proof applies is unknown, and so is where frames may start: as before.
            self.dirs[d].suspect = None;
            self.dirs[d].hpack.reset_unknown();
            return;
        }
        let req = self.request_dir() == Some(d);
        if req {
            // Request trailers may also come from a stream opened in hidden request bytes and
            // not ruled out yet (an id kept in a range: its content type is unknown).
            tainted |= self.hidden_ids.doubt() == Doubt::Lost;
            self.hidden_ids.gap(self.last_stream, c);
        }
        for s in &mut self.streams {
            if !s.ended[d] {
                s.hidden[d] = true;
                // Request trailers: gRPC calls never send them, other requests may.
                tainted |= req && !is_grpc_exchange(&s.x);
            }
        }
        let prev = self.dirs[d].suspect;
        self.dirs[d].suspect = Some(Suspect {
            last_stream: prev.map_or(self.last_stream, |p| p.last_stream),
            tainted: tainted || prev.is_some_and(|p| p.tainted),
        });
    }

    /// A header-block frame `h` in direction `d`: if HPACK was kept across a lost stretch, keep
    /// it for good or forget it now, before anything is decoded with it.
    pub(super) fn settle_hpack(
        &mut self,
        d: usize,
        h: &FrameHeader,
        now_ns: u64,
        out: &mut Vec<L7Record>,
    ) {
        let Some(sus) = self.dirs[d].suspect.take() else {
            return;
        };
        if !self.no_hidden_block(d, sus, h) {
            self.dirs[d].hpack.reset_unknown();
            return;
        }
        if self.request_dir() == Some(d) {
            return;
        }
        // Streams we do not track may have answered in the hidden bytes too.
        match self.hidden_ids.doubt() {
            Doubt::None => {}
            // Until the requests tell (`http2_tentative.rs`).
            Doubt::Pending => self.trust(d, now_ns, out),
            Doubt::Lost => self.dirs[d].hpack.reset_unknown(),
        }
    }

    /// Could the bytes hidden in direction `d` not have held a header block? (See the module
    /// comment.)
    fn no_hidden_block(&self, d: usize, sus: Suspect, h: &FrameHeader) -> bool {
        let Some(req) = self.request_dir() else {
            return false;
        };
        if sus.tainted || h.kind != HEADERS {
            return false;
        }
        if d == req {
            let next = if sus.last_stream == 0 {
                1
            } else {
                sus.last_stream.saturating_add(2)
            };
            // Not known from an answer already: then its request headers were hidden.
            return h.stream == next && self.last_stream < next;
        }
        h.flags & FLAG_END_STREAM != 0
            && self.dirs[req].push_off
            && self.streams.iter().any(|s| s.x.stream_id == h.stream)
            && self.streams.iter().all(|s| {
                if s.x.stream_id == h.stream {
                    s.headers[d] && s.x.status.is_some_and(|st| st >= 200)
                } else {
                    !s.hidden[d]
                }
            })
    }

    /// A DATA frame of stream `i` in direction `d`, which bytes hidden before may have held
    /// frames of: its END_STREAM was not hidden (nothing follows it), and unless these are
    /// answers without their headers seen, neither was a header block of it (only trailers could
    /// have been). HEADERS prove the same in `block_done`.
    pub(super) fn data_alive(&mut self, d: usize, i: usize) {
        let answers = self.request_dir().is_some_and(|req| req != d);
        let s = &mut self.streams[i];
        s.hidden[d] = false;
        if answers && !s.headers[d] {
            if let Some(sus) = &mut self.dirs[d].suspect {
                sus.tainted = true;
            }
        }
    }

    /// Stream `s` is being emitted (`req` is the request direction); returns its end time.
    pub(super) fn emitted(&mut self, s: &Stream, req: usize, end_ns: u64) -> u64 {
        let resp = 1 - req;
        // Reset, evicted or given up by a GOAWAY: frames already in flight (an answer's
        // trailers, a plain request's trailers) may still come, except from the side that
        // sent a reset, or the answers of a stream a GOAWAY gave up unanswered (that half is
        // `ended`).
        if !s.ended[req] && !is_grpc_exchange(&s.x) {
            self.untracked_blocks[req] = true;
        }
        if !s.ended[resp] {
            self.untracked_blocks[resp] = true;
        }
        if !s.hidden[resp] {
            return end_ns;
        }
        // Gone before it could prove it sent no hidden answer block.
        if let Some(sus) = &mut self.dirs[resp].suspect {
            sus.tainted = true;
        }
        if s.ended[resp] || s.reset {
            end_ns
        } else {
            end_ns.min(self.dirs[resp].lost_ns)
        }
    }

    /// A SETTINGS frame's payload in direction `d`.
    pub(super) fn settings(&mut self, d: usize, p: &[u8]) {
        for e in p.chunks_exact(6) {
            let v = u32::from_be_bytes([e[2], e[3], e[4], e[5]]);
            match u16::from_be_bytes([e[0], e[1]]) {
                SETTINGS_ENABLE_PUSH => self.dirs[d].push_off = v == 0,
                // What the sender accepts: the bound on the frames of the other direction.
                SETTINGS_MAX_FRAME_SIZE => {
                    self.dirs[1 - d].max_frame = v.clamp(DEFAULT_MAX_FRAME, MAX_FRAME_LIMIT);
                }
                _ => {}
            }
        }
    }

    /// Lost in direction `d`: may framing start again at chunk `c`? A direction that never had
    /// framing (joined mid-stream) or lost it to bad bytes uses the mid-stream heuristic
    /// (`plausible_frames`); one that lost it to a gap walks the frames at the chunk's start, on
    /// into its captured end when the gap lies inside a frame, and wants all of them to fit.
    pub(super) fn resyncs_at(&self, d: usize, c: &Chunk<'_>) -> bool {
        if self.dirs[d].suspect.is_none() {
            return super::framing::plausible_frames(c.data).is_some();
        }
        let tail = if c.tail.len() as u64 <= c.hidden() {
            c.tail
        } else {
            &[]
        };
        let total = c.total_len as usize;
        let tail_at = total - tail.len();
        let mut opened = [0u32; 4];
        let mut k = 0;
        let mut pos = 0usize;
        let mut n = 0;
        loop {
            let bytes = if pos + 9 <= c.data.len() {
                &c.data[pos..]
            } else if !tail.is_empty() && pos >= tail_at && pos + 9 <= total {
                &tail[pos - tail_at..]
            } else {
                break;
            };
            let Some(h) = FrameHeader::parse(bytes) else {
                return false;
            };
            if !self.resync_frame(d, &h, &opened[..k]) {
                return false;
            }
            if h.kind == HEADERS && k < opened.len() {
                opened[k] = h.stream;
                k += 1;
            }
            n += 1;
            pos += 9 + h.len as usize;
        }
        n > 0
    }

    /// Can frame `h` in direction `d` be where framing starts again? `opened`: streams opened
    /// by HEADERS earlier in the same walk. Without a gap loss, the mid-stream rule.
    pub(super) fn resync_frame(&self, d: usize, h: &FrameHeader, opened: &[u32]) -> bool {
        if self.dirs[d].suspect.is_none() {
            return h.plausible(DEFAULT_MAX_FRAME);
        }
        if !h.plausible(self.dirs[d].max_frame) {
            return false;
        }
        let open = self
            .streams
            .iter()
            .any(|s| s.x.stream_id == h.stream && !s.ended[d])
            || opened.contains(&h.stream);
        let requests = self.request_dir() == Some(d);
        match h.kind {
            DATA => open,
            HEADERS => open || (requests && h.stream % 2 == 1 && h.stream > self.last_stream),
            RST_STREAM => h.stream <= self.last_stream,
            WINDOW_UPDATE => h.stream <= self.last_stream || opened.contains(&h.stream),
            SETTINGS | PING | GOAWAY => true,
            // PRIORITY, PUSH_PROMISE, CONTINUATION (mid-block) and unknown types: never here.
            _ => false,
        }
    }
}
