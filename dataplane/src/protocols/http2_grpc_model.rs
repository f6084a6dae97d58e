//! A model of gRPC over HTTP/2 the way grpcio writes it, for the tests of framing lost inside a
//! syscall: connections of client-streaming and bidirectional calls of large messages, made one
//! after the other or a few at a time, as writes of whole frames, and the ways the traced side's
//! syscalls can cut them.

use super::tests::{frame, lit, Feeder, IN, OUT};
use super::*;

/// grpcio's largest frame (its SETTINGS_MAX_FRAME_SIZE).
pub(super) const GRPCIO_MAX_FRAME: u32 = 4 << 20;

/// An HPACK encoder that behaves like grpcio's: a field already in the dynamic table is sent as
/// its index, any other as a literal with incremental indexing (`grpc-message`, which varies,
/// without indexing). Tables stay far below 4096 bytes here, so nothing is ever evicted.
#[derive(Default)]
pub(super) struct Enc {
    /// Newest first (index 62 is `table[0]`).
    table: Vec<(String, String)>,
}

impl Enc {
    pub(super) fn block(&mut self, fields: &[(&str, &str)]) -> Vec<u8> {
        let mut b = Vec::new();
        for &(n, v) in fields {
            match (n, v) {
                (":method", "POST") => b.push(0x83),
                (":scheme", "http") => b.push(0x86),
                (":status", "200") => b.push(0x88),
                ("grpc-message", _) => b.extend(lit(false, n, v)),
                _ => match self.table.iter().position(|(tn, tv)| tn == n && tv == v) {
                    Some(i) => b.push(0x80 | (62 + i) as u8),
                    None => {
                        b.extend(lit(true, n, v));
                        self.table.insert(0, (n.into(), v.into()));
                    }
                },
            }
        }
        assert!(self.table.len() < 60, "indices fit one byte");
        b
    }
}

/// One call: `/demo.v1.Echo/<method>`, the sizes of the messages the client streams, the sizes
/// of the answers (one per request message for a bidirectional call, else one answer), and the
/// grpc-status it ends with. A `fast` call fails as soon as the server reads its headers: its
/// answer is one trailers-only HEADERS frame (no bidirectional answers, no message), or, when
/// `refused` too, one RST_STREAM frame (REFUSED_STREAM; no status at all).
#[derive(Debug, Clone)]
pub(super) struct Call {
    pub(super) method: &'static str,
    pub(super) msgs: Vec<usize>,
    pub(super) bidi: bool,
    pub(super) answer: usize,
    pub(super) status: u32,
    pub(super) fast: bool,
    pub(super) refused: bool,
}

impl Call {
    pub(super) fn collect(msgs: &[usize]) -> Self {
        Self {
            method: "Collect",
            msgs: msgs.to_vec(),
            bidi: false,
            answer: 12,
            status: 0,
            fast: false,
            refused: false,
        }
    }

    /// A bidirectional call: `msgs` up, one `answer`-byte message back per message.
    pub(super) fn chat(msgs: Vec<usize>, answer: usize) -> Self {
        Self {
            method: "Chat",
            msgs,
            bidi: true,
            answer,
            ..Self::collect(&[])
        }
    }

    /// A client-streaming call of one `n`-byte message, answered with `n` bytes and status 3.
    pub(super) fn collect_failing(n: usize) -> Self {
        Self {
            method: "CollectFail",
            msgs: vec![n],
            answer: n,
            status: 3,
            ..Self::collect(&[])
        }
    }

    /// A call the server fails at once: a trailers-only answer with status 3.
    pub(super) fn fast_failure() -> Self {
        Self {
            method: "Fail",
            answer: 0,
            status: 3,
            fast: true,
            ..Self::collect(&[])
        }
    }

    pub(super) fn path(&self) -> String {
        format!("/demo.v1.Echo/{}", self.method)
    }
}

/// One write of whole frames (the preface counts as a frame) by the client or the server.
#[derive(Debug, Clone)]
pub(super) struct Write {
    pub(super) client: bool,
    pub(super) frames: Vec<Vec<u8>>,
}

/// SETTINGS as grpcio sends them: push off (client only), frames up to `max_frame`.
pub(super) fn settings(client: bool, max_frame: u32) -> Vec<u8> {
    let mut p = Vec::new();
    if client {
        p.extend([0, 2, 0, 0, 0, 0]);
    }
    p.extend([0, 5]);
    p.extend(max_frame.to_be_bytes());
    frame(SETTINGS, 0, 0, &p)
}

