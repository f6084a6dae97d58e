//! HTTP/1.x parsing: Telegen's incremental parser on a typical keep-alive exchange (request and
//! response fed as kernel chunks, transaction emitted) against `httparse` parsing the same request
//! and response heads (no framing, no pairing, no allocation) as a baseline.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use telegen_dataplane::protocols::http1::Http1Parser;
use telegen_dataplane::protocols::{Chunk, Direction, Role};

const REQ: &[u8] = b"GET /api/v1/users/12345/orders?limit=20 HTTP/1.1\r\n\
Host: shop.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)\r\n\
Accept: application/json\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Connection: keep-alive\r\n\
traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n";

const RESP: &[u8] = b"HTTP/1.1 200 OK\r\n\
Server: nginx/1.22.1\r\n\
Date: Wed, 25 Nov 2026 22:00:00 GMT\r\n\
Content-Type: application/json\r\n\
Content-Length: 112\r\n\
Connection: keep-alive\r\n\r\n\
[{\"id\":1,\"total\":12.5},{\"id\":2,\"total\":7.25},{\"id\":3,\"total\":99.0},{\"id\":4,\"total\":1.0},{\"id\":5,\"total\":3.0}]   ";

fn bench(c: &mut Criterion) {
    assert_eq!(
        RESP.len() - RESP.windows(4).position(|w| w == b"\r\n\r\n").unwrap() - 4,
        112
    );
    let mut g = c.benchmark_group("http1_parse");
    g.throughput(Throughput::Elements(1));

    g.bench_function("telegen_exchange", |b| {
        let mut p = Http1Parser::new(Role::Server);
        let mut out = Vec::with_capacity(4);
        let mut seq = 0u64;
        b.iter(|| {
            seq += 2;
            let req = Chunk {
                dir: Direction::Ingress,
                data: REQ,
                tail: &[],
                total_len: REQ.len() as u32,
                start_ns: seq * 1000,
                end_ns: seq * 1000 + 200,
                seq,
            };
            let resp = Chunk {
                dir: Direction::Egress,
                data: RESP,
                tail: &[],
                total_len: RESP.len() as u32,
                start_ns: seq * 1000 + 300,
                end_ns: seq * 1000 + 500,
                seq: seq + 1,
            };
            p.feed(black_box(&req), &mut out);
            p.feed(black_box(&resp), &mut out);
            assert_eq!(out.len(), 1);
            black_box(out.pop());
        });
    });

    g.bench_function("httparse_heads", |b| {
        b.iter(|| {
            let mut h = [httparse::EMPTY_HEADER; 16];
            let mut req = httparse::Request::new(&mut h);
            let n = req.parse(black_box(REQ)).unwrap().unwrap();
            black_box((req.method, req.path, n));
            let mut h = [httparse::EMPTY_HEADER; 16];
            let mut resp = httparse::Response::new(&mut h);
            let n = resp.parse(black_box(RESP)).unwrap().unwrap();
            black_box((resp.code, n));
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
