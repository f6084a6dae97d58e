use super::*;

fn name_wire(name: &str, out: &mut Vec<u8>) {
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
}

/// A standard query with recursion desired and one EDNS OPT record.
fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1]);
    name_wire(name, &mut m);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&[0, 1]);
    m.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    m
}

/// An answer to `query(id, name, qtype)` with `answers` A records whose names are pointers to
/// the question (offset 12).
fn answer(id: u16, name: &str, qtype: u16, rcode: u8, answers: u16) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&[0x81, 0x80 | rcode, 0, 1]);
    m.extend_from_slice(&answers.to_be_bytes());
    m.extend_from_slice(&[0, 0, 0, 0]);
    name_wire(name, &mut m);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&[0, 1]);
    for i in 0..answers {
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, i as u8]);
    }
    m
}

fn chunk(dir: Direction, data: &[u8], seq: u64) -> Chunk<'_> {
    Chunk {
        dir,
        data,
        tail: &[],
        total_len: data.len() as u32,
        start_ns: seq * 100,
        end_ns: seq * 100 + 10,
        seq,
    }
}

fn exchanges(out: Vec<L7Record>) -> Vec<DnsExchange> {
    out.into_iter()
        .map(|r| match r {
            L7Record::Dns(d) => d,
            other => panic!("DNS parser emitted {other:?}"),
        })
        .collect()
}

