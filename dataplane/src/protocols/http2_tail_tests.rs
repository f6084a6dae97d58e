//! Chunks that carry the end of a syscall (`Chunk::tail`) as well as its start: the kernel
//! copies both when a write or read moved more than the capture size.

use super::tests::{data, frame, lit, Feeder, IN, OUT};
use super::*;

/// A gRPC request on `stream` (POST /demo.v1.Echo/Big, a 1-byte message), ended.
fn grpc_request(stream: u32) -> Vec<u8> {
    let mut h = vec![0x83, 0x86];
    h.extend(lit(false, ":path", "/demo.v1.Echo/Big"));
    h.extend(lit(false, "content-type", "application/grpc"));
    let mut w = frame(HEADERS, FLAG_END_HEADERS, stream, &h);
    w.extend(frame(DATA, FLAG_END_STREAM, stream, &[0, 0, 0, 0, 1, b'x']));
    w
}

/// The trailers block: the first answer on a connection inserts `grpc-status: 0` into the
/// dynamic table (index 62 from then on), later ones refer to it, as grpcio does.
fn trailers(stream: u32, first: bool) -> Vec<u8> {
    let t = if first {
        lit(true, "grpc-status", "0")
    } else {
        vec![0xbe]
    };
    frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, stream, &t)
}

/// A gRPC answer the way grpcio writes it, in one syscall: HEADERS, one DATA frame of `n`
/// bytes, trailers. The first answer inserts `content-type` (index 63 after the trailers).
fn grpc_answer(stream: u32, n: usize, first: bool) -> Vec<u8> {
    let mut h = vec![0x88];
    if first {
        h.extend(lit(true, "content-type", "application/grpc"));
    } else {
        h.push(0xbf);
    }
    let mut w = frame(HEADERS, FLAG_END_HEADERS, stream, &h);
    w.extend(data(stream, n, false));
    w.extend(trailers(stream, first));
    w
}

/// Feed `w` as one syscall of which the kernel copied the first `head` and last `tail` bytes.
fn feed_cut(f: &mut Feeder, dir: Direction, w: &[u8], head: usize, tail: usize) {
    assert!(head + tail <= w.len());
    f.feed_tail(dir, &w[..head], w.len(), &w[w.len() - tail..]);
}

/// A connection of `role` (the traced side) after the preface: (request, answer) directions.
fn connection(role: Role) -> (Feeder, Direction, Direction) {
    let mut f = Feeder::new(role);
    let (req, resp) = if role == Role::Client {
        (OUT, IN)
    } else {
        (IN, OUT)
    };
    f.feed(req, PREFACE);
    (f, req, resp)
}

#[test]
fn trailers_after_a_64k_data_frame_are_read_from_the_tail() {
    for role in [Role::Server, Role::Client] {
        let (mut f, req, resp) = connection(role);
        for (i, stream) in [1u32, 3, 5].into_iter().enumerate() {
            f.feed(req, &grpc_request(stream));
            let w = grpc_answer(stream, 64 * 1024, i == 0);
            feed_cut(&mut f, resp, &w, 1024, 256);
            let x = f.exchanges();
            assert_eq!(
                x.len(),
                1,
                "{role:?} stream {stream}: ended by the trailers"
            );
            let x = &x[0];
            assert_eq!(x.stream_id, stream);
            assert_eq!(x.path.as_deref(), Some("/demo.v1.Echo/Big"));
            assert_eq!(x.status, Some(200));
            assert_eq!(x.content_type.as_deref(), Some("application/grpc"));
            // Later trailers refer to the dynamic table: HPACK stayed in step.
            assert_eq!(x.grpc_status, Some(0), "{role:?} stream {stream}");
            assert_eq!((x.request_body_bytes, x.response_body_bytes), (6, 65536));
            assert!(!x.partial && !x.headers_incomplete, "{x:?}");
            assert_eq!(x.end_ns, f_seq_end(&f));
        }
        assert_eq!(f.p.parse_errors(), 0);
        assert_eq!(f.p.open_streams(), 0);
    }
}

/// Exit time of the last chunk fed (the Feeder stamps chunk n with end n*100+10).
fn f_seq_end(f: &Feeder) -> u64 {
    f.seq() * 100 + 10
}

