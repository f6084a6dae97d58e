//! Golden tests: real HTTP/2 exchanges captured from nginx (curl, nghttp) and a Python grpcio
//! server and client by `tests/fixtures/http2/capture.py`, replayed through the parser in every
//! role, in chunks of several sizes, split at every byte, joined mid-stream and under capture
//! limits. Expected exchanges come from what the *clients* saw (`NAME.expect`), not from parsing
//! the recorded bytes.

mod common;

use std::collections::BTreeMap;

use telegen_dataplane::protocols::grpc;
use telegen_dataplane::protocols::http2::{H2Exchange, Http2Parser};
use telegen_dataplane::protocols::{Chunk, Direction, L7Record, Role};

const SCENARIOS: &[&str] = &["nginx_curl_404", "nginx_multiplexed", "grpc_calls"];
const FULL: usize = usize::MAX;

#[derive(Debug)]
struct Expect {
    method: String,
    path: String,
    status: u16,
    grpc_status: Option<u32>,
    request_body: u64,
    response_body: u64,
}

struct Fixture {
    /// (from client?, bytes) in the order the recording relay received them.
    segments: Vec<(bool, Vec<u8>)>,
    expect: Vec<Expect>,
}

fn load(name: &str) -> Fixture {
    let segments = common::segments("http2", name);
    let expect = String::from_utf8(common::fixture_file("http2", name, "expect"))
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            Expect {
                method: f[0].into(),
                path: f[1].into(),
                status: f[2].parse().unwrap(),
                grpc_status: f[3].parse().ok(),
                request_body: f[4].parse().unwrap(),
                response_body: f[5].parse().unwrap(),
            }
        })
        .collect();
    Fixture { segments, expect }
}

/// How to replay: which side is traced, the role the parser is told, re-chunking, capture limit.
#[derive(Clone, Copy)]
struct Replay {
    /// The traced process is the server (client bytes are ingress) or the client.
    server_view: bool,
    role: Role,
    piece: usize,
    capture: usize,
}

fn run(segments: &[(bool, Vec<u8>)], r: Replay) -> (Vec<H2Exchange>, Http2Parser) {
    let mut p = Http2Parser::new(r.role);
    let mut out = Vec::new();
    let mut seq = 0u64;
    for (from_client, bytes) in segments {
        let dir = if *from_client == r.server_view {
            Direction::Ingress
        } else {
            Direction::Egress
        };
        for piece in bytes.chunks(r.piece.min(bytes.len()).max(1)) {
            seq += 1;
            let c = Chunk {
                dir,
                data: &piece[..piece.len().min(r.capture)],
                tail: &[],
                total_len: piece.len() as u32,
                start_ns: seq * 1000,
                end_ns: seq * 1000 + 500,
                seq,
            };
            p.feed(&c, &mut out);
        }
    }
    p.close((seq + 1) * 1000, &mut out);
    let mut xs: Vec<H2Exchange> = out
        .into_iter()
        .map(|r| match r {
            L7Record::Http2(x) => x,
            other => panic!("not HTTP/2: {other:?}"),
        })
        .collect();
    xs.sort_by_key(|x| x.stream_id);
    (xs, p)
}

fn views() -> Vec<(bool, Role, Role)> {
    vec![
        (true, Role::Server, Role::Server),
        (true, Role::Unknown, Role::Server),
        (false, Role::Client, Role::Client),
        (false, Role::Unknown, Role::Client),
    ]
}

fn check_exact(name: &str, fx: &Fixture, xs: &[H2Exchange], want_role: Role, what: &str) {
    assert_eq!(xs.len(), fx.expect.len(), "{name} {what}: {xs:#?}");
    for (x, e) in xs.iter().zip(&fx.expect) {
        let ctx = format!("{name} {what} stream {}", x.stream_id);
        assert_eq!(x.role, want_role, "{ctx}");
        assert_eq!(x.method.as_deref(), Some(&e.method[..]), "{ctx}");
        assert_eq!(x.path.as_deref(), Some(&e.path[..]), "{ctx}");
        assert_eq!(x.status, Some(e.status), "{ctx}");
        assert_eq!(x.grpc_status, e.grpc_status, "{ctx}");
        assert_eq!(x.scheme.as_deref(), Some("http"), "{ctx}");
        assert!(
            x.authority
                .as_deref()
                .is_some_and(|a| a.starts_with("127.0.0.1:")),
            "{ctx}: {:?}",
            x.authority
        );
        assert_eq!(x.request_body_bytes, e.request_body, "{ctx}");
        assert_eq!(x.response_body_bytes, e.response_body, "{ctx}");
        assert!(!x.partial && !x.headers_incomplete, "{ctx}: {x:?}");
        assert!(x.end_ns >= x.start_ns, "{ctx}");
        assert_eq!(x.stream_id % 2, 1, "{ctx}");
        let is_grpc = grpc::is_grpc_call(x);
        assert_eq!(is_grpc, e.grpc_status.is_some(), "{ctx}");
        if is_grpc {
            let (svc, _) = grpc::split_method(x.path.as_deref().unwrap()).unwrap();
            assert_eq!(svc, "telegen.test.Echo");
        }
    }
}

