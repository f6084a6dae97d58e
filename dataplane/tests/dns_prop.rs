//! Property tests for the DNS parser: any bytes, split any way, in any direction, under any
//! capture limit (and captured end), transport and role, never make it panic and keep its memory and queue bounded;
//! and a model test: well-formed queries answered in any order, over UDP or TCP read in any
//! sizes, are each emitted exactly once with the right fields.

mod common;

use proptest::prelude::*;
use telegen_dataplane::protocols::dns::{
    DnsExchange, DnsParser, DnsTransport, MAX_MESSAGE_PREFIX, MAX_PENDING,
};
use telegen_dataplane::protocols::{Chunk, Direction, L7Record, Role};

/// Two framing buffers (at most doubled by growth) and a full queue of names (255 wire bytes,
/// at most 4 characters each when escaped, capacity at most doubled) with their entries.
const BOUND: usize = 4 * MAX_MESSAGE_PREFIX + MAX_PENDING * (2048 + 256);

fn message(
    id: u16,
    response: bool,
    rcode: u8,
    name: &[String],
    qtype: u16,
    answers: u16,
) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.push(if response { 0x81 } else { 0x01 });
    m.push(if response { 0x80 | rcode } else { 0 });
    m.extend_from_slice(&[0, 1]);
    m.extend_from_slice(&(if response { answers } else { 0 }).to_be_bytes());
    m.extend_from_slice(&[0, 0, 0, 0]);
    for l in name {
        m.push(l.len() as u8);
        m.extend_from_slice(l.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&[0, 1]);
    for _ in 0..if response { answers } else { 0 } {
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 9, 0, 4, 1, 2, 3, 4]);
    }
    m
}

/// Pieces that steer random input into interesting states.
fn piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        (any::<u16>(), any::<bool>(), 0u8..16, 1u16..300).prop_map(|(id, r, rc, t)| message(
            id % 4,
            r,
            rc,
            &["a".into(), "b".into()],
            t,
            2
        )),
        Just(vec![0xc0, 0x0c]),
        Just(vec![0xc0, 0xff]),
        Just(vec![0x3f]),
        Just(vec![0x00, 0x0c]),
        Just(vec![0xff, 0xff]),
        (1usize..3000).prop_map(|n| vec![0x01; n]),
    ]
}

fn chunk_spec() -> impl Strategy<Value = (bool, Vec<u8>, u32)> {
    (
        any::<bool>(),
        proptest::collection::vec(piece(), 0..5).prop_map(|v| v.concat()),
        prop_oneof![Just(0u32), 0u32..1000, Just(u32::MAX)],
    )
}

fn label() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9-]{1,20}"
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_and_stays_bounded(
        role in prop_oneof![Just(Role::Server), Just(Role::Client), Just(Role::Unknown)],
        tcp in any::<bool>(),
        limit in prop_oneof![Just(16usize), Just(64), Just(usize::MAX)],
        tail in prop_oneof![Just(0usize), Just(256), 1usize..600],
        chunks in proptest::collection::vec(chunk_spec(), 0..60),
    ) {
        let transport = if tcp { DnsTransport::Tcp } else { DnsTransport::Udp };
        let mut p = DnsParser::new(role, transport);
        let mut out = Vec::new();
        for (seq, (ingress, data, extra)) in chunks.iter().enumerate() {
            let c = common::tail_chunk(seq, *ingress, data, *extra, limit, tail, 10);
            p.feed(&c, &mut out);
            prop_assert!(p.buffered_bytes() <= BOUND, "{} > {BOUND}", p.buffered_bytes());
            prop_assert!(p.pending() <= MAX_PENDING);
            if seq % 7 == 6 {
                p.expire(seq as u64 * 10, 30, &mut out);
            }
        }
        p.close(u64::MAX, &mut out);
        prop_assert_eq!(p.pending(), 0);
        for r in &out {
            let L7Record::Dns(d) = r else { panic!("not DNS: {r:?}") };
            prop_assert!(d.role != Role::Unknown);
            prop_assert!(d.end_ns >= d.start_ns);
            prop_assert_eq!(d.rcode.is_none(), d.timed_out);
            prop_assert!(d.question_name.as_ref().is_none_or(|n| n.len() <= 4 * 255));
        }
    }

    #[test]
    fn answered_queries_pair_exactly_once(
        tcp in any::<bool>(),
        server in any::<bool>(),
        queries in proptest::collection::vec(
            (any::<u16>(), proptest::collection::vec(label(), 1..4), 1u16..300, 0u8..6, 0u16..5),
            1..20,
        ),
        order in any::<proptest::sample::Index>(),
        split in 1usize..80,
    ) {
        // Distinct (id, question) pairs, as a resolver keeps them (names compare without case).
        let key = |q: &(u16, Vec<String>, u16, u8, u16)| (q.0, q.1.join(".").to_lowercase(), q.2);
        let mut qs = queries;
        qs.sort_by_key(key);
        qs.dedup_by(|a, b| key(a) == key(b));
        let transport = if tcp { DnsTransport::Tcp } else { DnsTransport::Udp };
        let role = if server { Role::Server } else { Role::Client };
        let (qdir, adir) = if server {
            (Direction::Ingress, Direction::Egress)
        } else {
            (Direction::Egress, Direction::Ingress)
        };
        let mut p = DnsParser::new(role, transport);
        let mut out = Vec::new();
        let mut seq = 0u64;
        let mut send = |p: &mut DnsParser, dir, m: Vec<u8>, out: &mut Vec<L7Record>| {
            let bytes = if tcp {
                [(m.len() as u16).to_be_bytes().to_vec(), m].concat()
            } else {
                m
            };
            let step = if tcp { split } else { bytes.len() };
            for part in bytes.chunks(step) {
                seq += 1;
                p.feed(&Chunk { dir, data: part, tail: &[], total_len: part.len() as u32,
                    start_ns: seq * 10, end_ns: seq * 10 + 5, seq }, out);
            }
        };
        for (id, name, qtype, _, _) in &qs {
            send(&mut p, qdir, message(*id, false, 0, name, *qtype, 0), &mut out);
        }
        // Answers in a rotated order.
        let k = order.index(qs.len());
        for (id, name, qtype, rcode, answers) in qs[k..].iter().chain(&qs[..k]) {
            send(&mut p, adir, message(*id, true, *rcode, name, *qtype, *answers), &mut out);
        }
        prop_assert_eq!(p.parse_errors(), 0);
        prop_assert_eq!(p.pending(), 0);
        let got: Vec<DnsExchange> = out.into_iter().map(|r| match r {
            L7Record::Dns(d) => d,
            other => panic!("{other:?}"),
        }).collect();
        prop_assert_eq!(got.len(), qs.len());
        for (g, (id, name, qtype, rcode, answers)) in got.iter().zip(qs[k..].iter().chain(&qs[..k])) {
            prop_assert_eq!(g.id, *id);
            prop_assert_eq!(g.question_name.clone(), Some(name.join(".").to_lowercase()));
            prop_assert_eq!(g.question_type, *qtype);
            prop_assert_eq!(g.rcode, Some(*rcode));
            prop_assert_eq!(g.answer_count, *answers);
            prop_assert_eq!(g.role, role);
            prop_assert!(!g.timed_out);
        }
    }
}
