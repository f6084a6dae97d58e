//! Shards driven directly (no threads, no kernel): ordering across CPUs, pairing, correlation.

use std::collections::VecDeque;

use telegen_bpf::abi::{self, Event};
use telegen_dataplane::shard::{shard_of, ShardConfig, ShardCore, ShardIo, ShardMsg};
use telegen_dataplane::signal::{AttrValue, ExportMsg, SpanKind, SpanRecord, Text};

mod common;

/// Two shards wired by in-memory queues.
#[derive(Default)]
struct Net {
    queues: Vec<VecDeque<ShardMsg>>,
    exported: Vec<ExportMsg>,
}

struct Io<'a> {
    net: &'a mut Net,
}

impl ShardIo for Io<'_> {
    fn forward(&mut self, to: usize, msg: ShardMsg) -> Result<(), ShardMsg> {
        self.net.queues[to].push_back(msg);
        Ok(())
    }
    fn forward_spare(&mut self, to: usize, buf: Vec<u8>) -> Result<(), Vec<u8>> {
        self.net.queues[to].push_back(ShardMsg::Spare(buf));
        Ok(())
    }
    fn export(&mut self, msg: ExportMsg) -> Result<(), ExportMsg> {
        self.net.exported.push(msg);
        Ok(())
    }
    /// A box full of another span's values: every span of these tests is built over one, so a
    /// field a span builder leaves as it found it shows in the tests' checks.
    fn recycled(&mut self) -> Option<Box<SpanRecord>> {
        Some(Box::new(SpanRecord {
            trace_id: [0xee; 16],
            span_id: [0xee; 8],
            parent_span_id: [0xee; 8],
            name: Text::Static("stale"),
            kind: SpanKind::Client,
            start_unix_ns: 7,
            end_unix_ns: 9,
            error: Some("stale".into()),
            attrs: vec![("stale", AttrValue::Int(1)); 20],
            pid: 9_999,
            comm: [b's'; 16],
        }))
    }
}

struct Harness {
    shards: Vec<ShardCore>,
    net: Net,
}

impl Harness {
    fn new(n: usize) -> Self {
        Self::with_config(n, |_| {})
    }
    fn with_config(n: usize, tune: impl Fn(&mut ShardConfig)) -> Self {
        let shards = (0..n)
            .map(|i| {
                let mut cfg = ShardConfig::new(i, n);
                tune(&mut cfg);
                ShardCore::new(cfg, 0)
            })
            .collect();
        let net = Net {
            queues: (0..n).map(|_| VecDeque::new()).collect(),
            exported: Vec::new(),
        };
        Self { shards, net }
    }
    /// A record drained by shard `drainer` (as if from its CPU's ring).
    fn drain(&mut self, drainer: usize, rec: &[u8]) {
        self.drain_at(drainer, rec, 0)
    }
    fn drain_at(&mut self, drainer: usize, rec: &[u8], now_ns: u64) {
        let mut io = Io { net: &mut self.net };
        self.shards[drainer].on_record(rec, now_ns, &mut io);
        self.pump();
    }
    fn pump(&mut self) {
        loop {
            let mut any = false;
            for i in 0..self.shards.len() {
                while let Some(m) = self.net.queues[i].pop_front() {
                    any = true;
                    let mut io = Io { net: &mut self.net };
                    self.shards[i].on_message(m, 0, &mut io);
                }
            }
            if !any {
                break;
            }
        }
    }
    fn stop(&mut self) {
        for i in 0..self.shards.len() {
            let mut io = Io { net: &mut self.net };
            self.shards[i].stop(&mut io);
            self.pump();
        }
    }
    /// The spans exported so far, each checked to hold nothing of the box it was built over.
    fn spans(&self) -> Vec<&SpanRecord> {
        let spans: Vec<&SpanRecord> = self
            .net
            .exported
            .iter()
            .filter_map(|m| {
                if let ExportMsg::Span(s) = m {
                    Some(&**s)
                } else {
                    None
                }
            })
            .collect();
        for s in &spans {
            let stale = s.trace_id == [0xee; 16]
                || s.span_id == [0xee; 8]
                || s.parent_span_id == [0xee; 8]
                || s.name == "stale"
                || s.start_unix_ns == 7
                || s.end_unix_ns == 9
                || s.error.as_deref() == Some("stale")
                || s.attrs.iter().any(|(k, _)| *k == "stale")
                || s.pid == 9_999
                || s.comm == [b's'; 16];
            assert!(!stale, "a field kept the recycled box's value: {s:?}");
        }
        spans
    }
}

