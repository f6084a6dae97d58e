//! HPACK across lost framing (`http2_resync.rs`): after a gap, each direction's table is kept
//! only when nothing that could change it can be hidden there: resets, GOAWAY, joins
//! mid-stream, streams opened out of sight or in bytes that were not frames, plain HTTP/2
//! requests with trailers. Split from `http2_resync_tests.rs`, which keeps the framing tests.

use super::grpc_model::{conversation, syscalls, GRPCIO_MAX_FRAME};
use super::resync_tests::collects;
use super::tests::{data, frame, lit, Feeder, IN, OUT};
use super::*;

/// Every call ended by its trailers (not at close) with its status, method and path.
/// The server answers each of `streams` with `:status 200` alone, ending it.
fn answer_ok(f: &mut Feeder, streams: &[u32]) {
    for &s in streams {
        f.feed(
            OUT,
            &frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, s, &[0x88]),
        );
    }
}

/// A gRPC request's HEADERS on stream `s` (`POST`, `http`, `:path` literal, added to the table
/// when `index`), without END_STREAM.
fn grpc_post(s: u32, path: &str, index: bool) -> Vec<u8> {
    let mut h = vec![0x83, 0x86];
    h.extend(lit(index, ":path", path));
    h.extend(lit(false, "content-type", "application/grpc"));
    frame(HEADERS, FLAG_END_HEADERS, s, &h)
}

/// The stream ids of the exchanges, in order.
fn ids(xs: &[H2Exchange]) -> Vec<u32> {
    xs.iter().map(|x| x.stream_id).collect()
}

/// Server side: the client's frames of stream 1 are followed, in the same read, by the HEADERS
/// of stream 3 (inserting `x-user: eve`) and stream 3's DATA; the gap hides the HEADERS. The
/// next read starts with stream 5's HEADERS, which refers to index 65 (`:authority` for the
/// client, `:path /demo.v1.Echo/Collect` in the table as we had it) before its literal `:path`.
/// Stream 5 is not the next id after 1, so a block may have been hidden: the table is
/// forgotten, nothing is decoded from it.
#[test]
fn a_hidden_request_headers_block_forgets_hpack() {
    let calls = collects(1);
    let mut f = Feeder::new(Role::Server);
    let w = conversation(&calls, GRPCIO_MAX_FRAME);
    // Up to stream 1's request headers and first message.
    for (dir, b) in syscalls(&w[..5], Role::Server, &[], &[]) {
        f.feed(dir, &b);
    }
    let mut h3 = vec![0x83, 0x86];
    h3.extend(lit(false, ":path", "/demo.v1.Echo/Collect"));
    h3.extend(lit(true, "x-user", "eve"));
    let mut r = data(1, 30_000, true);
    r.extend(frame(HEADERS, FLAG_END_HEADERS, 3, &h3));
    r.extend(data(3, 30_000, true));
    f.feed_captured(IN, &r);
    let mut h5 = vec![0x83, 0x86, 0xc1];
    h5.extend(lit(false, ":path", "/demo.v1.Echo/Five"));
    f.feed(
        IN,
        &frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 5, &h5),
    );
    let answer = |s: u32, first: bool| {
        let mut h = vec![0x88];
        h.extend(if first {
            lit(true, "grpc-status", "0")
        } else {
            vec![0xbe]
        });
        frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, s, &h)
    };
    for (s, first) in [(1, true), (3, false), (5, false)] {
        f.feed(OUT, &answer(s, first));
    }
    // Stream 3's request was hidden: its answer has a span all the same, with nothing of the
    // request (`http2_hidden.rs`).
    let xs = f.exchanges();
    assert_eq!(ids(&xs), [1, 3, 5]);
    let x3 = &xs[1];
    assert_eq!((x3.grpc_status, x3.method.as_deref()), (Some(0), None));
    assert!(x3.headers_incomplete && x3.partial);
    let x5 = &xs[2];
    assert_eq!(x5.grpc_status, Some(0));
    assert_eq!(x5.method.as_deref(), Some("POST"));
    assert_eq!(x5.path.as_deref(), Some("/demo.v1.Echo/Five"), "{x5:?}");
    assert_eq!(x5.authority, None);
    assert!(x5.headers_incomplete);
}