#[test]
fn a_tail_that_starts_on_the_trailers_frame_or_right_after_the_prefix() {
    let (mut f, req, resp) = connection(Role::Server);
    f.feed(req, &grpc_request(1));
    let w = grpc_answer(1, 5000, true);
    // The gap ends exactly where the DATA frame does: the tail is the whole trailers frame.
    let t = trailers(1, true).len();
    feed_cut(&mut f, resp, &w, 100, t);
    let x = f.exchanges();
    assert_eq!(x.len(), 1);
    assert_eq!(x[0].grpc_status, Some(0));
    assert_eq!(x[0].response_body_bytes, 5000);
    assert!(!x[0].partial);
    // No gap at all: the tail goes on where the prefix stopped.
    f.feed(req, &grpc_request(3));
    let w = grpc_answer(3, 700, false);
    feed_cut(&mut f, resp, &w, 500, w.len() - 500);
    let x = f.exchanges();
    assert_eq!(x.len(), 1);
    assert_eq!((x[0].grpc_status, x[0].response_body_bytes), (Some(0), 700));
    assert!(!x[0].partial && !x[0].headers_incomplete);
    assert_eq!(f.p.parse_errors(), 0);
}

#[test]
fn a_gap_reaching_into_the_trailers_frame_loses_the_direction_without_guessing() {
    let (mut f, req, resp) = connection(Role::Server);
    f.feed(req, &grpc_request(1));
    f.feed(resp, &grpc_answer(1, 10, true));
    assert_eq!(f.exchanges()[0].grpc_status, Some(0));
    // The tail holds only the last byte of the trailers frame: its header is in the gap.
    f.feed(req, &grpc_request(3));
    let w = grpc_answer(3, 5000, false);
    feed_cut(&mut f, resp, &w, 100, 1);
    assert!(f.exchanges().is_empty(), "the end of stream 3 was not seen");
    // The next answer starts a chunk: framing resyncs, but the HPACK entries inserted before
    // the loss are unknown: its content-type and grpc-status references are not guessed.
    f.feed(req, &grpc_request(5));
    f.feed(resp, &grpc_answer(5, 10, false));
    let x = f.exchanges();
    assert_eq!(x.len(), 1);
    assert_eq!(x[0].stream_id, 5);
    assert_eq!((x[0].status, x[0].grpc_status), (Some(200), None));
    assert!(x[0].headers_incomplete);
    f.p.close(99_999, &mut f.out);
    let x = f.exchanges();
    assert_eq!(x.len(), 1);
    assert_eq!((x[0].stream_id, x[0].grpc_status), (3, None));
    assert!(x[0].partial);
}

#[test]
fn a_gap_across_frames_ignores_a_tail_that_looks_like_trailers() {
    let (mut f, req, resp) = connection(Role::Server);
    f.feed(req, &grpc_request(1));
    // Several 16 KiB DATA frames in one write (nginx): where they end is unknown. The last
    // bytes of the body happen to read like a trailers frame saying grpc-status 3.
    let fake = frame(
        HEADERS,
        FLAG_END_HEADERS | FLAG_END_STREAM,
        1,
        &lit(false, "grpc-status", "3"),
    );
    let mut w = frame(HEADERS, FLAG_END_HEADERS, 1, &[0x88]);
    for i in 0..3 {
        w.extend(data(1, 16384, false));
        if i == 2 {
            let n = w.len();
            w[n - fake.len()..].copy_from_slice(&fake);
        }
    }
    feed_cut(&mut f, resp, &w, 1024, 256);
    assert!(f.exchanges().is_empty());
    f.p.close(99_999, &mut f.out);
    let x = f.exchanges();
    assert_eq!(x.len(), 1);
    assert_eq!(
        x[0].grpc_status, None,
        "never read from bytes of unknown framing"
    );
    assert!(x[0].partial);
}

