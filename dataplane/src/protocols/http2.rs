//! HTTP/2 (RFC 9113): frames across reads, HPACK per direction, one exchange per stream.
//!
//! This module owns the HTTP/2 state of one connection: for each direction a frame reader (the
//! client preface, 9-byte frame headers, payloads kept only for header blocks, everything else
//! skipped by length), the HPACK decoder of the peer writing that direction, and a bounded table
//! of open streams. The frame reader (bytes to frames, capture loss, resync) is the child module
//! `framing` (`http2_framing.rs`); this file turns frames into streams. A stream becomes an
//! [`H2Exchange`] when the response side ends it (END_STREAM on HEADERS, trailers or DATA) or
//! either side resets it; [`Http2Parser::close`] flushes the rest as partial. Invariants:
//! - never panics, and memory is bounded: per direction one frame buffer (a header-block frame
//!   split across reads, at most [`MAX_FRAME_BUF`]), one header block ([`MAX_BLOCK`]) and the
//!   HPACK table ([`super::hpack::MAX_TABLE_SIZE`]); at most [`MAX_STREAMS`] open streams (a new one
//!   beyond that evicts the oldest as partial, counted in [`Http2Parser::stream_overflows`]);
//!   strings are capped;
//! - bytes the kernel did not capture (`total_len` beyond `data`) are skipped by frame length;
//!   when they lie inside one frame's payload, the captured end of the chunk (`tail`) is read
//!   on from the right place (the trailers after a large DATA frame); when they cross a frame
//!   boundary they may hide a header block, so the direction is lost and the tail unused; a
//!   header block that was not fully captured breaks HPACK for that direction: the decoder
//!   falls back to the mid-stream rule (only entries inserted since are trusted) and the stream
//!   is marked `headers_incomplete`; bytes whose framing is unknown make the direction *lost*
//!   until a chunk starts with a plausible frame header (open streams partial). HPACK is then
//!   reset, unless framing was lost to uncaptured bytes and the stream ids prove they held no
//!   header block: the child module `resync` (`http2_resync.rs`) says where framing comes back
//!   after such a gap and when the table is kept, and the child module `hidden`
//!   (`http2_hidden.rs`) which stream ids the gap may have opened, whose answers (or resets, or
//!   DATA) still make an exchange; while those may hide an answer, the answers' table is kept
//!   on trust and spans that used it wait for the requests to settle it (`tentative`,
//!   `http2_tentative.rs`);
//! - a field is either what the peer sent or `None`: never a guess;
//! - per chunk, nothing is allocated unless a header block must be buffered or a stream's
//!   strings are stored.

use std::sync::Arc;

use super::{Chunk, Direction, L7Record, Role};

#[path = "http2_fields.rs"]
mod fields;
#[path = "http2_framing.rs"]
mod framing;
use super::hpack::Head;
use fields::{Fields, Memo, F_ANY, F_METHOD};
#[path = "http2_hidden.rs"]
mod hidden;
#[path = "http2_resync.rs"]
mod resync;
#[path = "http2_tentative.rs"]
mod tentative;
pub use framing::{detect, FrameHeader};
use framing::{Dir, St};

/// The client connection preface (RFC 9113 section 3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Open streams tracked per connection.
pub const MAX_STREAMS: usize = 256;
/// Bound on one header-block frame's payload buffered across reads.
pub const MAX_FRAME_BUF: usize = 16 * 1024 + 256;
/// Bound on one header block (HEADERS + CONTINUATION fragments) buffered before decoding.
pub const MAX_BLOCK: usize = 32 * 1024;
/// Largest frame the mid-stream heuristic believes (the default SETTINGS_MAX_FRAME_SIZE).
pub const DEFAULT_MAX_FRAME: u32 = 16 * 1024;
const MAX_PATH: usize = 2048;
const MAX_AUTHORITY: usize = 256;
const MAX_TRACEPARENT: usize = 128;
const MAX_SHORT: usize = 128;
const MAX_GRPC_MESSAGE: usize = 512;

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const PRIORITY: u8 = 0x2;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PUSH_PROMISE: u8 = 0x5;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const CONTINUATION: u8 = 0x9;
pub const FLAG_END_STREAM: u8 = 0x1;
pub const FLAG_ACK: u8 = 0x1;
pub const FLAG_END_HEADERS: u8 = 0x4;
pub const FLAG_PADDED: u8 = 0x8;
pub const FLAG_PRIORITY: u8 = 0x20;