fn tcp(msg: &[u8]) -> Vec<u8> {
    let mut v = (msg.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(msg);
    v
}

#[test]
fn pairs_parallel_a_and_aaaa_by_id_and_question() {
    let mut p = DnsParser::new(Role::Client, DnsTransport::Udp);
    let mut out = Vec::new();
    p.feed(
        &chunk(Direction::Egress, &query(7, "Example.COM", 1), 1),
        &mut out,
    );
    p.feed(
        &chunk(Direction::Egress, &query(8, "example.com", 28), 2),
        &mut out,
    );
    assert_eq!(p.pending(), 2);
    // AAAA answered first.
    p.feed(
        &chunk(Direction::Ingress, &answer(8, "example.com", 28, 0, 0), 3),
        &mut out,
    );
    p.feed(
        &chunk(Direction::Ingress, &answer(7, "example.com", 1, 0, 2), 4),
        &mut out,
    );
    let ex = exchanges(out);
    assert_eq!(ex.len(), 2);
    assert_eq!(ex[0].id, 8);
    assert_eq!(ex[0].question_type, 28);
    assert_eq!(ex[0].answer_count, 0);
    assert_eq!(
        (ex[0].start_ns, ex[0].end_ns, ex[0].request_seq),
        (200, 310, 2)
    );
    assert_eq!(ex[1].id, 7);
    assert_eq!(ex[1].question_name.as_deref(), Some("example.com"));
    assert_eq!(ex[1].rcode, Some(0));
    assert_eq!(ex[1].answer_count, 2);
    assert_eq!(ex[1].role, Role::Client);
    assert!(!ex[1].timed_out);
    assert_eq!(p.pending(), 0);
    assert_eq!(p.parse_errors(), 0);
}

#[test]
fn same_id_different_question_pairs_by_question() {
    let mut p = DnsParser::new(Role::Client, DnsTransport::Udp);
    let mut out = Vec::new();
    p.feed(
        &chunk(Direction::Egress, &query(5, "a.test", 1), 1),
        &mut out,
    );
    p.feed(
        &chunk(Direction::Egress, &query(5, "b.test", 1), 2),
        &mut out,
    );
    p.feed(
        &chunk(Direction::Ingress, &answer(5, "b.test", 1, 3, 0), 3),
        &mut out,
    );
    let ex = exchanges(std::mem::take(&mut out));
    assert_eq!(ex.len(), 1);
    assert_eq!(ex[0].question_name.as_deref(), Some("b.test"));
    assert_eq!(ex[0].rcode, Some(3));
    assert_eq!(rcode_name(3), "NXDOMAIN");
    // An answer for a question nobody asked is not paired.
    p.feed(
        &chunk(Direction::Ingress, &answer(5, "c.test", 1, 0, 0), 4),
        &mut out,
    );
    assert!(out.is_empty());
    assert_eq!(p.unmatched_answers(), 1);
}

#[test]
fn server_role_pairs_ingress_query_with_egress_answer() {
    let mut p = DnsParser::new(Role::Unknown, DnsTransport::Udp);
    let mut out = Vec::new();
    p.feed(
        &chunk(Direction::Ingress, &query(1, "svc.local", 1), 1),
        &mut out,
    );
    assert_eq!(p.role(), Role::Server);
    // A query the other way round on a server socket is not ours.
    p.feed(
        &chunk(Direction::Egress, &query(2, "x.local", 1), 2),
        &mut out,
    );
    assert_eq!(p.parse_errors(), 1);
    p.feed(
        &chunk(Direction::Egress, &answer(1, "svc.local", 1, 0, 1), 3),
        &mut out,
    );
    let ex = exchanges(out);
    assert_eq!(ex.len(), 1);
    assert_eq!(ex[0].role, Role::Server);
    assert_eq!(ex[0].answer_count, 1);
}

#[test]
fn timeouts_and_close_emit_unanswered_queries() {
    let mut p = DnsParser::new(Role::Client, DnsTransport::Udp);
    let mut out = Vec::new();
    p.feed(
        &chunk(Direction::Egress, &query(1, "slow.test", 1), 1),
        &mut out,
    );
    p.feed(
        &chunk(Direction::Egress, &query(2, "slower.test", 1), 50),
        &mut out,
    );
    // A retransmission of the first query keeps its first start.
    p.feed(
        &chunk(Direction::Egress, &query(1, "slow.test", 1), 30),
        &mut out,
    );
    assert_eq!(p.pending(), 2);
    p.expire(1_000, 5_000, &mut out);
    assert!(out.is_empty());
    p.expire(5_100, 5_000, &mut out);
    let ex = exchanges(std::mem::take(&mut out));
    assert_eq!(ex.len(), 1);
    assert!(ex[0].timed_out);
    assert_eq!(ex[0].rcode, None);
    assert_eq!((ex[0].start_ns, ex[0].end_ns), (100, 5_100));
    // A late answer after the timeout is unmatched.
    p.feed(
        &chunk(Direction::Ingress, &answer(1, "slow.test", 1, 0, 1), 60),
        &mut out,
    );
    assert!(out.is_empty());
    assert_eq!(p.unmatched_answers(), 1);
    p.close(9_000, &mut out);
    let ex = exchanges(out);
    assert_eq!(ex.len(), 1);
    assert_eq!(ex[0].question_name.as_deref(), Some("slower.test"));
    assert!(ex[0].timed_out);
    assert_eq!(ex[0].end_ns, 9_000);
    assert_eq!(p.pending(), 0);
}

#[test]
fn pending_is_bounded_and_overflow_counted() {
    let mut p = DnsParser::new(Role::Client, DnsTransport::Udp);
    let mut out = Vec::new();
    for id in 0..(MAX_PENDING as u16 + 10) {
        p.feed(
            &chunk(Direction::Egress, &query(id, "many.test", 1), u64::from(id)),
            &mut out,
        );
    }
    assert_eq!(p.pending(), MAX_PENDING);
    assert_eq!(p.pending_overflow(), 10);
    // The overflowed query's answer matches nothing.
    p.feed(
        &chunk(
            Direction::Ingress,
            &answer(MAX_PENDING as u16 + 1, "many.test", 1, 0, 0),
            99,
        ),
        &mut out,
    );
    assert!(out.is_empty());
    assert_eq!(p.unmatched_answers(), 1);
}

#[test]
fn tcp_split_and_coalesced_messages() {
    let q1 = tcp(&query(0x1111, "a.example", 1));
    let q2 = tcp(&query(0x2222, "b.example", 28));
    let a1 = tcp(&answer(0x1111, "a.example", 1, 0, 1));
    let a2 = tcp(&answer(0x2222, "b.example", 28, 2, 0));
    for split in 1..q1.len() {
        let mut p = DnsParser::new(Role::Client, DnsTransport::Tcp);
        let mut out = Vec::new();
        // Query 1 split at every byte (including inside the length prefix).
        p.feed(&chunk(Direction::Egress, &q1[..split], 1), &mut out);
        p.feed(&chunk(Direction::Egress, &q1[split..], 2), &mut out);
        p.feed(&chunk(Direction::Egress, &q2, 3), &mut out);
        // Both answers in one read.
        let both = [a1.clone(), a2.clone()].concat();
        p.feed(&chunk(Direction::Ingress, &both, 4), &mut out);
        let ex = exchanges(out);
        assert_eq!(ex.len(), 2, "split at {split}");
        assert_eq!(ex[0].id, 0x1111);
        assert_eq!(ex[0].start_ns, 100, "query timed from its first byte");
        assert_eq!(ex[0].request_seq, 1);
        assert_eq!(ex[0].transport, DnsTransport::Tcp);
        assert_eq!(ex[1].rcode, Some(2));
        assert_eq!(p.parse_errors(), 0);
    }
}

#[test]
fn tcp_hidden_bytes_and_resync() {
    let big = answer(9, "big.example", 1, 0, 100);
    let q = tcp(&query(9, "big.example", 1));
    let a = tcp(&big);
    let mut p = DnsParser::new(Role::Client, DnsTransport::Tcp);
    let mut out = Vec::new();
    p.feed(&chunk(Direction::Egress, &q, 1), &mut out);
    // The answer's read was captured only in part: the rest is hidden but framed by its length.
    let mut c = chunk(Direction::Ingress, &a[..64], 2);
    c.total_len = a.len() as u32;
    p.feed(&c, &mut out);
    let ex = exchanges(std::mem::take(&mut out));
    assert_eq!(ex.len(), 1);
    assert_eq!(ex[0].answer_count, 100);
    // Hidden bytes running past a message: framing lost until a chunk starts a message.
    let q2 = tcp(&query(10, "x.example", 1));
    p.feed(&chunk(Direction::Egress, &q2, 3), &mut out);
    let bad = [a.clone(), vec![0; 7]].concat();
    let mut c = chunk(Direction::Ingress, &bad[..20], 4);
    c.total_len = bad.len() as u32;
    p.feed(&c, &mut out);
    assert_eq!(p.parse_errors(), 1);
    assert!(out.is_empty(), "the hidden answer had id 9, nothing pairs");
    p.feed(&chunk(Direction::Ingress, b"\x00\x07garbage", 5), &mut out);
    assert!(out.is_empty());
    p.feed(
        &chunk(
            Direction::Ingress,
            &tcp(&answer(10, "x.example", 1, 0, 1)),
            6,
        ),
        &mut out,
    );
    let ex = exchanges(out);
    assert_eq!(ex.len(), 1);
    assert_eq!(ex[0].id, 10);
}

#[test]
fn truncated_udp_capture_pairs_by_id() {
    let mut p = DnsParser::new(Role::Client, DnsTransport::Udp);
    let mut out = Vec::new();
    p.feed(
        &chunk(Direction::Egress, &query(3, "long-name.example.org", 1), 1),
        &mut out,
    );
    let a = answer(3, "long-name.example.org", 1, 0, 4);
    let mut c = chunk(Direction::Ingress, &a[..16], 2);
    c.total_len = a.len() as u32;
    p.feed(&c, &mut out);
    let ex = exchanges(out);
    assert_eq!(ex.len(), 1);
    assert_eq!(
        ex[0].question_name.as_deref(),
        Some("long-name.example.org")
    );
    assert_eq!(ex[0].answer_count, 4);
}

#[test]
fn malformed_messages_are_counted_not_emitted() {
    let mut p = DnsParser::new(Role::Client, DnsTransport::Udp);
    let mut out = Vec::new();
    let q = query(1, "ok.test", 1);
    // Complete datagram whose question runs past its end.
    p.feed(&chunk(Direction::Egress, &q[..15], 1), &mut out);
    // Short header.
    p.feed(&chunk(Direction::Egress, &q[..5], 2), &mut out);
    // A query with answers.
    let mut bad = q.clone();
    bad[7] = 1;
    p.feed(&chunk(Direction::Egress, &bad, 3), &mut out);
    assert_eq!(p.parse_errors(), 3);
    assert_eq!(p.pending(), 0);
    assert!(out.is_empty());
}

#[test]
fn names_with_pointers_loops_and_limits() {
    let mut s = String::new();
    // Header, then "www" + pointer to "example.com" at offset 12 ... laid out by hand.
    let mut m = vec![0u8; 12];
    name_wire("example.com", &mut m); // offset 12..25
    let www = m.len();
    m.extend_from_slice(&[3, b'W', b'w', b'W', 0xc0, 12]);
    assert_eq!(read_name(&m, www, &mut s), Ok(www + 6));
    assert_eq!(s, "www.example.com");
    // Pointer to itself, and forwards.
    let me = m.len();
    m.extend_from_slice(&[0xc0, me as u8]);
    assert_eq!(read_name(&m, me, &mut s), Err(NameError::Malformed));
    assert_eq!(
        read_name(&[0xc0, 0x05, 0, 0, 0, 0], 0, &mut s),
        Err(NameError::Malformed)
    );
    // Two pointers bouncing: the second must point before the first target.
    let loopy = [1, b'a', 0xc0, 4, 1, b'b', 0xc0, 0];
    assert_eq!(read_name(&loopy, 4, &mut s), Err(NameError::Malformed));
    // Reserved label types.
    assert_eq!(read_name(&[0x40, 0], 0, &mut s), Err(NameError::Malformed));
    // Truncated.
    assert_eq!(read_name(&[5, b'a'], 0, &mut s), Err(NameError::Truncated));
    assert_eq!(read_name(&[0xc0], 0, &mut s), Err(NameError::Truncated));
    // Root, escapes.
    assert_eq!(read_name(&[0], 0, &mut s), Ok(1));
    assert_eq!(s, ".");
    assert_eq!(read_name(&[3, b'a', b'.', 0x07, 0], 0, &mut s), Ok(5));
    assert_eq!(s, "a\\.\\007");
    // 255 wire bytes is the most: 4 labels of 63 = 256 with the root label.
    let mut long = Vec::new();
    for _ in 0..4 {
        long.push(63);
        long.extend_from_slice(&[b'x'; 63]);
    }
    long.push(0);
    assert_eq!(read_name(&long, 0, &mut s), Err(NameError::Malformed));
    let mut ok = Vec::new();
    for _ in 0..3 {
        ok.push(63);
        ok.extend_from_slice(&[b'x'; 63]);
    }
    ok.push(61);
    ok.extend_from_slice(&[b'y'; 61]);
    ok.push(0);
    assert_eq!(ok.len(), 255);
    assert_eq!(read_name(&ok, 0, &mut s), Ok(255));
}

#[test]
fn detection() {
    let q = query(0xabcd, "example.com", 1);
    assert!(looks_like_dns(&q));
    assert!(looks_like_dns(&answer(1, "example.com", 1, 3, 0)));
    assert!(detect_tcp(&tcp(&q)));
    assert!(!detect_tcp(&tcp(&answer(1, "example.com", 1, 0, 1))));
    assert!(!detect_tcp(&q));
    assert!(!detect_tcp(&tcp(&q)[..20]), "question not visible");
    for other in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03abcdefghijkl",
        b"*1\r\n$4\r\nPING\r\n",
        b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n",
        b"\x00\x00\x00\x08\x04\xd2\x16\x2f",
    ] {
        assert!(!detect_tcp(other), "{other:?}");
        assert_ne!(
            super::super::detect(other),
            Some(super::super::Protocol::Dns)
        );
    }
    assert_eq!(
        super::super::detect(&tcp(&q)),
        Some(super::super::Protocol::Dns)
    );
    assert_eq!(type_name(28), "AAAA");
    assert_eq!(type_name(1), "A");
    assert_eq!(type_name(4242), "OTHER");
    assert_eq!(rcode_name(2), "SERVFAIL");
}
