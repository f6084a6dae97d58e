//! Streams opened in request bytes the kernel did not copy (`http2_hidden.rs`): their answers
//! make one span each, with nothing invented about their requests, and a late frame of a closed
//! stream still makes none.

use proptest::prelude::*;

use super::grpc_model::{
    answer_headers, answered_in_sight, request_headers, settings, Call, Enc, GRPCIO_MAX_FRAME,
};
use super::tests::{data, frame, lit, Feeder, IN, OUT};
use super::*;

/// A request HEADERS frame as grpcio writes it (`enc` indexes every new field).
pub(super) fn request(enc: &mut Enc, s: u32, method: &str) -> Vec<u8> {
    request_headers(enc, s, &format!("/demo.v1.Echo/{method}"))
}

/// A whole request: its HEADERS, then a `len`-byte message that ends the stream.
pub(super) fn call(enc: &mut Enc, s: u32, method: &str, len: usize) -> Vec<u8> {
    let mut r = request(enc, s, method);
    r.extend(data(s, len, true));
    r
}

/// A unary answer: headers, a 12-byte message, trailers with `status`.
pub(super) fn answer(enc: &mut Enc, s: u32, status: u32) -> Vec<u8> {
    let mut a = answer_headers(enc, s);
    a.extend(data(s, 17, false));
    a.extend(trailers(enc, s, status));
    a
}

pub(super) fn trailers(enc: &mut Enc, s: u32, status: u32) -> Vec<u8> {
    let st = status.to_string();
    let mut t = vec![("grpc-status", st.as_str())];
    if status != 0 {
        t.push(("grpc-message", "no"));
    }
    frame(
        HEADERS,
        FLAG_END_HEADERS | FLAG_END_STREAM,
        s,
        &enc.block(&t),
    )
}

/// A connection whose preface and SETTINGS were seen (`requests` is the client's direction).
pub(super) fn started(role: Role) -> Feeder {
    let (req, resp) = if role == Role::Server {
        (IN, OUT)
    } else {
        (OUT, IN)
    };
    let mut f = Feeder::new(role);
    let mut c = PREFACE.to_vec();
    c.extend(settings(true, GRPCIO_MAX_FRAME));
    f.feed(req, &c);
    let mut s = settings(false, GRPCIO_MAX_FRAME);
    s.extend(frame(SETTINGS, FLAG_ACK, 0, &[]));
    f.feed(resp, &s);
    f.feed(req, &frame(SETTINGS, FLAG_ACK, 0, &[]));
    f
}

/// One syscall of which the first 1024 and the last 256 bytes were copied.
pub(super) fn feed_cut(f: &mut Feeder, dir: Direction, b: &[u8]) {
    f.feed_tail(dir, &b[..1024], b.len(), &b[b.len() - 256..]);
}

fn ids(xs: &[H2Exchange]) -> Vec<u32> {
    xs.iter().map(|x| x.stream_id).collect()
}

/// What an exchange whose request headers were hidden says: the answer, nothing of the request,
/// and its start no later than the syscall that hid them.
fn assert_hidden_request(x: &H2Exchange, grpc_status: u32, loss: u64) {
    assert_eq!(x.grpc_status, Some(grpc_status), "{x:?}");
    assert_eq!(x.status, Some(200), "{x:?}");
    assert_eq!(x.content_type.as_deref(), Some("application/grpc"));
    assert_eq!((&x.method, &x.path, &x.authority), (&None, &None, &None));
    assert!(x.partial && x.headers_incomplete, "{x:?}");
    assert_eq!((x.start_ns, x.request_seq), (loss * 100, loss), "{x:?}");
    assert_eq!(x.response_body_bytes, 17);
}