/// One stream's request and response on one connection, as the traced process saw them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct H2Exchange {
    /// The side the traced process played (never `Unknown` in an emitted exchange).
    pub role: Role,
    pub stream_id: u32,
    pub method: Option<Arc<str>>,
    pub path: Option<Arc<str>>,
    pub authority: Option<Arc<str>>,
    pub scheme: Option<Arc<str>>,
    pub status: Option<u16>,
    /// The first `content-type` seen on the stream (request's, else response's).
    pub content_type: Option<Arc<str>>,
    pub traceparent: Option<String>,
    /// From the trailers (or a trailers-only response).
    pub grpc_status: Option<u32>,
    /// As sent (percent-encoded); see [`super::grpc::decode_message`].
    pub grpc_message: Option<String>,
    /// Kernel monotonic ns: request headers' chunk entry, and the exit of the chunk that ended
    /// the stream (or of the last chunk seen, for partial exchanges). When the request headers
    /// were in bytes not captured, the entry of the chunk where they were lost (`http2_hidden.rs`).
    pub start_ns: u64,
    pub end_ns: u64,
    /// Kernel sequence number of the chunk that started the request headers (or of the chunk
    /// where they were lost, as for `start_ns`).
    pub request_seq: u64,
    /// DATA frame payload bytes (padding included) each way.
    pub request_body_bytes: u64,
    pub response_body_bytes: u64,
    /// Some header could not be decoded (HPACK state missing, block not captured).
    pub headers_incomplete: bool,
    /// Not seen to completion (reset, close, capture loss, joined mid-stream).
    pub partial: bool,
}

fn dir_index(d: Direction) -> usize {
    match d {
        Direction::Ingress => 0,
        Direction::Egress => 1,
    }
}

/// A header block in progress (HEADERS or PUSH_PROMISE awaiting CONTINUATION).
#[derive(Debug, Clone, Copy, Default)]
struct BlockMeta {
    stream: u32,
    end_stream: bool,
    push: bool,
    /// A piece of the block was not seen: HPACK is already reset, nothing can be decoded.
    broken: bool,
    start_ns: u64,
    seq: u64,
}

#[derive(Debug, Default)]
struct Stream {
    x: H2Exchange,
    /// Per direction (index: `dir_index`): headers seen, END_STREAM (or a RST_STREAM sent that
    /// way: nothing more of the stream comes from that side) seen, DATA bytes.
    headers: [bool; 2],
    ended: [bool; 2],
    /// Exit time of the chunk that carried each direction's END_STREAM (0 if only a reset ended it).
    ended_ns: [u64; 2],
    body: [u64; 2],
    reset: bool,
    /// The request headers were seen (not joined after them).
    saw_request: bool,
    /// Per direction: bytes hidden from us since the stream opened may have held its frames (a
    /// header block, END_STREAM), and no frame of it seen since rules that out.
    hidden: [bool; 2],
    /// Fields (`F_*` bits) decoded on trust (`http2_tentative.rs`).
    doubt: u16,
}

/// Per-connection HTTP/2 parser state.
#[derive(Debug)]
pub struct Http2Parser {
    role: Role,
    dirs: [Dir; 2],
    streams: Vec<Stream>,
    memo: Memo,
    /// Highest client stream id a stream was created for: lower unknown ids are closed, unless
    /// `hidden_ids` holds them.
    last_stream: u32,
    errors: u64,
    overflows: u64,
    unattributed: u64,
    /// Per direction: a stream not tracked may still send a header block that way: one no
    /// longer tracked (a request that was not a gRPC call, or an answer, not ended when the
    /// stream was emitted: neither by END_STREAM nor by a reset its side sent), or one opened before we joined (until the preface shows there is
    /// none: joined mid-stream, streams older than anything seen may still send trailers or
    /// answers, and no stream id we see rules them out).
    untracked_blocks: [bool; 2],
    /// Client stream ids below `last_stream` that hidden request bytes may have opened.
    hidden_ids: hidden::HiddenIds,
    /// The answers' HPACK table kept on trust, and the spans waiting for it to be settled (at
    /// most [`tentative::MAX_HELD`]).
    trust: Option<tentative::Trust>,
    held: Vec<tentative::Held>,
}