fn rec(conn: u64, seq: u64, role: u8, dir: u8, data: &[u8], t: u64) -> Vec<u8> {
    common::record(conn, seq, abi::EV_DATA, role, dir, data, t)
}

/// The record `r` with its header and payload edited.
fn reencode(r: &[u8], edit: impl FnOnce(&mut Event, &mut Vec<u8>)) -> Vec<u8> {
    let (mut ev, payload) = Event::decode(r).unwrap();
    let mut payload = payload.to_vec();
    edit(&mut ev, &mut payload);
    let mut out = Vec::new();
    ev.encode_into(&payload, &mut out);
    out
}

fn with_parent(r: Vec<u8>, pconn: u64, pseq: u64) -> Vec<u8> {
    reencode(&r, |ev, _| {
        ev.parent_conn_id = pconn;
        ev.parent_seq = pseq;
    })
}

/// A connection id from `base` up whose owner among two shards passes `owner`.
fn conn_owned(base: u64, owner: impl Fn(usize) -> bool) -> u64 {
    (2..100u64)
        .map(|i| base + i)
        .find(|c| owner(shard_of(*c, 2)))
        .expect("a connection id on that shard")
}

/// A client call on `client` made while serving request `pseq` of `server` (the kernel's stamp):
/// its request drained by shard `out`, its answer by shard `back`.
fn child_call(h: &mut Harness, client: u64, server: u64, pseq: u64, out: usize, back: usize) {
    h.drain(
        out,
        &with_parent(
            rec(client, 0, abi::ROLE_CLIENT, abi::DIR_EGRESS, REQ, 200),
            server,
            pseq,
        ),
    );
    h.drain(
        back,
        &rec(client, 1, abi::ROLE_CLIENT, abi::DIR_INGRESS, RESP, 300),
    );
}

/// The server span and the client span of `spans`, the client's a child of the server's.
fn assert_child_of_server(spans: &[&SpanRecord], case: &str) {
    assert_eq!(spans.len(), 2, "{case}");
    let srv = spans.iter().find(|s| s.kind == SpanKind::Server).unwrap();
    let cli = spans.iter().find(|s| s.kind == SpanKind::Client).unwrap();
    assert_eq!(cli.trace_id, srv.trace_id, "{case}");
    assert_eq!(cli.parent_span_id, srv.span_id, "{case}");
}

const REQ: &[u8] = b"GET /users/7 HTTP/1.1\r\nHost: api\r\n\r\n";
const RESP: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

#[test]
fn out_of_order_across_shards_pairs_correctly() {
    let mut h = Harness::new(2);
    let conn = 0x1_0000_0005;
    // Three keep-alive exchanges; each record drained by the "wrong" shard half the time and
    // responses arriving before their requests.
    let recs: Vec<Vec<u8>> = (0..3).flat_map(|i| exchange(conn, i)).collect();
    for pair in recs.chunks(2) {
        h.drain(1, &pair[1]);
        h.drain(0, &pair[0]);
    }
    let spans = h.spans();
    assert_eq!(spans.len(), 3, "one server span per request");
    for s in &spans {
        assert_eq!(s.kind, SpanKind::Server);
        assert_eq!(s.name, "GET /users/{id}");
        assert!(s
            .attrs
            .contains(&("http.response.status_code", AttrValue::Int(200))));
    }
    let owner = shard_of(conn, 2);
    assert_eq!(h.shards[owner].stats().reorder_gaps, 0);
    assert!(h.shards[1 - owner].stats().events_forwarded >= 3);
}

/// A connection belongs to the shard draining the ring of the CPU that saw it first (stamped
/// in its id, plus one): drained there, its records are never forwarded; drained by another
/// shard (its thread moved), they are. Ids without a CPU are spread over every shard.
#[test]
fn a_connection_belongs_to_the_shard_of_the_cpu_that_saw_it_first() {
    for shards in 1..=4 {
        for cpu in 0..8u64 {
            for n in [0, 1, 0xff_ffff_ffff] {
                let id = ((cpu + 1) << abi::CONN_ID_CPU_SHIFT) | n;
                assert_eq!(shard_of(id, shards), cpu as usize % shards, "{id:#x}");
            }
        }
    }
    let spread: std::collections::HashSet<usize> = (1..64u64).map(|c| shard_of(c, 4)).collect();
    assert_eq!(spread.len(), 4, "unstamped ids reach every shard");

    let on_cpu1 = (2 << abi::CONN_ID_CPU_SHIFT) | 7;
    let mut h = Harness::new(2);
    for r in exchange(on_cpu1, 0) {
        h.drain(1, &r);
    }
    let moved = exchange(on_cpu1, 1);
    h.drain(0, &moved[0]);
    h.drain(1, &moved[1]);
    assert_eq!(h.spans().len(), 2);
    assert_eq!(h.shards[1].stats().events_forwarded, 0);
    assert_eq!(h.shards[0].stats().events_forwarded, 1);
}

