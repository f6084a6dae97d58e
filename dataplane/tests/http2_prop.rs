//! Property tests: any bytes (random, or real captured HTTP/2 traffic mutated), split any way,
//! in any direction, under any capture limit and role (with or without the end of each syscall
//! captured), never make the HTTP/2 parser panic, its memory and open streams stay bounded, and
//! emitted exchanges are well-formed. Also: any re-chunking of real traffic gives the same
//! exchanges.

mod common;

use proptest::prelude::*;
use telegen_dataplane::protocols::http2::{
    H2Exchange, Http2Parser, CONTINUATION, DATA, HEADERS, MAX_STREAMS, PREFACE, RST_STREAM,
    SETTINGS,
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
