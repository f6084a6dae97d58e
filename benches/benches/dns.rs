//! DNS parsing: Telegen's parser pairing a real query and answer (dnsmasq's answer to an A query
//! for a CNAME, with compressed names and an EDNS record, as captured in the golden fixtures) on
//! one UDP socket, against `simple-dns` decoding the same two packets completely (every record,
//! no pairing) as a baseline.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use telegen_dataplane::protocols::dns::{DnsParser, DnsTransport};
use telegen_dataplane::protocols::{Chunk, Direction, L7Record, Role};

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// `dig alias.telegen.test A` and dnsmasq's answer (CNAME db.telegen.test + A 10.1.2.4).
const QUERY: &str = "f3320120000100000000000105616c6961730774656c6567656e0474657374000001000100002904d000000000000c000a000833e5092211b84e15";
const ANSWER: &str = "f3328580000100020000000105616c6961730774656c6567656e04746573740000010001c00c000500010000000000110264620774656c6567656e047465737400c030000100010000000000040a01020400002904d0000000000000";

fn bench(c: &mut Criterion) {
    let (query, answer) = (unhex(QUERY), unhex(ANSWER));
    let mut g = c.benchmark_group("dns_parse");
    g.throughput(Throughput::Elements(1));

    g.bench_function("telegen_udp_exchange", |b| {
        let mut p = DnsParser::new(Role::Client, DnsTransport::Udp);
        let mut out = Vec::with_capacity(4);
        let mut seq = 0u64;
        b.iter(|| {
            seq += 2;
            let q = Chunk {
                dir: Direction::Egress,
                data: &query,
                tail: &[],
                total_len: query.len() as u32,
                start_ns: seq * 1000,
                end_ns: seq * 1000 + 200,
                seq,
            };
            let a = Chunk {
                dir: Direction::Ingress,
                data: &answer,
                tail: &[],
                total_len: answer.len() as u32,
                start_ns: seq * 1000 + 300,
                end_ns: seq * 1000 + 500,
                seq: seq + 1,
            };
            p.feed(black_box(&q), &mut out);
            p.feed(black_box(&a), &mut out);
            assert!(matches!(out.pop(), Some(L7Record::Dns(ref d)) if d.answer_count == 2));
        });
    });

    g.bench_function("simple_dns_packets", |b| {
        b.iter(|| {
            let q = simple_dns::Packet::parse(black_box(&query)).unwrap();
            let a = simple_dns::Packet::parse(black_box(&answer)).unwrap();
            assert_eq!(a.answers.len(), 2);
            black_box((q.id(), a.rcode()));
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
