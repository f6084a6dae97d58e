//! HTTP/1.x: incremental request/response parsing across reads, one parser per connection.
//!
//! This module owns the HTTP/1.x state of one connection: a request side and a response side, each
//! a small state machine (idle, head, body framed by Content-Length / chunked / close, or *lost*
//! framing), and a FIFO of requests waiting for their responses (keep-alive and pipelining pair
//! in order). Heads are parsed straight from the chunk when they fit in one; only heads split
//! across chunks are copied, into a per-side buffer bounded by [`MAX_HEAD`]. Invariants:
//! - never panics and never grows without bound on any input: head buffers are capped at
//!   [`MAX_HEAD`] bytes each, at most [`MAX_PENDING`] requests wait, their strings are capped;
//! - bytes the kernel did not capture (`total_len` beyond `data`) are skipped by the framing when
//!   it is known (a Content-Length body, or the rest of one chunk's data and its CRLF), and the
//!   syscall's captured end (`tail`) is then read on from where they end: a chunked body's
//!   terminator and trailers, or the start of the next message, are seen there exactly;
//! - when the framing cannot be known (a truncated head, uncaptured bytes that cross chunk-size
//!   lines) the message is marked `partial` and the side is *lost*: a lost request side resyncs
//!   at the next chunk that starts like a request; a lost response ends at the next request, the
//!   next chunk that starts like a response, or close. A chunked body lost that way still ends
//!   where a syscall ends with its terminator (`0`, trailers, empty line) in the tail or in the
//!   bytes seen just before (its body size is then the bytes moved, framing included): strong
//!   evidence rather than proof, see `ends_with_terminator` in `http1_framing.rs` for the one
//!   kind of body that can fool it;
//! - a response is paired only with the request it answers, for sure: uncaptured request bytes
//!   that ran past the end of a message (a Content-Length body or a whole message ending out of
//!   sight, more bytes after it: pipelined requests) may hide any number of requests, whose
//!   responses come first; every request seen after that is counted in
//!   [`Http1Parser::uncertain_pairs`], never emitted with a response that may be another's.
//!   (Framing lost *inside* a message, a truncated head or chunk-size lines in the gap, is
//!   taken to hide no further request when the side resyncs at the next request start: only a
//!   pipelining client can break that, and nothing in the bytes tells it apart.)
//! - malformed traffic counts in [`Http1Parser::parse_errors`] and is never emitted;
//! - only a finished (or abandoned) request allocates: its few `String`s.

use std::borrow::Cow;
use std::collections::VecDeque;

use super::http1_framing::{
    chunk_data_skipped, lost_in, run_chunked, scan_head, skip_chunked, usable_tail, Flow, HeadScan,
    Side, State, CHUNK_START,
};
use super::http1_headers::{
    parse_request, parse_response, request_start, response_start, skip_crlf, Head, Start,
};
use super::{owned_text, Chunk, Direction, L7Record, Role};

/// Bound on the bytes of one message head (start line + headers) buffered across chunks.
pub const MAX_HEAD: usize = 8 * 1024;
/// Bound on requests waiting for their responses on one connection.
pub const MAX_PENDING: usize = 16;
const MAX_TARGET: usize = 2048;
const MAX_HOST: usize = 256;
const MAX_TRACEPARENT: usize = 128;

/// One request and its response on one connection, as the traced process saw them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTransaction {
    /// The side the traced process played (never `Unknown` in an emitted transaction).
    pub role: Role,
    /// Request method as sent (`GET`, `POST`, ...); `_OTHER` handling is the span builder's job.
    /// The standard methods are borrowed constants (no allocation per request).
    pub method: Cow<'static, str>,
    /// The request target as sent (path and query, or absolute form).
    pub target: String,
    /// `1.0` or `1.1`.
    pub version: &'static str,
    /// `Host` header value, if seen.
    pub host: Option<String>,
    /// `traceparent` header value, if seen in the captured bytes.
    pub traceparent: Option<String>,
    /// Response status code; `None` when the connection closed before a response.
    pub status: Option<u16>,
    /// Kernel monotonic ns: first byte of request seen (syscall entry), response finished (syscall exit).
    pub start_ns: u64,
    pub end_ns: u64,
    /// Kernel sequence number of the chunk that started the request.
    pub request_seq: u64,
    /// Body sizes as framed by Content-Length / chunked encoding / connection close.
    pub request_body_bytes: u64,
    pub response_body_bytes: u64,
    /// The parser could not see everything (capture limit, lost chunk); fields may be partial.
    pub partial: bool,
}

