//! Unit tests of the HTTP/1.x parser (kept apart from the parser to keep files short).

use super::*;
use crate::protocols::Direction::{Egress, Ingress};

pub(super) const REQ: &[u8] = b"GET /api/users/42?x=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n";
pub(super) const RESP: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello";

/// Feeds chunks with increasing timestamps and sequence numbers.
pub(super) struct Conn {
    pub(super) p: Http1Parser,
    out: Vec<L7Record>,
    pub(super) seq: u64,
    limit: usize,
}

impl Conn {
    pub(super) fn new(role: Role) -> Self {
        Self {
            p: Http1Parser::new(role),
            out: Vec::new(),
            seq: 0,
            limit: usize::MAX,
        }
    }

    fn with_limit(role: Role, limit: usize) -> Self {
        Self {
            limit,
            ..Self::new(role)
        }
    }

    /// Feed `data` as one syscall, captured up to the limit.
    pub(super) fn send(&mut self, dir: Direction, data: &[u8]) -> &mut Self {
        let cap = data.len().min(self.limit);
        self.raw(dir, &data[..cap], data.len() as u32)
    }

    /// Feed `data` as one syscall captured up to `limit` bytes (whatever the connection's limit).
    fn send_cap(&mut self, limit: usize, dir: Direction, data: &[u8]) -> &mut Self {
        let cap = data.len().min(limit);
        self.raw(dir, &data[..cap], data.len() as u32)
    }

    fn raw(&mut self, dir: Direction, data: &[u8], total_len: u32) -> &mut Self {
        self.raw_tail(dir, data, total_len, &[])
    }

    /// One syscall that moved `total_len` bytes: `data` is their start, `tail` their end.
    pub(super) fn raw_tail(
        &mut self,
        dir: Direction,
        data: &[u8],
        total_len: u32,
        tail: &[u8],
    ) -> &mut Self {
        self.seq += 1;
        let c = Chunk {
            dir,
            data,
            tail,
            total_len,
            start_ns: self.seq * 100,
            end_ns: self.seq * 100 + 10,
            seq: self.seq,
        };
        self.p.feed(&c, &mut self.out);
        self
    }

    pub(super) fn close(&mut self) -> &mut Self {
        self.seq += 1;
        self.p.close(self.seq * 100, &mut self.out);
        self
    }

    pub(super) fn txs(&mut self) -> Vec<HttpTransaction> {
        self.out
            .drain(..)
            .map(|r| match r {
                L7Record::Http(t) => t,
                other => panic!("HTTP parser emitted {other:?}"),
            })
            .collect()
    }
}

#[test]
fn simple_exchange() {
    let mut c = Conn::new(Role::Server);
    c.send(Ingress, REQ).send(Egress, RESP);
    let t = c.txs();
    assert_eq!(t.len(), 1);
    let t = &t[0];
    assert_eq!(t.role, Role::Server);
    assert_eq!(
        (t.method.as_ref(), t.target.as_str()),
        ("GET", "/api/users/42?x=1")
    );
    assert_eq!(t.version, "1.1");
    assert_eq!(t.host.as_deref(), Some("example.com"));
    assert_eq!(
        t.traceparent.as_deref(),
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    );
    assert_eq!(t.status, Some(200));
    assert_eq!((t.start_ns, t.end_ns, t.request_seq), (100, 210, 1));
    assert_eq!((t.request_body_bytes, t.response_body_bytes), (0, 5));
    assert!(!t.partial);
    assert_eq!(c.p.pending(), 0);
    assert_eq!(c.p.parse_errors(), 0);
}

#[test]
fn request_split_at_every_offset() {
    for split in 0..=REQ.len() {
        let mut c = Conn::new(Role::Server);
        c.send(Ingress, &REQ[..split]).send(Ingress, &REQ[split..]);
        // Response split at every offset too (fewer cases).
        let rs = split % (RESP.len() + 1);
        c.send(Egress, &RESP[..rs]).send(Egress, &RESP[rs..]);
        let t = c.txs();
        assert_eq!(t.len(), 1, "split {split}");
        assert_eq!(t[0].target, "/api/users/42?x=1", "split {split}");
        assert_eq!(t[0].host.as_deref(), Some("example.com"));
        assert!(t[0].traceparent.is_some());
        assert_eq!(t[0].status, Some(200));
        assert_eq!(t[0].response_body_bytes, 5);
        // The first request byte is in chunk 1 unless that chunk was empty.
        assert_eq!(
            t[0].request_seq,
            if split == 0 { 2 } else { 1 },
            "split {split}"
        );
        assert!(!t[0].partial);
    }
}

