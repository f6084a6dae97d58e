use super::*;

pub(super) fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = len.to_be_bytes()[1..].to_vec();
    f.extend([kind, flags]);
    f.extend(stream.to_be_bytes());
    f.extend(payload);
    f
}

/// HPACK literal field; `index` adds it to the dynamic table.
pub(super) fn lit(index: bool, name: &str, value: &str) -> Vec<u8> {
    let mut b = vec![if index { 0x40 } else { 0x00 }, name.len() as u8];
    b.extend(name.as_bytes());
    b.push(value.len() as u8);
    b.extend(value.as_bytes());
    b
}

pub(super) fn settings() -> Vec<u8> {
    frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100])
}

/// GET `path` on `stream`: static :method GET, :scheme http, literal path, indexed authority.
pub(super) fn get(stream: u32, path: &str, end: bool) -> Vec<u8> {
    let mut b = vec![0x82, 0x86];
    b.extend(lit(false, ":path", path));
    b.extend(lit(true, ":authority", "example.test"));
    b.extend(lit(false, "traceparent", "00-abc-def-01"));
    frame(
        HEADERS,
        FLAG_END_HEADERS | if end { FLAG_END_STREAM } else { 0 },
        stream,
        &b,
    )
}

/// GET `path` again: :authority by reference to the entry the first `get` inserted.
fn get_again(stream: u32, path: &str) -> Vec<u8> {
    let mut b = vec![0x82, 0x86, 0xbe];
    b.extend(lit(false, ":path", path));
    b.extend(lit(false, "traceparent", "00-abc-def-01"));
    frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, stream, &b)
}

pub(super) fn resp(stream: u32, status_idx: u8, end: bool) -> Vec<u8> {
    let mut b = vec![0x80 | status_idx];
    b.extend(lit(true, "content-type", "text/plain"));
    frame(
        HEADERS,
        FLAG_END_HEADERS | if end { FLAG_END_STREAM } else { 0 },
        stream,
        &b,
    )
}

pub(super) fn data(stream: u32, n: usize, end: bool) -> Vec<u8> {
    frame(
        DATA,
        if end { FLAG_END_STREAM } else { 0 },
        stream,
        &vec![b'x'; n],
    )
}

pub(super) struct Feeder {
    pub(super) p: Http2Parser,
    pub(super) out: Vec<L7Record>,
    seq: u64,
}

impl Feeder {
    pub(super) fn new(role: Role) -> Self {
        Self {
            p: Http2Parser::new(role),
            out: Vec::new(),
            seq: 0,
        }
    }

    pub(super) fn feed_total(&mut self, dir: Direction, data: &[u8], total: usize) {
        self.feed_tail(dir, data, total, &[]);
    }

    /// One syscall that moved all of `bytes`, seen as the agent captures it by default: the
    /// first 1,024 bytes and the last 256.
    pub(super) fn feed_captured(&mut self, dir: Direction, bytes: &[u8]) {
        self.feed_tail(
            dir,
            &bytes[..1024],
            bytes.len(),
            &bytes[bytes.len() - 256..],
        );
    }

    /// One syscall that moved `total` bytes: `data` is their start, `tail` their end.
    pub(super) fn feed_tail(&mut self, dir: Direction, data: &[u8], total: usize, tail: &[u8]) {
        self.seq += 1;
        let c = Chunk {
            dir,
            data,
            tail,
            total_len: total as u32,
            start_ns: self.seq * 100,
            end_ns: self.seq * 100 + 10,
            seq: self.seq,
        };
        self.p.feed(&c, &mut self.out);
    }

    /// Sequence number of the last chunk fed.
    pub(super) fn seq(&self) -> u64 {
        self.seq
    }

    pub(super) fn feed(&mut self, dir: Direction, data: &[u8]) {
        self.feed_total(dir, data, data.len());
    }

    pub(super) fn exchanges(&mut self) -> Vec<H2Exchange> {
        self.out
            .drain(..)
            .map(|r| match r {
                L7Record::Http2(x) => x,
                other => panic!("{other:?}"),
            })
            .collect()
    }
}