#[test]
fn golden_exchanges_in_every_role_and_chunking() {
    for name in SCENARIOS {
        let fx = load(name);
        for (server_view, role, want) in views() {
            for piece in [FULL, 1, 3, 64] {
                let r = Replay {
                    server_view,
                    role,
                    piece,
                    capture: FULL,
                };
                let (xs, p) = run(&fx.segments, r);
                let what = format!("{role:?} server_view={server_view} piece={piece}");
                check_exact(name, &fx, &xs, want, &what);
                assert_eq!(p.parse_errors(), 0, "{name} {what}");
                assert_eq!(p.open_streams(), 0);
            }
        }
    }
}

#[test]
fn grpc_details() {
    let fx = load("grpc_calls");
    let r = Replay {
        server_view: true,
        role: Role::Server,
        piece: FULL,
        capture: FULL,
    };
    let (xs, _) = run(&fx.segments, r);
    let fail = xs
        .iter()
        .find(|x| x.path.as_deref() == Some("/telegen.test.Echo/Fail"))
        .unwrap();
    assert_eq!(fail.grpc_status, Some(5));
    assert_eq!(grpc::status_name(5), Some("NOT_FOUND"));
    let msg = fail.grpc_message.as_deref().unwrap();
    assert_eq!(grpc::decode_message(msg), "no such thing: é");
    assert!(xs
        .iter()
        .all(|x| x.content_type.as_deref().is_some_and(grpc::is_grpc)));
    assert!(xs
        .iter()
        .filter(|x| x.grpc_status == Some(0))
        .all(|x| x.grpc_message.is_none() || x.grpc_message.as_deref() == Some("")));
}

#[test]
fn split_at_every_byte_gives_the_same_exchanges() {
    let norm = |x: &H2Exchange| H2Exchange {
        start_ns: 0,
        end_ns: 0,
        request_seq: 0,
        ..x.clone()
    };
    for name in SCENARIOS {
        let fx = load(name);
        for (server_view, role, _) in views() {
            let base = Replay {
                server_view,
                role,
                piece: FULL,
                capture: FULL,
            };
            let (whole, _) = run(&fx.segments, base);
            let whole: Vec<H2Exchange> = whole.iter().map(norm).collect();
            for i in 0..fx.segments.len() {
                for cut in 1..fx.segments[i].1.len() {
                    let mut segs = fx.segments.clone();
                    let (c, b) = segs.remove(i);
                    segs.insert(i, (c, b[cut..].to_vec()));
                    segs.insert(i, (c, b[..cut].to_vec()));
                    let (xs, p) = run(&segs, base);
                    let xs: Vec<H2Exchange> = xs.iter().map(norm).collect();
                    assert_eq!(xs, whole, "{name} {role:?} segment {i} cut at {cut}");
                    assert_eq!(p.parse_errors(), 0);
                }
            }
        }
    }
}