#[test]
fn byte_by_byte() {
    let mut c = Conn::new(Role::Server);
    for b in REQ.chunks(1) {
        c.send(Ingress, b);
    }
    for b in RESP.chunks(1) {
        c.send(Egress, b);
    }
    let t = c.txs();
    assert_eq!(t.len(), 1);
    assert_eq!(
        (t[0].status, t[0].response_body_bytes, t[0].request_seq),
        (Some(200), 5, 1)
    );
    // Completed by the last body byte.
    assert_eq!(t[0].end_ns, c.seq * 100 + 10);
}

#[test]
fn content_length_bodies_use_total_len() {
    let body = vec![b'x'; 100_000];
    let mut req = b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\n\r\n".to_vec();
    req.extend_from_slice(&body[..1000]);
    let mut c = Conn::with_limit(Role::Server, 64);
    c.send(Ingress, &req);
    c.send(Ingress, &body[1000..50_000])
        .send(Ingress, &body[50_000..]);
    assert!(c.txs().is_empty());
    let mut resp = b"HTTP/1.1 201 Created\r\nContent-Length: 70000\r\n\r\n".to_vec();
    resp.extend_from_slice(&body[..70_000]);
    c.send(Egress, &resp);
    let t = c.txs();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].status, Some(201));
    assert_eq!(
        (t[0].request_body_bytes, t[0].response_body_bytes),
        (100_000, 70_000)
    );
    assert!(!t[0].partial);
    // The connection is still in sync.
    c.send(Ingress, REQ).send(Egress, RESP);
    assert_eq!(c.txs().len(), 1);
}

#[test]
fn sendfile_body_without_data() {
    let mut c = Conn::new(Role::Server);
    c.send(Ingress, REQ);
    c.send(Egress, b"HTTP/1.1 200 OK\r\nContent-Length: 4096\r\n\r\n");
    assert!(c.txs().is_empty());
    c.raw(Egress, b"", 4000);
    assert!(c.txs().is_empty());
    c.raw(Egress, b"", 96);
    let t = c.txs();
    assert_eq!(t.len(), 1);
    assert_eq!((t[0].response_body_bytes, t[0].end_ns), (4096, 410));
    assert!(!t[0].partial);
}

fn chunked_response() -> Vec<u8> {
    let mut r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    r.extend_from_slice(b"5\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n");
    r.extend_from_slice(b"0\r\nX-Trailer: t\r\n\r\n");
    r
}

#[test]
fn chunked_across_chunk_boundaries() {
    let r = chunked_response();
    for size in 1..=r.len() {
        let mut c = Conn::new(Role::Server);
        c.send(Ingress, REQ);
        for part in r.chunks(size) {
            assert!(c.txs().is_empty(), "size {size}: finished early");
            c.send(Egress, part);
        }
        let t = c.txs();
        assert_eq!(t.len(), 1, "size {size}");
        assert_eq!(t[0].response_body_bytes, 31, "size {size}");
        assert!(!t[0].partial);
        // Next exchange still parses.
        c.send(Ingress, REQ).send(Egress, RESP);
        assert_eq!(c.txs().len(), 1, "size {size}");
    }
}

#[test]
fn chunked_request_body() {
    let mut c = Conn::new(Role::Server);
    c.send(
        Ingress,
        b"POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
    );
    c.send(Ingress, b"4\r\ndefg\r\n0\r\n\r\n");
    c.send(Egress, RESP);
    let t = c.txs();
    assert_eq!(t.len(), 1);
    assert_eq!((t[0].request_body_bytes, t[0].status), (7, Some(200)));
}

#[test]
fn chunked_data_hidden_inside_one_chunk_keeps_framing() {
    let mut r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000\r\n".to_vec();
    r.extend_from_slice(&[b'z'; 0x1000]);
    let mut c = Conn::new(Role::Server);
    c.send(Ingress, REQ)
        .send_cap(64, Egress, &r)
        .send(Egress, b"\r\n0\r\n\r\n");
    let t = c.txs();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].response_body_bytes, 0x1000);
    assert!(!t[0].partial);
}