/// The request HEADERS of a `Chat` call on stream `s` (literals, nothing indexed).
fn chat_request(s: u32) -> Vec<u8> {
    let mut h = vec![0x83, 0x86];
    h.extend(lit(false, ":path", "/demo.v1.Echo/Chat"));
    h.extend(lit(false, "content-type", "application/grpc"));
    frame(HEADERS, FLAG_END_HEADERS, s, &h)
}

/// A client that made one call (stream 1) answered with `grpc-status: 0`, which the server
/// inserted in its table (index 62, `content-type` at 63).
fn client_after_one_ok_call() -> Feeder {
    let mut f = Feeder::new(Role::Client);
    let mut out = PREFACE.to_vec();
    out.extend(super::grpc_model::settings(true, GRPCIO_MAX_FRAME));
    out.extend(chat_request(1));
    f.feed(OUT, &out);
    let mut a = super::grpc_model::settings(false, GRPCIO_MAX_FRAME);
    let mut h = vec![0x88];
    h.extend(lit(true, "content-type", "application/grpc"));
    a.extend(frame(HEADERS, FLAG_END_HEADERS, 1, &h));
    let t = lit(true, "grpc-status", "0");
    a.extend(frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 1, &t));
    f.feed(IN, &a);
    f
}

/// One read: `lead`, then two DATA frames of `size` bytes on stream `carrier` (the second
/// ending it when `end`) with the header block `block` of stream `of` (ending it) between them.
/// Fed with `feed_captured`, its middle is not captured: the block is hidden in the gap.
fn block_hidden_in_a_message(
    lead: Vec<u8>,
    carrier: u32,
    size: usize,
    of: u32,
    block: &[u8],
    end: bool,
) -> Vec<u8> {
    let mut r = lead;
    r.extend(data(carrier, size, false));
    r.extend(frame(
        HEADERS,
        FLAG_END_HEADERS | FLAG_END_STREAM,
        of,
        block,
    ));
    r.extend(data(carrier, size, end));
    r
}

/// Trailers `block` of stream `of` hidden between two 30,000-byte DATA frames of `carrier`.
fn trailers_hidden_in_a_message(f: &mut Feeder, carrier: u32, of: u32, block: &[u8], end: bool) {
    let r = block_hidden_in_a_message(Vec::new(), carrier, 30_000, of, block, end);
    f.feed_captured(IN, &r);
}

/// A whole request on stream `id` (`POST`, `http`) whose only other field is dynamic-table
/// index 62, the entry the client inserted last as we had the table.
fn request_by_index_62(f: &mut Feeder, id: u32) {
    let flags = FLAG_END_HEADERS | FLAG_END_STREAM;
    f.feed(IN, &frame(HEADERS, flags, id, &[0x83, 0x86, 0xbe]));
}

/// The answer on `id` of a client after one ok call: headers (`:status 200`, content type by
/// index 63), a 60,000-byte message whose framing is lost in the capture, then trailers that
/// refer to `grpc-status: 0` by index 62, as the table stood before the gap.
fn large_answer_then_indexed_trailers(f: &mut Feeder, id: u32) {
    let mut r = frame(HEADERS, FLAG_END_HEADERS, id, &[0x88, 0xbf]);
    r.extend(data(id, 30_000, false));
    r.extend(data(id, 30_000, false));
    f.feed_captured(IN, &r);
    f.feed(
        IN,
        &frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, id, &[0xbe]),
    );
}