/// Cheap check: do these bytes start like an HTTP/1.x request?
pub fn detect(data: &[u8]) -> bool {
    const METHODS: [&[u8]; 9] = [
        b"GET ",
        b"POST ",
        b"PUT ",
        b"DELETE ",
        b"HEAD ",
        b"OPTIONS ",
        b"PATCH ",
        b"CONNECT ",
        b"TRACE ",
    ];
    METHODS.iter().any(|m| data.starts_with(m))
}

/// The standard methods as constants; anything else copied (bounded).
pub(crate) fn method_text(m: &[u8]) -> Cow<'static, str> {
    const KNOWN: [&str; 9] = [
        "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE",
    ];
    match KNOWN.iter().find(|k| k.as_bytes() == m) {
        Some(k) => Cow::Borrowed(k),
        None => Cow::Owned(owned_text(m, MAX_TARGET)),
    }
}

/// A request waiting for its response.
#[derive(Debug)]
struct Pending {
    id: u64,
    method: Cow<'static, str>,
    target: String,
    version: &'static str,
    host: Option<String>,
    traceparent: Option<String>,
    start_ns: u64,
    seq: u64,
    body_bytes: u64,
    partial: bool,
}

/// Per-connection HTTP/1.x parser state.
#[derive(Debug)]
pub struct Http1Parser {
    role: Role,
    req: Side,
    resp: Side,
    pending: VecDeque<Pending>,
    /// Id of the pending request whose body the request side is reading.
    req_owner: u64,
    next_id: u64,
    /// The response in progress belongs to the front pending request.
    resp_paired: bool,
    resp_status: u16,
    /// The connection switched protocols (101, CONNECT): nothing more is HTTP/1.
    upgraded: bool,
    /// Request bytes not captured ran past the end of a message: requests may be hidden there,
    /// and from then on no response can be paired for sure with a request seen after them.
    hidden_requests: bool,
    uncertain: u64,
    errors: u64,
}

impl Http1Parser {
    pub fn new(role: Role) -> Self {
        Self {
            role,
            req: Side::new(),
            resp: Side::new(),
            pending: VecDeque::new(),
            req_owner: 0,
            next_id: 1,
            resp_paired: false,
            resp_status: 0,
            upgraded: false,
            hidden_requests: false,
            uncertain: 0,
            errors: 0,
        }
    }

    /// The role, once known.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Malformed messages seen so far (bad start lines, bad framing, overlong heads, ...).
    pub fn parse_errors(&self) -> u64 {
        self.errors
    }

    /// Requests not emitted because which response answers them is unknown: seen after
    /// request bytes that were not captured and ran past the end of a message, so that an
    /// unknown number of requests may be hidden before them (see [`Http1Parser::feed`]).
    pub fn uncertain_pairs(&self) -> u64 {
        self.uncertain
    }

    /// Requests waiting for a response.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Heap bytes this parser holds (head buffers and waiting requests); bounded by construction.
    pub fn buffered_bytes(&self) -> usize {
        let strings: usize = self
            .pending
            .iter()
            .map(|p| {
                (match &p.method {
                    Cow::Owned(m) => m.capacity(),
                    Cow::Borrowed(_) => 0,
                }) + p.target.capacity()
                    + p.host.as_ref().map_or(0, String::capacity)
                    + p.traceparent.as_ref().map_or(0, String::capacity)
            })
            .sum();
        self.req.buf.capacity()
            + self.resp.buf.capacity()
            + self.pending.capacity() * std::mem::size_of::<Pending>()
            + strings
    }

