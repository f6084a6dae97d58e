//! HTTP/2 + gRPC parsing: Telegen's parser on gRPC unary calls on one connection (the request
//! HEADERS + DATA, the response HEADERS + DATA and trailers fed as kernel chunks, one exchange
//! emitted per call), against a baseline that only walks the same bytes' frame headers (no
//! HPACK, no streams). The header blocks are those of a client with deadlines, encoded by the
//! perf harness's HPACK encoder (`telegen_perf::h2enc`): the usual fields as table indices, a
//! `traceparent` literal, and a `grpc-timeout` of a new value on every call inserted into the
//! dynamic table, so every call moves the indices of the entries before it.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use telegen_dataplane::protocols::http2::{FrameHeader, Http2Parser, PREFACE};
use telegen_dataplane::protocols::{Chunk, Direction, L7Record, Role};
use telegen_perf::h2enc::{self, Encoder, Texts};

const METHODS: [&str; 4] = [
    "/shop.v1.Orders/Get",
    "/shop.v1.Orders/List",
    "/shop.v1.Users/Get",
    "/shop.v1.Cart/Add",
];

/// Calls on one connection before the bench starts a new one (the HPACK state of a replayed
/// call must be the one it was encoded against).
const CALLS: usize = 4096;

/// One call's three writes: the request, the response, the trailers.
type Call = (Vec<u8>, Vec<u8>, Vec<u8>);

/// `CALLS` unary calls on one connection as a gRPC client with a deadline and a server send
/// them; the first request write starts with the preface and SETTINGS, the first response
/// write with the server's SETTINGS.
fn connection() -> Vec<Call> {
    let mut texts = Texts::default();
    let (mut client, mut server) = (Encoder::default(), Encoder::default());
    (0..CALLS)
        .map(|i| {
            let stream = 2 * i as u32 + 1;
            let mut block = Vec::new();
            let timeout = format!("{}u", 4_990_000 + (i * 7_919) % 10_000);
            let fields: [(&str, &str); 8] = [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", METHODS[i % 4]),
                (":authority", "orders.shop.svc.cluster.local:50051"),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
                ("user-agent", "grpc-go/1.64.0"),
                ("grpc-timeout", &timeout),
            ];
            for (n, v) in fields {
                client.field(&mut texts, &mut block, n.as_bytes(), v.as_bytes());
            }
            let traceparent =
                format!("00-0af7651916cd43dd8448eb211c80{i:04x}-b7ad6b716920{i:04x}-01");
            client.field_no_index(&texts, &mut block, b"traceparent", traceparent.as_bytes());
            let mut req = Vec::new();
            let mut resp = Vec::new();
            if i == 0 {
                req.extend_from_slice(PREFACE);
                h2enc::settings(&mut req, &[]);
                h2enc::settings(&mut resp, &[]);
            }
            h2enc::frame(&mut req, h2enc::HEADERS, h2enc::END_HEADERS, stream, &block);
            h2enc::frame(
                &mut req,
                h2enc::DATA,
                h2enc::END_STREAM,
                stream,
                &[0; 5 + 48],
            );
            block.clear();
            server.field(&mut texts, &mut block, b":status", b"200");
            server.field(&mut texts, &mut block, b"content-type", b"application/grpc");
            h2enc::frame(
                &mut resp,
                h2enc::HEADERS,
                h2enc::END_HEADERS,
                stream,
                &block,
            );
            h2enc::frame(&mut resp, h2enc::DATA, 0, stream, &[0; 5 + 230]);
            block.clear();
            server.field(&mut texts, &mut block, b"grpc-status", b"0");
            let mut trailers = Vec::new();
            let flags = h2enc::END_HEADERS | h2enc::END_STREAM;
            h2enc::frame(&mut trailers, h2enc::HEADERS, flags, stream, &block);
            (req, resp, trailers)
        })
        .collect()
}

fn chunk(dir: Direction, data: &[u8], seq: u64) -> Chunk<'_> {
    Chunk {
        dir,
        data,
        tail: &[],
        total_len: data.len() as u32,
        start_ns: seq * 1000,
        end_ns: seq * 1000 + 200,
        seq,
    }
}

fn bench(c: &mut Criterion) {
    let calls = connection();
    let mut g = c.benchmark_group("http2_grpc_unary");
    g.throughput(Throughput::Elements(1));

    g.bench_function("telegen_exchange", |b| {
        let mut p = Http2Parser::new(Role::Server);
        let mut out = Vec::with_capacity(4);
        // Calls checked in full, the first ones and one after many insertions: the references
        // resolve and the exchange is complete.
        for (i, (req, resp, tr)) in calls.iter().enumerate() {
            let seq = 3 * i as u64;
            p.feed(&chunk(Direction::Ingress, req, seq), &mut out);
            p.feed(&chunk(Direction::Egress, resp, seq + 1), &mut out);
            p.feed(&chunk(Direction::Egress, tr, seq + 2), &mut out);
            match &out[..] {
                [L7Record::Http2(x)] => {
                    assert_eq!(x.path.as_deref(), Some(METHODS[i % 4]), "call {i}");
                    assert_eq!(x.content_type.as_deref(), Some("application/grpc"));
                    assert_eq!((x.status, x.grpc_status), (Some(200), Some(0)));
                    assert!(x.traceparent.is_some() && !x.headers_incomplete && !x.partial);
                    assert_eq!((x.request_body_bytes, x.response_body_bytes), (53, 235));
                }
                other => panic!("call {i}: {other:?}"),
            }
            out.clear();
        }
        let mut n = 0usize;
        b.iter(|| {
            let i = n % CALLS;
            if i == 0 {
                // A new connection: the calls replay from the first, HPACK state and all.
                p.close(3 * n as u64 * 1000, &mut out);
                out.clear();
                p = Http2Parser::new(Role::Server);
            }
            let (req, resp, tr) = &calls[i];
            let seq = 3 * n as u64;
            n += 1;
            p.feed(black_box(&chunk(Direction::Ingress, req, seq)), &mut out);
            p.feed(
                black_box(&chunk(Direction::Egress, resp, seq + 1)),
                &mut out,
            );
            p.feed(black_box(&chunk(Direction::Egress, tr, seq + 2)), &mut out);
            assert_eq!(out.len(), 1);
            black_box(out.pop());
        });
    });

    g.bench_function("frame_header_scan", |b| {
        let mut n = 0usize;
        b.iter(|| {
            n += 1;
            let (req, resp, tr) = &calls[n % CALLS];
            let mut total = 0u64;
            for buf in [req, resp, tr] {
                let mut at = 0;
                while let Some(h) = buf.get(at..).and_then(FrameHeader::parse) {
                    total += u64::from(h.len) + u64::from(h.kind) + u64::from(h.stream);
                    at += 9 + h.len as usize;
                }
            }
            black_box(total);
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