/// Client side, after a call that ended with `grpc-status: 0` (inserted): two calls in flight,
/// framing of the answers is lost while both are open, and the hidden bytes hold stream 5's
/// trailers, inserting `grpc-status: 7`. The first block found again is stream 3's trailers
/// referring to index 62: `grpc-status: 7` for the server, `grpc-status: 0` in the table as we
/// had it. Stream 5 was open and has not been seen since: the table is forgotten.
#[test]
fn a_hidden_answer_block_of_another_stream_forgets_hpack() {
    let mut f = client_after_one_ok_call();
    assert_eq!(f.exchanges()[0].grpc_status, Some(0));
    f.feed(OUT, &[chat_request(3), chat_request(5)].concat());
    let h = [0x88, 0xbf];
    let a = [3, 5]
        .map(|s| frame(HEADERS, FLAG_END_HEADERS, s, &h))
        .concat();
    f.feed(IN, &a);
    trailers_hidden_in_a_message(&mut f, 3, 5, &lit(true, "grpc-status", "7"), false);
    let lost_at = f.seq() * 100 + 10;
    f.feed(
        IN,
        &frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 3, &[0xbe]),
    );
    let xs = f.exchanges();
    assert_eq!(xs.len(), 1);
    assert_eq!((xs[0].stream_id, xs[0].grpc_status), (3, None));
    assert!(xs[0].headers_incomplete);
    // Stream 5's end was hidden: it is emitted at close, its end no later than the lost
    // stretch.
    f.p.close(99_999, &mut f.out);
    let xs = f.exchanges();
    assert_eq!(xs.len(), 1);
    assert_eq!((xs[0].stream_id, xs[0].grpc_status), (5, None));
    assert!(xs[0].partial);
    assert_eq!(xs[0].end_ns, lost_at);
}

/// Not gRPC: a request may carry trailers, so a gap in the requests can have hidden a header
/// block whatever the stream ids say.
#[test]
fn plain_http2_requests_forget_hpack_after_a_gap() {
    let mut f = Feeder::new(Role::Server);
    let mut c = PREFACE.to_vec();
    let mut h = vec![0x83, 0x86];
    h.extend(lit(true, ":path", "/upload"));
    c.extend(frame(HEADERS, FLAG_END_HEADERS, 1, &h));
    f.feed(IN, &c);
    let mut r = data(1, 20_000, false);
    r.extend(frame(
        HEADERS,
        FLAG_END_HEADERS | FLAG_END_STREAM,
        1,
        &lit(true, "x-sum", "1"),
    ));
    // The trailers' frame header is in the gap.
    f.feed_tail(IN, &r[..1024], r.len(), &r[r.len() - 5..]);
    // Stream 3 refers to index 62: `/upload` as we had the table, `x-sum: 1` for the client.
    request_by_index_62(&mut f, 3);
    answer_ok(&mut f, &[1, 3]);
    let xs = f.exchanges();
    assert_eq!(xs.len(), 2);
    assert_eq!(xs[1].stream_id, 3);
    assert_eq!(xs[1].path, None, "{:?}", xs[1]);
}

/// Client side: the client resets stream 3 while the server's trailers for it (inserting
/// `grpc-status: 1`) are already on their way; they arrive hidden in a gap of stream 5's answer.
/// Stream 5's trailers then refer to index 62 (`grpc-status: 1` for the server, `grpc-status: 0`
/// as we had the table). Stream 3 is no longer tracked, but its frames may still come: the
/// table is forgotten.
#[test]
fn answers_in_flight_for_a_reset_stream_forget_hpack() {
    let mut f = client_after_one_ok_call();
    f.feed(OUT, &[chat_request(3), chat_request(5)].concat());
    let h = [0x88, 0xbf];
    f.feed(
        IN,
        &[3, 5]
            .map(|s| frame(HEADERS, FLAG_END_HEADERS, s, &h))
            .concat(),
    );
    f.feed(OUT, &frame(RST_STREAM, 0, 3, &[0, 0, 0, 8]));
    let xs = f.exchanges();
    assert_eq!(ids(&xs), [1, 3]);
    trailers_hidden_in_a_message(&mut f, 5, 3, &lit(true, "grpc-status", "1"), false);
    f.feed(
        IN,
        &frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 5, &[0xbe]),
    );
    let xs = f.exchanges();
    assert_eq!(
        (xs[0].stream_id, xs[0].grpc_status),
        (5, None),
        "{:?}",
        xs[0]
    );
}