#[test]
fn traceparent_is_honoured_and_child_joins_trace_across_shards() {
    // Find a server and a client connection owned by different shards.
    let server = 0x1_0000_0001u64;
    let client = conn_owned(0x2_0000_0000, |s| s != shard_of(server, 2));
    let mut h = Harness::new(2);
    let req = b"GET /checkout HTTP/1.1\r\nHost: shop\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n";
    h.drain(
        0,
        &rec(server, 0, abi::ROLE_SERVER, abi::DIR_INGRESS, req, 100),
    );
    // While serving, the same thread calls out; the kernel stamped (server, seq 0).
    child_call(&mut h, client, server, 0, 1, 0);
    assert_eq!(h.spans().len(), 0, "the child waits for its parent");
    h.drain(
        1,
        &rec(server, 1, abi::ROLE_SERVER, abi::DIR_EGRESS, RESP, 400),
    );
    let spans = h.spans();
    assert_child_of_server(&spans, "child before its parent");
    let srv = spans.iter().find(|s| s.kind == SpanKind::Server).unwrap();
    assert_eq!(hex(&srv.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(hex(&srv.parent_span_id), "00f067aa0ba902b7");
}

/// A child whose parent's span went out first finds it among the requests its connection
/// served: while the server connection is open (kept in its flow), and after it closed (kept by
/// the shard), on the parent's shard or forwarded from the other.
#[test]
fn a_child_after_its_parent_joins_it_open_or_closed() {
    let server = 0x1_0000_0001u64;
    for close_first in [false, true] {
        for same_shard in [true, false] {
            let client = conn_owned(0x2_0000_0000, |s| (s == shard_of(server, 2)) == same_shard);
            let mut h = Harness::new(2);
            h.drain(
                0,
                &rec(server, 0, abi::ROLE_SERVER, abi::DIR_INGRESS, REQ, 100),
            );
            h.drain(
                0,
                &rec(server, 1, abi::ROLE_SERVER, abi::DIR_EGRESS, RESP, 400),
            );
            if close_first {
                let close = reencode(
                    &rec(server, 2, abi::ROLE_SERVER, abi::DIR_EGRESS, b"", 500),
                    |ev, _| ev.kind = abi::EV_CLOSE,
                );
                h.drain(0, &close);
            }
            assert_eq!(h.spans().len(), 1, "the parent's span went out first");
            child_call(&mut h, client, server, 0, 1, 1);
            let case = format!("closed first: {close_first}, same shard: {same_shard}");
            assert_child_of_server(&h.spans(), &case);
        }
    }
}

/// A server connection whose flow was evicted (its shard's table full) while it stayed open
/// comes back as a new flow; a child of a request served before the eviction still finds it.
#[test]
fn a_child_finds_its_parent_after_the_server_flow_was_evicted_and_came_back() {
    let server = 0x1_0000_0001u64;
    let owner = shard_of(server, 2);
    let other = conn_owned(0x3_0000_0000, |s| s == owner);
    let client = conn_owned(0x2_0000_0000, |s| s != owner);
    // One flow per shard: any other connection on the owner evicts the server's flow.
    let mut h = Harness::with_config(2, |c| c.flow_capacity = 1);
    // Served (its span goes out), evicted by another connection, back with a new request.
    for (conn, seq, role, dir, data, t) in [
        (server, 0, abi::ROLE_SERVER, abi::DIR_INGRESS, REQ, 100),
        (server, 1, abi::ROLE_SERVER, abi::DIR_EGRESS, RESP, 400),
        (other, 0, abi::ROLE_CLIENT, abi::DIR_EGRESS, REQ, 500),
        (server, 2, abi::ROLE_SERVER, abi::DIR_INGRESS, REQ, 600),
    ] {
        h.drain(owner, &rec(conn, seq, role, dir, data, t));
    }
    child_call(&mut h, client, server, 0, 1 - owner, 1 - owner);
    let spans = h.spans();
    let srv = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server)
        .expect("the server span");
    let child = spans
        .iter()
        .find(|s| s.kind == SpanKind::Client && s.parent_span_id != [0; 8])
        .expect("the client call joined its parent");
    assert_eq!(child.trace_id, srv.trace_id);
    assert_eq!(child.parent_span_id, srv.span_id);
}

/// At stop every flow leaves the table before each is finished: a client call cut short then
/// (its partial span is a child) finds its parent whether the server's flow is finished before
/// or after it. With 64 pairs, some calls come before their parents in the table's order (the
/// test fails without the adoption in `keep_served`).
#[test]
fn calls_cut_short_at_stop_join_their_parents() {
    let mut h = Harness::new(1);
    let pairs: Vec<(u64, u64)> = (0..64u64)
        .map(|i| (0x1_0000_0000 + i, 0x2_0000_0000 + i))
        .collect();
    for &(server, client) in &pairs {
        h.drain(
            0,
            &rec(server, 0, abi::ROLE_SERVER, abi::DIR_INGRESS, REQ, 100),
        );
        h.drain(
            0,
            &rec(server, 1, abi::ROLE_SERVER, abi::DIR_EGRESS, RESP, 400),
        );
        // The call made while serving never gets its answer before the agent stops.
        h.drain(
            0,
            &with_parent(
                rec(client, 0, abi::ROLE_CLIENT, abi::DIR_EGRESS, REQ, 200),
                server,
                0,
            ),
        );
    }
    h.stop();
    let spans = h.spans();
    let servers: Vec<_> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Server)
        .collect();
    let clients: Vec<_> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Client)
        .collect();
    assert_eq!((servers.len(), clients.len()), (pairs.len(), pairs.len()));
    for c in &clients {
        assert!(
            servers
                .iter()
                .any(|s| s.span_id == c.parent_span_id && s.trace_id == c.trace_id),
            "a call cut short at stop lost its parent"
        );
    }
    assert_eq!(h.shards[0].stats().orphan_children, 0);
}