/// Server side, a client with calls in flight: one read moves the end of stream 1's large
/// message, then whole unary calls on streams 3 and 5 and a large message of 5; its uncaptured
/// middle holds the HEADERS of 3 and 5. The next read starts with stream 7's HEADERS, where
/// framing comes back. The answers of 3 and 5 are not late frames of closed streams: each is one
/// call, with its status and nothing of its request.
#[test]
fn a_server_answering_requests_it_did_not_see_whole_makes_their_spans() {
    let mut f = started(Role::Server);
    let (mut req, mut resp) = (Enc::default(), Enc::default());
    f.feed(IN, &request(&mut req, 1, "Collect"));
    let mut r = data(1, 30_000, false);
    r.extend(data(1, 0, true));
    r.extend(call(&mut req, 3, "Lookup", 17));
    r.extend(call(&mut req, 5, "Lookup", 30_000));
    feed_cut(&mut f, IN, &r);
    let loss = f.seq();
    let r = call(&mut req, 7, "Seven", 17);
    f.feed(IN, &r);
    for (s, status) in [(1, 0), (3, 5), (5, 0), (7, 0)] {
        f.feed(OUT, &answer(&mut resp, s, status));
    }
    let xs = f.exchanges();
    assert_eq!(ids(&xs), [1, 3, 5, 7]);
    let (x1, x7) = (&xs[0], &xs[3]);
    assert_eq!(x1.path.as_deref(), Some("/demo.v1.Echo/Collect"));
    assert_eq!((x1.grpc_status, x1.partial), (Some(0), true));
    assert_hidden_request(&xs[1], 5, loss);
    assert_eq!(xs[1].grpc_message.as_deref(), Some("no"));
    assert_hidden_request(&xs[2], 0, loss);
    // Stream 7 as before: its literal path, the fields it refers to in the table unknown.
    assert_eq!(x7.method.as_deref(), Some("POST"));
    assert_eq!(x7.path.as_deref(), Some("/demo.v1.Echo/Seven"));
    assert_eq!((x7.authority.as_deref(), x7.grpc_status), (None, Some(0)));
    assert!(x7.headers_incomplete && !x7.partial);
    assert_eq!(x7.start_ns, (loss + 1) * 100);
    assert_eq!(f.p.open_streams(), 0);
}

/// Client side: one sendmsg moves the end of stream 1's message and all of stream 3's call, its
/// HEADERS in the uncaptured middle; stream 5's HEADERS starts the next write. The server
/// answers 5 first, then 3 (with DATA and trailers in separate reads), then 1.
#[test]
fn a_client_gets_the_answer_of_a_call_whose_headers_were_hidden() {
    let mut f = started(Role::Client);
    let (mut req, mut resp) = (Enc::default(), Enc::default());
    f.feed(OUT, &request(&mut req, 1, "Collect"));
    let mut w = data(1, 30_000, false);
    w.extend(data(1, 0, true));
    w.extend(call(&mut req, 3, "Collect", 30_000));
    feed_cut(&mut f, OUT, &w);
    let loss = f.seq();
    let w = call(&mut req, 5, "Five", 17);
    f.feed(OUT, &w);
    f.feed(IN, &answer(&mut resp, 5, 0));
    let h = resp.block(&[(":status", "200"), ("content-type", "application/grpc")]);
    f.feed(IN, &frame(HEADERS, FLAG_END_HEADERS, 3, &h));
    f.feed(IN, &data(3, 17, false));
    assert_eq!(ids(&f.exchanges()), [5]);
    f.feed(IN, &trailers(&mut resp, 3, 7));
    f.feed(IN, &answer(&mut resp, 1, 0));
    let xs = f.exchanges();
    assert_eq!(ids(&xs), [3, 1]);
    assert_hidden_request(&xs[0], 7, loss);
    assert_eq!(xs[0].role, Role::Client);
    assert!(xs[0].end_ns > xs[0].start_ns);
    assert_eq!(f.p.open_streams(), 0);
}

/// Frames of a stream after its end make no span: neither an id closed before the loss (not one
/// the hidden bytes can have opened) nor a hidden one whose answer was already counted.
#[test]
fn late_frames_of_closed_streams_make_no_span() {
    let mut f = started(Role::Server);
    let (mut req, mut resp) = (Enc::default(), Enc::default());
    let r = call(&mut req, 1, "Lookup", 17);
    f.feed(IN, &r);
    f.feed(OUT, &answer(&mut resp, 1, 0));
    assert_eq!(ids(&f.exchanges()), [1]);
    // A late answer block of stream 1 with no loss at all: nothing.
    f.feed(OUT, &trailers(&mut resp, 1, 0));
    assert_eq!(f.exchanges(), []);
    let mut r = request(&mut req, 3, "Collect");
    r.extend(data(3, 20_000, false));
    f.feed_total(IN, &r[..1024], r.len());
    let mut r = data(3, 30_000, true);
    r.extend(call(&mut req, 5, "Lookup", 30_000));
    feed_cut(&mut f, IN, &r);
    let r = call(&mut req, 7, "Lookup", 17);
    f.feed(IN, &r);
    // Stream 1 again, after the loss: still closed.
    f.feed(OUT, &trailers(&mut resp, 1, 0));
    f.feed(OUT, &answer(&mut resp, 5, 0));
    assert_eq!(ids(&f.exchanges()), [5]);
    // Stream 5 again: counted already.
    f.feed(OUT, &trailers(&mut resp, 5, 0));
    f.feed(OUT, &answer(&mut resp, 5, 0));
    assert_eq!(f.exchanges(), []);
    f.feed(OUT, &answer(&mut resp, 3, 0));
    f.feed(OUT, &answer(&mut resp, 7, 0));
    assert_eq!(ids(&f.exchanges()), [3, 7]);
    f.p.close(99_999, &mut f.out);
    assert_eq!(f.exchanges(), []);
}

