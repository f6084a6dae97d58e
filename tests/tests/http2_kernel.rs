//! HTTP/2 and gRPC traced from the kernel: nginx serving h2c (prior knowledge) and h2 over TLS
//! (ALPN, through the OpenSSL uprobes) to curl, and a Python grpcio server and client with unary,
//! server-streaming and failing calls, answers far larger than the capture size, and client-
//! streaming and bidirectional calls of large messages. Counts and attributes are decoded from
//! the OTLP the agent exported.

use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use telegen_tests::agent::{curl, otlp_agent, require_bpf, serial, Agent, Nginx, NginxOptions};
use telegen_tests::peers::{GrpcCalls, GrpcClient, GrpcServer};
use telegen_tests::receiver::{attr_int, attr_str, metric_count_where, Receiver};

fn of_kind(spans: &[(Vec<KeyValue>, Span)], kind: SpanKind) -> Vec<&Span> {
    spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.kind == kind as i32)
        .collect()
}

/// A grpcio server and a client that will make `calls`, both traced by an agent exporting to
/// `recv`.
fn traced_grpc(recv: &Receiver, calls: GrpcCalls) -> (GrpcServer, GrpcClient, Agent) {
    let server = GrpcServer::start();
    let client = GrpcClient::start_calls(server.port, calls);
    let pids = [server.proc.pid(), client.proc.pid()];
    let agent = otlp_agent(&recv.endpoint(), &pids, &[]);
    (server, client, agent)
}

/// Wait for at least `spans` spans and the metric flush, stop the agent, return its log.
fn settle(recv: &Receiver, agent: Agent, spans: usize) -> String {
    assert!(recv.wait_for_spans(spans, Duration::from_secs(20)));
    std::thread::sleep(Duration::from_millis(1500));
    agent.stop()
}

/// (name, rpc.grpc.status_code) of the spans of one kind, sorted.
fn calls_of(all: &[(Vec<KeyValue>, Span)], kind: SpanKind) -> Vec<(String, Option<i64>)> {
    let mut calls: Vec<(String, Option<i64>)> = of_kind(all, kind)
        .iter()
        .map(|s| {
            (
                s.name.clone(),
                attr_int(&s.attributes, "rpc.grpc.status_code"),
            )
        })
        .collect();
    calls.sort();
    calls
}

