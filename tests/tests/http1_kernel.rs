//! HTTP/1.1 traced from the kernel to OTLP: the real agent (as root) against nginx and Python,
//! decoded by a real OTLP/HTTP receiver. Counts are exact: one server span per request served.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use telegen_tests::agent::{
    children, curl, free_port, otlp_agent, otlp_agent_env, python, python_bg, require_bpf, serial,
    wait_port, Nginx, NginxOptions, Proc,
};
use telegen_tests::receiver::{attr_int, attr_str, metric_count, Receiver};

fn server_spans(recv: &Receiver) -> Vec<(Vec<KeyValue>, Span)> {
    recv.spans()
        .into_iter()
        .filter(|(_, s)| s.kind == SpanKind::Server as i32)
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn nginx_with_curl_one_server_span_per_request_and_metrics_agree() {
    if !require_bpf() {
        return;
    }
    let _g = serial();
    let recv = Receiver::start();
    let nginx = Nginx::start();
    let agent = otlp_agent(&recv.endpoint(), &[nginx.proc.pid()], &[]);
    let base = format!("http://127.0.0.1:{}", nginx.port);
    // 20 separate connections, then one keep-alive connection with 5 URLs, a 404 and a 503.
    for i in 0..20 {
        curl(&["-s", "-o", "/dev/null", &format!("{base}/api/users/{i}")]);
    }
    let urls: Vec<String> = (0..5)
        .map(|i| format!("{base}/api/orders/{}", 1000 + i))
        .collect();
    let mut a = vec![
        "-s",
        "-o",
        "/dev/null",
        "-o",
        "/dev/null",
        "-o",
        "/dev/null",
        "-o",
        "/dev/null",
        "-o",
        "/dev/null",
    ];
    a.extend(urls.iter().map(String::as_str));
    curl(&a);
    curl(&["-s", "-o", "/dev/null", &format!("{base}/missing")]);
    curl(&["-s", "-o", "/dev/null", &format!("{base}/fail")]);
    let expected = 27;
    let log = agent.stop();

    let spans = server_spans(&recv);
    assert_eq!(spans.len(), expected, "server spans (agent log:\n{log})");
    let workers = children(nginx.proc.pid());
    for (res, s) in &spans {
        assert_eq!(
            attr_str(res, "process.executable.name"),
            Some("nginx"),
            "{res:?}"
        );
        let pid = attr_int(res, "process.pid").expect("process.pid") as u32;
        assert!(
            workers.contains(&pid) || pid == nginx.proc.pid(),
            "span from pid {pid}, workers {workers:?}"
        );
        assert!(attr_str(res, "host.name").is_some());
        assert_eq!(attr_str(&s.attributes, "http.request.method"), Some("GET"));
        assert_eq!(
            attr_int(&s.attributes, "server.port"),
            Some(i64::from(nginx.port))
        );
        assert_eq!(attr_str(&s.attributes, "client.address"), Some("127.0.0.1"));
        assert_eq!(
            attr_str(&s.attributes, "network.protocol.version"),
            Some("1.1")
        );
        assert!(s.end_time_unix_nano >= s.start_time_unix_nano);
        assert!(
            s.start_time_unix_nano > 1_600_000_000_000_000_000,
            "wall-clock timestamps"
        );
    }
    let users: Vec<_> = spans
        .iter()
        .filter(|(_, s)| attr_str(&s.attributes, "http.route") == Some("/api/users/{id}"))
        .collect();
    assert_eq!(users.len(), 20);
    assert!(users.iter().all(|(_, s)| s.name == "GET /api/users/{id}"
        && attr_int(&s.attributes, "http.response.status_code") == Some(200)));
    let paths: Vec<&str> = users
        .iter()
        .filter_map(|(_, s)| attr_str(&s.attributes, "url.path"))
        .collect();
    assert!(paths.contains(&"/api/users/7"));
    let orders = spans
        .iter()
        .filter(|(_, s)| attr_str(&s.attributes, "http.route") == Some("/api/orders/{id}"))
        .count();
    assert_eq!(orders, 5, "keep-alive requests each get a span");
    let missing = spans
        .iter()
        .find(|(_, s)| attr_str(&s.attributes, "url.path") == Some("/missing"))
        .expect("404 span");
    assert_eq!(
        attr_int(&missing.1.attributes, "http.response.status_code"),
        Some(404)
    );
    assert!(
        attr_str(&missing.1.attributes, "error.type").is_none(),
        "404 is not a server error"
    );
    let fail = spans
        .iter()
        .find(|(_, s)| attr_str(&s.attributes, "url.path") == Some("/fail"))
        .expect("503 span");
    assert_eq!(attr_str(&fail.1.attributes, "error.type"), Some("503"));
    assert_eq!(
        fail.1.status.as_ref().map(|s| s.code),
        Some(2),
        "status error"
    );
    // Without traceparent every request starts its own trace.
    let mut traces: Vec<_> = spans.iter().map(|(_, s)| s.trace_id.clone()).collect();
    traces.sort();
    traces.dedup();
    assert_eq!(traces.len(), expected);
    assert!(spans.iter().all(|(_, s)| s.parent_span_id.is_empty()));

    assert_eq!(
        metric_count(&recv, "http.server.request.duration"),
        expected as u64,
        "metric counts equal requests"
    );
    // The default (`auto`) sends a collector on this host (loopback) plain bodies.
    let requests = recv.requests();
    assert!(!requests.is_empty());
    assert!(
        requests
            .iter()
            .all(|r| !r.gzip && r.header("content-encoding").is_none()),
        "{requests:?}"
    );
}

const KEEPALIVE_AND_PIPELINED: &str = r#"
import http.client, socket, sys
port = int(sys.argv[1])
c = http.client.HTTPConnection('127.0.0.1', port)
for i in range(10):
    c.request('GET', f'/api/keep/{i}')
    r = c.getresponse(); r.read()
    assert r.status == 200
c.close()
s = socket.create_connection(('127.0.0.1', port))
reqs = b''.join(f'GET /api/pipe/{i} HTTP/1.1\r\nHost: x\r\n\r\n'.encode() for i in range(5))
s.sendall(reqs)
buf = b''
while buf.count(b'api ok') < 5:
    d = s.recv(65536)
    if not d: break
    buf += d
s.close()
print(buf.count(b'HTTP/1.1 200'))
"#;

#[test]
fn python_keepalive_and_pipelined_clients_are_paired_exactly() {
    if !require_bpf() {
        return;
    }
    let _g = serial();
    let recv = Receiver::start();
    let nginx = Nginx::start();
    // The standard variable turns gzip on, even for a collector on this host (covered here
    // rather than in a test of its own).
    let agent = otlp_agent_env(
        &recv.endpoint(),
        &[nginx.proc.pid()],
        &[],
        &[("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")],
    );
    let out = python(KEEPALIVE_AND_PIPELINED, &[&nginx.port.to_string()]);
    assert_eq!(out.trim(), "5", "nginx answered every pipelined request");
    let log = agent.stop();
    let spans = server_spans(&recv);
    assert_eq!(spans.len(), 15, "agent log:\n{log}");
    let keep = spans
        .iter()
        .filter(|(_, s)| attr_str(&s.attributes, "http.route") == Some("/api/keep/{id}"))
        .count();
    let pipe = spans
        .iter()
        .filter(|(_, s)| attr_str(&s.attributes, "http.route") == Some("/api/pipe/{id}"))
        .count();
    assert_eq!((keep, pipe), (10, 5));
    assert!(spans
        .iter()
        .all(|(_, s)| attr_int(&s.attributes, "http.response.status_code") == Some(200)));
    assert_eq!(metric_count(&recv, "http.server.request.duration"), 15);
    let requests = recv.requests();
    assert!(!requests.is_empty());
    assert!(requests.iter().all(|r| r.gzip), "{requests:?}");
}

const PY_SERVER: &str = r#"
import http.client, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
port, upstream = int(sys.argv[1]), int(sys.argv[2])
class H(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def do_GET(self):
        c = http.client.HTTPConnection('127.0.0.1', upstream)
        c.request('GET', '/api/inventory/42')
        r = c.getresponse(); body = r.read(); c.close()
        out = b'front ' + body
        self.send_response(200)
        self.send_header('Content-Length', str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    def log_message(self, *a): pass
HTTPServer(('127.0.0.1', port), H).serve_forever()
"#;

#[test]
fn traceparent_is_honoured_and_outgoing_calls_become_children() {
    if !require_bpf() {
        return;
    }
    let _g = serial();
    let recv = Receiver::start();
    let nginx = Nginx::start();
    let port = free_port();
    let server = python_bg(PY_SERVER, &[&port.to_string(), &nginx.port.to_string()]);
    wait_port(port, Duration::from_secs(10));
    let agent = otlp_agent(&recv.endpoint(), &[server.pid(), nginx.proc.pid()], &[]);
    let url = format!("http://127.0.0.1:{port}/checkout/17");
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    assert!(curl(&["-s", "-H", &format!("traceparent: {tp}"), &url]).starts_with("front api ok"));
    assert!(curl(&["-s", &url]).starts_with("front api ok"));
    let log = agent.stop();

    let all = recv.spans();
    let py: Vec<_> = all
        .iter()
        .filter(|(r, _)| attr_int(r, "process.pid") == Some(i64::from(server.pid())))
        .collect();
    let py_server: Vec<_> = py
        .iter()
        .filter(|(_, s)| s.kind == SpanKind::Server as i32)
        .collect();
    let py_client: Vec<_> = py
        .iter()
        .filter(|(_, s)| s.kind == SpanKind::Client as i32)
        .collect();
    assert_eq!(
        py_server.len(),
        2,
        "agent log:\n{log}\nspans: {:?}",
        all.iter().map(|(_, s)| &s.name).collect::<Vec<_>>()
    );
    assert_eq!(py_client.len(), 2);
    let joined = py_server
        .iter()
        .find(|(_, s)| hex(&s.trace_id) == "4bf92f3577b34da6a3ce929d0e0e4736")
        .expect("server span joined the caller's trace");
    assert_eq!(
        hex(&joined.1.parent_span_id),
        "00f067aa0ba902b7",
        "caller's span is the parent"
    );
    assert_eq!(joined.1.name, "GET /checkout/{id}");
    let fresh = py_server
        .iter()
        .find(|(_, s)| s.trace_id != joined.1.trace_id)
        .expect("second request has its own trace");
    assert!(
        fresh.1.parent_span_id.is_empty(),
        "no traceparent: a root span"
    );
    for srv in [joined, fresh] {
        let child = py_client
            .iter()
            .find(|(_, c)| c.trace_id == srv.1.trace_id)
            .expect("client call in the server's trace");
        assert_eq!(
            child.1.parent_span_id, srv.1.span_id,
            "client call is a child of the server span"
        );
        assert_eq!(
            attr_int(&child.1.attributes, "server.port"),
            Some(i64::from(nginx.port))
        );
        assert_eq!(
            attr_str(&child.1.attributes, "url.full").map(|u| u.ends_with("/api/inventory/42")),
            Some(true)
        );
        assert!(
            child.1.start_time_unix_nano >= srv.1.start_time_unix_nano
                && child.1.end_time_unix_nano <= srv.1.end_time_unix_nano
        );
    }
    // nginx served the two inventory calls.
    let inv = all
        .iter()
        .filter(|(_, s)| {
            s.kind == SpanKind::Server as i32
                && attr_str(&s.attributes, "url.path") == Some("/api/inventory/42")
        })
        .count();
    assert_eq!(inv, 2);
    assert_eq!(metric_count(&recv, "http.client.request.duration"), 2);
}

/// The perf harness's `--nginx-workers 2 --nginx-pin-workers`: two workers, each allowed on
/// one CPU of its own.
#[test]
fn nginx_workers_can_be_pinned_one_per_cpu() {
    let nginx = Nginx::start_with(NginxOptions {
        workers: 2,
        pin_workers: true,
        ..Default::default()
    });
    let master = nginx.proc.pid();
    let deadline = Instant::now() + Duration::from_secs(10);
    let workers = loop {
        let kids = children(master);
        if kids.len() == 2 || Instant::now() > deadline {
            break kids;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(workers.len(), 2, "nginx workers: {workers:?}");
    let allowed = || -> Vec<String> {
        workers
            .iter()
            .map(|w| {
                let status = std::fs::read_to_string(format!("/proc/{w}/status")).unwrap();
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                    .unwrap()
                    .trim()
                    .to_string()
            })
            .collect()
    };
    // A worker pins itself as it starts, a moment after the fork that made it a child: wait
    // for it (a CI run once read both workers before either had, "0-1" each).
    let cpus = loop {
        let cpus = allowed();
        if cpus.iter().all(|c| c.parse::<u32>().is_ok()) || Instant::now() > deadline {
            break cpus;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        cpus.iter().all(|c| c.parse::<u32>().is_ok()),
        "one CPU each: {cpus:?}"
    );
    assert_ne!(cpus[0], cpus[1], "each its own CPU");
}

/// A keep-alive HTTP/1.1 server answering `GET /chunked/<how>/<i>` with a 64 KiB body sent
/// chunked, far larger than the capture (1024 bytes): `one` writes the four 16 KiB chunks and
/// the terminator in one write (the capture's gap hides three chunk-size lines), `each` writes
/// one chunk per write, the terminator with the last, `trailers` is `one` with trailer
/// fields after the last chunk, and `iov` is the whole answer in one `sendmsg` of 46 iovecs:
/// the head in 2-byte pieces (past the first 32 iovecs, which the kernel reads in one go), the
/// chunks, and the terminator byte by byte.
const CHUNKED_SERVER: &str = r#"
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
port = int(sys.argv[1])
CHUNK = 16 * 1024
class H(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def do_GET(self):
        how = self.path.split('/')[2]
        chunks = [b'%x\r\n' % CHUNK + b'x' * CHUNK + b'\r\n' for _ in range(4)]
        end = b'0\r\nX-Checksum: 4x16k\r\nX-Chunks: 4\r\n\r\n' if how == 'trailers' else b'0\r\n\r\n'
        if how == 'iov':
            head = b'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n'
            bufs = [head[i:i + 2] for i in range(0, len(head), 2)] + chunks + [bytes([b]) for b in end]
            assert len(bufs) == 46
            sent = self.connection.sendmsg(bufs)
            self.connection.sendall(b''.join(bufs)[sent:])
            return
        self.send_response(200)
        self.send_header('Content-Type', 'text/plain')
        self.send_header('Transfer-Encoding', 'chunked')
        self.end_headers()
        if how == 'each':
            for c in chunks[:-1]:
                self.wfile.write(c)
            self.wfile.write(chunks[-1] + end)
        else:
            self.wfile.write(b''.join(chunks) + end)
    def log_message(self, *a): pass
HTTPServer(('127.0.0.1', port), H).serve_forever()
"#;

/// One keep-alive connection: for each path given, waits for a line on stdin, sends the request,
/// reads the whole answer and prints `got <status> <body length>`. Prints `pid` first (so the
/// agent can be told to trace it before it connects) and `done` after closing.
const CHUNKED_CLIENT: &str = r#"
import http.client, sys
port, paths = int(sys.argv[1]), sys.argv[2:]
print('pid', flush=True)
c = http.client.HTTPConnection('127.0.0.1', port)
for p in paths:
    sys.stdin.readline()
    c.request('GET', p)
    r = c.getresponse()
    body = r.read()
    print('got', r.status, len(body), flush=True)
c.close()
print('done', flush=True)
"#;

#[test]
fn chunked_answers_larger_than_the_capture_end_at_their_terminator() {
    if !require_bpf() {
        return;
    }
    let _g = serial();
    let recv = Receiver::start();
    let port = free_port();
    let server = python_bg(CHUNKED_SERVER, &[&port.to_string()]);
    wait_port(port, Duration::from_secs(10));
    let hows = [
        "one", "each", "trailers", "iov", "one", "each", "trailers", "iov",
    ];
    let paths: Vec<String> = hows
        .iter()
        .enumerate()
        .map(|(i, how)| format!("/chunked/{how}/{i}"))
        .collect();
    let mut child = Command::new("python3")
        .args(["-c", CHUNKED_CLIENT, &port.to_string()])
        .args(&paths)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
    let mut stdin = child.stdin.take().expect("piped");
    let client = Proc { child };
    let client_pid = client.pid();
    let mut line = String::new();
    stdout.read_line(&mut line).expect("client started");
    assert_eq!(line.trim(), "pid");
    let agent = otlp_agent(&recv.endpoint(), &[server.pid(), client.pid()], &[]);
    for (i, path) in paths.iter().enumerate() {
        stdin.write_all(b"next\n").expect("write");
        stdin.flush().expect("flush");
        line.clear();
        stdout.read_line(&mut line).expect("read");
        assert_eq!(line.trim(), "got 200 65536", "request {i}");
        // Both spans of this exchange (the server's and the client's) are exported before the
        // next request is sent: the answer ended at its terminator, not at the next request.
        assert!(
            recv.wait_for_spans(2 * (i + 1), Duration::from_secs(10)),
            "the spans of exchange {i} ({path}) were not exported while the connection idled \
             (have {}); agent log:\n{}",
            recv.spans().len(),
            agent.log()
        );
    }
    line.clear();
    stdout.read_line(&mut line).expect("read");
    assert_eq!(line.trim(), "done");
    drop(stdin);
    drop(client);
    let log = agent.stop();

    let all = recv.spans();
    assert_eq!(all.len(), 2 * paths.len(), "agent log:\n{log}");
    let sorted = |kind: SpanKind| {
        let mut v: Vec<&Span> = all
            .iter()
            .filter(|(_, s)| s.kind == kind as i32)
            .map(|(_, s)| s)
            .collect();
        v.sort_by_key(|s| s.start_time_unix_nano);
        v
    };
    let (servers, clients) = (sorted(SpanKind::Server), sorted(SpanKind::Client));
    assert_eq!((servers.len(), clients.len()), (paths.len(), paths.len()));
    assert!(all.iter().all(|(r, s)| {
        let pid = if s.kind == SpanKind::Server as i32 {
            server.pid()
        } else {
            client_pid
        };
        attr_int(r, "process.pid") == Some(i64::from(pid))
    }));
    for (i, (srv, cli)) in servers.iter().zip(&clients).enumerate() {
        for (s, path) in [
            (srv, attr_str(&srv.attributes, "url.path")),
            (cli, attr_str(&cli.attributes, "url.full")),
        ] {
            assert_eq!(
                attr_int(&s.attributes, "http.response.status_code"),
                Some(200),
                "{i}"
            );
            assert!(
                path.is_some_and(|p| p.ends_with(&paths[i])),
                "{i}: {path:?}"
            );
            assert!(s.end_time_unix_nano >= s.start_time_unix_nano, "{i}");
        }
        // The client's span covers the exchange (its start is the request's send): 64 KiB on
        // loopback take milliseconds, not the second the test waits between requests.
        let took = cli.end_time_unix_nano - cli.start_time_unix_nano;
        assert!(took < 500_000_000, "client {i}: {} ms", took / 1_000_000);
        // The server's answer ended after the request was sent, and before the next one. (Its
        // span starts when its read began waiting for the request, before the client sent it.)
        assert!(srv.end_time_unix_nano >= cli.start_time_unix_nano, "{i}");
        if let (Some(ns), Some(nc)) = (servers.get(i + 1), clients.get(i + 1)) {
            assert!(srv.end_time_unix_nano <= nc.start_time_unix_nano, "{i}");
            assert!(srv.end_time_unix_nano <= ns.start_time_unix_nano, "{i}");
            assert!(cli.end_time_unix_nano <= nc.start_time_unix_nano, "{i}");
        }
    }
}

/// A ring filling faster than the shard drains it wakes the shard early: with rings of 128 KiB
/// per CPU and a 100 ms drain interval, four keep-alive clients overflow the rings many times
/// over between two drains (the agent before this wake-up lost most records here); the
/// kernel's forced wakeup past half a ring ends the shard's pause, so every request still gets
/// its span.
#[test]
fn a_filling_ring_wakes_its_shard_before_the_drain_interval() {
    if !require_bpf() {
        return;
    }
    let _g = serial();
    let recv = Receiver::start();
    let nginx = Nginx::start();
    let extra: Vec<String> = ["--ring-bytes", "256K", "--drain-interval-ms", "100"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let agent = otlp_agent(&recv.endpoint(), &[nginx.proc.pid()], &extra);
    let (clients, each) = (4, 1500);
    python(
        r#"
import http.client, os, sys
from multiprocessing import Pool
port, clients, each = (int(a) for a in sys.argv[1:4])
# The clients yield the CPU to the agent: on 2 busy cores a woken shard could otherwise wait
# longer than the other half of the ring takes to fill (the wake-up is what is tested, not
# the scheduler).
os.nice(19)
def run(k):
    c = http.client.HTTPConnection('127.0.0.1', port)
    for i in range(each):
        c.request('GET', '/api/burst/%d/%d' % (k, i))
        r = c.getresponse(); r.read()
        assert r.status == 200, r.status
    c.close()
with Pool(clients) as p:
    p.map(run, range(clients))
"#,
        &[
            &nginx.port.to_string(),
            &clients.to_string(),
            &each.to_string(),
        ],
    );
    let log = agent.stop();
    let n = clients * each;
    let spans = server_spans(&recv);
    assert_eq!(spans.len(), n, "server spans (agent log:\n{log})");
    assert_eq!(
        metric_count(&recv, "http.server.request.duration"),
        n as u64
    );
}