#[test]
fn capture_truncated_chunked_falls_back() {
    let r = chunked_response();
    let mut c = Conn::new(Role::Server);
    c.send(Ingress, REQ).send_cap(64, Egress, &r);
    assert!(c.txs().is_empty(), "framing lost: cannot know the end yet");
    // The next request ends the response.
    c.send(Ingress, REQ);
    let t = c.txs();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].status, Some(200));
    assert!(t[0].partial);
    assert_eq!(t[0].end_ns, 210);
    c.send(Egress, RESP);
    let t = c.txs();
    assert_eq!(t.len(), 1);
    assert!(!t[0].partial);
    // Or the close does.
    c.send(Ingress, REQ).send_cap(64, Egress, &r).close();
    let t = c.txs();
    assert_eq!(t.len(), 1);
    assert!(t[0].partial && t[0].status == Some(200));
    assert_eq!(c.p.parse_errors(), 0, "capture loss is not a parse error");
}

#[test]
fn bodyless_responses() {
    let mut c = Conn::new(Role::Server);
    c.send(Ingress, b"HEAD /big HTTP/1.1\r\nHost: h\r\n\r\n");
    c.send(Egress, b"HTTP/1.1 200 OK\r\nContent-Length: 123456\r\n\r\n");
    c.send(Ingress, b"DELETE /x/1 HTTP/1.1\r\n\r\n");
    c.send(Egress, b"HTTP/1.1 204 No Content\r\n\r\n");
    c.send(Ingress, b"GET /c HTTP/1.1\r\nIf-None-Match: \"a\"\r\n\r\n");
    c.send(
        Egress,
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n",
    );
    c.send(Ingress, REQ).send(Egress, RESP);
    let t = c.txs();
    let got: Vec<_> = t
        .iter()
        .map(|t| (t.method.as_ref(), t.status, t.response_body_bytes))
        .collect();
    assert_eq!(
        got,
        [
            ("HEAD", Some(200), 0),
            ("DELETE", Some(204), 0),
            ("GET", Some(304), 0),
            ("GET", Some(200), 5)
        ]
    );
}

#[test]
fn interim_100_continue_is_skipped() {
    let mut c = Conn::new(Role::Server);
    c.send(
        Ingress,
        b"PUT /f HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n",
    );
    c.send(Egress, b"HTTP/1.1 100 Continue\r\n\r\n");
    c.send(Ingress, b"abc").send(Egress, RESP);
    let t = c.txs();
    assert_eq!(t.len(), 1);
    assert_eq!((t[0].status, t[0].request_body_bytes), (Some(200), 3));
}