/// Client side, after a call that ended with `grpc-status: 0` (inserted): the server refuses
/// stream 3 with RST_STREAM. Having sent it, the server sends nothing more on stream 3 (RFC 9113
/// 5.1), so its answers stay free of untracked header blocks: when framing of stream 5's large
/// answer is lost and found again at its trailers, which refer to `grpc-status: 0` by index,
/// the table is kept and the status is known.
#[test]
fn a_reset_sent_by_the_server_keeps_the_answers_table() {
    let mut f = client_after_one_ok_call();
    f.feed(OUT, &chat_request(3));
    f.feed(IN, &frame(RST_STREAM, 0, 3, &[0, 0, 0, 7]));
    f.feed(OUT, &chat_request(5));
    large_answer_then_indexed_trailers(&mut f, 5);
    let xs = f.exchanges();
    let got: Vec<_> = xs.iter().map(|x| (x.stream_id, x.grpc_status)).collect();
    assert_eq!(got, [(1, Some(0)), (3, None), (5, Some(0))], "{xs:?}");
    assert!(!xs[2].headers_incomplete, "{:?}", xs[2]);
}

/// Server side, plain HTTP/2: an upload on stream 1 (inserting `:path /upload`) is reset before
/// its request ended, then gRPC call 3's large message loses framing of the requests and stream
/// 5, the next id, refers to `/upload` by index. When the client reset stream 1 it sends
/// nothing more on it: no request trailers can have been hidden, the table is kept. When the
/// server reset it, the client's trailers may already be on their way and may hide in the gap:
/// the table is forgotten.
#[test]
fn a_reset_taints_only_the_direction_that_may_still_send_on_the_stream() {
    for client_resets in [true, false] {
        let mut f = Feeder::new(Role::Server);
        let mut c = PREFACE.to_vec();
        let mut h = vec![0x83, 0x86];
        h.extend(lit(true, ":path", "/upload"));
        c.extend(frame(HEADERS, FLAG_END_HEADERS, 1, &h));
        c.extend(data(1, 100, false));
        f.feed(IN, &c);
        let rst = frame(RST_STREAM, 0, 1, &[0, 0, 0, 8]);
        f.feed(if client_resets { IN } else { OUT }, &rst);
        let mut h = vec![0x83, 0x86];
        h.extend(lit(false, ":path", "/demo.v1.Echo/A"));
        h.extend(lit(false, "content-type", "application/grpc"));
        let mut r = frame(HEADERS, FLAG_END_HEADERS, 3, &h);
        r.extend(data(3, 30_000, false));
        r.extend(data(3, 30_000, true));
        f.feed_captured(IN, &r);
        let h5 = [0x83, 0x86, 0xbe];
        f.feed(
            IN,
            &frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 5, &h5),
        );
        answer_ok(&mut f, &[3, 5]);
        let xs = f.exchanges();
        assert_eq!(ids(&xs), [1, 3, 5]);
        let x5 = &xs[2];
        let want = client_resets.then_some("/upload");
        assert_eq!(x5.path.as_deref(), want, "{client_resets} {x5:?}");
        assert_eq!(x5.headers_incomplete, !client_resets, "{x5:?}");
    }
}