    /// Start loading this parser's state (see [`crate::prefetch`]).
    #[inline]
    pub(crate) fn prefetch(&self) {
        crate::prefetch::value(self);
        crate::prefetch::slice(self.pending.as_slices().0);
    }

    /// Feed one chunk; finished transactions are appended to `out`.
    pub fn feed(&mut self, chunk: &Chunk<'_>, out: &mut Vec<L7Record>) {
        if self.upgraded {
            return;
        }
        let data = chunk.data;
        if self.role == Role::Unknown {
            if !detect(&data[skip_crlf(data)..]) {
                return;
            }
            self.role = match chunk.dir {
                Direction::Ingress => Role::Server,
                Direction::Egress => Role::Client,
            };
        }
        let is_request = matches!(
            (self.role, chunk.dir),
            (Role::Server, Direction::Ingress) | (Role::Client, Direction::Egress)
        );
        if is_request {
            self.feed_request(chunk, out);
        } else {
            self.feed_response(chunk, out);
        }
    }

    /// One request-direction syscall: its captured bytes, then the uncaptured ones (skipped by
    /// the framing when it knows how), then its tail when the framing knows where it stands.
    fn feed_request(&mut self, c: &Chunk<'_>, out: &mut Vec<L7Record>) {
        let data = c.data;
        if self.req.state.is_lost() && request_start(&data[skip_crlf(data)..]) == Start::Yes {
            self.req.state = State::Idle;
        }
        self.walk_request(c, data, out);
        let tail = usable_tail(c);
        let gap = c.hidden() - tail.len() as u64;
        if gap > 0 {
            self.skip_request(gap);
        }
        if !tail.is_empty() && !self.req.state.is_lost() {
            self.walk_request(c, tail, out);
        }
        if self.req.state == State::LostChunked && self.req.lost_chunked_ends(c) {
            self.req.state = State::Idle;
        }
    }

    /// Request bytes contiguous with those before them.
    fn walk_request(&mut self, c: &Chunk<'_>, data: &[u8], out: &mut Vec<L7Record>) {
        let mut pos = 0;
        while pos < data.len() {
            if self.req.state == State::Head && self.req.buf.is_empty() {
                // Fast path: the whole head is in this chunk: parse it in place, in one pass.
                let h = parse_request(&data[pos..], false);
                if let Some(end) = h.as_ref().and_then(|h| h.end).filter(|&e| e <= MAX_HEAD) {
                    pos += end;
                    self.req.state = self.request_parsed(h, true);
                    continue;
                }
            }
            match self.req.state {
                State::Idle => {
                    pos += skip_crlf(&data[pos..]);
                    if pos == data.len() {
                        break;
                    }
                    if request_start(&data[pos..]) == Start::No {
                        self.errors += 1;
                        self.req.state = State::Lost;
                        break;
                    }
                    self.on_request_start(out);
                    self.req.begin(c);
                }
                State::Head => match scan_head(&mut self.req, &data[pos..]) {
                    HeadScan::Done { consumed, in_buf } => {
                        let buf = std::mem::take(&mut self.req.buf);
                        let head = if in_buf {
                            &buf[..]
                        } else {
                            &data[pos..pos + consumed]
                        };
                        self.req.state = self.request_head(head, true);
                        self.req.buf = buf;
                        self.req.buf.clear();
                        pos += consumed;
                    }
                    HeadScan::NeedMore => pos = data.len(),
                    HeadScan::Overflow => {
                        self.errors += 1;
                        self.truncated_request_head();
                        pos = data.len();
                    }
                },
                State::Length(n) => {
                    let take = n.min((data.len() - pos) as u64);
                    pos += take as usize;
                    self.add_request_body(take);
                    self.req.state = if take == n {
                        State::Idle
                    } else {
                        State::Length(n - take)
                    };
                }
                State::Chunked(mut ch) => {
                    let mut body = 0;
                    let (used, flow) = run_chunked(&mut ch, &data[pos..], &mut body);
                    pos += used;
                    self.add_request_body(body);
                    self.req.state = match flow {
                        Flow::More => State::Chunked(ch),
                        Flow::Done => State::Idle,
                        Flow::Error => {
                            self.errors += 1;
                            self.mark_request_partial();
                            State::Lost
                        }
                    };
                }
                State::UntilClose | State::Lost | State::LostChunked => pos = data.len(),
            }
        }
    }