impl H2Exchange {
    /// Heap bytes of its strings: the owned ones, and the shared ones (counted as if not
    /// shared; a stream's copy is usually the memo's, which counts them too).
    pub(crate) fn heap_bytes(&self) -> usize {
        let owned = [&self.traceparent, &self.grpc_message]
            .iter()
            .map(|o| o.as_ref().map_or(0, String::capacity))
            .sum::<usize>();
        let shared = [
            &self.method,
            &self.path,
            &self.authority,
            &self.scheme,
            &self.content_type,
        ]
        .iter()
        .map(|o| o.as_ref().map_or(0, |a| a.len()))
        .sum::<usize>();
        owned + shared
    }
}

impl Http2Parser {
    pub fn new(role: Role) -> Self {
        Self {
            role,
            dirs: [Dir::new(), Dir::new()],
            streams: Vec::new(),
            memo: Memo::default(),
            last_stream: 0,
            errors: 0,
            overflows: 0,
            unattributed: 0,
            untracked_blocks: [true; 2],
            hidden_ids: hidden::HiddenIds::default(),
            trust: None,
            held: Vec::new(),
        }
    }

    /// The role, once known.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Malformed frames or header blocks seen so far.
    pub fn parse_errors(&self) -> u64 {
        self.errors
    }

    /// Streams given up (emitted as partial) to make room when [`MAX_STREAMS`] were open.
    pub fn stream_overflows(&self) -> u64 {
        self.overflows
    }

    /// Exchanges dropped because the parser never learned which side was the client.
    pub fn unattributed(&self) -> u64 {
        self.unattributed
    }

    /// Streams open now.
    pub fn open_streams(&self) -> usize {
        self.streams.len()
    }

    /// Heap bytes held (buffers, HPACK tables, streams); bounded by construction.
    pub fn buffered_bytes(&self) -> usize {
        let dirs: usize = self
            .dirs
            .iter()
            .map(|d| {
                d.buf.capacity() + d.block.capacity() + d.hpack.buffered_bytes() + d.blocks.bytes()
            })
            .sum();
        let strings: usize = self.streams.iter().map(|s| s.x.heap_bytes()).sum();
        let held: usize = self.held.iter().map(|h| h.bytes()).sum::<usize>()
            + self.held.capacity() * std::mem::size_of::<tentative::Held>();
        dirs + held
            + self.hidden_ids.bytes()
            + self.streams.capacity() * std::mem::size_of::<Stream>()
            + strings
            + self.memo.bytes()
    }

    /// Which direction carries requests (the client's frames), once the role is known.
    fn request_dir(&self) -> Option<usize> {
        match self.role {
            Role::Server => Some(0),
            Role::Client => Some(1),
            Role::Unknown => None,
        }
    }

    /// The client preface: the connection starts here, both HPACK tables are known.
    fn preface(&mut self, d: usize) {
        // Nothing can have ended before the preface: no sweep needed.
        self.learn_role(d, true);
        self.hidden_ids.connection_start();
        self.untracked_blocks = [false; 2];
        self.dirs[d].hpack.connection_start();
        let other = &mut self.dirs[1 - d];
        if other.pristine {
            // The other side has sent no header block yet (a server may send its SETTINGS
            // before the preface arrives): its table is still empty.
            other.hpack.connection_start();
        }
        if other.fresh {
            // The other side has not written yet: its first byte starts a frame.
            other.state = St::Header;
            other.hdr_len = 0;
        }
    }