/// A server blocked in read() on a keep-alive connection: the span starts when the request
/// arrived (the read's exit), not when the process began waiting for it.
#[test]
fn a_blocking_read_does_not_count_its_wait() {
    let mut h = Harness::new(1);
    let mut read = rec(9, 0, abi::ROLE_SERVER, abi::DIR_INGRESS, REQ, 1_000);
    let (mut ev, payload) = Event::decode(&read).unwrap();
    let payload = payload.to_vec();
    ev.end_ns = 5_000_000_000; // waited 5 s for the request
    read.clear();
    ev.encode_into(&payload, &mut read);
    h.drain(0, &read);
    h.drain(
        0,
        &rec(9, 1, abi::ROLE_SERVER, abi::DIR_EGRESS, RESP, 5_000_200_000),
    );
    let s = h.spans()[0];
    let dur = s.end_unix_ns - s.start_unix_ns;
    assert_eq!(
        dur, 200_010,
        "from the read's exit to the response write's exit"
    );
}

#[test]
fn without_traceparent_a_new_trace_starts() {
    let mut h = Harness::new(1);
    h.drain(0, &rec(9, 0, abi::ROLE_SERVER, abi::DIR_INGRESS, REQ, 0));
    h.drain(0, &rec(9, 1, abi::ROLE_SERVER, abi::DIR_EGRESS, RESP, 10));
    let s = h.spans()[0];
    assert_ne!(s.trace_id, [0; 16]);
    assert_eq!(s.parent_span_id, [0; 8]);
}

#[test]
fn lost_record_is_skipped_after_timeout_and_counted() {
    let mut h = Harness::new(1);
    h.drain(0, &rec(9, 0, abi::ROLE_SERVER, abi::DIR_INGRESS, REQ, 0));
    // seq 1 (the response) is lost; seq 2 starts the next exchange.
    h.drain(0, &rec(9, 2, abi::ROLE_SERVER, abi::DIR_INGRESS, REQ, 1000));
    h.drain(0, &rec(9, 3, abi::ROLE_SERVER, abi::DIR_EGRESS, RESP, 2000));
    assert!(h.spans().is_empty());
    let mut io = Io { net: &mut h.net };
    h.shards[0].tick(10_000_000_000, &mut io);
    assert_eq!(h.shards[0].stats().reorder_gaps, 1);
    h.stop();
    assert!(!h.spans().is_empty());
}