    /// `hidden` request bytes were not captured.
    fn skip_request(&mut self, hidden: u64) {
        match self.req.state {
            // Hidden bytes past the end of a message: whatever follows is unseen, resync.
            State::Idle => {
                self.hidden_requests = true;
                self.req.state = State::Lost;
            }
            State::UntilClose | State::Lost | State::LostChunked => {}
            State::Head => self.truncated_request_head(),
            State::Length(n) => {
                self.add_request_body(hidden.min(n));
                self.req.state = if hidden > n {
                    // The body ended out of sight and more followed (pipelined requests).
                    self.hidden_requests = true;
                    State::Lost
                } else if hidden == n {
                    State::Idle
                } else {
                    State::Length(n - hidden)
                };
            }
            State::Chunked(ch) => {
                if let Some(next) = skip_chunked(ch, hidden) {
                    self.add_request_body(chunk_data_skipped(ch, hidden));
                    self.req.state = State::Chunked(next);
                } else {
                    self.mark_request_partial();
                    self.req.state = lost_in(ch);
                }
            }
        }
    }

    /// A new request begins: a response whose end could only be guessed ends now.
    fn on_request_start(&mut self, out: &mut Vec<L7Record>) {
        if self.resp.state.is_lost() || self.resp.state == State::UntilClose {
            self.resp.partial = true;
            let end = self.resp.last_end_ns;
            self.finish_response(end, out);
            self.resp.state = State::Idle;
        }
    }

    /// A complete request head: queue the request, return the request side's next state.
    fn request_head(&mut self, head: &[u8], complete: bool) -> State {
        self.request_parsed(parse_request(head, complete), complete)
    }

    fn request_parsed(&mut self, h: Option<Head<'_>>, complete: bool) -> State {
        let Some(h) = h else {
            self.errors += 1;
            return State::Lost;
        };
        if h.bad_framing {
            self.errors += 1;
        }
        let partial = !complete || h.bad_framing;
        self.push_pending(&h, partial);
        if partial {
            State::Lost
        } else if h.chunked {
            State::Chunked(CHUNK_START)
        } else {
            match h.content_length {
                Some(n) if n > 0 => State::Length(n),
                _ => State::Idle,
            }
        }
    }

    /// Give up on a request head we cannot see the end of: keep what it says, lose framing.
    fn truncated_request_head(&mut self) {
        let buf = std::mem::take(&mut self.req.buf);
        self.request_head(&buf, false);
        self.req.buf = buf;
        self.req.buf.clear();
        self.req.state = State::Lost;
    }