#[test]
fn pipelining_three_requests() {
    let mut reqs = Vec::new();
    for p in ["/a", "/b", "/c"] {
        reqs.extend_from_slice(format!("GET {p} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes());
    }
    let mut c = Conn::new(Role::Server);
    c.send(Ingress, &reqs);
    assert_eq!(c.p.pending(), 3);
    let mut resps = Vec::new();
    for (code, body) in [(200, "aa"), (404, "bbbb"), (500, "")] {
        resps.extend_from_slice(
            format!(
                "HTTP/1.1 {code} X\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
    }
    // Responses in two writes, split inside the second one.
    c.send(Egress, &resps[..50]).send(Egress, &resps[50..]);
    let t = c.txs();
    let got: Vec<_> = t
        .iter()
        .map(|t| (t.target.as_str(), t.status, t.response_body_bytes))
        .collect();
    assert_eq!(
        got,
        [
            ("/a", Some(200), 2),
            ("/b", Some(404), 4),
            ("/c", Some(500), 0)
        ]
    );
    assert!(t.iter().all(|t| t.request_seq == 1 && t.start_ns == 100));
}

#[test]
fn keep_alive_many() {
    let mut c = Conn::new(Role::Server);
    for i in 0..1000u64 {
        c.send(
            Ingress,
            format!("GET /item/{i} HTTP/1.1\r\n\r\n").as_bytes(),
        );
        c.send(Egress, RESP);
    }
    let t = c.txs();
    assert_eq!(t.len(), 1000);
    for (i, t) in t.iter().enumerate() {
        assert_eq!(t.target, format!("/item/{i}"));
        assert_eq!(t.request_seq, 2 * i as u64 + 1);
        assert_eq!(t.end_ns, (2 * i as u64 + 2) * 100 + 10);
    }
    assert!(c.p.buffered_bytes() < 4096);
}

#[test]
fn http10_body_until_close() {
    let mut c = Conn::new(Role::Server);
    c.send(Ingress, b"GET /old HTTP/1.0\r\n\r\n");
    c.send(Egress, b"HTTP/1.0 200 OK\r\nConnection: close\r\n\r\nabc");
    c.send(Egress, b"defg");
    assert!(c.txs().is_empty());
    c.close();
    let t = c.txs();
    assert_eq!(t.len(), 1);
    assert_eq!(
        (t[0].version, t[0].status, t[0].response_body_bytes),
        ("1.0", Some(200), 7)
    );
    assert_eq!(t[0].end_ns, 400);
    assert!(!t[0].partial);
}

#[test]
fn client_role() {
    let mut c = Conn::new(Role::Client);
    c.send(Egress, REQ).send(Ingress, RESP);
    let t = c.txs();
    assert_eq!(t.len(), 1);
    assert_eq!((t[0].role, t[0].status), (Role::Client, Some(200)));
    // A server-direction request is not a request for a client.
    let mut c = Conn::new(Role::Client);
    c.send(Ingress, REQ).send(Egress, RESP);
    assert!(c.txs().is_empty());
}

#[test]
fn unknown_role_inference() {
    let mut c = Conn::new(Role::Unknown);
    // Mid-stream: a response tail and body bytes before the first request are ignored.
    c.send(Egress, b"lo world")
        .send(Ingress, b"HTTP/1.1 200 OK\r\n\r\n");
    assert_eq!(c.p.role(), Role::Unknown);
    c.send(Egress, REQ);
    assert_eq!(c.p.role(), Role::Client);
    c.send(Ingress, RESP);
    let t = c.txs();
    assert_eq!(t.len(), 1);
    assert_eq!((t[0].role, t[0].request_seq), (Role::Client, 3));

    let mut c = Conn::new(Role::Unknown);
    c.send(Ingress, REQ).send(Egress, RESP);
    assert_eq!(c.p.role(), Role::Server);
    assert_eq!(c.txs()[0].role, Role::Server);
}

#[test]
fn close_without_response() {
    let mut c = Conn::new(Role::Server);
    c.send(Ingress, REQ)
        .send(Ingress, b"GET /second HTTP/1.1\r\n\r\n")
        .close();
    let t = c.txs();
    assert_eq!(t.len(), 2);
    assert!(t.iter().all(|t| t.status.is_none() && t.end_ns == 300));
    // A head cut by the close is emitted, partial.
    c.send(Ingress, b"GET /cut HTTP/1.1\r\nHost: a\r\n").close();
    let t = c.txs();
    assert_eq!(t.len(), 1);
    assert_eq!(
        (t[0].target.as_str(), t[0].status, t[0].partial),
        ("/cut", None, true)
    );
    assert_eq!(c.p.pending(), 0);
}

#[test]
fn truncated_request_head_by_capture_limit() {
    let mut c = Conn::new(Role::Server);
    c.send_cap(24, Ingress, REQ).send(Egress, RESP);
    let t = c.txs();
    assert_eq!(t.len(), 1);
    assert_eq!((t[0].method.as_ref(), t[0].status), ("GET", Some(200)));
    assert!(t[0].target.starts_with("/api/user"));
    assert!(t[0].partial);
    // Resync at the next request.
    c.send(Ingress, REQ).send(Egress, RESP);
    let t = c.txs();
    assert_eq!(t.len(), 1);
    assert!(!t[0].partial);
    // A response head cut by the limit: its end is only known at the next request.
    c.send(Ingress, REQ).send_cap(24, Egress, RESP);
    assert!(c.txs().is_empty());
    c.send(Ingress, REQ);
    let t = c.txs();
    assert_eq!((t.len(), t[0].status, t[0].partial), (1, Some(200), true));
    assert_eq!(c.p.parse_errors(), 0);
}

#[test]
fn oversized_head_gives_up_bounded() {
    let mut c = Conn::new(Role::Server);
    c.send(Ingress, b"GET /big HTTP/1.1\r\nX-Big: ");
    for _ in 0..100 {
        c.send(Ingress, &[b'a'; 1000]);
        assert!(c.p.buffered_bytes() <= MAX_HEAD + 1024);
    }
    assert_eq!(c.p.parse_errors(), 1);
    c.send(Ingress, b"\r\n\r\n").send(Egress, RESP);
    c.send(Ingress, REQ).send(Egress, RESP);
    let t = c.txs();
    assert_eq!(t.len(), 2);
    assert_eq!((t[0].target.as_str(), t[0].partial), ("/big", true));
    assert_eq!(
        (t[1].target.as_str(), t[1].partial),
        ("/api/users/42?x=1", false)
    );
}

#[test]
fn garbage_counts_errors_and_resyncs() {
    let mut c = Conn::new(Role::Server);
    c.send(Ingress, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03");
    assert_eq!(c.p.parse_errors(), 1);
    c.send(Ingress, b"more garbage\r\n\r\n");
    c.send(Ingress, b"BAD LINE\r\n\r\n");
    c.send(Egress, b"\x00\x01binary");
    c.send(Egress, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    assert!(c.txs().is_empty());
    let e = c.p.parse_errors();
    assert!(e >= 3, "{e}");
    c.send(Ingress, REQ).send(Egress, RESP);
    let t = c.txs();
    assert_eq!(t.len(), 1);
    assert!(!t[0].partial);
}

#[test]
fn absurd_framing_values() {
    let mut c = Conn::new(Role::Server);
    c.send(Ingress, REQ);
    c.send(
        Egress,
        b"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\nab",
    );
    c.send(Ingress, REQ);
    let t = c.txs();
    assert_eq!(
        t.len(),
        1,
        "bad length: framing lost, ended by next request"
    );
    assert!(t[0].partial);
    c.send(
        Egress,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
    );
    c.send(Egress, b"-5\r\n");
    c.close();
    let t = c.txs();
    assert_eq!(t.len(), 1);
    assert!(t[0].partial);
    assert_eq!(c.p.parse_errors(), 2);
    let mut c = Conn::new(Role::Server);
    c.send(Ingress, REQ);
    c.send(
        Egress,
        b"HTTP/1.1 200 OK\r\nContent-Length: 999999999999999999\r\n\r\n",
    );
    c.raw(Egress, b"", u32::MAX)
        .raw(Egress, b"", u32::MAX)
        .close();
    assert_eq!(c.txs()[0].response_body_bytes, 2 * u64::from(u32::MAX));
}

#[test]
fn pending_queue_is_bounded() {
    let mut c = Conn::new(Role::Server);
    for _ in 0..100 {
        c.send(Ingress, b"GET / HTTP/1.1\r\n\r\n");
    }
    assert_eq!(c.p.pending(), MAX_PENDING);
    assert_eq!(c.p.parse_errors(), 100 - MAX_PENDING as u64);
    c.close();
    assert_eq!(c.txs().len(), MAX_PENDING);
}

#[test]
fn upgrade_stops_parsing() {
    let mut c = Conn::new(Role::Server);
    c.send(
        Ingress,
        b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    );
    c.send(
        Egress,
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n\x81\x05hello",
    );
    c.send(Ingress, b"\x81\x85garbage")
        .send(Ingress, REQ)
        .close();
    let t = c.txs();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].status, Some(101));
    assert_eq!(c.p.parse_errors(), 0);
}

#[test]
fn orphan_response_is_skipped() {
    let mut c = Conn::new(Role::Server);
    c.send(Egress, RESP).send(Ingress, REQ).send(Egress, RESP);
    let t = c.txs();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].request_seq, 2);
}

#[test]
fn detect_methods() {
    assert!(detect(b"GET / HTTP/1.1"));
    assert!(!detect(b"HTTP/1.1 200 OK"));
    assert!(!detect(b"PRI * HTTP/2.0"));
}

#[test]
fn hidden_pipelined_responses_are_not_mispaired() {
    let mut c = Conn::new(Role::Server);
    c.send(Ingress, b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n");
    // Both responses in one write, the second one hidden by the capture limit.
    let mut two = RESP.to_vec();
    two.extend_from_slice(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    c.send_cap(RESP.len(), Egress, &two);
    c.send(Ingress, b"GET /3 HTTP/1.1\r\n\r\n")
        .send(Egress, b"HTTP/1.1 500 E\r\nContent-Length: 0\r\n\r\n");
    let t = c.txs();
    let got: Vec<_> = t
        .iter()
        .map(|t| (t.target.as_str(), t.status, t.partial))
        .collect();
    assert_eq!(
        got,
        [
            ("/1", Some(200), false),
            ("/2", None, true),
            ("/3", Some(500), false)
        ]
    );
    assert_eq!(c.p.parse_errors(), 0);
}
