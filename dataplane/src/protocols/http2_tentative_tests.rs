//! The answers' HPACK table kept on trust while the requests are lost (`http2_tentative.rs`):
//! spans wait, go out as decoded when the next request shows no stream was hidden, and lose
//! their doubtful values when one was, when too many wait, or at close.

use proptest::prelude::*;

use super::grpc_model::{feed_captured, never_wrong, pipelined, syscalls, Call, Enc};
use super::hidden_tests::{answer, call, feed_cut, request, started, trailers};
use super::tentative::MAX_HELD;
use super::tests::{data, frame, Feeder, IN, OUT};
use super::*;

fn ids(xs: &[H2Exchange]) -> Vec<u32> {
    xs.iter().map(|x| x.stream_id).collect()
}

fn answer_headers(enc: &mut Enc, s: u32) -> Vec<u8> {
    let h = enc.block(&[(":status", "200"), ("content-type", "application/grpc")]);
    frame(HEADERS, FLAG_END_HEADERS, s, &h)
}

/// Client side. Call 1 is done (its answer inserted `content-type` and `grpc-status: 0` in the
/// server's table); streams `open` are open with their answer headers seen. Then one write
/// hides the middle of stream 3's messages, and `hidden_requests` with it (say stream 5's
/// HEADERS); one read hides the middle of stream 3's answer, and `hidden_answers` with it.
fn lost_both_ways(
    open: &[u32],
    hidden_requests: &dyn Fn(&mut Enc) -> Vec<u8>,
    hidden_answers: &dyn Fn(&mut Enc) -> Vec<u8>,
) -> (Feeder, Enc, Enc) {
    let mut f = started(Role::Client);
    let (mut req, mut resp) = (Enc::default(), Enc::default());
    let w = call(&mut req, 1, "Lookup", 17);
    f.feed(OUT, &w);
    f.feed(IN, &answer(&mut resp, 1, 0));
    assert_eq!(f.exchanges()[0].grpc_status, Some(0));
    for &s in open {
        f.feed(OUT, &request(&mut req, s, "Chat"));
    }
    let mut w = data(3, 30_000, false);
    w.extend(hidden_requests(&mut req));
    w.extend(data(3, 30_000, false));
    feed_cut(&mut f, OUT, &w);
    let mut a = Vec::new();
    for &s in open {
        a.extend(answer_headers(&mut resp, s));
    }
    f.feed(IN, &a);
    let mut r = data(3, 30_000, false);
    r.extend(hidden_answers(&mut resp));
    r.extend(data(3, 30_000, false));
    feed_cut(&mut f, IN, &r);
    (f, req, resp)
}

/// Stream 5's request HEADERS is hidden in a write, and its whole trailers-only answer (a fast
/// failure, inserting `grpc-status: 7`) in a read. Stream 3's trailers then refer to that entry
/// by index: `grpc-status: 0` in the table as we had it. Nothing tells before the connection
/// closes whether stream 5 exists: the span waits, then its status is unknown, never 0.
#[test]
fn a_hidden_trailers_only_answer_never_makes_a_wrong_status() {
    let (mut f, _, mut resp) = lost_both_ways(&[3], &|req| request(req, 5, "Lookup"), &|resp| {
        let t5 = resp.block(&[
            (":status", "200"),
            ("content-type", "application/grpc"),
            ("grpc-status", "7"),
        ]);
        frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 5, &t5)
    });
    let t3 = resp.block(&[("grpc-status", "7")]);
    f.feed(
        IN,
        &frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 3, &t3),
    );
    let early = f.exchanges();
    assert!(early.iter().all(|x| x.grpc_status != Some(0)), "{early:?}");
    f.p.close(99_999, &mut f.out);
    let mut xs = early;
    xs.extend(f.exchanges());
    assert_eq!(ids(&xs), [3]);
    let x = &xs[0];
    assert_eq!(x.grpc_status, None, "{x:?}");
    assert!(x.headers_incomplete, "{x:?}");
    assert_eq!(x.path.as_deref(), Some("/demo.v1.Echo/Chat"));
    assert_eq!(x.content_type.as_deref(), Some("application/grpc"));
}