/// A connection joined mid-stream may have streams older than anything seen: a gap then gives
/// no bound on when an id below the next one seen was opened, and its answer stays untracked.
#[test]
fn a_connection_joined_mid_stream_keeps_older_ids_untracked() {
    let mut f = Feeder::new(Role::Server);
    let (mut req, mut resp) = (Enc::default(), Enc::default());
    // Framing found at a DATA frame of a stream opened before we joined.
    f.feed(IN, &data(1, 17, false));
    let mut r = data(1, 30_000, true);
    r.extend(call(&mut req, 3, "Lookup", 30_000));
    feed_cut(&mut f, IN, &r);
    f.feed(IN, &request(&mut req, 5, "Lookup"));
    f.feed(OUT, &answer(&mut resp, 3, 0));
    f.feed(OUT, &answer(&mut resp, 5, 0));
    assert_eq!(ids(&f.exchanges()), [5]);
}

/// Server side: one read hides stream 3's request HEADERS, and the server answers 3 before the
/// client's next request is read. As for an id kept in a range, and as for a call refused at
/// that point (`a_call_refused_while_the_requests_are_lost_makes_one_span`), its span starts
/// where the loss began, not at its answer, and says nothing of its request.
#[test]
fn an_answer_while_the_requests_are_lost_starts_at_the_loss() {
    let mut f = started(Role::Server);
    let (mut req, mut resp) = (Enc::default(), Enc::default());
    f.feed(IN, &request(&mut req, 1, "Collect"));
    let mut r = data(1, 30_000, false);
    r.extend(call(&mut req, 3, "Lookup", 17));
    r.extend(data(1, 30_000, true));
    feed_cut(&mut f, IN, &r);
    let loss = f.seq();
    f.feed(OUT, &answer(&mut resp, 3, 5));
    let xs = f.exchanges();
    assert_eq!(ids(&xs), [3]);
    assert_hidden_request(&xs[0], 5, loss);
    let r = call(&mut req, 5, "Lookup", 17);
    f.feed(IN, &r);
    f.feed(OUT, &answer(&mut resp, 1, 0));
    f.feed(OUT, &answer(&mut resp, 5, 0));
    assert_eq!(ids(&f.exchanges()), [1, 5]);
    f.p.close(99_999, &mut f.out);
    assert_eq!(f.exchanges(), []);
}

/// What the span of a call whose request HEADERS were hidden and whose only sign is a reset
/// says: nothing of the call but that it was made and ended in error.
fn assert_reset_unknown(x: &H2Exchange, loss: u64, end_seq: u64) {
    assert!(x.partial && x.headers_incomplete, "{x:?}");
    assert_eq!((&x.method, &x.path, &x.authority), (&None, &None, &None));
    assert_eq!(
        (x.status, x.grpc_status, &x.content_type),
        (None, None, &None)
    );
    assert_eq!((x.start_ns, x.request_seq), (loss * 100, loss), "{x:?}");
    assert_eq!(x.end_ns, end_seq * 100 + 10, "{x:?}");
}

