//! Golden tests: real HTTP/1.x exchanges captured from nginx, curl and Python clients/servers by
//! `tests/fixtures/http1/capture.py`, replayed through the parser in chunks of several sizes, under
//! several capture limits and in every role. Expected transactions come from what the *clients*
//! saw (`NAME.expect`), not from parsing the recorded bytes.

mod common;

use telegen_dataplane::protocols::http1::{Http1Parser, HttpTransaction};
use telegen_dataplane::protocols::{Chunk, Direction, L7Record, Role};

const SCENARIOS: &[&str] = &[
    "nginx_keepalive",
    "nginx_head",
    "nginx_404",
    "nginx_post",
    "nginx_pipeline",
    "py_chunked",
    "py_http10_close",
];
const FULL: usize = usize::MAX;

#[derive(Debug)]
struct Expect {
    method: String,
    target: String,
    status: u16,
    request_body: u64,
    response_body: u64,
}

struct Fixture {
    /// (from client?, bytes) in the order the recording proxy received them.
    segments: Vec<(bool, Vec<u8>)>,
    expect: Vec<Expect>,
}

fn load(name: &str) -> Fixture {
    let segments = common::segments("http1", name);
    let expect = String::from_utf8(common::fixture_file("http1", name, "expect"))
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            Expect {
                method: f[0].into(),
                target: f[1].into(),
                status: f[2].parse().unwrap(),
                request_body: f[3].parse().unwrap(),
                response_body: f[4].parse().unwrap(),
            }
        })
        .collect();
    Fixture { segments, expect }
}

/// Replay a fixture: each recorded segment re-split into `split`-byte syscalls captured up to
/// `limit` bytes. `role` is the parser's role; `as_server` says which side the traced process is.
fn replay(
    f: &Fixture,
    role: Role,
    as_server: bool,
    split: usize,
    limit: usize,
) -> (Vec<HttpTransaction>, Vec<bool>, u64) {
    let mut p = Http1Parser::new(role);
    let mut out = Vec::new();
    let mut seq = 0u64;
    // seq -> was it a client-to-server chunk?
    let mut from_client = vec![false];
    for (client, bytes) in &f.segments {
        let dir = match client == &as_server {
            true => Direction::Ingress,
            false => Direction::Egress,
        };
        for piece in bytes.chunks(split.min(bytes.len()).max(1)) {
            seq += 1;
            from_client.push(*client);
            let c = Chunk {
                dir,
                data: &piece[..piece.len().min(limit)],
                tail: &[],
                total_len: piece.len() as u32,
                start_ns: seq * 1000,
                end_ns: seq * 1000 + 500,
                seq,
            };
            p.feed(&c, &mut out);
            assert!(p.buffered_bytes() < 64 * 1024);
        }
    }
    p.close((seq + 1) * 1000, &mut out);
    let txs = out
        .into_iter()
        .map(|r| match r {
            L7Record::Http(t) => t,
            other => panic!("not HTTP/1: {other:?}"),
        })
        .collect();
    (txs, from_client, p.parse_errors())
}

fn check(name: &str, role: Role, as_server: bool, split: usize, limit: usize) {
    let f = load(name);
    let (txs, from_client, errors) = replay(&f, role, as_server, split, limit);
    let ctx = format!("{name} role={role:?} server={as_server} split={split} limit={limit}");
    assert_eq!(errors, 0, "{ctx}");
    if limit == FULL {
        assert_eq!(txs.len(), f.expect.len(), "{ctx}: {txs:#?}");
    } else {
        // A request hidden entirely by the capture limit (pipelined after a visible one in the
        // same syscall) cannot be seen; every transaction seen must still match one, in order.
        assert!(txs.len() <= f.expect.len(), "{ctx}: {txs:#?}");
        assert!(!txs.is_empty(), "{ctx}");
    }
    let want_role = if as_server {
        Role::Server
    } else {
        Role::Client
    };
    let mut expected = f.expect.iter();
    for t in &txs {
        let e = expected
            .by_ref()
            .find(|e| e.method == t.method && e.target.starts_with(&t.target))
            .unwrap_or_else(|| panic!("{ctx}: unexpected {t:#?}"));
        assert_eq!(t.role, want_role, "{ctx}");
        assert!(from_client[t.request_seq as usize], "{ctx}: request chunk");
        assert_eq!(t.start_ns, t.request_seq * 1000, "{ctx}");
        assert!(t.end_ns >= t.start_ns, "{ctx}");
        if limit == FULL {
            // Everything was visible: the transaction is exact.
            assert!(!t.partial, "{ctx}: {t:#?}");
            assert_eq!(t.target, e.target, "{ctx}");
            assert_eq!(t.status, Some(e.status), "{ctx}");
            assert_eq!(t.request_body_bytes, e.request_body, "{ctx}");
            assert_eq!(t.response_body_bytes, e.response_body, "{ctx}");
            assert!(t.host.is_some(), "{ctx}: every client here sends Host");
            assert!(t.version == "1.1" || name == "py_http10_close", "{ctx}");
        } else if let Some(s) = t.status {
            // Under a capture limit some responses may be invisible, never wrong.
            assert_eq!(s, e.status, "{ctx}");
            if !t.partial {
                assert_eq!(t.response_body_bytes, e.response_body, "{ctx}");
                assert_eq!(t.request_body_bytes, e.request_body, "{ctx}");
            }
        }
    }
}