/// Joined mid-stream while streams 1 and 3 were open (opened before the join: we never see
/// their requests). The client's SETTINGS (push off) come again, and stream 5's request is seen;
/// the server's trailers-only answer of stream 1 inserts `content-type` and `grpc-status: 0`.
/// One write of stream 5's answer hides, between its DATA frames, stream 3's trailers-only
/// answer inserting `grpc-status: 7`; stream 5's trailers then refer to index 62:
/// `grpc-status: 7` for the server, `grpc-status: 0` in the table as we had it. Every stream we
/// track proves it sent nothing hidden, but stream 3 is older than anything seen and proves
/// nothing: the table is forgotten, the status unknown, never 0.
#[test]
fn a_hidden_answer_of_a_stream_older_than_the_join_forgets_hpack() {
    use super::grpc_model::{answer_headers, request_headers, settings, Enc};
    for role in [Role::Server, Role::Client] {
        let (requests, answers) = if role == Role::Server {
            (IN, OUT)
        } else {
            (OUT, IN)
        };
        let mut f = Feeder::new(role);
        let (mut req, mut resp) = (Enc::default(), Enc::default());
        let mut r = settings(true, GRPCIO_MAX_FRAME);
        r.extend(request_headers(&mut req, 5, "/demo.v1.Echo/Lookup"));
        r.extend(data(5, 17, true));
        f.feed(requests, &r);
        let only = |resp: &mut Enc, s: u32, status: &str| {
            let t = resp.block(&[
                (":status", "200"),
                ("content-type", "application/grpc"),
                ("grpc-status", status),
            ]);
            frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, s, &t)
        };
        f.feed(answers, &only(&mut resp, 1, "0"));
        let mut w = answer_headers(&mut resp, 5);
        w.extend(data(5, 30_000, false));
        w.extend(only(&mut resp, 3, "7"));
        w.extend(data(5, 30_000, false));
        f.feed_captured(answers, &w);
        let t5 = resp.block(&[("grpc-status", "7")]);
        assert_eq!(t5, [0xbe]);
        f.feed(
            answers,
            &frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 5, &t5),
        );
        let xs = f.exchanges();
        assert_eq!(xs.len(), 1, "{role:?}");
        let x = &xs[0];
        assert_eq!((x.stream_id, x.grpc_status), (5, None), "{role:?} {x:?}");
        assert!(x.headers_incomplete, "{x:?}");
        assert_eq!(x.path.as_deref(), Some("/demo.v1.Echo/Lookup"));
    }
}

/// The same in the requests: joined mid-stream while stream 1, a plain (not gRPC) upload, was
/// open. gRPC calls on streams 3 and 5 insert `:path /demo.v1.Echo/A` and `/demo.v1.Echo/B`; one
/// read of stream 5's large message hides, between its DATA frames, stream 1's trailers
/// inserting `x-sum: 1`. Stream 7 opens the next id (no stream was opened in the hidden bytes)
/// and refers to index 63 for `/demo.v1.Echo/B`: `/demo.v1.Echo/A` in the table as we had it.
/// Stream 1 may send trailers, and nothing we follow rules them out: the table is forgotten.
#[test]
fn hidden_request_trailers_of_a_stream_older_than_the_join_forget_hpack() {
    let mut f = Feeder::new(Role::Server);
    let grpc = |s: u32, path: Option<&str>, end: bool| {
        let mut h = vec![0x83, 0x86];
        match path {
            Some(p) => h.extend(lit(true, ":path", p)),
            None => h.push(0x80 | 63),
        }
        h.extend(lit(false, "content-type", "application/grpc"));
        let flags = FLAG_END_HEADERS | if end { FLAG_END_STREAM } else { 0 };
        frame(HEADERS, flags, s, &h)
    };
    let mut r = grpc(3, Some("/demo.v1.Echo/A"), false);
    r.extend(data(3, 17, true));
    f.feed(IN, &r);
    let lead = grpc(5, Some("/demo.v1.Echo/B"), false);
    let t1 = lit(true, "x-sum", "1");
    f.feed_captured(
        IN,
        &block_hidden_in_a_message(lead, 5, 30_000, 1, &t1, true),
    );
    f.feed(IN, &grpc(7, None, true));
    answer_ok(&mut f, &[3, 5, 7]);
    let xs = f.exchanges();
    assert_eq!(ids(&xs), [3, 5, 7]);
    let x7 = &xs[2];
    assert_eq!(x7.path, None, "{x7:?}");
    assert!(x7.headers_incomplete, "{x7:?}");
    assert_eq!(xs[1].path.as_deref(), Some("/demo.v1.Echo/B"));
}