pub(super) const IN: Direction = Direction::Ingress;
pub(super) const OUT: Direction = Direction::Egress;

fn simple_conversation() -> Vec<(Direction, Vec<u8>)> {
    let mut c1 = PREFACE.to_vec();
    c1.extend(settings());
    c1.extend(get(1, "/a", true));
    let mut s1 = settings();
    s1.extend(frame(SETTINGS, FLAG_ACK, 0, &[]));
    s1.extend(resp(1, 8, false));
    s1.extend(data(1, 5, true));
    let mut c2 = frame(SETTINGS, FLAG_ACK, 0, &[]);
    c2.extend(get_again(3, "/b"));
    let mut s2 = resp(3, 13, false);
    s2.extend(frame(WINDOW_UPDATE, 0, 0, &[0, 0, 1, 0]));
    s2.extend(frame(PING, 0, 0, &[1; 8]));
    s2.extend(data(3, 0, true));
    vec![(IN, c1), (OUT, s1), (IN, c2), (OUT, s2)]
}

#[test]
fn preface_infers_server_and_pairs_streams() {
    let mut f = Feeder::new(Role::Unknown);
    for (d, b) in simple_conversation() {
        f.feed(d, &b);
    }
    let x = f.exchanges();
    assert_eq!(f.p.role(), Role::Server);
    assert_eq!(x.len(), 2);
    assert_eq!(
        x[0],
        H2Exchange {
            role: Role::Server,
            stream_id: 1,
            method: Some("GET".into()),
            path: Some("/a".into()),
            authority: Some("example.test".into()),
            scheme: Some("http".into()),
            status: Some(200),
            content_type: Some("text/plain".into()),
            traceparent: Some("00-abc-def-01".into()),
            grpc_status: None,
            grpc_message: None,
            start_ns: 100,
            end_ns: 210,
            request_seq: 1,
            request_body_bytes: 0,
            response_body_bytes: 5,
            headers_incomplete: false,
            partial: false,
        }
    );
    assert_eq!(x[1].path.as_deref(), Some("/b"));
    assert_eq!(x[1].status, Some(404));
    assert_eq!(
        (x[1].start_ns, x[1].end_ns, x[1].request_seq),
        (300, 410, 3)
    );
    assert!(!x[1].partial && !x[1].headers_incomplete);
    assert_eq!(f.p.parse_errors(), 0);
    assert_eq!(f.p.open_streams(), 0);
}

#[test]
fn client_role_and_interleaved_streams() {
    let mut f = Feeder::new(Role::Client);
    let mut c = PREFACE.to_vec();
    c.extend(get(1, "/slow", false));
    c.extend(data(1, 7, true));
    c.extend(get(3, "/fast", true));
    f.feed(OUT, &c);
    let mut s = resp(3, 8, true);
    s.extend(resp(1, 14, false));
    f.feed(IN, &s);
    f.feed(IN, &data(1, 3, false));
    f.feed(IN, &data(1, 4, true));
    let x = f.exchanges();
    assert_eq!(x.len(), 2);
    assert_eq!((x[0].stream_id, x[0].status), (3, Some(200)));
    assert_eq!((x[1].stream_id, x[1].status), (1, Some(500)));
    assert_eq!((x[1].request_body_bytes, x[1].response_body_bytes), (7, 7));
    assert!(x.iter().all(|x| x.role == Role::Client && !x.partial));
}