    /// Direction `d` was seen carrying requests (`true`) or responses. Returns whether the role
    /// was learnt now.
    fn learn_role(&mut self, d: usize, requests: bool) -> bool {
        if self.role != Role::Unknown {
            return false;
        }
        self.role = if (d == 0) == requests {
            Role::Server
        } else {
            Role::Client
        };
        true
    }

    fn frame_header(&mut self, d: usize, c: &Chunk<'_>, h: FrameHeader, out: &mut Vec<L7Record>) {
        let known = h.kind <= CONTINUATION;
        if known && !h.well_formed() {
            // A frame no peer would send: our framing is off.
            self.errors += 1;
            self.lose(d);
            return;
        }
        let dir = &mut self.dirs[d];
        if dir.meta.is_some() && h.kind != CONTINUATION {
            // RFC 9113 6.10: nothing may interleave a header block.
            self.errors += 1;
            self.lose(d);
            return;
        }
        dir.frame = h;
        dir.frame_start = (c.start_ns, c.seq);
        if matches!(h.kind, HEADERS | CONTINUATION | PUSH_PROMISE) {
            dir.pristine = false;
            self.settle_hpack(d, &h, c.start_ns, out);
        }
        match h.kind {
            HEADERS | CONTINUATION | PUSH_PROMISE => {
                if h.len as usize > MAX_FRAME_BUF {
                    self.truncated_block(d, c, h, out);
                    self.skipped(d, c, h.len, 0, out);
                } else if h.len == 0 {
                    self.payload(d, c, &[], out);
                } else {
                    self.dirs[d].state = St::Collect { left: h.len };
                }
            }
            DATA => {
                let i = match self.streams.iter().position(|s| s.x.stream_id == h.stream) {
                    Some(i) => Some(i),
                    None => self.open_by_frame(h.stream, c, out),
                };
                if let Some(i) = i {
                    let s = &mut self.streams[i];
                    s.body[d] = s.body[d].saturating_add(u64::from(h.len));
                    if s.hidden[d] {
                        self.data_alive(d, i);
                    }
                }
                let end = if h.flags & FLAG_END_STREAM != 0 {
                    h.stream
                } else {
                    0
                };
                self.skipped(d, c, h.len, end, out);
            }
            RST_STREAM => {
                let i = match self.streams.iter().position(|s| s.x.stream_id == h.stream) {
                    Some(i) => Some(i),
                    None => self.open_by_frame(h.stream, c, out),
                };
                if let Some(i) = i {
                    let s = &mut self.streams[i];
                    s.reset = true;
                    s.x.partial = true;
                    // Its sender sends nothing more on it (RFC 9113 5.1, closed): that way,
                    // it can send no header block once untracked (`emitted`).
                    s.ended[d] = true;
                    self.finish(i, c.end_ns, out);
                }
                self.skipped(d, c, h.len, 0, out);
            }
            GOAWAY if h.len as usize <= MAX_FRAME_BUF => {
                self.dirs[d].state = St::Collect { left: h.len };
            }
            SETTINGS if h.flags & FLAG_ACK == 0 && h.len > 0 && h.len as usize <= MAX_FRAME_BUF => {
                self.dirs[d].state = St::Collect { left: h.len };
            }
            // SETTINGS acks (HPACK size changes arrive as size updates in blocks), PING, a GOAWAY
            // or SETTINGS too long to keep, WINDOW_UPDATE, PRIORITY, unknown types.
            _ => self.skipped(d, c, h.len, 0, out),
        }
    }

