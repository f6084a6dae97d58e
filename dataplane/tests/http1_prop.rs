//! Property tests: any bytes, split any way, in any direction, under any capture limit (with or
//! without the end of each syscall captured) and role, never make the HTTP/1.x parser panic, and
//! its buffered memory and queue stay bounded.

mod common;

use proptest::prelude::*;
use telegen_dataplane::protocols::http1::{Http1Parser, MAX_HEAD, MAX_PENDING};
use telegen_dataplane::protocols::{Chunk, Direction, L7Record, Role};

/// Upper bound on `buffered_bytes`: two head buffers plus a full queue of requests whose strings
/// are capped (target 2 KiB, host 256 B, traceparent 128 B, each at most 3x after lossy UTF-8).
const BOUND: usize = 2 * MAX_HEAD + MAX_PENDING * (3 * (16 + 2048 + 256 + 128) + 256) + 8192;

/// Pieces that steer random input into the parser's interesting states.
fn piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        Just(b"GET /a HTTP/1.1\r\n".to_vec()),
        Just(b"POST /p?q=1 HTTP/1.0\r\n".to_vec()),
        Just(b"HEAD / HTTP/1.1\r\n".to_vec()),
        Just(b"HTTP/1.1 200 OK\r\n".to_vec()),
        Just(b"HTTP/1.1 101 Switching\r\n".to_vec()),
        Just(b"HTTP/1.0 100 Continue\r\n".to_vec()),
        Just(b"HTTP/1.1 204 No\r\n".to_vec()),
        Just(b"Content-Length: 5\r\n".to_vec()),
        Just(b"Content-Length: 18446744073709551616\r\n".to_vec()),
        Just(b"Content-Length: -3\r\n".to_vec()),
        Just(b"Transfer-Encoding: chunked\r\n".to_vec()),
        Just(b"Host: h\r\ntraceparent: 00-aa-bb-01\r\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"5\r\nhello\r\n".to_vec()),
        Just(b"fffffffffffffffffff\r\n".to_vec()),
        Just(b"0\r\n\r\n".to_vec()),
        (1usize..20_000).prop_map(|n| vec![b'x'; n]),
    ]
}

fn chunk_spec() -> impl Strategy<Value = (bool, Vec<u8>, u32)> {
    (
        any::<bool>(),
        proptest::collection::vec(piece(), 0..6).prop_map(|v| v.concat()),
        prop_oneof![Just(0u32), 0u32..100_000, Just(u32::MAX)],
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_and_stays_bounded(
        role in prop_oneof![Just(Role::Server), Just(Role::Client), Just(Role::Unknown)],
        limit in prop_oneof![Just(64usize), Just(1024), Just(usize::MAX)],
        tail in prop_oneof![Just(0usize), Just(256), 1usize..600],
        chunks in proptest::collection::vec(chunk_spec(), 0..40),
    ) {
        let mut p = Http1Parser::new(role);
        let mut out = Vec::new();
        for (seq, (ingress, data, extra)) in chunks.iter().enumerate() {
            let c = common::tail_chunk(seq, *ingress, data, *extra, limit, tail, 10);
            p.feed(&c, &mut out);
            prop_assert!(p.buffered_bytes() <= BOUND, "{} > {BOUND}", p.buffered_bytes());
            prop_assert!(p.pending() <= MAX_PENDING);
        }
        p.close(u64::MAX, &mut out);
        prop_assert_eq!(p.pending(), 0);
        for rec in &out {
            let L7Record::Http(t) = rec else {
                panic!("not HTTP/1: {rec:?}");
            };
            prop_assert!(t.role != Role::Unknown);
            prop_assert!(t.end_ns >= t.start_ns);
            prop_assert!(t.version == "1.0" || t.version == "1.1");
        }
    }

    #[test]
    fn arbitrary_bytes_split_anywhere(
        bytes in proptest::collection::vec(any::<u8>(), 0..4096),
        cuts in proptest::collection::vec(any::<(u16, bool)>(), 0..32),
    ) {
        for role in [Role::Server, Role::Client, Role::Unknown] {
            let mut p = Http1Parser::new(role);
            let mut out = Vec::new();
            let mut rest = &bytes[..];
            for (i, (cut, ingress)) in cuts.iter().enumerate() {
                let (a, b) = rest.split_at((*cut as usize).min(rest.len()));
                rest = b;
                let dir = if *ingress { Direction::Ingress } else { Direction::Egress };
                let c = Chunk { dir, data: a, tail: &[], total_len: a.len() as u32, start_ns: 0, end_ns: 1, seq: i as u64 };
                p.feed(&c, &mut out);
                prop_assert!(p.buffered_bytes() <= BOUND);
            }
            let c = Chunk { dir: Direction::Ingress, data: rest, tail: &[], total_len: 0, start_ns: 0, end_ns: 1, seq: 99 };
            p.feed(&c, &mut out);
            p.close(2, &mut out);
        }
    }
}
