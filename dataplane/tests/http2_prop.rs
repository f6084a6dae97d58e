//! Property tests: any bytes (random, or real captured HTTP/2 traffic mutated), split any way,
//! in any direction, under any capture limit and role (with or without the end of each syscall
//! captured), never make the HTTP/2 parser panic, its memory and open streams stay bounded, and
//! emitted exchanges are well-formed. Also: any re-chunking of real traffic gives the same
//! exchanges; capturing only the start and end of real reads never invents a value; and gRPC
//! answers far larger than the capture, written in one syscall, end with their trailers when
//! the end of the syscall is captured.

mod common;

use proptest::prelude::*;
use telegen_dataplane::protocols::http2::{
    H2Exchange, Http2Parser, CONTINUATION, DATA, FLAG_END_HEADERS, FLAG_END_STREAM, HEADERS,
    MAX_STREAMS, PREFACE, RST_STREAM, SETTINGS,
};
use telegen_dataplane::protocols::{Chunk, Direction, L7Record, Role};

/// Generous bound on `buffered_bytes` (see the fuzz target): buffers, two capped HPACK tables,
/// MAX_STREAMS streams with capped strings.
const BOUND: usize = 4 << 20;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    f.extend([kind, flags]);
    f.extend(stream.to_be_bytes());
    f.extend(payload);
    f
}

/// Pieces that steer random input into the parser's interesting states.
fn piece() -> impl Strategy<Value = Vec<u8>> {
    let hpack = proptest::collection::vec(
        prop_oneof![
            Just(vec![0x82u8]),
            Just(vec![0x83]),
            Just(vec![0x88]),
            Just(vec![0x8d]),
            Just(vec![0xbe]),
            Just(vec![0xc5]),
            Just(vec![0x40, 1, b'a', 1, b'b']),
            Just(vec![0x44, 2, b'/', b'x']),
            Just(vec![0x3f, 0xe1, 0x1f]),
            Just(vec![0x20]),
            Just(vec![
                0x00, 0x0b, b'g', b'r', b'p', b'c', b'-', b's', b't', b'a', b't', b'u', b's', 1,
                b'3'
            ]),
            Just(vec![
                0x41, 0x8c, 0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff
            ]),
            proptest::collection::vec(any::<u8>(), 0..8),
        ],
        0..8,
    )
    .prop_map(|v| v.concat());
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        Just(PREFACE.to_vec()),
        Just(frame(SETTINGS, 0, 0, &[0, 1, 0, 0, 0x10, 0])),
        Just(frame(SETTINGS, 1, 0, &[])),
        (0u32..12, any::<u8>(), hpack.clone()).prop_map(|(s, fl, b)| frame(
            HEADERS,
            fl & 0x2d,
            s,
            &b
        )),
        (0u32..12, hpack).prop_map(|(s, b)| frame(CONTINUATION, 4, s, &b)),
        (0u32..12, any::<bool>(), 0usize..40_000).prop_map(|(s, e, n)| frame(
            DATA,
            u8::from(e),
            s,
            &vec![0; n]
        )),
        (0u32..12).prop_map(|s| frame(RST_STREAM, 0, s, &[0, 0, 0, 8])),
    ]
}

fn chunk_spec() -> impl Strategy<Value = (bool, Vec<u8>, u32)> {
    (
        any::<bool>(),
        proptest::collection::vec(piece(), 0..6).prop_map(|v| v.concat()),
        prop_oneof![Just(0u32), Just(0u32), 0u32..100_000, Just(u32::MAX)],
    )
}

fn check(p: &Http2Parser, out: &mut Vec<L7Record>) -> Result<Vec<H2Exchange>, TestCaseError> {
    prop_assert!(p.open_streams() <= MAX_STREAMS);
    prop_assert!(p.buffered_bytes() <= BOUND, "{}", p.buffered_bytes());
    check_records(out)
}

/// The exchanges in `out` (drained), each well-formed.
fn check_records(out: &mut Vec<L7Record>) -> Result<Vec<H2Exchange>, TestCaseError> {
    let mut xs = Vec::new();
    for r in out.drain(..) {
        let L7Record::Http2(x) = r else {
            return Err(TestCaseError::fail(format!("not HTTP/2: {r:?}")));
        };
        prop_assert!(x.role != Role::Unknown);
        prop_assert!(x.end_ns >= x.start_ns);
        prop_assert_eq!(x.stream_id % 2, 1);
        xs.push(x);
    }
    Ok(xs)
}

fn fixture(name: &str) -> Vec<(bool, Vec<u8>)> {
    common::segments("http2", name)
}

/// HPACK literal field; `index` adds it to the dynamic table.
fn lit(index: bool, name: &str, value: &str) -> Vec<u8> {
    let mut b = vec![if index { 0x40 } else { 0x00 }, name.len() as u8];
    b.extend(name.as_bytes());
    b.push(value.len() as u8);
    b.extend(value.as_bytes());
    b
}