/// Server side, from the preface: gRPC call 1 streams a large message, and one read hides in
/// its middle the HEADERS of stream 3, a plain upload (which may send trailers). Stream 5's
/// request (inserting `:path /demo.v1.Echo/B`) brings framing back and leaves id 3 in a range;
/// the table is forgotten there (ids were skipped). Then one read of stream 5's large message
/// hides stream 3's trailers, inserting `x-sum: 1`. Stream 7 opens the next id and refers to
/// index 62 first: `x-sum: 1` for the client, `:path /demo.v1.Echo/B` in the table as we had
/// it. Stream 3 is neither tracked nor ruled out: the table is forgotten, and stream 7's path
/// is its literal one, never B.
#[test]
fn hidden_request_trailers_of_a_stream_opened_out_of_sight_forget_hpack() {
    let mut f = super::hidden_tests::started(Role::Server);
    f.feed(IN, &grpc_post(1, "/demo.v1.Echo/A", false));
    let mut r = data(1, 30_000, false);
    let mut h3 = vec![0x83, 0x86];
    h3.extend(lit(false, ":path", "/upload"));
    r.extend(frame(HEADERS, FLAG_END_HEADERS, 3, &h3));
    r.extend(data(3, 10, false));
    r.extend(data(1, 30_000, true));
    f.feed_captured(IN, &r);
    let lead = grpc_post(5, "/demo.v1.Echo/B", true);
    let t3 = lit(true, "x-sum", "1");
    f.feed_captured(
        IN,
        &block_hidden_in_a_message(lead, 5, 30_000, 3, &t3, true),
    );
    let mut h7 = vec![0x83, 0x86, 0xbe];
    h7.extend(lit(false, ":path", "/demo.v1.Echo/C"));
    f.feed(
        IN,
        &frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 7, &h7),
    );
    answer_ok(&mut f, &[1, 5, 7]);
    let xs = f.exchanges();
    assert_eq!(ids(&xs), [1, 5, 7]);
    let x7 = &xs[2];
    assert_eq!(x7.path.as_deref(), Some("/demo.v1.Echo/C"), "{x7:?}");
    assert!(x7.headers_incomplete, "{x7:?}");
}

/// The same, with stream 3's HEADERS lost in bytes that were not frames (a malformed frame
/// before them in the same read) instead of a gap, and call 1 answered with `grpc-status: 0`
/// (inserted): stream 5's request brings framing back and
/// bounds the ids opened before it, but stream 3 is neither tracked nor kept in a range. Its
/// trailers, hidden in a gap of stream 5's message, then forget the requests' table; its
/// trailers-only answer (inserting `grpc-status: 7`), hidden in a gap of stream 5's answer,
/// the answers' table: stream 5's trailers refer to index 62, `grpc-status: 0` as we had it.
#[test]
fn header_blocks_of_a_stream_opened_in_garbage_forget_hpack() {
    let mut f = super::hidden_tests::started(Role::Server);
    let mut c = grpc_post(1, "/demo.v1.Echo/A", false);
    c.extend(data(1, 5, true));
    f.feed(IN, &c);
    let t1 = [
        0x88, 0x40, 11, b'g', b'r', b'p', b'c', b'-', b's', b't', b'a', b't', b'u', b's',
    ];
    let mut t1 = t1.to_vec();
    t1.extend([1, b'0']);
    f.feed(
        OUT,
        &frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 1, &t1),
    );
    // A PING on a stream: no peer sends that; framing of the requests is lost.
    let mut r = frame(PING, 0, 1, &[0; 8]);
    let mut h3 = vec![0x83, 0x86];
    h3.extend(lit(false, ":path", "/upload"));
    r.extend(frame(HEADERS, FLAG_END_HEADERS, 3, &h3));
    f.feed(IN, &r);
    // Frames of at most 16 KiB: where framing comes back after bytes that were not frames,
    // the mid-stream rule believes no larger one.
    let lead = grpc_post(5, "/demo.v1.Echo/B", true);
    let t3 = lit(true, "x-sum", "1");
    f.feed_captured(
        IN,
        &block_hidden_in_a_message(lead, 5, 16_000, 3, &t3, true),
    );
    let lead = frame(HEADERS, FLAG_END_HEADERS, 5, &[0x88]);
    let mut a3 = vec![0x88];
    a3.extend(lit(true, "grpc-status", "7"));
    f.feed_captured(
        OUT,
        &block_hidden_in_a_message(lead, 5, 30_000, 3, &a3, false),
    );
    f.feed(
        OUT,
        &frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 5, &[0xbe]),
    );
    let mut h7 = vec![0x83, 0x86, 0xbe];
    h7.extend(lit(false, ":path", "/demo.v1.Echo/C"));
    f.feed(
        IN,
        &frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 7, &h7),
    );
    f.feed(
        OUT,
        &frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 7, &[0x88]),
    );
    let xs = f.exchanges();
    assert_eq!(ids(&xs), [1, 5, 7]);
    assert_eq!(xs[0].grpc_status, Some(0));
    assert_eq!(xs[1].grpc_status, None, "{:?}", xs[1]);
    let x7 = &xs[2];
    assert_eq!(x7.path.as_deref(), Some("/demo.v1.Echo/C"), "{x7:?}");
}