/// Server side: one read hides stream 3's request HEADERS between stream 1's DATA frames, and
/// the server refuses stream 3 (RST_STREAM, REFUSED_STREAM) before the client's next request is
/// read. As for a reset stream whose request was seen, the reset ends the call: one span, from
/// the syscall that hid its request to the reset, nothing of its request. Another reset of
/// stream 3 makes no second span.
#[test]
fn a_call_refused_while_the_requests_are_lost_makes_one_span() {
    let mut f = started(Role::Server);
    let (mut req, mut resp) = (Enc::default(), Enc::default());
    f.feed(IN, &request(&mut req, 1, "Collect"));
    let mut r = data(1, 30_000, false);
    r.extend(call(&mut req, 3, "Lookup", 17));
    r.extend(data(1, 30_000, true));
    feed_cut(&mut f, IN, &r);
    let loss = f.seq();
    f.feed(OUT, &frame(RST_STREAM, 0, 3, &[0, 0, 0, 7]));
    let xs = f.exchanges();
    assert_eq!(ids(&xs), [3]);
    assert_reset_unknown(&xs[0], loss, f.seq());
    assert_eq!(xs[0].role, Role::Server);
    let r = call(&mut req, 5, "Lookup", 17);
    f.feed(IN, &r);
    f.feed(OUT, &frame(RST_STREAM, 0, 3, &[0, 0, 0, 7]));
    f.feed(OUT, &answer(&mut resp, 1, 0));
    f.feed(OUT, &answer(&mut resp, 5, 0));
    assert_eq!(ids(&f.exchanges()), [1, 5]);
    f.p.close(99_999, &mut f.out);
    assert_eq!(f.exchanges(), []);
}

/// Client side: one write hides the HEADERS of streams 3 and 5, and stream 7's request is seen
/// (3 and 5 may have been opened out of sight). The server refuses 3; the client cancels 5, and
/// the server's answer to 5, already on its way, comes after. Each call has one span; resets of
/// ids the hidden bytes cannot have opened (1, done; 9, never opened) make none.
#[test]
fn resets_of_calls_whose_headers_were_hidden_make_one_span_each() {
    let mut f = started(Role::Client);
    let (mut req, mut resp) = (Enc::default(), Enc::default());
    f.feed(OUT, &request(&mut req, 1, "Collect"));
    let mut w = data(1, 30_000, false);
    for s in [3, 5] {
        w.extend(call(&mut req, s, "Lookup", 17));
    }
    w.extend(data(1, 30_000, true));
    feed_cut(&mut f, OUT, &w);
    let loss = f.seq();
    let w = call(&mut req, 7, "Lookup", 17);
    f.feed(OUT, &w);
    f.feed(IN, &answer(&mut resp, 1, 0));
    assert_eq!(ids(&f.exchanges()), [1]);
    f.feed(IN, &frame(RST_STREAM, 0, 3, &[0, 0, 0, 7]));
    let xs = f.exchanges();
    assert_eq!(ids(&xs), [3]);
    assert_reset_unknown(&xs[0], loss, f.seq());
    f.feed(OUT, &frame(RST_STREAM, 0, 5, &[0, 0, 0, 8]));
    let xs = f.exchanges();
    assert_eq!(ids(&xs), [5]);
    assert_reset_unknown(&xs[0], loss, f.seq());
    assert_eq!(xs[0].role, Role::Client);
    f.feed(IN, &answer(&mut resp, 5, 1));
    for s in [1, 9] {
        f.feed(IN, &frame(RST_STREAM, 0, s, &[0, 0, 0, 2]));
    }
    assert_eq!(f.exchanges(), []);
    f.feed(IN, &answer(&mut resp, 7, 0));
    assert_eq!(ids(&f.exchanges()), [7]);
    f.p.close(99_999, &mut f.out);
    assert_eq!(f.exchanges(), []);
}