/// The same stretches with no stream hidden: stream 3's trailers refer to `grpc-status: 0`
/// (inserted by call 1), and the span waits until the client's next request opens stream 7,
/// the next id: then it goes out with its status. A span ended meanwhile with nothing doubtful
/// waits behind it, so that the order is kept.
#[test]
fn the_next_request_confirms_the_table_and_releases_the_spans() {
    let (mut f, mut req, mut resp) = lost_both_ways(&[3, 5], &|_| Vec::new(), &|_| Vec::new());
    // Stream 5 (opened before the loss) proves it sent nothing hidden.
    f.feed(IN, &data(5, 10, false));
    let t3 = resp.block(&[("grpc-status", "0")]);
    f.feed(
        IN,
        &frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 3, &t3),
    );
    // A literal status: nothing doubtful, but it waits behind stream 3.
    f.feed(IN, &trailers(&mut resp, 5, 4));
    assert_eq!(f.exchanges(), []);
    assert_eq!(f.p.held.len(), 2);
    let w = call(&mut req, 7, "Lookup", 17);
    f.feed(OUT, &w);
    let xs = f.exchanges();
    assert_eq!(ids(&xs), [3, 5]);
    assert_eq!(xs[0].grpc_status, Some(0), "{:?}", xs[0]);
    assert!(!xs[0].headers_incomplete, "{:?}", xs[0]);
    assert_eq!(xs[1].grpc_status, Some(4));
    assert_eq!(f.p.held.len(), 0);
    // The table is trusted for good: later blocks decode as usual.
    f.feed(IN, &answer(&mut resp, 7, 0));
    let xs = f.exchanges();
    assert_eq!(ids(&xs), [7]);
    assert_eq!(xs[0].grpc_status, Some(0));
    assert!(!xs[0].headers_incomplete);
}

/// Stream 5's request and answer headers (inserting `x-shard: 2`) are hidden; stream 3's
/// trailers refer to `grpc-status: 0` by the index it has for the server, one further down than
/// in the table as we had it (where it reads `content-type`, no status at all). When stream 5's
/// trailers show it exists, what was decoded on trust becomes unknown.
#[test]
fn an_answer_of_a_hidden_stream_refutes_the_table() {
    let (mut f, _, mut resp) = lost_both_ways(&[3], &|req| request(req, 5, "Lookup"), &|resp| {
        let h = resp.block(&[
            (":status", "200"),
            ("content-type", "application/grpc"),
            ("x-shard", "2"),
        ]);
        frame(HEADERS, FLAG_END_HEADERS, 5, &h)
    });
    let t3 = resp.block(&[("grpc-status", "0")]);
    f.feed(
        IN,
        &frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 3, &t3),
    );
    assert_eq!(f.exchanges(), []);
    f.feed(IN, &trailers(&mut resp, 5, 0));
    let xs = f.exchanges();
    assert_eq!(ids(&xs), [3, 5]);
    for x in &xs {
        assert!(x.grpc_status.is_none() && x.headers_incomplete, "{x:?}");
    }
    // Stream 5's content type was read off the entry its index had in our table: unknown.
    assert_eq!(xs[1].content_type, None);
    assert_eq!(f.p.held.len(), 0);
}

/// A request that skips an id after the loss: the id skipped may have been opened in the
/// hidden bytes, and its answer hidden too. Refuted.
#[test]
fn a_request_skipping_ids_refutes_the_table() {
    let (mut f, mut req, mut resp) = lost_both_ways(&[3], &|_| Vec::new(), &|_| Vec::new());
    let t3 = resp.block(&[("grpc-status", "0")]);
    f.feed(
        IN,
        &frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 3, &t3),
    );
    assert_eq!(f.exchanges(), []);
    f.feed(OUT, &request(&mut req, 7, "Lookup"));
    let xs = f.exchanges();
    assert_eq!(ids(&xs), [3]);
    assert!(xs[0].grpc_status.is_none() && xs[0].headers_incomplete);
    // Entries inserted since the loss are still exact; older ones are forgotten.
    assert!(!f.p.dirs[0].hpack.is_complete());
}

/// At most `MAX_HELD` spans wait: one more refutes the trust, and all go out in order with
/// their doubtful values unknown.
#[test]
fn the_spans_held_are_bounded() {
    let open: Vec<u32> = (0..MAX_HELD as u32 + 2).map(|k| 3 + 2 * k).collect();
    let (mut f, _, mut resp) = lost_both_ways(&open, &|_| Vec::new(), &|_| Vec::new());
    let mut alive = Vec::new();
    for &s in &open[1..] {
        alive.extend(data(s, 10, false));
    }
    f.feed(IN, &alive);
    let t = resp.block(&[("grpc-status", "0")]);
    let mut seen = Vec::new();
    for (k, &s) in open.iter().enumerate() {
        f.feed(
            IN,
            &frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, s, &t),
        );
        assert!(f.p.held.len() <= MAX_HELD);
        let xs = f.exchanges();
        if k < MAX_HELD {
            assert_eq!(xs, []);
        }
        seen.extend(xs);
    }
    assert_eq!(ids(&seen), open);
    for x in &seen {
        assert!(x.grpc_status.is_none() && x.headers_incomplete, "{x:?}");
    }
    assert!(f.p.buffered_bytes() < 1 << 20);
}

/// A client-streaming or bidirectional call of large messages (answers of any size), or one
/// that fails fast with a trailers-only answer (`grpc-status: 3`, as `CollectFail` calls end).
fn call_or_failure() -> impl Strategy<Value = Call> {
    (
        proptest::collection::vec(0usize..100_000, 0..4),
        any::<bool>(),
        0u8..3,
        0usize..100_000,
    )
        .prop_map(|(msgs, bidi, kind, answer)| Call {
            method: ["Collect", "CollectFail", "Fail"][usize::from(kind)],
            msgs,
            bidi: bidi && kind != 2,
            answer,
            status: if kind == 0 { 0 } else { 3 },
            fast: kind == 2,
            refused: false,
        })
}