/// Client side, after a call that ended with `grpc-status: 0` (inserted): calls 3 and 5 are in
/// flight when the server sends GOAWAY with last-stream-id 3. Stream 5 is over (partial): the
/// server never processed it and sends nothing on it (RFC 9113 6.8), so no answer block of it
/// can hide in the answers, and their table is kept across a later gap: stream 3's trailers,
/// found again after framing of its large answer was lost, refer to `grpc-status: 0` by index
/// and the status is known. The client, though, may still have request frames of stream 5 in
/// flight when the GOAWAY arrives (the server must still decode their header blocks): a plain
/// request cut off this way leaves the requests' table tainted (see the next test).
#[test]
fn a_goaway_keeps_the_answers_table() {
    let mut f = client_after_one_ok_call();
    f.feed(OUT, &[chat_request(3), chat_request(5)].concat());
    f.feed(IN, &frame(GOAWAY, 0, 0, &[0, 0, 0, 3, 0, 0, 0, 0]));
    let xs = f.exchanges();
    assert_eq!(ids(&xs), [1, 5]);
    assert!(xs[1].partial);
    large_answer_then_indexed_trailers(&mut f, 3);
    let xs = f.exchanges();
    assert_eq!(ids(&xs), [3]);
    assert_eq!(xs[0].grpc_status, Some(0), "{:?}", xs[0]);
    assert!(!xs[0].headers_incomplete, "{:?}", xs[0]);
}

/// Server side, plain HTTP/2: an upload on stream 3 (inserting `:path /upload`) is cut off by
/// the server's GOAWAY (last-stream-id 1) before its request ended. The client may still send
/// its trailers (RFC 9113 6.8: frames already in flight; the server still decodes their header
/// blocks for HPACK), and they hide in a gap of gRPC call 1's large message; stream 5, opened by
/// the client before it saw the GOAWAY, refers to index 62 (`x-sum: 1` for the client,
/// `/upload` as we had the table): the requests' table is forgotten, the path unknown.
#[test]
fn a_goaway_leaves_the_requests_table_tainted_by_plain_requests_in_flight() {
    let mut f = super::hidden_tests::started(Role::Server);
    f.feed(IN, &grpc_post(1, "/demo.v1.Echo/A", false));
    let mut h = vec![0x83, 0x86];
    h.extend(lit(true, ":path", "/upload"));
    let mut c = frame(HEADERS, FLAG_END_HEADERS, 3, &h);
    c.extend(data(3, 100, false));
    f.feed(IN, &c);
    f.feed(OUT, &frame(GOAWAY, 0, 0, &[0, 0, 0, 1, 0, 0, 0, 0]));
    assert_eq!(ids(&f.exchanges()), [3]);
    trailers_hidden_in_a_message(&mut f, 1, 3, &lit(true, "x-sum", "1"), true);
    request_by_index_62(&mut f, 5);
    answer_ok(&mut f, &[1]);
    f.p.close(99_999, &mut f.out);
    let xs = f.exchanges();
    assert_eq!(ids(&xs), [1, 5]);
    assert_eq!(xs[1].path, None, "{:?}", xs[1]);
    assert!(xs[1].headers_incomplete);
}