/// A gRPC call as grpcio writes it: the request (HEADERS, a 6-byte DATA frame) in one syscall,
/// the answer (HEADERS, one DATA frame of `n` bytes, trailers) in another. The first answer
/// inserts content-type and grpc-status into the dynamic table, later ones refer to them.
/// Returns (request, answer, bytes of the answer before its DATA payload, trailers frame size).
fn grpc_call(stream: u32, n: usize, first: bool) -> (Vec<u8>, Vec<u8>, usize, usize) {
    let mut h = vec![0x83, 0x86];
    h.extend(lit(false, ":path", "/demo.v1.Echo/Big"));
    h.extend(lit(false, "content-type", "application/grpc"));
    let mut req = frame(HEADERS, FLAG_END_HEADERS, stream, &h);
    req.extend(frame(DATA, FLAG_END_STREAM, stream, &[0, 0, 0, 0, 1, b'x']));
    let mut h = vec![0x88];
    if first {
        h.extend(lit(true, "content-type", "application/grpc"));
    } else {
        h.push(0xbf);
    }
    let mut answer = frame(HEADERS, FLAG_END_HEADERS, stream, &h);
    let before_payload = answer.len() + 9;
    answer.extend(frame(DATA, 0, stream, &vec![7; n]));
    let t = if first {
        lit(true, "grpc-status", "0")
    } else {
        vec![0xbe]
    };
    let trailers = frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, stream, &t);
    let trailers_len = trailers.len();
    answer.extend(trailers);
    (req, answer, before_payload, trailers_len)
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Role::Server), Just(Role::Client), Just(Role::Unknown)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_and_stays_bounded(
        role in role(),
        limit in prop_oneof![Just(16usize), Just(1024), Just(usize::MAX)],
        tail in prop_oneof![Just(0usize), Just(256), 1usize..600],
        chunks in proptest::collection::vec(chunk_spec(), 0..40),
    ) {
        let mut p = Http2Parser::new(role);
        let mut out = Vec::new();
        for (seq, (ingress, data, extra)) in chunks.iter().enumerate() {
            let c = common::tail_chunk(seq, *ingress, data, *extra, limit, tail, 100);
            p.feed(&c, &mut out);
            check(&p, &mut out)?;
        }
        p.close(u64::MAX, &mut out);
        prop_assert_eq!(p.open_streams(), 0);
        check(&p, &mut out)?;
    }

    #[test]
    fn mutated_real_traffic_never_panics(
        name in prop_oneof![Just("grpc_calls"), Just("nginx_multiplexed"), Just("nginx_curl_404")],
        role in role(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        piece in 1usize..300,
    ) {
        let segs = fixture(name);
        let mut flat: Vec<(bool, u8)> =
            segs.iter().flat_map(|(c, b)| b.iter().map(move |&x| (*c, x))).collect();
        for (i, x) in &flips {
            let i = i.index(flat.len());
            flat[i].1 ^= x | 1;
        }
        let mut p = Http2Parser::new(role);
        let mut out = Vec::new();
        let mut seq = 0;
        // Re-assemble the mutated segments in their original order and sizes, then re-chunk.
        let mut at = 0;
        for (c, bytes) in &segs {
            let data: Vec<u8> = flat[at..at + bytes.len()].iter().map(|(_, b)| *b).collect();
            at += bytes.len();
            for part in data.chunks(piece) {
                seq += 1;
                let dir = if *c { Direction::Ingress } else { Direction::Egress };
                let ch = Chunk {
                    dir,
                    data: part,
                    tail: &[],
                    total_len: part.len() as u32,
                    start_ns: seq * 10,
                    end_ns: seq * 10 + 5,
                    seq,
                };
                p.feed(&ch, &mut out);
                check(&p, &mut out)?;
            }
        }
        p.close(u64::MAX, &mut out);
        check(&p, &mut out)?;
    }

    #[test]
    fn large_grpc_answers_end_with_their_trailers_from_the_tail(
        client in any::<bool>(),
        calls in proptest::collection::vec(
            (0usize..70_000, any::<prop::sample::Index>(), any::<prop::sample::Index>()),
            1..6,
        ),
    ) {
        // Server: requests are read (ingress), answers written; client: the other way round.
        let (req_dir, resp_dir, role) = if client {
            (Direction::Egress, Direction::Ingress, Role::Client)
        } else {
            (Direction::Ingress, Direction::Egress, Role::Server)
        };
        let mut p = Http2Parser::new(role);
        let mut out = Vec::new();
        let mut seq = 0u64;
        let mut feed = |dir, data: &[u8], total: usize, tail: &[u8], out: &mut Vec<L7Record>| {
            seq += 1;
            let c = Chunk {
                dir,
                data,
                tail,
                total_len: total as u32,
                start_ns: seq * 10,
                end_ns: seq * 10 + 5,
                seq,
            };
            p.feed(&c, out);
        };
        feed(req_dir, &PREFACE[..], 24, &[], &mut out);
        for (i, (n, head, tail)) in calls.iter().enumerate() {
            let stream = 2 * i as u32 + 1;
            let (req, answer, before, tlen) = grpc_call(stream, *n, i == 0);
            feed(req_dir, &req, req.len(), &[], &mut out);
            // Any capture whose gap lies inside the DATA payload: the prefix holds at least
            // the DATA frame header, the tail at least the trailers frame.
            let head = before + head.index(*n + 1);
            let tail = tlen + tail.index(answer.len() - head - tlen + 1);
            let tail_bytes = &answer[answer.len() - tail..];
            feed(resp_dir, &answer[..head], answer.len(), tail_bytes, &mut out);
            let xs = check_records(&mut out)?;
            prop_assert_eq!(xs.len(), 1, "call {} ({} bytes) ended", i, n);
            let x = &xs[0];
            prop_assert_eq!(x.stream_id, stream);
            prop_assert_eq!((x.status, x.grpc_status), (Some(200), Some(0)));
            prop_assert_eq!(x.response_body_bytes, *n as u64);
            prop_assert!(!x.partial && !x.headers_incomplete, "{:?}", x);
        }
        prop_assert_eq!(p.parse_errors(), 0);
        prop_assert_eq!(p.open_streams(), 0);
    }

    #[test]
    fn start_and_end_of_real_reads_never_invent_values(
        name in prop_oneof![Just("grpc_calls"), Just("nginx_multiplexed"), Just("nginx_curl_404")],
        limit in 1usize..400,
        tail in 0usize..300,
    ) {
        let segs = fixture(name);
        let replay = |limit: usize, tail: usize| {
            let mut p = Http2Parser::new(Role::Unknown);
            let mut out = Vec::new();
            for (i, (c, bytes)) in segs.iter().enumerate() {
                let ch = common::tail_chunk(i, *c, bytes, 0, limit, tail, 10);
                p.feed(&ch, &mut out);
            }
            p.close(u64::MAX, &mut out);
            let mut xs: Vec<H2Exchange> = out.into_iter().filter_map(|r| match r {
                L7Record::Http2(x) => Some(x),
                _ => None,
            }).collect();
            xs.sort_by_key(|x| x.stream_id);
            xs
        };
        let whole = replay(usize::MAX, 0);
        for x in replay(limit, tail) {
            let w = whole.iter().find(|w| w.stream_id == x.stream_id);
            prop_assert!(w.is_some(), "stream {} invented", x.stream_id);
            let w = w.unwrap();
            fn same<T: PartialEq>(a: &Option<T>, b: &Option<T>) -> bool {
                a.is_none() || a == b
            }
            prop_assert!(same(&x.method, &w.method) && same(&x.path, &w.path), "{:?} vs {:?}", x, w);
            prop_assert!(same(&x.authority, &w.authority) && same(&x.scheme, &w.scheme));
            prop_assert!(same(&x.content_type, &w.content_type) && same(&x.grpc_message, &w.grpc_message));
            prop_assert!(x.status.is_none() || x.status == w.status, "{:?} vs {:?}", x, w);
            prop_assert!(x.grpc_status.is_none() || x.grpc_status == w.grpc_status, "{:?} vs {:?}", x, w);
        }
    }

    #[test]
    fn any_rechunking_of_real_traffic_gives_the_same_exchanges(
        name in prop_oneof![Just("grpc_calls"), Just("nginx_multiplexed")],
        cuts in proptest::collection::vec(1usize..200, 1..64),
    ) {
        let segs = fixture(name);
        let replay = |cuts: &[usize]| {
            let mut p = Http2Parser::new(Role::Unknown);
            let mut out = Vec::new();
            let mut k = 0;
            for (c, bytes) in &segs {
                let mut rest = &bytes[..];
                while !rest.is_empty() {
                    let n = cuts.get(k % cuts.len().max(1)).copied().unwrap_or(usize::MAX);
                    k += 1;
                    let (part, next) = rest.split_at(n.min(rest.len()));
                    rest = next;
                    let dir = if *c { Direction::Ingress } else { Direction::Egress };
                    let ch = Chunk {
                        dir,
                        data: part,
                        tail: &[],
                        total_len: part.len() as u32,
                        start_ns: 0,
                        end_ns: 0,
                        seq: 0,
                    };
                    p.feed(&ch, &mut out);
                }
            }
            p.close(0, &mut out);
            let mut xs: Vec<_> = out.into_iter().map(|r| match r {
                L7Record::Http2(x) => x,
                other => panic!("{other:?}"),
            }).collect();
            xs.sort_by_key(|x| x.stream_id);
            (xs, p.parse_errors())
        };
        let whole = replay(&[]);
        let (xs, errors) = replay(&cuts);
        prop_assert_eq!(errors, 0);
        prop_assert_eq!(xs, whole.0);
    }
}