/// DATA frames of one gRPC message of `n` bytes (5-byte prefix included), cut at `max_frame`.
fn message(stream: u32, n: usize, max_frame: usize, fill: u8) -> Vec<Vec<u8>> {
    let mut m = vec![0];
    m.extend((n as u32).to_be_bytes());
    m.resize(5 + n, fill);
    m.chunks(max_frame)
        .map(|p| frame(DATA, 0, stream, p))
        .collect()
}

/// The writes of a connection (both SETTINGS of `max_frame`) that makes `calls` one after the
/// other on streams 1, 3, 5...
pub(super) fn conversation(calls: &[Call], max_frame: u32) -> Vec<Write> {
    pipelined(calls, max_frame, 1)
}

/// As [`conversation`], with a client that keeps `width` calls in flight: it writes the requests
/// of `width` calls one after the other (a bidirectional call's answers come between its
/// messages, as before) and the server then ends them in order. A request HEADERS frame can
/// then sit in the middle of a syscall that moved several frames. The trailers-only answers of
/// `fast` calls go out in that last flight between the frames of the first other call that has
/// an answer message (after its first DATA frame, as a writer interleaving streams sends them),
/// so that they can sit in the middle of a syscall too.
pub(super) fn pipelined(calls: &[Call], max_frame: u32, width: usize) -> Vec<Write> {
    let mf = max_frame as usize;
    let w = |client, frames| Write { client, frames };
    let mut out = vec![
        w(true, vec![PREFACE.to_vec(), settings(true, max_frame)]),
        w(
            false,
            vec![settings(false, max_frame), frame(SETTINGS, 1, 0, &[])],
        ),
        w(true, vec![frame(SETTINGS, 1, 0, &[])]),
    ];
    let (mut req_enc, mut resp_enc) = (Enc::default(), Enc::default());
    let width = width.max(1);
    for (b, batch) in calls.chunks(width).enumerate() {
        let first = 2 * (b * width) as u32 + 1;
        for (k, call) in batch.iter().enumerate() {
            let s = first + 2 * k as u32;
            requests(&mut out, call, s, mf, (&mut req_enc, &mut resp_enc));
        }
        let mut fast: Vec<(&Call, u32)> = Vec::new();
        let mut slow = Vec::new();
        for (k, call) in batch.iter().enumerate() {
            let s = first + 2 * k as u32;
            if call.fast {
                fast.push((call, s));
            } else {
                slow.push((call, s));
            }
        }
        if slow.iter().all(|(c, _)| c.bidi) {
            // No answer message to go between: the failures first.
            for (call, s) in fast.drain(..) {
                out.push(w(false, vec![fast_answer(call, s, &mut resp_enc)]));
            }
        }
        for (call, s) in slow {
            let mut f = answer_start(call, s, mf, &mut resp_enc);
            if !call.bidi && !fast.is_empty() {
                // After the answer headers and the first DATA frame.
                let mut rest = f.split_off(2);
                for (c, fs) in fast.drain(..) {
                    f.push(fast_answer(c, fs, &mut resp_enc));
                }
                f.append(&mut rest);
            }
            f.push(trailers(call, s, false, &mut resp_enc));
            out.push(w(false, f));
        }
    }
    out
}

/// The writes from the request HEADERS of stream `s` on, as an agent that started just before
/// them sees the connection, with the client's SETTINGS (push off) sent again first: a client
/// may send SETTINGS at any time, and without them a gap in the answers always forgets the
/// table (push may be on).
pub(super) fn joined_at(writes: &[Write], s: u32, max_frame: u32) -> Vec<Write> {
    let opens = |w: &Write| {
        w.client
            && w.frames
                .first()
                .and_then(|f| FrameHeader::parse(f))
                .is_some_and(|h| h.kind == HEADERS && h.stream == s)
    };
    let at = writes.iter().position(opens).unwrap_or(writes.len());
    let mut out = vec![Write {
        client: true,
        frames: vec![settings(true, max_frame)],
    }];
    out.extend_from_slice(&writes[at..]);
    out
}

/// A request HEADERS frame of a call to `path` on stream `s` as grpcio writes it (`enc`
/// indexes every new field).
pub(super) fn request_headers(enc: &mut Enc, s: u32, path: &str) -> Vec<u8> {
    let h = enc.block(&[
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "127.0.0.1:50051"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ]);
    frame(HEADERS, FLAG_END_HEADERS, s, &h)
}