/// Why trailers at the end of a read whose framing was lost are not read: the twin of the
/// previous test, where the last frame really is the trailers (the third DATA frame is shorter
/// by as much), moves exactly the same bytes where the kernel copies them (start, end, total
/// length). No parser can tell the two apart, and in the other one these bytes are a message's:
/// reading them would give a wrong status there. Here the call stays open until something
/// proves its end, and ends at close, partial, without a status: never a wrong one.
#[test]
fn known_limit_real_trailers_in_the_tail_of_a_lost_read_are_not_read() {
    let t = frame(
        HEADERS,
        FLAG_END_HEADERS | FLAG_END_STREAM,
        1,
        &lit(false, "grpc-status", "3"),
    );
    let mut fake = frame(HEADERS, FLAG_END_HEADERS, 1, &[0x88]);
    let mut real = fake.clone();
    for i in 0..3 {
        fake.extend(data(1, 16384, false));
        real.extend(data(1, if i == 2 { 16384 - t.len() } else { 16384 }, false));
    }
    let n = fake.len();
    fake[n - t.len()..].copy_from_slice(&t);
    real.extend(&t);
    assert_eq!(fake.len(), real.len());
    assert_eq!(fake[..1024], real[..1024]);
    assert_eq!(fake[n - 256..], real[n - 256..]);
    let (mut f, req, resp) = connection(Role::Server);
    f.feed(req, &grpc_request(1));
    feed_cut(&mut f, resp, &real, 1024, 256);
    assert!(f.exchanges().is_empty(), "not read from the tail");
    f.p.close(99_999, &mut f.out);
    let x = f.exchanges();
    assert_eq!((x.len(), x[0].grpc_status), (1, None));
    assert!(x[0].partial);
}

#[test]
fn a_header_block_cut_by_the_gap_resets_hpack_and_the_tail_still_ends_the_stream() {
    let (mut f, req, resp) = connection(Role::Server);
    f.feed(req, &grpc_request(1));
    // A response header block of 2 KB: the gap lies inside it, the tail holds its end, the DATA
    // frame and the trailers.
    let mut h = vec![0x88];
    h.extend(lit(true, "content-type", "application/grpc"));
    let big = "v".repeat(2000);
    let mut b = vec![0x00, 5];
    b.extend(b"x-big");
    b.extend([
        0x7f,
        (2000 - 127) as u8 & 0x7f | 0x80,
        ((2000 - 127) >> 7) as u8,
    ]);
    b.extend(big.as_bytes());
    h.extend(b);
    let mut w = frame(HEADERS, FLAG_END_HEADERS, 1, &h);
    w.extend(data(1, 10, false));
    w.extend(trailers(1, true));
    feed_cut(&mut f, resp, &w, 1024, 256);
    let x = f.exchanges();
    assert_eq!(x.len(), 1);
    // The block was not decoded (its :status is not guessed); the trailers were (a literal).
    assert_eq!((x[0].status, x[0].grpc_status), (None, Some(0)));
    assert_eq!(x[0].response_body_bytes, 10);
    assert!(x[0].headers_incomplete && !x[0].partial);
    // content-type went into the table inside the lost block: a later reference is unknown
    // (headers incomplete), while grpc-status (inserted by the trailers, after the loss) is
    // trusted.
    f.feed(req, &grpc_request(3));
    let mut h = vec![0x88, 0xbf];
    h.extend(lit(false, "x-n", "2"));
    let mut w = frame(HEADERS, FLAG_END_HEADERS, 3, &h);
    w.extend(trailers(3, false));
    f.feed(resp, &w);
    let x = f.exchanges();
    assert_eq!(x.len(), 1);
    assert_eq!((x[0].status, x[0].grpc_status), (Some(200), Some(0)));
    assert!(x[0].headers_incomplete);
}

#[test]
fn tails_that_do_not_add_up_are_ignored() {
    let (mut f, req, resp) = connection(Role::Server);
    f.feed(req, &grpc_request(1));
    let w = grpc_answer(1, 5000, true);
    // A tail longer than what the syscall moved beyond the prefix: not trusted.
    f.feed_tail(resp, &w[..100], 200, &w[w.len() - 150..]);
    assert!(f.exchanges().is_empty());
    // Garbage tails, empty prefixes, totals below the prefix: no panic, no exchange invented.
    for (head, total, tail) in [
        (
            0usize,
            10usize,
            &b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"[..],
        ),
        (9, 3, &b"abc"[..]),
        (0, u32::MAX as usize, &[0u8; 9][..]),
    ] {
        f.feed_tail(resp, &w[..head], total, tail);
    }
    f.p.close(99_999, &mut f.out);
    assert!(f.exchanges().iter().all(|x| x.grpc_status.is_none()));
}