#[test]
fn grpc_trailers_and_trailers_only() {
    let mut f = Feeder::new(Role::Server);
    f.feed(IN, PREFACE);
    let mut req = vec![0x83, 0x86];
    req.extend(lit(false, ":path", "/pkg.Svc/Get"));
    req.extend(lit(false, "content-type", "application/grpc"));
    f.feed(IN, &frame(HEADERS, FLAG_END_HEADERS, 1, &req));
    f.feed(IN, &data(1, 12, true));
    let mut h = vec![0x88];
    h.extend(lit(false, "content-type", "application/grpc"));
    f.feed(OUT, &frame(HEADERS, FLAG_END_HEADERS, 1, &h));
    f.feed(OUT, &data(1, 20, false));
    let mut t = lit(false, "grpc-status", "5");
    t.extend(lit(false, "grpc-message", "no%20such"));
    f.feed(
        OUT,
        &frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 1, &t),
    );
    // Trailers-only: status and grpc-status in the one response block.
    f.feed(IN, &frame(HEADERS, FLAG_END_HEADERS, 3, &req));
    f.feed(IN, &data(3, 12, true));
    let mut to = vec![0x88];
    to.extend(lit(false, "grpc-status", "12"));
    f.feed(
        OUT,
        &frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 3, &to),
    );
    let x = f.exchanges();
    assert_eq!(x.len(), 2);
    assert_eq!(x[0].method.as_deref(), Some("POST"));
    assert_eq!((x[0].grpc_status, x[0].status), (Some(5), Some(200)));
    assert_eq!(x[0].grpc_message.as_deref(), Some("no%20such"));
    assert_eq!(
        (x[0].request_body_bytes, x[0].response_body_bytes),
        (12, 20)
    );
    assert_eq!(x[1].grpc_status, Some(12));
    assert!(crate::protocols::grpc::is_grpc_exchange(&x[1]));
}

#[test]
fn reset_and_close_emit_partial() {
    let mut f = Feeder::new(Role::Server);
    f.feed(IN, PREFACE);
    f.feed(IN, &get(1, "/cancelled", true));
    f.feed(IN, &get(3, "/open", true));
    f.feed(IN, &frame(RST_STREAM, 0, 1, &[0, 0, 0, 8]));
    let x = f.exchanges();
    assert_eq!(x.len(), 1);
    assert!(x[0].partial && x[0].status.is_none() && x[0].stream_id == 1);
    // A frame for the reset stream afterwards creates nothing.
    f.feed(OUT, &data(1, 3, true));
    assert!(f.exchanges().is_empty());
    f.feed(OUT, &resp(3, 8, false));
    f.p.close(9999, &mut f.out);
    let x = f.exchanges();
    assert_eq!(x.len(), 1);
    assert_eq!(
        (x[0].stream_id, x[0].status, x[0].end_ns),
        (3, Some(200), 9999)
    );
    assert!(x[0].partial);
}

#[test]
fn continuation_and_padding() {
    let mut f = Feeder::new(Role::Server);
    f.feed(IN, PREFACE);
    let mut b = vec![0x82, 0x86];
    b.extend(lit(false, ":path", "/continued/path"));
    // HEADERS padded (3 bytes) with priority, split into a CONTINUATION.
    let (a, rest) = b.split_at(5);
    let mut p = vec![3, 0, 0, 0, 0, 16];
    p.extend(a);
    p.extend([0, 0, 0]);
    f.feed(
        IN,
        &frame(
            HEADERS,
            FLAG_PADDED | FLAG_PRIORITY | FLAG_END_STREAM,
            1,
            &p,
        ),
    );
    f.feed(IN, &frame(CONTINUATION, FLAG_END_HEADERS, 1, rest));
    f.feed(
        OUT,
        &frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 1, &[0x89]),
    );
    let x = f.exchanges();
    assert_eq!(x.len(), 1);
    assert_eq!(x[0].path.as_deref(), Some("/continued/path"));
    assert_eq!(x[0].status, Some(204));
    assert_eq!(f.p.parse_errors(), 0);
    // A frame interleaving a header block is a protocol error: framing is dropped.
    f.feed(IN, &frame(HEADERS, 0, 3, &[0x82]));
    f.feed(IN, &data(3, 1, false));
    assert_eq!(f.p.parse_errors(), 1);
}

#[test]
fn uncaptured_data_is_skipped_by_length() {
    let mut f = Feeder::new(Role::Server);
    f.feed(IN, PREFACE);
    f.feed(IN, &get(1, "/big", true));
    // One 16 KiB DATA frame; the kernel captured 50 bytes of the write: skipped by length.
    let mut w = resp(1, 8, false);
    w.extend(data(1, 16384, true));
    f.feed_total(OUT, &w[..50], w.len());
    let x = f.exchanges();
    assert_eq!(x.len(), 1);
    assert_eq!(x[0].response_body_bytes, 16384);
    assert!(!x[0].partial && !x[0].headers_incomplete);
    assert_eq!(x[0].end_ns, 310);
}