pub(super) fn answer_headers(enc: &mut Enc, s: u32) -> Vec<u8> {
    let h = enc.block(&[(":status", "200"), ("content-type", "application/grpc")]);
    frame(HEADERS, FLAG_END_HEADERS, s, &h)
}

/// The client's writes of `call` on stream `s` up to its END_STREAM, with the answers of a
/// bidirectional call after each message. `enc`: the request and response encoders.
fn requests(out: &mut Vec<Write>, call: &Call, s: u32, mf: usize, enc: (&mut Enc, &mut Enc)) {
    let (req_enc, resp_enc) = enc;
    let w = |client, frames| Write { client, frames };
    out.push(w(true, vec![request_headers(req_enc, s, &call.path())]));
    for (j, &n) in call.msgs.iter().enumerate() {
        out.push(w(true, message(s, n, mf, b'a' + j as u8 % 26)));
        if call.bidi && !call.fast {
            let mut f = if j == 0 {
                vec![answer_headers(resp_enc, s)]
            } else {
                vec![]
            };
            f.extend(message(s, n.min(call.answer), mf, b'A' + j as u8 % 26));
            out.push(w(false, f));
        }
    }
    out.push(w(true, vec![frame(DATA, FLAG_END_STREAM, s, &[])]));
}

/// The start of the server's last write of `call` on stream `s`: the answer (unless a
/// bidirectional call sent it already); [`trailers`] end it.
fn answer_start(call: &Call, s: u32, mf: usize, resp_enc: &mut Enc) -> Vec<Vec<u8>> {
    let mut f = Vec::new();
    if !call.bidi {
        f.push(answer_headers(resp_enc, s));
        f.extend(message(s, call.answer, mf, b'z'));
    } else if call.msgs.is_empty() {
        f.push(answer_headers(resp_enc, s));
    }
    f
}

/// The one frame that answers a `fast` call on stream `s`.
fn fast_answer(call: &Call, s: u32, resp_enc: &mut Enc) -> Vec<u8> {
    if call.refused {
        frame(RST_STREAM, 0, s, &[0, 0, 0, 7])
    } else {
        trailers(call, s, true, resp_enc)
    }
}

/// The trailers of `call` on stream `s`; `only`: a trailers-only answer (with the headers'
/// fields).
fn trailers(call: &Call, s: u32, only: bool, resp_enc: &mut Enc) -> Vec<u8> {
    let status = call.status.to_string();
    let mut t = Vec::new();
    if only {
        t.extend([(":status", "200"), ("content-type", "application/grpc")]);
    }
    t.push(("grpc-status", status.as_str()));
    if call.status != 0 {
        t.push(("grpc-message", "no"));
    }
    let t = resp_enc.block(&t);
    frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, s, &t)
}

/// What the traced process's syscalls moved, in order: (direction, bytes). A *flight* is a run
/// of writes by one side up to the other side's next write. With `groups` empty each write is
/// one syscall; else each flight is cut into syscalls of that many whole frames (cycled; 0 means
/// the rest of the flight). `reads`, when not empty, cuts what the traced side reads at any
/// byte instead (cycled sizes), as a reader that lags behind the writer sees it.
pub(super) fn syscalls(
    writes: &[Write],
    role: Role,
    groups: &[usize],
    reads: &[usize],
) -> Vec<(Direction, Vec<u8>)> {
    let traced_client = role == Role::Client;
    let mut out = Vec::new();
    let (mut g, mut r) = (0, 0);
    let mut i = 0;
    while i < writes.len() {
        let client = writes[i].client;
        let n = writes[i..]
            .iter()
            .take_while(|w| w.client == client)
            .count();
        let flight = &writes[i..i + n];
        i += n;
        let dir = if client == traced_client { OUT } else { IN };
        if dir == IN && !reads.is_empty() {
            let bytes: Vec<u8> = flight.iter().flat_map(|w| w.frames.concat()).collect();
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                let k = reads[r % reads.len()].clamp(1, rest.len());
                r += 1;
                out.push((IN, rest[..k].to_vec()));
                rest = &rest[k..];
            }
        } else if groups.is_empty() {
            out.extend(flight.iter().map(|w| (dir, w.frames.concat())));
        } else {
            let frames: Vec<&Vec<u8>> = flight.iter().flat_map(|w| &w.frames).collect();
            let mut rest = &frames[..];
            while !rest.is_empty() {
                let k = groups[g % groups.len()];
                g += 1;
                let k = if k == 0 {
                    rest.len()
                } else {
                    k.min(rest.len())
                };
                out.push((
                    dir,
                    rest[..k].iter().flat_map(|f| f.iter().copied()).collect(),
                ));
                rest = &rest[k..];
            }
        }
    }
    out
}