    /// A header-block frame whose payload we will not see whole.
    fn truncated_block(
        &mut self,
        d: usize,
        c: &Chunk<'_>,
        h: FrameHeader,
        out: &mut Vec<L7Record>,
    ) {
        self.dirs[d].hpack.reset_unknown();
        self.dirs[d].block.clear();
        let meta = self.dirs[d].meta.take();
        let meta = match (h.kind, meta) {
            (CONTINUATION, Some(m)) => m,
            (CONTINUATION, None) => {
                self.errors += 1;
                return;
            }
            _ => BlockMeta {
                stream: h.stream,
                end_stream: h.kind == HEADERS && h.flags & FLAG_END_STREAM != 0,
                push: h.kind == PUSH_PROMISE,
                broken: true,
                start_ns: self.dirs[d].frame_start.0,
                seq: self.dirs[d].frame_start.1,
            },
        };
        let meta = BlockMeta {
            broken: true,
            ..meta
        };
        if h.flags & FLAG_END_HEADERS != 0 {
            self.block_done(d, c, meta, None, out);
        } else {
            self.dirs[d].meta = Some(meta);
        }
    }

    /// The whole payload of the current header-block frame.
    fn payload(&mut self, d: usize, c: &Chunk<'_>, p: &[u8], out: &mut Vec<L7Record>) {
        self.dirs[d].state = St::Header;
        let h = self.dirs[d].frame;
        if h.kind == GOAWAY {
            self.goaway(d, c, p, out);
            return;
        }
        if h.kind == SETTINGS {
            self.settings(d, p);
            return;
        }
        let (frag, meta) = if h.kind == CONTINUATION {
            match self.dirs[d].meta.take() {
                Some(m) if m.stream == h.stream => (p, m),
                _ => {
                    self.errors += 1;
                    self.lose(d);
                    return;
                }
            }
        } else {
            let mut off = 0usize;
            let mut end = p.len();
            if h.flags & FLAG_PADDED != 0 {
                let pad = usize::from(p.first().copied().unwrap_or(0));
                off = 1;
                end = end.saturating_sub(pad);
            }
            if h.kind == HEADERS && h.flags & FLAG_PRIORITY != 0 {
                off += 5;
            }
            if h.kind == PUSH_PROMISE {
                off += 4;
            }
            if off > end {
                self.errors += 1;
                self.lose(d);
                return;
            }
            let (start_ns, seq) = self.dirs[d].frame_start;
            let meta = BlockMeta {
                stream: h.stream,
                end_stream: h.kind == HEADERS && h.flags & FLAG_END_STREAM != 0,
                push: h.kind == PUSH_PROMISE,
                broken: false,
                start_ns,
                seq,
            };
            (&p[off..end], meta)
        };
        let dir = &mut self.dirs[d];
        if h.flags & FLAG_END_HEADERS == 0 {
            if !meta.broken {
                if dir.block.len() + frag.len() > MAX_BLOCK {
                    dir.block.clear();
                    dir.meta = Some(BlockMeta {
                        broken: true,
                        ..meta
                    });
                    self.dirs[d].hpack.reset_unknown();
                    return;
                }
                dir.block.extend_from_slice(frag);
            }
            dir.meta = Some(meta);
            return;
        }
        if meta.broken {
            self.block_done(d, c, meta, None, out);
        } else if dir.block.is_empty() {
            self.block_done(d, c, meta, Some(frag), out);
        } else {
            if dir.block.len() + frag.len() > MAX_BLOCK {
                dir.block.clear();
                self.dirs[d].hpack.reset_unknown();
                self.block_done(
                    d,
                    c,
                    BlockMeta {
                        broken: true,
                        ..meta
                    },
                    None,
                    out,
                );
                return;
            }
            let mut block = std::mem::take(&mut dir.block);
            block.extend_from_slice(frag);
            self.block_done(d, c, meta, Some(&block), out);
            block.clear();
            self.dirs[d].block = block;
        }
    }