/// Calls `width` at a time: a first batch of calls that end with `grpc-status: 0` (entries
/// later trailers can be misread as), then batches of any calls; in some, a call with an answer
/// message comes first and one that fails fast last, so that the failure's trailers-only
/// answer goes out between that message's frames.
fn batches() -> impl Strategy<Value = (usize, Vec<Call>)> {
    (2usize..4)
        .prop_flat_map(|width| {
            let batch = (
                proptest::collection::vec(call_or_failure(), width),
                any::<bool>(),
                1usize..100_000,
            );
            (Just(width), proptest::collection::vec(batch, 1..3))
        })
        .prop_map(|(width, bs)| {
            let mut calls = vec![Call::collect(&[]); width];
            for (mut b, shaped, n) in bs {
                if shaped {
                    b[0] = Call::collect_failing(n);
                    b[width - 1] = Call::fast_failure();
                }
                calls.extend(b);
            }
            (width, calls)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Calls a few at a time, some failing fast while others are in flight: their request
    /// HEADERS and their trailers-only answers can both fall in uncaptured middles, inserting
    /// entries that later trailers refer to. Whatever the cuts, no value is ever wrong, no call
    /// is invented or counted twice, and at most `MAX_HELD` spans wait.
    #[test]
    fn pipelined_calls_with_fast_failures_never_get_a_wrong_value(
        (width, calls) in batches(),
        client in any::<bool>(),
        small_frames in any::<bool>(),
        groups in proptest::collection::vec(0usize..5, 1..5),
        limit in prop_oneof![64usize..300, 256usize..4096],
        tail in prop_oneof![Just(0usize), Just(256), 0usize..1024],
    ) {
        let role = if client { Role::Client } else { Role::Server };
        let max_frame = if small_frames { 16_384 } else { 4 << 20 };
        let w = pipelined(&calls, max_frame, width);
        let sys = syscalls(&w, role, &groups, &[]);
        let mut f = Feeder::new(role);
        for (dir, b) in &sys {
            feed_captured(&mut f, &[(*dir, b.clone())], limit, tail);
            prop_assert!(f.p.held.len() <= MAX_HELD);
        }
        let mut all = f.exchanges();
        never_wrong(&all, &calls, role);
        f.p.close(u64::MAX / 2, &mut f.out);
        all.extend(f.exchanges());
        never_wrong(&all, &calls, role);
        prop_assert_eq!(f.p.held.len(), 0);
    }
}

/// Spans do not wait for a request longer than `MAX_TRUST_NS`: the first chunk after that
/// refutes the trust.
#[test]
fn the_trust_expires() {
    let (mut f, _, mut resp) = lost_both_ways(&[3], &|_| Vec::new(), &|_| Vec::new());
    let t3 = resp.block(&[("grpc-status", "0")]);
    f.feed(
        IN,
        &frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 3, &t3),
    );
    assert_eq!(f.exchanges(), []);
    // A PING long after (the feeder's clock moves 100 ns a chunk).
    let ping = frame(PING, 0, 0, &[0; 8]);
    let c = Chunk {
        dir: IN,
        data: &ping,
        tail: &[],
        total_len: ping.len() as u32,
        start_ns: f.seq() * 100 + super::tentative::MAX_TRUST_NS + 1_000,
        end_ns: f.seq() * 100 + super::tentative::MAX_TRUST_NS + 1_010,
        seq: f.seq() + 1,
    };
    f.p.feed(&c, &mut f.out);
    let xs = f.exchanges();
    assert_eq!(ids(&xs), [3]);
    assert!(xs[0].grpc_status.is_none() && xs[0].headers_incomplete);
}

/// What an open stream decoded on trust becomes unknown too when the trust is refuted, though
/// the stream ends only later.
#[test]
fn a_refutation_reaches_streams_still_open() {
    let (mut f, mut req, mut resp) = lost_both_ways(&[3, 5], &|_| Vec::new(), &|_| Vec::new());
    f.feed(IN, &data(5, 10, false));
    let t = resp.block(&[("grpc-status", "0")]);
    f.feed(
        IN,
        &frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 3, &t),
    );
    // A block of stream 5 that does not end it, read off the same old entry.
    f.feed(IN, &frame(HEADERS, FLAG_END_HEADERS, 5, &t));
    assert_eq!(f.p.streams[0].x.grpc_status, Some(0));
    // Stream 9 skips 7.
    f.feed(OUT, &request(&mut req, 9, "Lookup"));
    assert_eq!(ids(&f.exchanges()), [3]);
    f.feed(IN, &frame(DATA, FLAG_END_STREAM, 5, &[]));
    let xs = f.exchanges();
    assert_eq!(ids(&xs), [5]);
    assert!(
        xs[0].grpc_status.is_none() && xs[0].headers_incomplete,
        "{:?}",
        xs[0]
    );
}