/// Feed syscalls of which the kernel copies the first `limit` bytes and, of longer ones, the
/// last `tail` bytes too.
pub(super) fn feed_captured(
    f: &mut Feeder,
    calls: &[(Direction, Vec<u8>)],
    limit: usize,
    tail: usize,
) {
    for (dir, b) in calls {
        let head = b.len().min(limit);
        let t = tail.min(b.len() - head);
        f.feed_tail(*dir, &b[..head], b.len(), &b[b.len() - t..]);
    }
}

/// Every exchange is one of `calls` and says nothing it did not send; returns them by stream.
pub(super) fn never_wrong(
    xs: &[H2Exchange],
    calls: &[Call],
    role: Role,
) -> Vec<Option<H2Exchange>> {
    let mut by_call = vec![None; calls.len()];
    for x in xs {
        let i = (x.stream_id / 2) as usize;
        assert!(x.stream_id % 2 == 1 && i < calls.len(), "invented: {x:?}");
        assert!(by_call[i].is_none(), "stream {} twice", x.stream_id);
        let c = &calls[i];
        assert_eq!(x.role, role);
        assert!(x.method.as_deref().is_none_or(|m| m == "POST"), "{x:?}");
        assert!(x.path.as_deref().is_none_or(|p| p == c.path()), "{x:?}");
        assert!(x.status.is_none_or(|s| s == 200), "{x:?}");
        assert!(x.grpc_status.is_none_or(|s| s == c.status), "{x:?}");
        assert!(
            !c.refused || (x.status, x.grpc_status) == (None, None),
            "{x:?}"
        );
        assert!(x
            .content_type
            .as_deref()
            .is_none_or(|t| t == "application/grpc"));
        assert!(x
            .authority
            .as_deref()
            .is_none_or(|a| a == "127.0.0.1:50051"));
        assert!(x.end_ns >= x.start_ns);
        // A `grpc-status` or content type seen proves the call gRPC (every call here is):
        // its span counts in `rpc.*`, whatever was hidden of its request.
        if x.grpc_status.is_some() || x.content_type.is_some() {
            assert!(counts_as_grpc(x), "{x:?}");
        }
        by_call[i] = Some(x.clone());
    }
    by_call
}

/// Does the span of `x` count in the `rpc.*` histograms?
pub(super) fn counts_as_grpc(x: &H2Exchange) -> bool {
    use crate::l7spans::h2_span_into;
    use crate::signal::SpanRecord;
    use crate::spans::{FlowInfo, SpanCache, SpanCtx};
    let flow = FlowInfo::new(1, [0; 16], Default::default(), Default::default());
    let ctx = SpanCtx {
        trace_id: [1; 16],
        span_id: [2; 8],
    };
    let (_, m) = SpanRecord::built(|out| {
        h2_span_into(
            out,
            x.clone(),
            &flow,
            ctx,
            [0; 8],
            0,
            &mut SpanCache::default(),
        )
    });
    m.is_some_and(|m| m.name.starts_with("rpc."))
}

/// The claim both "every call answered in sight" properties check: calls `width` at a time
/// (frames of at most `max_frame`), cut into syscalls of `groups` frames each way, of which the
/// kernel captured the first `limit` bytes and the last `tail`. `None` when some answer syscall
/// was not captured whole (outside the claim); otherwise each call's exchange, after
/// [`never_wrong`], with every call accounted for and no stream left open.
pub(super) fn answered_in_sight(
    calls: &[Call],
    max_frame: u32,
    width: usize,
    role: Role,
    groups: &[usize],
    (limit, tail): (usize, usize),
) -> Option<Vec<H2Exchange>> {
    let w = pipelined(calls, max_frame, width);
    let sys = syscalls(&w, role, groups, &[]);
    let answers = if role == Role::Client { IN } else { OUT };
    if sys
        .iter()
        .any(|(d, b)| *d == answers && b.len() > limit + tail)
    {
        return None;
    }
    let mut f = Feeder::new(role);
    feed_captured(&mut f, &sys, limit, tail);
    let ended = f.exchanges();
    let by_call = never_wrong(&ended, calls, role);
    assert_eq!(f.p.open_streams(), 0);
    Some(
        calls
            .iter()
            .zip(by_call)
            .map(|(c, x)| x.unwrap_or_else(|| panic!("{} has no span", c.path())))
            .collect(),
    )
}