/// The records of an exchange `i` on a server connection: request at seq 2i, response at 2i+1.
fn exchange(conn: u64, i: u64) -> [Vec<u8>; 2] {
    [
        rec(
            conn,
            2 * i,
            abi::ROLE_SERVER,
            abi::DIR_INGRESS,
            REQ,
            1000 * i,
        ),
        rec(
            conn,
            2 * i + 1,
            abi::ROLE_SERVER,
            abi::DIR_EGRESS,
            RESP,
            1000 * i + 500,
        ),
    ]
}

/// A record that is merely late (the shard draining its CPU's ring was descheduled) is waited
/// for, however many of the connection's later records arrive meanwhile: none is lost.
#[test]
fn a_late_record_is_waited_for_however_many_follow() {
    let mut h = Harness::new(1);
    let recs: Vec<Vec<u8>> = (0..200).flat_map(|i| exchange(9, i)).collect();
    for r in &recs[1..] {
        h.drain(0, r);
    }
    assert!(h.spans().is_empty());
    assert!(h.shards[0].stats().reorder_held_bytes > 0);
    h.drain(0, &recs[0]);
    assert_eq!(h.spans().len(), 200);
    let st = h.shards[0].stats();
    assert_eq!(
        (st.reorder_gaps, st.events_late, st.reorder_held_bytes),
        (0, 0, 0)
    );
}

/// Held records stay within the shard's budget: the connection that has waited longest gives
/// up its gap (counted), the others keep waiting and lose nothing.
#[test]
fn held_records_stay_within_the_budget() {
    let one = exchange(1, 1)[0].len();
    let mut h = Harness::with_config(1, |c| c.reorder_budget_bytes = 30 * one);
    // Connection 1 waits for its seq 0 from t=10, connection 2 for its own from t=20.
    let a: Vec<Vec<u8>> = (0..10).flat_map(|i| exchange(1, i)).collect();
    let b: Vec<Vec<u8>> = (0..10).flat_map(|i| exchange(2, i)).collect();
    for r in &a[1..] {
        h.drain_at(0, r, 10);
    }
    for r in &b[1..] {
        h.drain_at(0, r, 20);
    }
    let st = h.shards[0].stats();
    assert_eq!((st.reorder_gaps, st.reorder_budget_gaps), (1, 1));
    assert!(st.reorder_held_bytes <= 30 * one as u64);
    // Connection 1 gave up on its request 0: its 9 later exchanges and the lone response became
    // spans (the response without a request makes none).
    assert_eq!(h.spans().len(), 9);
    h.drain_at(0, &a[0], 30);
    assert_eq!(h.shards[0].stats().events_late, 1);
    h.drain_at(0, &b[0], 30);
    assert_eq!(h.spans().len(), 19);
    let st = h.shards[0].stats();
    assert_eq!((st.reorder_gaps, st.reorder_held_bytes), (1, 0));
}

#[test]
fn metrics_count_requests_and_stop_flushes() {
    let mut h = Harness::new(2);
    for c in 0..10u64 {
        h.drain(
            (c % 2) as usize,
            &rec(c + 1, 0, abi::ROLE_SERVER, abi::DIR_INGRESS, REQ, 0),
        );
        h.drain(
            (c % 2) as usize,
            &rec(c + 1, 1, abi::ROLE_SERVER, abi::DIR_EGRESS, RESP, 10),
        );
    }
    h.stop();
    let count: u64 = h
        .net
        .exported
        .iter()
        .filter_map(|m| {
            if let ExportMsg::Histogram(d) = m {
                Some(d.count)
            } else {
                None
            }
        })
        .sum();
    assert_eq!(count, 10);
    assert_eq!(h.spans().len(), 10);
}

#[test]
fn malformed_records_are_counted_not_fatal() {
    let mut h = Harness::new(1);
    h.drain(0, b"short");
    let mut bad = rec(1, 0, abi::ROLE_SERVER, abi::DIR_INGRESS, REQ, 0);
    bad.truncate(bad.len() - 5);
    h.drain(0, &bad);
    // Garbage payloads on a connection never panic.
    for i in 0..20 {
        h.drain(
            0,
            &rec(2, i, abi::ROLE_UNKNOWN, abi::DIR_INGRESS, &[0xff; 40], 0),
        );
    }
    assert_eq!(h.shards[0].stats().events_malformed, 2);
    assert_eq!(h.shards[0].stats().unknown_protocol, 1);
}