#[test]
fn hidden_frames_lose_framing_until_a_frame_starts_a_chunk() {
    let mut f = Feeder::new(Role::Server);
    f.feed(IN, PREFACE);
    f.feed(IN, &get(1, "/big", true));
    // Several frames in one write, 50 bytes captured: where the later frames end is unknown.
    let mut w = resp(1, 8, false);
    for i in 0..3 {
        w.extend(data(1, 16384, i == 2));
    }
    f.feed_total(OUT, &w[..50], w.len());
    assert!(f.exchanges().is_empty());
    f.feed(IN, &get(3, "/next", true));
    // The response side resyncs at the next chunk that starts with a frame; its HPACK state is
    // reset: a reference to the entry inserted before the loss is unknown, not guessed.
    let mut b = vec![0x88, 0xbe];
    b.extend(lit(false, "x-after", "1"));
    f.feed(
        OUT,
        &frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 3, &b),
    );
    let x = f.exchanges();
    assert_eq!(x.len(), 1);
    assert_eq!((x[0].stream_id, x[0].status), (3, Some(200)));
    assert!(x[0].headers_incomplete && x[0].content_type.is_none());
    f.p.close(5000, &mut f.out);
    let x = f.exchanges();
    assert_eq!(x.len(), 1);
    assert_eq!((x[0].stream_id, x[0].response_body_bytes), (1, 16384));
    assert!(x[0].partial);
}

#[test]
fn truncated_headers_frame_degrades_hpack() {
    let mut f = Feeder::new(Role::Server);
    f.feed(IN, PREFACE);
    f.feed(IN, &get(1, "/a", true));
    // Request 3's block inserts a long header; only 20 bytes of it were captured.
    let mut b = vec![0x82, 0x86];
    b.extend(lit(false, ":path", "/b"));
    b.extend(lit(true, "x-long", &"v".repeat(100)));
    let h = frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 3, &b);
    f.feed_total(IN, &h[..20], h.len());
    // Request 5 refers to :authority inserted by request 1 (now index 63 for the encoder, but
    // the decoder lost count): unknown, not a wrong value.
    let mut b = vec![0x82, 0x86, 0xbf];
    b.extend(lit(false, ":path", "/c"));
    f.feed(
        IN,
        &frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 5, &b),
    );
    for id in [1, 3, 5] {
        f.feed(
            OUT,
            &frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, id, &[0x88]),
        );
    }
    let x = f.exchanges();
    assert_eq!(x.len(), 3);
    assert_eq!(x[0].authority.as_deref(), Some("example.test"));
    assert!(!x[0].headers_incomplete);
    assert!(x[1].headers_incomplete && x[1].path.is_none() && x[1].method.is_none());
    // Seen from its start, even though its block could not be read: not partial.
    assert!(!x[1].partial);
    assert_eq!(x[1].status, Some(200));
    assert!(x[2].headers_incomplete && x[2].authority.is_none());
    assert_eq!(x[2].path.as_deref(), Some("/c"));
}

#[test]
fn every_split_point_gives_the_same_exchanges() {
    let conv = simple_conversation();
    let whole = {
        let mut f = Feeder::new(Role::Unknown);
        for (d, b) in &conv {
            f.feed(*d, b);
        }
        f.exchanges()
    };
    assert_eq!(whole.len(), 2);
    for (i, (_, bytes)) in conv.iter().enumerate() {
        for cut in 1..bytes.len() {
            let mut f = Feeder::new(Role::Unknown);
            for (j, (d, b)) in conv.iter().enumerate() {
                if i == j {
                    f.feed(*d, &b[..cut]);
                    f.feed(*d, &b[cut..]);
                } else {
                    f.feed(*d, b);
                }
            }
            let got = f.exchanges();
            assert_eq!(got.len(), 2, "chunk {i} cut at {cut}");
            for (g, w) in got.iter().zip(&whole) {
                // Timestamps move with the extra chunk; everything else must not.
                let norm = |x: &H2Exchange| H2Exchange {
                    start_ns: 0,
                    end_ns: 0,
                    request_seq: 0,
                    ..x.clone()
                };
                assert_eq!(norm(g), norm(w), "chunk {i} cut at {cut}");
            }
            assert_eq!(f.p.parse_errors(), 0);
        }
    }
}