/// Every value an exchange reports must be the one the full replay reports for that stream.
fn assert_no_wrong_values(name: &str, what: &str, got: &[H2Exchange], truth: &[H2Exchange]) {
    let truth: BTreeMap<u32, &H2Exchange> = truth.iter().map(|x| (x.stream_id, x)).collect();
    for x in got {
        let t = truth
            .get(&x.stream_id)
            .unwrap_or_else(|| panic!("{name} {what}: invented stream {x:?}"));
        let ctx = format!("{name} {what} stream {}", x.stream_id);
        assert_eq!(x.role, t.role, "{ctx}");
        macro_rules! same_if_known {
            ($($f:ident),*) => {$(
                if x.$f.is_some() {
                    assert_eq!(x.$f, t.$f, "{ctx}: {}", stringify!($f));
                }
            )*};
        }
        same_if_known!(
            method,
            path,
            authority,
            scheme,
            status,
            content_type,
            traceparent,
            grpc_status,
            grpc_message
        );
        assert!(x.request_body_bytes <= t.request_body_bytes, "{ctx}");
        assert!(x.response_body_bytes <= t.response_body_bytes, "{ctx}");
        if !x.partial {
            assert_eq!(
                (x.request_body_bytes, x.response_body_bytes),
                (t.request_body_bytes, t.response_body_bytes),
                "{ctx}"
            );
        }
    }
}

#[test]
fn mid_stream_join_yields_no_wrong_values() {
    for name in SCENARIOS {
        let fx = load(name);
        for (server_view, role, _) in views() {
            let r = Replay {
                server_view,
                role,
                piece: FULL,
                capture: FULL,
            };
            let (truth, _) = run(&fx.segments, r);
            let mut emitted = 0;
            for skip in 1..fx.segments.len() {
                let (xs, _) = run(&fx.segments[skip..], r);
                assert_no_wrong_values(name, &format!("{role:?} skip {skip}"), &xs, &truth);
                emitted += xs.len();
            }
            if *name == "grpc_calls" {
                // Joining before later calls still sees them (static-table pseudo-headers).
                assert!(emitted > 0, "{name} {role:?}");
            }
        }
    }
}

#[test]
fn mid_stream_join_on_grpc_recovers_later_calls() {
    let fx = load("grpc_calls");
    let r = Replay {
        server_view: true,
        role: Role::Server,
        piece: FULL,
        capture: FULL,
    };
    let (truth, _) = run(&fx.segments, r);
    // Join after the first call is complete: the later calls are seen from their start.
    let first_end = truth[0].request_seq as usize + 2;
    let (xs, _) = run(&fx.segments[first_end..], r);
    assert_no_wrong_values("grpc_calls", "after first call", &xs, &truth);
    let last = xs.last().unwrap();
    assert_eq!(last.stream_id, truth.last().unwrap().stream_id);
    assert_eq!(last.status, Some(200));
    assert_eq!(last.grpc_status, Some(0));
}

#[test]
fn truncated_capture_yields_no_wrong_values() {
    for name in SCENARIOS {
        let fx = load(name);
        let longest = fx.segments.iter().map(|s| s.1.len()).max().unwrap();
        for (server_view, role, want) in views() {
            let full = Replay {
                server_view,
                role,
                piece: FULL,
                capture: FULL,
            };
            let (truth, _) = run(&fx.segments, full);
            for capture in [0, 9, 16, 64, 256, 1024, longest] {
                let (xs, p) = run(&fx.segments, Replay { capture, ..full });
                let what = format!("{role:?} capture={capture}");
                assert_no_wrong_values(name, &what, &xs, &truth);
                assert!(p.buffered_bytes() < 256 * 1024, "{name} {what}");
                if capture >= longest {
                    check_exact(name, &fx, &xs, want, &what);
                }
            }
        }
    }
}

#[test]
fn detection_on_real_traffic() {
    use telegen_dataplane::protocols::{detect, Protocol};
    for name in SCENARIOS {
        let fx = load(name);
        let first_client = fx.segments.iter().find(|s| s.0).unwrap();
        assert_eq!(detect(&first_client.1), Some(Protocol::Http2), "{name}");
        assert!(fx
            .segments
            .iter()
            .all(|s| detect(&s.1) != Some(Protocol::Http1)));
    }
    // Joined mid-stream, a gRPC connection is recognised from its later reads.
    let fx = load("grpc_calls");
    let later = fx.segments[2..]
        .iter()
        .filter(|s| detect(&s.1) == Some(Protocol::Http2));
    assert!(later.count() >= 3);
    // And HTTP/1 traffic, at any read (heads and bodies alike), is never taken for HTTP/2.
    let mut seen = 0;
    for name in common::fixture_names("http1") {
        for (_, seg) in common::segments("http1", &name) {
            for start in [0, 1, seg.len() / 2] {
                assert_ne!(detect(&seg[start..]), Some(Protocol::Http2), "{name}");
            }
            seen += 1;
        }
    }
    assert!(seen > 10);
}