/// Plain HTTP/2, client side: the HEADERS of GET 3 are hidden in a write (between the DATA
/// frames of upload 1), and so are its answer's HEADERS in a read; the answer ends with a DATA
/// frame. A DATA frame is only ever sent on a stream that was opened: the call has its span,
/// with its answer's bytes, and nothing else known.
#[test]
fn an_answer_seen_only_by_its_data_makes_a_span() {
    let mut f = started(Role::Client);
    let get = |s: u32, end: bool| {
        let mut h = vec![0x82, 0x86];
        h.extend(lit(false, ":path", "/x"));
        let flags = FLAG_END_HEADERS | if end { FLAG_END_STREAM } else { 0 };
        frame(HEADERS, flags, s, &h)
    };
    f.feed(OUT, &get(1, false));
    let mut w = data(1, 30_000, false);
    w.extend(get(3, true));
    w.extend(data(1, 30_000, true));
    feed_cut(&mut f, OUT, &w);
    let loss = f.seq();
    f.feed(OUT, &get(5, true));
    let ok = |s: u32, end: bool| {
        let flags = FLAG_END_HEADERS | if end { FLAG_END_STREAM } else { 0 };
        frame(HEADERS, flags, s, &[0x88])
    };
    let mut r = ok(1, false);
    r.extend(data(1, 30_000, false));
    r.extend(ok(3, false));
    r.extend(data(1, 30_000, false));
    feed_cut(&mut f, IN, &r);
    f.feed(IN, &data(1, 5, true));
    assert_eq!(ids(&f.exchanges()), [1]);
    f.feed(IN, &data(3, 10, false));
    f.feed(IN, &data(3, 4, true));
    let xs = f.exchanges();
    assert_eq!(ids(&xs), [3]);
    let x = &xs[0];
    assert!(x.partial && x.headers_incomplete, "{x:?}");
    assert_eq!(
        (x.method.as_deref(), x.path.as_deref(), x.status),
        (None, None, None)
    );
    assert_eq!((x.start_ns, x.request_seq), (loss * 100, loss));
    assert_eq!((x.request_body_bytes, x.response_body_bytes), (0, 14));
    assert_eq!(x.end_ns, f.seq() * 100 + 10);
    f.feed(IN, &ok(5, true));
    assert_eq!(ids(&f.exchanges()), [5]);
    f.p.close(99_999, &mut f.out);
    assert_eq!(f.exchanges(), []);
}

/// Server side, `n` lost stretches of the requests, each hiding one call's HEADERS: the client
/// streams a large message on stream `1 + 4k` and one read hides the whole call `3 + 4k` in its
/// middle; the next request (`5 + 4k`, seen) brings framing back, and the server answers
/// `1 + 4k`. Each stretch leaves one id in its own range; stream `1 + 4n` is left open.
fn hidden_stretches(n: u32) -> (Feeder, Enc) {
    let mut f = started(Role::Server);
    let (mut req, mut resp) = (Enc::default(), Enc::default());
    f.feed(IN, &request(&mut req, 1, "Collect"));
    for k in 0..n {
        let a = 1 + 4 * k;
        let mut r = data(a, 30_000, false);
        r.extend(call(&mut req, a + 2, "Lookup", 17));
        r.extend(data(a, 30_000, true));
        feed_cut(&mut f, IN, &r);
        f.feed(IN, &request(&mut req, a + 4, "Collect"));
        f.feed(OUT, &answer(&mut resp, a, 0));
    }
    assert_eq!(f.exchanges().len(), n as usize);
    (f, resp)
}

/// 64 lost stretches (a client with that many calls in flight, each request HEADERS hidden
/// in its own stretch) each hide a call, and the server then refuses every one of them: each
/// has its span, the oldest too. (Up to [`hidden::MAX_RANGES`] are kept.)
#[test]
fn calls_hidden_in_many_stretches_each_have_their_span() {
    let n = 64;
    let (mut f, _) = hidden_stretches(n);
    let hidden: Vec<u32> = (0..n).map(|k| 3 + 4 * k).collect();
    for &s in &hidden {
        f.feed(OUT, &frame(RST_STREAM, 0, s, &[0, 0, 0, 7]));
    }
    assert_eq!(ids(&f.exchanges()), hidden);
    assert!(f.p.buffered_bytes() < 1 << 20);
}

/// One stretch more than [`hidden::MAX_RANGES`]: the oldest hidden id is forgotten, not tracked
/// and in no range. Every other one is answered, then stream 3's trailers-only answer (inserting
/// `grpc-status: 7`) hides in a lost stretch of the answers, between the DATA frames of the
/// stream left open, whose trailers then refer to index 62: `grpc-status: 7` for the server,
/// `grpc-status: 0` in the table as we had it. Stream 3 was forgotten, not ruled out: the table
/// is forgotten, the status unknown, never 0.
#[test]
fn an_answer_of_a_forgotten_hidden_id_never_makes_a_wrong_status() {
    let n = hidden::MAX_RANGES as u32 + 1;
    let (mut f, mut resp) = hidden_stretches(n);
    for k in 1..n {
        f.feed(OUT, &answer(&mut resp, 3 + 4 * k, 0));
    }
    assert_eq!(f.exchanges().len(), n as usize - 1);
    let last = 1 + 4 * n;
    let mut w = answer_headers(&mut resp, last);
    w.extend(data(last, 30_000, false));
    let t3 = resp.block(&[
        (":status", "200"),
        ("content-type", "application/grpc"),
        ("grpc-status", "7"),
    ]);
    w.extend(frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 3, &t3));
    w.extend(data(last, 30_000, false));
    feed_cut(&mut f, OUT, &w);
    let t = resp.block(&[("grpc-status", "7")]);
    assert_eq!(t, [0xbe]);
    f.feed(
        OUT,
        &frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, last, &t),
    );
    f.p.close(u64::MAX / 2, &mut f.out);
    let xs = f.exchanges();
    assert_eq!(ids(&xs), [last]);
    assert_eq!(xs[0].grpc_status, None, "{:?}", xs[0]);
}