#[test]
fn mid_stream_join_never_guesses() {
    let conv = simple_conversation();
    // Join after the first two chunks (preface, settings and the first exchange are unseen).
    let mut f = Feeder::new(Role::Unknown);
    for (d, b) in &conv[2..] {
        f.feed(*d, b);
    }
    let x = f.exchanges();
    assert_eq!(f.p.role(), Role::Server);
    assert_eq!(x.len(), 1);
    // :authority came from the dynamic table (inserted before the join): unknown.
    assert!(x[0].headers_incomplete && x[0].authority.is_none());
    assert_eq!(x[0].path.as_deref(), Some("/b"));
    assert_eq!(x[0].status, Some(404));
    assert_eq!(x[0].traceparent.as_deref(), Some("00-abc-def-01"));
}

#[test]
fn streams_are_bounded() {
    let mut f = Feeder::new(Role::Server);
    f.feed(IN, PREFACE);
    for i in 0..300u32 {
        f.feed(IN, &get(2 * i + 1, "/x", true));
    }
    assert_eq!(f.p.open_streams(), MAX_STREAMS);
    assert_eq!(f.p.stream_overflows(), 300 - MAX_STREAMS as u64);
    // The oldest were given up as partial to make room; the newest are still tracked.
    let evicted = f.exchanges();
    assert_eq!(evicted.len(), 300 - MAX_STREAMS);
    assert!(evicted
        .iter()
        .all(|x| x.partial && x.stream_id < 2 * 44 + 1));
    f.feed(OUT, &resp(599, 8, true));
    let x = f.exchanges();
    assert_eq!((x.len(), x[0].stream_id, x[0].partial), (1, 599, false));
    f.p.close(1, &mut f.out);
    assert_eq!(f.exchanges().len(), MAX_STREAMS - 1);
}

#[test]
fn role_learnt_late_finishes_streams_that_already_ended() {
    // Joined mid-stream; the first response block has no decodable pseudo-header, so the role
    // is unknown when stream 1 ends; stream 3's request then tells us.
    let mut f = Feeder::new(Role::Unknown);
    f.feed(OUT, &frame(HEADERS, FLAG_END_HEADERS, 1, &[0xbe]));
    f.feed(
        IN,
        &frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 1, &[0xbf]),
    );
    f.feed(
        OUT,
        &frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 1, &[0xc0]),
    );
    assert!(f.exchanges().is_empty());
    f.feed(IN, &get(3, "/later", true));
    let x = f.exchanges();
    assert_eq!(f.p.role(), Role::Server);
    assert_eq!(x.len(), 1);
    assert_eq!(
        (x[0].stream_id, x[0].end_ns, x[0].role),
        (1, 310, Role::Server)
    );
    assert!(x[0].partial && x[0].headers_incomplete && x[0].method.is_none());
}

#[test]
fn unknown_flags_and_frame_types_are_ignored() {
    let mut f = Feeder::new(Role::Server);
    f.feed(IN, PREFACE);
    let mut h = get(1, "/a", true);
    h[4] |= 0x40; // an undefined HEADERS flag
    f.feed(IN, &h);
    f.feed(OUT, &frame(0x0a, 0, 0, b"altsvc"));
    f.feed(OUT, &frame(GOAWAY, 0, 0, &[0, 0, 0, 1, 0, 0, 0, 0]));
    f.feed(OUT, &resp(1, 8, true));
    let x = f.exchanges();
    assert_eq!(x.len(), 1);
    assert_eq!((x[0].path.as_deref(), x[0].status), (Some("/a"), Some(200)));
    assert_eq!(f.p.parse_errors(), 0);
}

