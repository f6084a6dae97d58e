//! Golden tests: real DNS exchanges between `dig` / a Python stub resolver and dnsmasq, captured
//! by `tests/fixtures/dns/capture.py`, replayed through the parser in both roles, under several
//! capture limits and (TCP) read sizes. Expected exchanges come from what the *clients* reported
//! (`NAME.expect`: dig's output), not from parsing the recorded bytes.

use std::fs;
use std::path::PathBuf;

use telegen_dataplane::protocols::dns::{self, DnsExchange, DnsParser, DnsTransport};
use telegen_dataplane::protocols::{detect, Chunk, Direction, L7Record, Protocol, Role};

const SCENARIOS: &[&str] = &[
    "udp_a",
    "udp_aaaa",
    "udp_nxdomain",
    "udp_cname_compressed",
    "udp_txt",
    "udp_parallel",
    "tcp_a",
    "tcp_keepopen",
];
const FULL: usize = usize::MAX;

#[derive(Debug, PartialEq)]
struct Expect {
    id: u16,
    name: String,
    qtype: u16,
    rcode: u8,
    answers: u16,
}

struct Fixture {
    transport: DnsTransport,
    /// (sent by the client?, bytes) in the order the relay saw them.
    segments: Vec<(bool, Vec<u8>)>,
    expect: Vec<Expect>,
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn load(name: &str) -> Fixture {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dns");
    let read = |ext: &str| fs::read_to_string(dir.join(format!("{name}.{ext}"))).unwrap();
    let transport = match read("transport").trim() {
        "udp" => DnsTransport::Udp,
        "tcp" => DnsTransport::Tcp,
        other => panic!("{name}: transport {other}"),
    };
    let segments = read("segments")
        .lines()
        .map(|l| {
            let (tag, hex) = l.split_once(' ').unwrap();
            (tag == "C", unhex(hex))
        })
        .collect();
    let expect = read("expect")
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            Expect {
                id: f[0].parse().unwrap(),
                name: f[1].to_string(),
                qtype: f[2].parse().unwrap(),
                rcode: f[3].parse().unwrap(),
                answers: f[4].parse().unwrap(),
            }
        })
        .collect();
    Fixture {
        transport,
        segments,
        expect,
    }
}

/// Replay the fixture as the traced `role` saw it: TCP segments cut into reads of `split` bytes,
/// each read's capture limited to `cap` bytes (the rest hidden, as the kernel reports it).
fn replay(
    fx: &Fixture,
    role: Role,
    parser_role: Role,
    split: usize,
    cap: usize,
) -> Vec<DnsExchange> {
    let mut p = DnsParser::new(parser_role, fx.transport);
    let mut out = Vec::new();
    let mut seq = 0u64;
    for (from_client, bytes) in &fx.segments {
        let dir = match (role, from_client) {
            (Role::Client, true) | (Role::Server, false) => Direction::Egress,
            _ => Direction::Ingress,
        };
        let piece = if fx.transport == DnsTransport::Udp {
            bytes.len()
        } else {
            split.min(bytes.len())
        };
        for part in bytes.chunks(piece) {
            seq += 1;
            let c = Chunk {
                dir,
                data: &part[..part.len().min(cap)],
                tail: &[],
                total_len: part.len() as u32,
                start_ns: seq * 1000,
                end_ns: seq * 1000 + 100,
                seq,
            };
            p.feed(&c, &mut out);
        }
    }
    assert_eq!(p.parse_errors(), 0);
    assert_eq!(p.unmatched_answers(), 0);
    assert_eq!(p.pending(), 0, "every query answered");
    p.close((seq + 1) * 1000, &mut out);
    out.into_iter()
        .map(|r| match r {
            L7Record::Dns(d) => d,
            other => panic!("DNS parser emitted {other:?}"),
        })
        .collect()
}

fn check(name: &str, fx: &Fixture, got: &[DnsExchange], role: Role, names_visible: bool) {
    let ctx = format!("{name} as {role:?}");
    assert_eq!(got.len(), fx.expect.len(), "{ctx}: {got:#?}");
    for (g, e) in got.iter().zip(&fx.expect) {
        assert_eq!(g.role, role, "{ctx}");
        assert_eq!(g.transport, fx.transport, "{ctx}");
        assert_eq!(g.id, e.id, "{ctx}");
        assert_eq!(g.rcode, Some(e.rcode), "{ctx}");
        assert_eq!(g.answer_count, e.answers, "{ctx}");
        assert!(!g.timed_out, "{ctx}");
        assert!(g.end_ns > g.start_ns, "{ctx}");
        if names_visible {
            assert_eq!(g.question_name.as_deref(), Some(e.name.as_str()), "{ctx}");
            assert_eq!(g.question_type, e.qtype, "{ctx}");
        } else {
            // Not captured: absent, never guessed.
            assert_eq!(
                (g.question_name.as_deref(), g.question_type),
                (None, 0),
                "{ctx}"
            );
        }
    }
}

#[test]
fn golden_exchanges_in_both_roles() {
    for name in SCENARIOS {
        let fx = load(name);
        assert!(!fx.expect.is_empty(), "{name}: fixture has exchanges");
        for role in [Role::Client, Role::Server] {
            for parser_role in [role, Role::Unknown] {
                let got = replay(&fx, role, parser_role, FULL, FULL);
                check(name, &fx, &got, role, true);
            }
        }
    }
}

#[test]
fn golden_tcp_reads_of_every_size() {
    for name in SCENARIOS.iter().filter(|n| n.starts_with("tcp")) {
        let fx = load(name);
        for split in 1..=64 {
            let got = replay(&fx, Role::Client, Role::Client, split, FULL);
            check(name, &fx, &got, Role::Client, true);
        }
    }
}

#[test]
fn golden_under_capture_limits() {
    for name in SCENARIOS {
        let fx = load(name);
        // 64 bytes hold header and question of every fixture; 14 and 20 do not.
        for (cap, visible) in [(64, true), (20, false), (14, false)] {
            for role in [Role::Client, Role::Server] {
                let got = replay(&fx, role, role, FULL, cap);
                check(name, &fx, &got, role, visible);
            }
        }
    }
}

#[test]
fn golden_bytes_are_recognised() {
    for name in SCENARIOS {
        let fx = load(name);
        let first = &fx.segments[0].1;
        match fx.transport {
            DnsTransport::Tcp => assert_eq!(detect(first), Some(Protocol::Dns), "{name}"),
            DnsTransport::Udp => {
                assert_eq!(detect(first), None, "{name}: UDP is selected by port");
                for (_, seg) in &fx.segments {
                    assert!(dns::looks_like_dns(seg), "{name}");
                }
            }
        }
    }
}

#[test]
fn compressed_answer_fixture_really_uses_pointers() {
    // The CNAME answer names point back at the question (0xc00c) and at the CNAME target.
    let fx = load("udp_cname_compressed");
    let answer = &fx.segments[1].1;
    assert!(answer.windows(2).any(|w| w == [0xc0, 0x0c]));
    let mut name = String::new();
    let q_end = dns::read_name(answer, dns::HEADER_LEN, &mut name).unwrap();
    assert_eq!(name, "alias.telegen.test");
    // First answer record: its owner is a pointer to the question.
    let rr = q_end + 4;
    assert_eq!(dns::read_name(answer, rr, &mut name), Ok(rr + 2));
    assert_eq!(name, "alias.telegen.test");
    // Its RDATA (the CNAME target) ends with a pointer to "telegen.test" in the question.
    let rdata = rr + 2 + 10;
    dns::read_name(answer, rdata, &mut name).unwrap();
    assert_eq!(name, "db.telegen.test");
}