#[test]
fn golden_all_roles_splits_and_limits() {
    for name in SCENARIOS {
        for as_server in [true, false] {
            let role = if as_server {
                Role::Server
            } else {
                Role::Client
            };
            for split in [FULL, 1, 2, 7, 64, 100, 1000] {
                for limit in [FULL, 1024, 256, 64] {
                    check(name, role, as_server, split, limit);
                }
            }
            // Role inference needs the first request's method in one chunk.
            check(name, Role::Unknown, as_server, FULL, FULL);
            check(name, Role::Unknown, as_server, 64, FULL);
        }
    }
}

#[test]
fn golden_details() {
    let f = load("py_chunked");
    let (txs, _, _) = replay(&f, Role::Server, true, FULL, FULL);
    assert_eq!(
        txs[0].traceparent.as_deref(),
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    );
    assert_eq!(txs[1].traceparent, None);
    // The chunked response arrives in 5 writes after the head: it ends with the last one.
    let last_server_chunk = 6;
    assert_eq!(txs[0].end_ns, last_server_chunk * 1000 + 500);

    let f = load("nginx_pipeline");
    let (txs, _, _) = replay(&f, Role::Server, true, FULL, FULL);
    assert!(txs.iter().all(|t| t.request_seq == 1));
    assert_eq!(txs[0].host.as_deref(), Some("pipeline.test"));

    let f = load("py_http10_close");
    let (txs, _, _) = replay(&f, Role::Client, false, FULL, FULL);
    assert_eq!((txs[0].version, txs[0].status), ("1.0", Some(200)));
    // Framed by the close: ends at close time.
    assert_eq!(txs[0].end_ns, 4000);

    // Under a 64-byte limit the chunked sizes are hidden: framing falls back, the transaction
    // is marked partial but still paired with the right status.
    let f = load("py_chunked");
    let (txs, _, _) = replay(&f, Role::Server, true, FULL, 64);
    assert!(txs[0].partial);
    assert_eq!(
        txs.iter().map(|t| t.status).collect::<Vec<_>>(),
        [Some(200), Some(201), Some(200)]
    );
}

/// Every real exchange with its first request cut in two at every byte offset.
#[test]
fn golden_first_request_split_at_every_offset() {
    for name in SCENARIOS {
        let f = load(name);
        let first = &f.segments[0].1;
        assert!(f.segments[0].0, "{name}: the client speaks first");
        for cut in 0..=first.len() {
            let mut segments = vec![(true, first[..cut].to_vec()), (true, first[cut..].to_vec())];
            segments.extend(f.segments[1..].iter().cloned());
            let g = Fixture {
                segments,
                expect: Vec::new(),
            };
            let (txs, _, errors) = replay(&g, Role::Server, true, FULL, FULL);
            assert_eq!(errors, 0, "{name} cut {cut}");
            assert_eq!(txs.len(), f.expect.len(), "{name} cut {cut}");
            for (t, e) in txs.iter().zip(&f.expect) {
                assert_eq!(
                    (
                        t.target.as_str(),
                        t.status,
                        t.response_body_bytes,
                        t.partial
                    ),
                    (e.target.as_str(), Some(e.status), e.response_body, false),
                    "{name} cut {cut}"
                );
            }
            // (An empty piece is not fed, so the first fed chunk always carries the first byte.)
            assert_eq!(txs[0].request_seq, 1, "{name} cut {cut}");
        }
    }
}