#[test]
fn goaway_ends_streams_the_server_will_not_process() {
    let mut f = Feeder::new(Role::Server);
    f.feed(IN, PREFACE);
    f.feed(IN, &get(1, "/kept", true));
    f.feed(IN, &get(3, "/refused", true));
    f.feed(
        OUT,
        &frame(GOAWAY, 0, 0, &[0, 0, 0, 1, 0, 0, 0, 0, b'b', b'y', b'e']),
    );
    let x = f.exchanges();
    assert_eq!(x.len(), 1);
    assert_eq!((x[0].stream_id, x[0].partial, x[0].status), (3, true, None));
    f.feed(OUT, &resp(1, 8, true));
    let x = f.exchanges();
    assert_eq!((x.len(), x[0].stream_id, x[0].partial), (1, 1, false));
    // A GOAWAY whose payload was not captured is skipped by length.
    f.feed(IN, &get(5, "/after", true));
    let g = frame(GOAWAY, 0, 0, &[0, 0, 0, 1, 0, 0, 0, 0]);
    f.feed_total(OUT, &g[..9], g.len());
    f.feed(OUT, &resp(5, 8, true));
    let x = f.exchanges();
    assert_eq!((x.len(), x[0].stream_id, x[0].partial), (1, 5, false));
    assert_eq!(f.p.parse_errors(), 0);
}

#[test]
fn push_promise_blocks_keep_hpack_in_step() {
    let mut f = Feeder::new(Role::Server);
    f.feed(IN, PREFACE);
    f.feed(IN, &get(1, "/page", true));
    // The server pushes /style.css: the promise's block inserts into the server's table.
    let mut pp = vec![0, 0, 0, 2, 0x82, 0x86];
    pp.extend(lit(true, ":path", "/style.css"));
    f.feed(OUT, &frame(PUSH_PROMISE, FLAG_END_HEADERS, 1, &pp));
    // The response refers to the promise's entry (62) and inserts content-type (now 62).
    let mut b = vec![0x88];
    b.extend(lit(true, "content-type", "text/html"));
    f.feed(OUT, &frame(HEADERS, FLAG_END_HEADERS, 1, &b));
    f.feed(OUT, &frame(HEADERS, FLAG_END_HEADERS, 2, &[0x88, 0xbf]));
    f.feed(OUT, &data(2, 10, true));
    f.feed(OUT, &data(1, 20, true));
    let x = f.exchanges();
    assert_eq!(x.len(), 1, "pushed streams are not exchanges");
    assert_eq!(x[0].content_type.as_deref(), Some("text/html"));
    assert_eq!(x[0].response_body_bytes, 20);
    assert!(!x[0].headers_incomplete);
    assert_eq!(f.p.parse_errors(), 0);
}

#[test]
fn detection() {
    assert!(detect(PREFACE));
    assert!(detect(&PREFACE[..10]));
    assert!(detect(&settings()));
    let mut two = resp(1, 8, false);
    two.extend(data(1, 10, true));
    assert!(detect(&two));
    for not in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\n",
        b"PRI",
        &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc],
        // SSLRequest-like: DATA on stream 0.
        &[0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f, 0],
        // Unknown flag on PING, reserved bit set.
        &frame(PING, 0x2, 0, &[0; 8]),
        &[0, 0, 4, 8, 0, 0x80, 0, 0, 1, 0, 0, 0, 1],
    ] {
        assert!(!detect(not), "{not:?}");
    }
    // Mid-stream, frames must tile the bytes: a frame cut by the end is not enough (an HTTP/1
    // body can start with bytes like these), nor is one followed by a few stray bytes.
    assert!(!detect(&data(1, 100, false)[..50]));
    let mut stray = settings();
    stray.extend([0, 0]);
    assert!(!detect(&stray));
    // A plausible frame followed by garbage is not HTTP/2.
    let mut bad = settings();
    bad.extend(b"GET / HTTP/1.1\r\n");
    assert!(!detect(&bad));
    assert_eq!(
        crate::protocols::detect(b"GET / HTTP/1.1\r\n"),
        Some(crate::protocols::Protocol::Http1)
    );
    assert_eq!(
        crate::protocols::detect(PREFACE),
        Some(crate::protocols::Protocol::Http2)
    );
}