/// A read larger than the capture: the kernel copies its first `head` and last `tail` bytes.
fn cut_rec(conn: u64, seq: u64, data: &[u8], head: usize, tail: usize, t: u64) -> Vec<u8> {
    let r = rec(conn, seq, abi::ROLE_SERVER, abi::DIR_INGRESS, data, t);
    reencode(&r, |ev, payload| {
        ev.tail = tail as u32;
        payload.truncate(head);
        payload.extend_from_slice(&data[data.len() - tail..]);
    })
}

/// Requests a parser saw but could not pair for sure (after uncaptured bytes that may hide
/// pipelined requests) are counted in the shard's stats, not lost silently, including those
/// only settled when the connection closes.
#[test]
fn exchanges_that_cannot_be_paired_are_counted() {
    let mut h = Harness::new(1);
    let mut w = b"POST /1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5000\r\n\r\n".to_vec();
    w.extend(std::iter::repeat_n(b'x', 5000));
    // A pipelined request whose head lies entirely in the bytes not captured.
    w.extend_from_slice(b"GET /2 HTTP/1.1\r\nHost: h\r\nX-Pad: ");
    w.extend(std::iter::repeat_n(b'p', 300));
    w.extend_from_slice(b"\r\n\r\n");
    h.drain(0, &cut_rec(1, 0, &w, 1024, 256, 0));
    let get3 = b"GET /3 HTTP/1.1\r\nHost: h\r\n\r\n";
    h.drain(0, &rec(1, 1, abi::ROLE_SERVER, abi::DIR_INGRESS, get3, 100));
    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    h.drain(0, &rec(1, 2, abi::ROLE_SERVER, abi::DIR_EGRESS, ok, 200));
    h.drain(0, &rec(1, 3, abi::ROLE_SERVER, abi::DIR_EGRESS, ok, 300));
    h.pump();
    assert_eq!(h.shards[0].stats().exchanges_unpaired, 1, "GET /3");
    h.stop();
    let paths: Vec<_> = h
        .spans()
        .iter()
        .filter_map(|s| s.attrs.iter().find(|(k, _)| *k == "url.path"))
        .filter_map(|(_, v)| v.as_str().map(str::to_string))
        .collect();
    assert_eq!(paths, ["/1"], "only the request paired for sure");
    assert_eq!(h.shards[0].stats().exchanges_unpaired, 1);
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn as_tls(r: Vec<u8>) -> Vec<u8> {
    reencode(&r, |ev, _| ev.kind = abi::EV_TLS_DATA)
}

#[test]
fn tls_plaintext_is_parsed_as_https_and_ciphertext_skipped() {
    let mut h = Harness::new(1);
    let conn = 0x77;
    // The handshake (ciphertext on the socket) comes first, then the library's plaintext, with
    // one more ciphertext record in between as the kernel may still emit before it knows.
    let client_hello = [0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5];
    let app_data = [0x17, 0x03, 0x03, 0x00, 0x03, 9, 9, 9];
    let recs = [
        rec(
            conn,
            0,
            abi::ROLE_SERVER,
            abi::DIR_INGRESS,
            &client_hello,
            100,
        ),
        rec(
            conn,
            1,
            abi::ROLE_SERVER,
            abi::DIR_EGRESS,
            &client_hello,
            200,
        ),
        as_tls(rec(conn, 2, abi::ROLE_SERVER, abi::DIR_INGRESS, REQ, 300)),
        rec(conn, 3, abi::ROLE_SERVER, abi::DIR_EGRESS, &app_data, 350),
        as_tls(rec(conn, 4, abi::ROLE_SERVER, abi::DIR_EGRESS, RESP, 400)),
    ];
    for r in &recs {
        h.drain(0, r);
    }
    h.stop();
    let spans = h.spans();
    assert_eq!(spans.len(), 1, "one request, one span");
    let scheme = spans[0]
        .attrs
        .iter()
        .find(|(k, _)| *k == "url.scheme")
        .and_then(|(_, v)| v.as_str());
    assert_eq!(scheme, Some("https"));
    let st = h.shards[0].stats();
    assert_eq!(
        st.tls_encrypted, 3,
        "two handshake records and one after plaintext"
    );
    assert_eq!(
        st.unknown_protocol, 0,
        "ciphertext is not an unknown protocol"
    );
    assert_eq!(st.parse_errors, 0);
}