/// Joined mid-stream, after the HEADERS of calls in flight: a DATA or RST_STREAM frame is sent
/// only on a stream that was opened, so one naming an odd id above every id seen, while no
/// request seen bounds the ids opened before the join, is a call, as its answer's header block
/// would be. Server side: the server refuses stream 7 (one span, nothing of its request; a
/// second reset of it, a reset of 5 below it or of an even id make none). Client side: the
/// upload on stream 9 ends, then its answer comes: one span, with the upload's bytes. Once a
/// request HEADERS is seen (stream 11), ids above it are followed: DATA or a reset of 13, never
/// opened, makes nothing.
#[test]
fn a_connection_joined_mid_stream_counts_calls_known_by_data_or_reset() {
    let mut f = Feeder::new(Role::Server);
    let rst = |s: u32| frame(RST_STREAM, 0, s, &[0, 0, 0, 7]);
    f.feed(OUT, &rst(7));
    let xs = f.exchanges();
    assert_eq!(ids(&xs), [7]);
    let x = &xs[0];
    assert!(x.partial && x.role == Role::Server, "{x:?}");
    assert_eq!((&x.method, &x.path, x.status), (&None, &None, None));
    assert_eq!((x.start_ns, x.end_ns, x.request_seq), (100, 110, 1));
    for s in [7, 5, 8] {
        f.feed(OUT, &rst(s));
    }
    assert_eq!(f.exchanges(), []);

    let mut f = Feeder::new(Role::Client);
    let mut resp = Enc::default();
    f.feed(OUT, &data(9, 500, false));
    f.feed(OUT, &data(9, 20, true));
    f.feed(IN, &answer(&mut resp, 9, 0));
    let xs = f.exchanges();
    assert_eq!(ids(&xs), [9]);
    let x = &xs[0];
    assert_eq!((x.request_body_bytes, x.response_body_bytes), (520, 17));
    assert_eq!((x.grpc_status, x.partial), (Some(0), true), "{x:?}");
    assert_eq!((x.start_ns, x.request_seq), (100, 1));
    let mut req = Enc::default();
    f.feed(OUT, &request(&mut req, 11, "Lookup"));
    f.feed(OUT, &data(13, 5, false));
    f.feed(IN, &rst(13));
    assert_eq!(f.exchanges(), []);
    f.p.close(99_999, &mut f.out);
    assert_eq!(ids(&f.exchanges()), [11]);
}

/// Joined mid-stream, both HPACK tables unknown. Client side: the first answer block seen is
/// the trailers of stream 7 (a literal `grpc-status: 0`); server side: a trailers-only answer
/// of stream 5 whose `content-type` is by an index we cannot resolve and whose `grpc-status: 3`
/// is a literal. Neither call's request was seen, nor any content type: the status proves each
/// a gRPC call, and its span counts in `rpc.*` with that status, not as an HTTP request.
#[test]
fn a_call_known_only_by_its_grpc_status_counts_as_grpc() {
    use crate::l7spans::h2_span_into;
    use crate::signal::SpanRecord;
    use crate::spans::{FlowInfo, SpanCache, SpanCtx};
    let flow = FlowInfo::new(9, [0; 16], Default::default(), Default::default());
    let ctx = SpanCtx {
        trace_id: [1; 16],
        span_id: [2; 8],
    };
    let t7 = lit(true, "grpc-status", "0");
    let mut t5 = vec![0x88, 0xbe];
    t5.extend(lit(true, "grpc-status", "3"));
    for (role, answers, s, block, metric, code) in [
        (Role::Client, IN, 7, t7, "rpc.client.duration", 0),
        (Role::Server, OUT, 5, t5, "rpc.server.duration", 3),
    ] {
        let mut f = Feeder::new(role);
        f.feed(
            answers,
            &frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, s, &block),
        );
        let xs = f.exchanges();
        assert_eq!(ids(&xs), [s]);
        let x = xs[0].clone();
        assert_eq!((x.grpc_status, &x.content_type), (Some(code), &None));
        let (span, m) = SpanRecord::built(|out| {
            h2_span_into(out, x, &flow, ctx, [0; 8], 0, &mut SpanCache::default())
        });
        assert_eq!(m.map(|m| m.name), Some(metric), "{span:?}");
        let status = span
            .attrs
            .iter()
            .find(|(k, _)| *k == "rpc.grpc.status_code");
        let want = crate::signal::AttrValue::Int(i64::from(code));
        assert_eq!(status.map(|(_, v)| v), Some(&want));
    }
}