#[test]
fn nginx_h2c_and_h2_over_tls_one_span_per_stream() {
    if !require_bpf() {
        return;
    }
    let _g = serial();
    let recv = Receiver::start();
    let nginx = Nginx::start_with(NginxOptions {
        h2c: true,
        tls: true,
        ..Default::default()
    });
    let agent = otlp_agent(&recv.endpoint(), &[nginx.proc.pid()], &[]);
    let h2c = format!("http://127.0.0.1:{}", nginx.h2c_port.expect("h2c"));
    let tls = format!("https://127.0.0.1:{}", nginx.tls_port.expect("tls"));
    // h2c with prior knowledge: curl, one connection per request (curl 7.88 cannot reuse an
    // h2c prior-knowledge connection), then nghttp multiplexing three streams on one connection.
    for path in ["/api/a/1", "/index.html", "/missing", "/fail"] {
        curl(&[
            "-s",
            "--http2-prior-knowledge",
            "-o",
            "/dev/null",
            &format!("{h2c}{path}"),
        ]);
    }
    let out = std::process::Command::new("nghttp")
        .arg("-n")
        .args((1..=3).map(|i| format!("{h2c}/api/m/{i}")))
        .output()
        .expect("nghttp (apt-get install -y nghttp2-client)");
    assert!(
        out.status.success(),
        "nghttp: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Two streams of HTTP/2 negotiated by ALPN over TLS.
    curl(&[
        "-sk",
        "--http2",
        "-o",
        "/dev/null",
        "-o",
        "/dev/null",
        &format!("{tls}/api/t/1"),
        &format!("{tls}/api/t/2"),
    ]);
    assert!(recv.wait_for_spans(9, Duration::from_secs(20)));
    std::thread::sleep(Duration::from_millis(1500));
    let log = agent.stop();

    let all = recv.spans();
    let server = of_kind(&all, SpanKind::Server);
    assert_eq!(server.len(), 9, "7 h2c + 2 h2 streams (log:\n{log})");
    for s in &server {
        assert_eq!(
            attr_str(&s.attributes, "network.protocol.version"),
            Some("2"),
            "{s:?}"
        );
    }
    let scheme = |s: &&Span| {
        attr_str(&s.attributes, "url.scheme")
            .unwrap_or_default()
            .to_string()
    };
    let mut plain: Vec<(String, Option<i64>)> = server
        .iter()
        .filter(|s| scheme(s) == "http")
        .map(|s| {
            (
                attr_str(&s.attributes, "url.path")
                    .unwrap_or_default()
                    .to_string(),
                attr_int(&s.attributes, "http.response.status_code"),
            )
        })
        .collect();
    plain.sort();
    assert_eq!(
        plain,
        [
            ("/api/a/1".to_string(), Some(200)),
            ("/api/m/1".to_string(), Some(200)),
            ("/api/m/2".to_string(), Some(200)),
            ("/api/m/3".to_string(), Some(200)),
            ("/fail".to_string(), Some(503)),
            ("/index.html".to_string(), Some(200)),
            ("/missing".to_string(), Some(404)),
        ]
    );
    let secure: Vec<&&Span> = server.iter().filter(|s| scheme(s) == "https").collect();
    assert_eq!(secure.len(), 2);
    let route = server
        .iter()
        .find(|s| attr_str(&s.attributes, "url.path") == Some("/api/a/1"))
        .expect("span");
    assert_eq!(route.name, "GET /api/a/{id}");
    let h2 = |a: &[KeyValue]| attr_str(a, "network.protocol.version") == Some("2");
    assert_eq!(
        metric_count_where(&recv, "http.server.request.duration", h2),
        9
    );
}

#[test]
fn grpc_unary_streaming_and_failing_calls_both_sides() {
    if !require_bpf() {
        return;
    }
    let _g = serial();
    let recv = Receiver::start();
    let calls = GrpcCalls {
        pings: 5,
        lists: 2,
        fails: 1,
        ..GrpcCalls::default()
    };
    let (_server, client, agent) = traced_grpc(&recv, calls);
    let got = client.run_calls();
    assert_eq!(
        (got.pings, got.items, got.fail.as_str()),
        (5, 6, "NOT_FOUND")
    );
    let log = settle(&recv, agent, 16);

    let all = recv.spans();
    for (kind, what) in [(SpanKind::Server, "server"), (SpanKind::Client, "client")] {
        let spans = of_kind(&all, kind);
        assert_eq!(
            spans.len(),
            8,
            "{what}: 5 Ping + 2 List + 1 Fail (log:\n{log})"
        );
        let count = |m: &str| spans.iter().filter(|s| s.name == m).count();
        assert_eq!(count("demo.v1.Echo/Ping"), 5, "{what}");
        assert_eq!(count("demo.v1.Echo/List"), 2, "{what}");
        assert_eq!(count("demo.v1.Echo/Fail"), 1, "{what}");
        for s in &spans {
            assert_eq!(attr_str(&s.attributes, "rpc.system"), Some("grpc"));
            assert_eq!(attr_str(&s.attributes, "rpc.service"), Some("demo.v1.Echo"));
            let failing = s.name == "demo.v1.Echo/Fail";
            let code = attr_int(&s.attributes, "rpc.grpc.status_code");
            assert_eq!(code, Some(if failing { 5 } else { 0 }), "{what} {s:?}");
            // NOT_FOUND is the caller's error, not the server's (RPC conventions).
            let is_err = s.status.as_ref().is_some_and(|st| st.code == 2);
            assert_eq!(is_err, failing && kind == SpanKind::Client, "{what} {s:?}");
        }
        let method = spans
            .iter()
            .filter_map(|s| attr_str(&s.attributes, "rpc.method"))
            .filter(|m| *m == "List")
            .count();
        assert_eq!(method, 2);
    }
    assert_eq!(
        metric_count_where(&recv, "rpc.server.duration", |_| true),
        8
    );
    assert_eq!(
        metric_count_where(&recv, "rpc.client.duration", |_| true),
        8
    );
    let failed = metric_count_where(&recv, "rpc.client.duration", |a| {
        attr_int(a, "rpc.grpc.status_code") == Some(5)
    });
    assert_eq!(failed, 1);
}

/// Answers far larger than the capture size: grpcio writes a 100 KB unary answer (HEADERS, one
/// big DATA frame, trailers) in one sendmsg, so its trailers (grpc-status) are only in the bytes
/// the kernel copies from the end of the syscall; the streaming call sends 40 KB messages. The
/// server side ends every call with its status. The client reads whatever has arrived: a unary
/// answer's reads hold its one DATA frame and trailers, so the client ends those calls with their
/// status too; a read of several streamed 40 KB messages hides DATA frame headers in the
/// uncaptured middle, so the client's streaming calls may end without a status (partial, at the
/// connection's close), never with a wrong one. The metrics count every call once.
#[test]
fn grpc_large_answers_keep_their_trailers() {
    if !require_bpf() {
        return;
    }
    let _g = serial();
    let recv = Receiver::start();
    let calls = GrpcCalls {
        pings: 2,
        bigs: 4,
        big_lists: 2,
        ..GrpcCalls::default()
    };
    let (_server, client, agent) = traced_grpc(&recv, calls);
    let got = client.run_calls();
    assert_eq!((got.pings, got.bigs, got.big_items), (2, 4, 6));
    let log = settle(&recv, agent, 16);

    let all = recv.spans();
    for (kind, what) in [(SpanKind::Server, "server"), (SpanKind::Client, "client")] {
        let calls = calls_of(&all, kind);
        let streamed = if kind == SpanKind::Client {
            // See above: Some(0) or None, never another code.
            calls
                .iter()
                .filter(|(n, _)| n == "demo.v1.Echo/BigList")
                .map(|(_, c)| *c)
                .collect()
        } else {
            vec![Some(0); 2]
        };
        assert!(
            streamed.iter().all(|c| c.is_none_or(|c| c == 0)),
            "{calls:?}"
        );
        let want: Vec<(String, Option<i64>)> = [
            vec![("demo.v1.Echo/Big", Some(0)); 4],
            streamed
                .iter()
                .map(|&c| ("demo.v1.Echo/BigList", c))
                .collect(),
            vec![("demo.v1.Echo/Ping", Some(0)); 2],
        ]
        .concat()
        .into_iter()
        .map(|(n, c)| (n.to_string(), c))
        .collect();
        assert_eq!(calls, want, "{what}: (log:\n{log})");
    }
    let ok = |a: &[KeyValue]| attr_int(a, "rpc.grpc.status_code") == Some(0);
    assert_eq!(metric_count_where(&recv, "rpc.server.duration", ok), 8);
    assert_eq!(
        metric_count_where(&recv, "rpc.client.duration", |_| true),
        8
    );
    assert!(metric_count_where(&recv, "rpc.client.duration", ok) >= 6);
}

/// Large messages the other way: the client streams 4 messages of 40 to 100 KB per call
/// (`Collect`, `CollectFail`, and the bidirectional `Chat`, answered message by message).
/// grpcio writes each message as one DATA frame in one sendmsg, but the server reads whatever has
/// arrived, in pieces of 8 KB and more: frame headers fall in the uncaptured middle of its reads
/// and the direction loses its framing. It comes back at the read that starts the next call's
/// HEADERS, which opens the next stream id, so no header block can have been hidden and the
/// HPACK table is kept: every call keeps its name and status on both sides, one span each.
/// (Before, the table was forgotten and later calls on the connection were named `grpc`.)
#[test]
fn grpc_client_streaming_large_messages_keep_their_status() {
    if !require_bpf() {
        return;
    }
    let _g = serial();
    let recv = Receiver::start();
    let calls = GrpcCalls {
        pings: 1,
        collects: 6,
        collect_fails: 1,
        chats: 2,
        ..GrpcCalls::default()
    };
    let (_server, client, agent) = traced_grpc(&recv, calls);
    let got = client.run_calls();
    assert_eq!(
        (got.pings, got.collected, got.collect_fail.as_str()),
        (1, 6, "INVALID_ARGUMENT")
    );
    assert_eq!(got.chat_items, 8);
    let log = settle(&recv, agent, 20);

    let all = recv.spans();
    let want: Vec<(String, Option<i64>)> = [
        vec![("demo.v1.Echo/Chat", Some(0)); 2],
        vec![("demo.v1.Echo/Collect", Some(0)); 6],
        vec![("demo.v1.Echo/CollectFail", Some(3))],
        vec![("demo.v1.Echo/Ping", Some(0))],
    ]
    .concat()
    .into_iter()
    .map(|(n, c)| (n.to_string(), c))
    .collect();
    let mut report = String::new();
    let mut ok = true;
    for (kind, what) in [(SpanKind::Server, "server"), (SpanKind::Client, "client")] {
        let calls = calls_of(&all, kind);
        ok &= calls == want;
        report.push_str(&format!("{what}: {calls:?}\n"));
    }
    assert!(ok, "want {want:?}, got\n{report}(log:\n{log})");
    for (metric, n) in [("rpc.server.duration", 10), ("rpc.client.duration", 10)] {
        assert_eq!(metric_count_where(&recv, metric, |_| true), n, "{metric}");
    }
    let invalid = |a: &[KeyValue]| attr_int(a, "rpc.grpc.status_code") == Some(3);
    assert_eq!(metric_count_where(&recv, "rpc.client.duration", invalid), 1);
    assert_eq!(metric_count_where(&recv, "rpc.server.duration", invalid), 1);
}