    fn push_pending(&mut self, h: &Head<'_>, partial: bool) {
        if self.hidden_requests {
            // Its response comes after those of the requests hidden before it, however many:
            // no response can be told to be its own. Counted, never paired.
            self.uncertain += 1;
            self.req_owner = 0;
            return;
        }
        if self.pending.len() >= MAX_PENDING {
            self.errors += 1;
            self.req_owner = 0;
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.req_owner = id;
        if self.pending.capacity() == 0 {
            // Room for one: most connections never pipeline, and a `VecDeque` grows to room
            // for four at once (600 bytes per connection, for its whole life).
            self.pending.reserve_exact(1);
        }
        self.pending.push_back(Pending {
            id,
            method: method_text(h.method),
            target: owned_text(h.target, MAX_TARGET),
            version: h.version,
            host: h.host.map(|v| owned_text(v, MAX_HOST)),
            traceparent: h.traceparent.map(|v| owned_text(v, MAX_TRACEPARENT)),
            start_ns: self.req.start_ns,
            seq: self.req.seq,
            body_bytes: 0,
            partial: partial || h.target.len() > MAX_TARGET,
        });
    }

    fn add_request_body(&mut self, n: u64) {
        if let Some(p) = self.pending.back_mut().filter(|p| p.id == self.req_owner) {
            p.body_bytes = p.body_bytes.saturating_add(n);
        }
    }

    fn mark_request_partial(&mut self) {
        if let Some(p) = self.pending.back_mut().filter(|p| p.id == self.req_owner) {
            p.partial = true;
        }
    }

    /// One response-direction syscall, read like [`Self::feed_request`] reads a request one.
    fn feed_response(&mut self, c: &Chunk<'_>, out: &mut Vec<L7Record>) {
        let data = c.data;
        if self.resp.state.is_lost() && response_start(data) == Start::Yes {
            let end = self.resp.last_end_ns;
            self.finish_response(end, out);
            self.resp.state = State::Idle;
        }
        self.resp.last_end_ns = c.end_ns;
        self.walk_response(c, data, out);
        if self.upgraded {
            return;
        }
        let tail = usable_tail(c);
        let gap = c.hidden() - tail.len() as u64;
        let tail_len = tail.len() as u64;
        if gap > 0 {
            self.skip_response(gap, tail_len, c.end_ns, out);
        } else if self.resp.state.is_lost() {
            self.resp.body_bytes += tail_len;
        }
        if !tail.is_empty() && !self.resp.state.is_lost() && !self.upgraded {
            self.walk_response(c, tail, out);
        }
        // Only when no other request waits: bytes the gap hid could have held their responses,
        // and the next status line would then be paired with the wrong request.
        let alone = if self.resp_paired {
            self.pending.len() == 1
        } else {
            self.pending.is_empty()
        };
        if self.resp.state == State::LostChunked && self.resp.lost_chunked_ends(c) && alone {
            self.finish_response(c.end_ns, out);
            self.resp.state = State::Idle;
        }
    }

    /// Response bytes contiguous with those before them.
    fn walk_response(&mut self, c: &Chunk<'_>, data: &[u8], out: &mut Vec<L7Record>) {
        let mut pos = 0;
        while pos < data.len() && !self.upgraded {
            if self.resp.state == State::Head && self.resp.buf.is_empty() {
                let h = parse_response(&data[pos..], false);
                if let Some(end) = h.as_ref().and_then(|h| h.end).filter(|&e| e <= MAX_HEAD) {
                    pos += end;
                    self.resp.state = self.response_parsed(h, true, c.end_ns, out);
                    continue;
                }
            }
            match self.resp.state {
                State::Idle => {
                    pos += skip_crlf(&data[pos..]);
                    if pos == data.len() {
                        break;
                    }
                    if response_start(&data[pos..]) == Start::No {
                        self.errors += 1;
                        self.resp_paired = false;
                        self.resp.state = State::Lost;
                        break;
                    }
                    self.resp.begin(c);
                }
                State::Head => match scan_head(&mut self.resp, &data[pos..]) {
                    HeadScan::Done { consumed, in_buf } => {
                        let buf = std::mem::take(&mut self.resp.buf);
                        let head = if in_buf {
                            &buf[..]
                        } else {
                            &data[pos..pos + consumed]
                        };
                        self.resp.state = self.response_head(head, true, c.end_ns, out);
                        self.resp.buf = buf;
                        self.resp.buf.clear();
                        pos += consumed;
                    }
                    HeadScan::NeedMore => pos = data.len(),
                    HeadScan::Overflow => {
                        self.errors += 1;
                        self.truncated_response_head(c.end_ns, out);
                        pos = data.len();
                    }
                },
                State::Length(n) => {
                    let take = n.min((data.len() - pos) as u64);
                    pos += take as usize;
                    self.resp.body_bytes += take;
                    self.resp.state = if take == n {
                        self.finish_response(c.end_ns, out);
                        State::Idle
                    } else {
                        State::Length(n - take)
                    };
                }
                State::Chunked(mut ch) => {
                    let (used, flow) =
                        run_chunked(&mut ch, &data[pos..], &mut self.resp.body_bytes);
                    pos += used;
                    self.resp.state = match flow {
                        Flow::More => State::Chunked(ch),
                        Flow::Done => {
                            self.finish_response(c.end_ns, out);
                            State::Idle
                        }
                        Flow::Error => {
                            self.errors += 1;
                            self.resp.partial = true;
                            State::Lost
                        }
                    };
                }
                State::UntilClose | State::Lost | State::LostChunked => {
                    self.resp.body_bytes += (data.len() - pos) as u64;
                    pos = data.len();
                }
            }
        }
    }

    /// `hidden` response bytes were not captured, then `tail` were, in a syscall that ended at
    /// `end_ns`. The tail is read on by the caller unless the side is lost here; bytes of a
    /// body whose framing is lost are counted as they are.
    fn skip_response(&mut self, hidden: u64, tail: u64, end_ns: u64, out: &mut Vec<L7Record>) {
        match self.resp.state {
            State::Idle => self.response_desync(end_ns, out),
            State::Head => self.truncated_response_head(end_ns, out),
            State::Length(n) => {
                self.resp.body_bytes += hidden.min(n);
                self.resp.state = if hidden >= n {
                    self.finish_response(end_ns, out);
                    if hidden > n {
                        self.response_desync(end_ns, out);
                        State::Lost
                    } else {
                        State::Idle
                    }
                } else {
                    State::Length(n - hidden)
                };
            }
            State::Chunked(ch) => {
                if let Some(next) = skip_chunked(ch, hidden) {
                    self.resp.body_bytes += chunk_data_skipped(ch, hidden);
                    self.resp.state = State::Chunked(next);
                } else {
                    // The hidden bytes cross chunk-size lines: framing is lost.
                    self.resp.body_bytes += hidden + tail;
                    self.resp.partial = true;
                    self.resp.state = lost_in(ch);
                }
            }
            State::UntilClose => self.resp.body_bytes += hidden,
            State::Lost | State::LostChunked => self.resp.body_bytes += hidden + tail,
        }
    }

    /// Hidden bytes ran past the end of a response: any further responses in them are unseen.
    /// The requests waiting now are the ones they answered (in order), so flush them as partial
    /// without a status rather than pair them with later responses; resync at the next status line.
    fn response_desync(&mut self, end_ns: u64, out: &mut Vec<L7Record>) {
        while let Some(mut p) = self.pending.pop_front() {
            p.partial = true;
            out.push(self.transaction(p, None, end_ns, 0, false));
        }
        self.resp_paired = false;
        self.resp.state = State::Lost;
    }

    /// A response head: pair it with the oldest waiting request, return the next state.
    fn response_head(
        &mut self,
        head: &[u8],
        complete: bool,
        end_ns: u64,
        out: &mut Vec<L7Record>,
    ) -> State {
        self.response_parsed(parse_response(head, complete), complete, end_ns, out)
    }

    fn response_parsed(
        &mut self,
        h: Option<Head<'_>>,
        complete: bool,
        end_ns: u64,
        out: &mut Vec<L7Record>,
    ) -> State {
        let Some(h) = h else {
            self.errors += 1;
            self.resp_paired = false;
            return State::Lost;
        };
        let front = self.pending.front();
        let method = front.map_or(&b""[..], |p| p.method.as_bytes());
        let (is_head, is_connect) = (method == b"HEAD", method == b"CONNECT");
        self.resp_paired = front.is_some();
        self.resp_status = h.status;
        self.resp.partial |= !complete;
        if h.bad_framing {
            self.errors += 1;
            self.resp.partial = true;
        }
        let status = h.status;
        if (100..200).contains(&status) && status != 101 {
            // Interim response: the final one is still to come.
            self.resp.partial = false;
            return if complete { State::Idle } else { State::Lost };
        }
        if status == 101 || (is_connect && (200..300).contains(&status)) {
            self.finish_response(end_ns, out);
            self.upgraded = true;
            return State::Idle;
        }
        if is_head || status == 204 || status == 304 {
            self.finish_response(end_ns, out);
            return State::Idle;
        }
        if self.resp.partial {
            State::Lost
        } else if h.chunked {
            State::Chunked(CHUNK_START)
        } else {
            match h.content_length {
                Some(0) => {
                    self.finish_response(end_ns, out);
                    State::Idle
                }
                Some(n) => State::Length(n),
                None => State::UntilClose,
            }
        }
    }

    fn truncated_response_head(&mut self, end_ns: u64, out: &mut Vec<L7Record>) {
        let buf = std::mem::take(&mut self.resp.buf);
        self.resp.state = self.response_head(&buf, false, end_ns, out);
        self.resp.buf = buf;
        self.resp.buf.clear();
        if self.resp.state == State::Idle && !self.upgraded {
            // Interim or body-less response whose head was cut: the rest is not visible.
            self.resp.state = State::Lost;
            self.resp_paired = false;
        }
    }

    /// The response in progress is over: emit it with its request (if it has one).
    fn finish_response(&mut self, end_ns: u64, out: &mut Vec<L7Record>) {
        let paired = std::mem::take(&mut self.resp_paired);
        let body = std::mem::take(&mut self.resp.body_bytes);
        let partial = std::mem::take(&mut self.resp.partial);
        if !paired {
            return;
        }
        if let Some(p) = self.pending.pop_front() {
            out.push(self.transaction(p, Some(self.resp_status), end_ns, body, partial));
        }
    }

    fn transaction(
        &self,
        p: Pending,
        status: Option<u16>,
        end_ns: u64,
        response_body_bytes: u64,
        partial: bool,
    ) -> L7Record {
        L7Record::Http(HttpTransaction {
            role: self.role,
            method: p.method,
            target: p.target,
            version: p.version,
            host: p.host,
            traceparent: p.traceparent,
            status,
            start_ns: p.start_ns,
            end_ns: end_ns.max(p.start_ns),
            request_seq: p.seq,
            request_body_bytes: p.body_bytes,
            response_body_bytes,
            partial: partial || p.partial,
        })
    }

    /// The connection closed: finish whatever can be finished.
    ///
    /// A response framed by the close ends at `end_ns`; one cut short ends at its last chunk and
    /// is partial; requests without any response are emitted with `status: None`. The parser is
    /// then reset (keeping its role) and may be reused.
    pub fn close(&mut self, end_ns: u64, out: &mut Vec<L7Record>) {
        if !self.upgraded {
            if self.req.state == State::Head && !self.req.buf.is_empty() {
                self.truncated_request_head();
            }
            if let State::Chunked(_) | State::Length(_) = self.req.state {
                self.mark_request_partial();
            }
            if self.resp.state == State::Head && !self.resp.buf.is_empty() {
                self.truncated_response_head(self.resp.last_end_ns, out);
            }
            match self.resp.state {
                State::UntilClose => self.finish_response(end_ns, out),
                State::Length(_) | State::Chunked(_) | State::Lost | State::LostChunked => {
                    self.resp.partial = true;
                    let last = self.resp.last_end_ns;
                    self.finish_response(last, out);
                }
                State::Idle | State::Head => {}
            }
        }
        while let Some(p) = self.pending.pop_front() {
            out.push(self.transaction(p, None, end_ns, 0, false));
        }
        let role = self.role;
        *self = Self {
            errors: self.errors,
            uncertain: self.uncertain,
            next_id: self.next_id,
            ..Self::new(role)
        };
    }
}

#[cfg(test)]
#[path = "http1_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "http1_tail_tests.rs"]
mod tail_tests;