/// A client-streaming or bidirectional call (small answers, captured whole), one that fails, or
/// one the server refuses with a reset as soon as it reads its headers.
fn call_or_refusal() -> impl Strategy<Value = Call> {
    (
        proptest::collection::vec(0usize..150_000, 0..4),
        any::<bool>(),
        0usize..3,
        0usize..400,
    )
        .prop_map(|(msgs, bidi, kind, answer)| {
            let refused = kind == 2;
            let bidi = bidi && !refused;
            Call {
                method: ["Collect", "CollectFail", "Refused"][kind],
                msgs,
                bidi,
                answer: if bidi { answer } else { 12 },
                status: if kind == 1 { 3 } else { 0 },
                fast: refused,
                refused,
            }
        })
}

/// The odd stream ids that DATA, HEADERS or RST_STREAM frames of `writes` name (a frame per
/// entry of `frames`, as the model writes them).
fn calls_named(writes: &[super::grpc_model::Write]) -> Vec<u32> {
    let mut ids: Vec<u32> = writes
        .iter()
        .flat_map(|w| &w.frames)
        .filter_map(|f| FrameHeader::parse(f))
        .filter(|h| matches!(h.kind, DATA | HEADERS | RST_STREAM) && h.stream % 2 == 1)
        .map(|h| h.stream)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Calls one at a time, some refused with a reset, and an agent that joins the connection
    /// at any write (the requests' HEADERS of the call then in flight may be behind it), seeing
    /// every syscall after that whole: every call that sends a frame after the join has exactly
    /// one span, whether its request, its answer, its DATA or its reset is what it is known by;
    /// nothing is wrong or invented.
    #[test]
    fn every_call_seen_after_a_join_has_one_span(
        calls in proptest::collection::vec(call_or_refusal(), 1..6),
        join in 0usize..64,
        client in any::<bool>(),
    ) {
        let role = if client { Role::Client } else { Role::Server };
        let w = super::grpc_model::pipelined(&calls, 16_384, 1);
        let w = &w[join % w.len()..];
        let mut f = Feeder::new(role);
        for (dir, b) in super::grpc_model::syscalls(w, role, &[], &[]) {
            f.feed(dir, &b);
        }
        f.p.close(u64::MAX / 2, &mut f.out);
        let xs = f.exchanges();
        super::grpc_model::never_wrong(&xs, &calls, role);
        prop_assert_eq!(ids(&{ let mut xs = xs; xs.sort_by_key(|x| x.stream_id); xs }), calls_named(w));
    }

    /// Calls a few at a time, some refused with a reset between the frames of another call's
    /// answer, cut into syscalls of a few frames each way: request HEADERS frames fall in
    /// uncaptured middles. When every answer was captured, every call has exactly one span,
    /// ended by its trailers with its status or by its reset with no status at all, whether its
    /// request headers were seen or not; nothing is wrong or invented.
    #[test]
    fn every_call_answered_or_refused_in_sight_has_one_span(
        calls in proptest::collection::vec(call_or_refusal(), 2..7),
        width in 2usize..5,
        client in any::<bool>(),
        groups in proptest::collection::vec(1usize..5, 1..5),
        limit in 64usize..2048,
        tail in prop_oneof![Just(0usize), Just(256), 0usize..512],
    ) {
        let role = if client { Role::Client } else { Role::Server };
        let by_call = answered_in_sight(&calls, GRPCIO_MAX_FRAME, width, role, &groups, (limit, tail));
        prop_assume!(by_call.is_some());
        for (c, x) in calls.iter().zip(by_call.unwrap()) {
            if c.refused {
                prop_assert!(x.partial, "{:?}", x);
            } else {
                prop_assert_eq!(x.grpc_status, Some(c.status));
            }
        }
    }
}