    /// GOAWAY from the server: client streams above its last-stream-id were not processed and
    /// never will be: they are over (partial). From the client it concerns pushed streams only.
    ///
    /// What it says about header blocks still to come (RFC 9113 6.8): the server took no action
    /// on those streams and takes none, so it sends no header block on them: the answers stay
    /// free of untracked blocks (unless it already answered one, which contradicts the GOAWAY:
    /// then nothing is assumed). The client may still have frames of them in flight, header
    /// blocks included (the server must decode those for HPACK): for the requests, such a
    /// stream is as one reset by the server (`emitted` taints that table unless it is a gRPC
    /// call, which sends no request trailers).
    fn goaway(&mut self, d: usize, c: &Chunk<'_>, p: &[u8], out: &mut Vec<L7Record>) {
        let Some(req) = self.request_dir() else {
            return;
        };
        let Some(last) = p.get(..4) else {
            return;
        };
        let last = u32::from_be_bytes([last[0], last[1], last[2], last[3]]) & 0x7fff_ffff;
        if d == req {
            return;
        }
        for i in (0..self.streams.len()).rev() {
            let s = &mut self.streams[i];
            if s.x.stream_id > last {
                s.reset = true;
                s.x.partial = true;
                if !s.headers[d] {
                    // Never answered, never will be: nothing of it is hidden in the answers.
                    s.ended[d] = true;
                    s.hidden[d] = false;
                }
                self.finish(i, c.end_ns, out);
            }
        }
    }

    /// A header block is complete; `block` is `None` when it could not be decoded.
    fn block_done(
        &mut self,
        d: usize,
        c: &Chunk<'_>,
        meta: BlockMeta,
        block: Option<&[u8]>,
        out: &mut Vec<L7Record>,
    ) {
        let mut f = Fields::default();
        let mut incomplete = block.is_none();
        if let Some(block) = block {
            let since = self.trusted_since(d);
            let memo = &mut self.memo;
            let dir = &mut self.dirs[d];
            let hpack = &mut dir.hpack;
            // Only the plain case is memoised: every entry trusted (no `since`). The block's
            // indexed head: the longest part of it remembered takes its fields, the rest of it
            // is decoded and the whole head remembered; then what follows the head is decoded
            // (the head changes nothing in the table, so this is the whole block's decoding).
            let mut done = 0;
            let mut unknown = 0;
            let mut failed = false;
            if since.is_none() {
                let epoch = hpack.epoch();
                let mut head = Head::default();
                hpack.head(block, &mut head);
                let mut known = 0;
                if let Some((fields, u, n)) = dir.blocks.longest(epoch, &head) {
                    f.clone_from(fields);
                    (known, unknown) = (n, u);
                    done = head.bytes(n);
                }
                if known < head.len {
                    let end = head.bytes(head.len);
                    let more = &block[done..end];
                    match hpack.decode(more, |n, v| f.add(n, v, false, memo)) {
                        Ok(info) => {
                            unknown += info.unknown;
                            dir.blocks.put(epoch, &head, &f, unknown);
                            done = end;
                        }
                        Err(_) => failed = true,
                    }
                }
            }
            let rest = &block[done..];
            incomplete = unknown > 0;
            if !failed && !rest.is_empty() {
                match hpack.decode_since(rest, since, |n, v, old| f.add(n, v, old, memo)) {
                    Ok(info) => incomplete = unknown + info.unknown > 0,
                    Err(_) => failed = true,
                }
            }
            if failed {
                self.errors += 1;
                f = Fields::default();
                incomplete = true;
            }
        }
        if f.bad {
            self.errors += 1;
        }
        if meta.push || meta.stream == 0 || meta.stream % 2 == 0 {
            // Server push (even streams) and bad stream ids: decoded for HPACK only.
            if meta.stream == 0 {
                self.errors += 1;
            }
            return;
        }
        let learnt = if f.method.is_some() {
            self.learn_role(d, true)
        } else if f.status.is_some() {
            self.learn_role(d, false)
        } else {
            false
        };
        if learnt {
            // Streams whose response side ended while the role was unknown are over.
            for i in (0..self.streams.len()).rev() {
                self.finish(i, c.end_ns, out);
            }
        }
        let i = match self
            .streams
            .iter()
            .position(|s| s.x.stream_id == meta.stream)
        {
            Some(i) => i,
            None => match self.open(d, &meta, c, out) {
                Some(i) => i,
                None => return,
            },
        };
        // The request's first block (its :method may be the part that could not be decoded).
        let request_block =
            (f.method.is_some() && f.doubt & F_METHOD == 0) || self.request_dir() == Some(d);
        let s = &mut self.streams[i];
        let first = !s.headers[d];
        s.headers[d] = true;
        // A header block of it was not hidden (see `data_alive`).
        s.hidden[d] = false;
        if request_block && first {
            s.saw_request = true;
            s.x.start_ns = meta.start_ns;
            s.x.request_seq = meta.seq;
        }
        let x = &mut s.x;
        x.headers_incomplete |= incomplete;
        // Whether each field this block wrote is doubtful is this block's say.
        let doubt = f.exchange_doubt();
        let wrote = f.apply(x);
        s.doubt = (s.doubt & !wrote) | (doubt & (wrote | F_ANY));
        if s.doubt != 0 && self.trust.is_none() {
            // The trust was refuted by this very block (it showed a stream opened in hidden
            // request bytes): what it decoded on trust is unknown.
            tentative::unknown(&mut s.x, s.doubt);
            s.doubt = 0;
        }
        if meta.end_stream {
            self.end_stream(d, meta.stream, c.end_ns, out);
        }
    }

    fn end_stream(&mut self, d: usize, id: u32, end_ns: u64, out: &mut Vec<L7Record>) {
        if let Some(i) = self.streams.iter().position(|s| s.x.stream_id == id) {
            self.streams[i].ended[d] = true;
            self.streams[i].ended_ns[d] = end_ns;
            self.finish(i, end_ns, out);
        }
    }

    /// Emit stream `i` if it is over (response side ended, or reset). While the role is unknown
    /// nothing is over: which side responded is not known yet (close() counts what is left).
    fn finish(&mut self, i: usize, end_ns: u64, out: &mut Vec<L7Record>) {
        let s = &self.streams[i];
        let over = match self.request_dir() {
            Some(req) => s.reset || s.ended[1 - req],
            None => false,
        };
        if !over {
            return;
        }
        let s = self.streams.swap_remove(i);
        let end_ns = match self.request_dir() {
            Some(req) if !s.reset => s.ended_ns[1 - req],
            _ => end_ns,
        };
        self.emit(s, end_ns, out);
    }

    fn emit(&mut self, s: Stream, end_ns: u64, out: &mut Vec<L7Record>) {
        let Some(req) = self.request_dir() else {
            self.unattributed += 1;
            return;
        };
        let resp = 1 - req;
        let end_ns = self.emitted(&s, req, end_ns);
        let mut x = s.x;
        x.role = self.role;
        x.request_body_bytes = s.body[req];
        x.response_body_bytes = s.body[resp];
        x.partial |= !s.saw_request || !s.ended[resp];
        x.end_ns = end_ns.max(x.start_ns);
        self.release(x, s.doubt, out);
    }

    /// The connection closed: open streams are emitted as partial, the parser is reset (keeping
    /// its role and counters) and may be reused.
    pub fn close(&mut self, end_ns: u64, out: &mut Vec<L7Record>) {
        // Nothing more will settle the trust.
        self.settle_trust(false, out);
        let mut streams = std::mem::take(&mut self.streams);
        streams.sort_by_key(|s| s.x.stream_id);
        for mut s in streams {
            s.x.partial = true;
            self.emit(s, end_ns, out);
        }
        *self = Self {
            errors: self.errors,
            overflows: self.overflows,
            unattributed: self.unattributed,
            ..Self::new(self.role)
        };
    }
}

#[cfg(test)]
#[path = "http2_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "http2_tail_tests.rs"]
mod tail_tests;

#[cfg(test)]
#[path = "http2_grpc_model.rs"]
mod grpc_model;

#[cfg(test)]
#[path = "http2_resync_tests.rs"]
mod resync_tests;

#[cfg(test)]
#[path = "http2_hpack_gap_tests.rs"]
mod hpack_gap_tests;

#[cfg(test)]
#[path = "http2_hidden_tests.rs"]
mod hidden_tests;

#[cfg(test)]
#[path = "http2_tentative_tests.rs"]
mod tentative_tests;

#[cfg(test)]
#[path = "http2_memo_tests.rs"]
mod memo_tests;
