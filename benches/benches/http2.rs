//! HTTP/2 + gRPC parsing: Telegen's parser on a mix of gRPC unary calls on one connection (the
//! request HEADERS + DATA, the response HEADERS + DATA and trailers fed as kernel chunks, one
//! exchange emitted per call, HPACK with dynamic-table references as real clients send them),
//! against a baseline that only walks the same bytes' frame headers (no HPACK, no streams).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use telegen_dataplane::protocols::http2::{
    FrameHeader, Http2Parser, DATA, FLAG_END_HEADERS, FLAG_END_STREAM, HEADERS, PREFACE, SETTINGS,
};
use telegen_dataplane::protocols::{Chunk, Direction, L7Record, Role};

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    f.extend([kind, flags]);
    f.extend(stream.to_be_bytes());
    f.extend(payload);
    f
}

fn lit(index: bool, name: &str, value: &str) -> Vec<u8> {
    let mut b = vec![if index { 0x40 } else { 0x00 }, name.len() as u8];
    b.extend(name.as_bytes());
    b.push(value.len() as u8);
    b.extend(value.as_bytes());
    b
}

const METHODS: [&str; 4] = [
    "/shop.v1.Orders/Get",
    "/shop.v1.Orders/List",
    "/shop.v1.Users/Get",
    "/shop.v1.Cart/Add",
];

/// The first call's blocks insert what later calls refer to (grpc-go / grpcio do the same).
fn warmup() -> (Vec<u8>, Vec<u8>) {
    let mut req = vec![0x83, 0x86];
    for m in METHODS.iter().rev() {
        req.extend(lit(true, ":path", m));
    }
    req.extend(lit(
        true,
        ":authority",
        "orders.shop.svc.cluster.local:50051",
    ));
    req.extend(lit(true, "content-type", "application/grpc"));
    req.extend(lit(true, "te", "trailers"));
    req.extend(lit(true, "user-agent", "grpc-go/1.64.0"));
    req.extend(lit(true, "grpc-timeout", "1S"));
    let mut c = PREFACE.to_vec();
    c.extend(frame(SETTINGS, 0, 0, &[]));
    c.extend(frame(HEADERS, FLAG_END_HEADERS, 1, &req));
    c.extend(frame(DATA, FLAG_END_STREAM, 1, &[0; 5]));
    let mut resp = vec![0x88];
    resp.extend(lit(true, "content-type", "application/grpc"));
    let mut s = frame(SETTINGS, 0, 0, &[]);
    s.extend(frame(HEADERS, FLAG_END_HEADERS, 1, &resp));
    s.extend(frame(DATA, 0, 1, &[0; 5]));
    let trailers = lit(true, "grpc-status", "0");
    s.extend(frame(
        HEADERS,
        FLAG_END_HEADERS | FLAG_END_STREAM,
        1,
        &trailers,
    ));
    (c, s)
}

/// Call `i` on `stream`: request (one write), response and trailers (one write each).
fn call(i: usize, stream: u32) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    // Dynamic indices on the client side, newest first: grpc-timeout 62, user-agent 63, te 64,
    // content-type 65, :authority 66, then the paths (METHODS[0] newest at 67).
    let mut req = vec![
        0x83,
        0x86,
        0x80 | (67 + (i % 4)) as u8,
        0xc2,
        0xc1,
        0xc0,
        0xbf,
        0xbe,
    ];
    req.extend(lit(
        false,
        "traceparent",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    ));
    let mut c = frame(HEADERS, FLAG_END_HEADERS, stream, &req);
    c.extend(frame(DATA, FLAG_END_STREAM, stream, &[0; 5 + 48]));
    // Server side: grpc-status 0 is 62, content-type 63.
    let mut s = frame(HEADERS, FLAG_END_HEADERS, stream, &[0x88, 0xbf]);
    s.extend(frame(DATA, 0, stream, &[0; 5 + 230]));
    let t = frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, stream, &[0xbe]);
    (c, s, t)
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
    // Calls are pre-built for a window of stream ids; the parser needs ids to grow.
    const WINDOW: usize = 1 << 16;
    let calls: Vec<_> = (0..4).map(|i| call(i, 0)).collect();
    let mut g = c.benchmark_group("http2_grpc_unary");
    g.throughput(Throughput::Elements(1));

    g.bench_function("telegen_exchange", |b| {
        let (wc, ws) = warmup();
        let mut p = Http2Parser::new(Role::Server);
        let mut out = Vec::with_capacity(4);
        p.feed(&chunk(Direction::Ingress, &wc, 0), &mut out);
        p.feed(&chunk(Direction::Egress, &ws, 1), &mut out);
        assert_eq!(out.len(), 1);
        out.clear();
        // One call checked in full: the references resolve and the exchange is complete.
        let (req, resp, tr) = call(1, 3);
        p.feed(&chunk(Direction::Ingress, &req, 2), &mut out);
        p.feed(&chunk(Direction::Egress, &resp, 3), &mut out);
        p.feed(&chunk(Direction::Egress, &tr, 4), &mut out);
        match &out[..] {
            [L7Record::Http2(x)] => {
                assert_eq!(x.path.as_deref(), Some(METHODS[1]));
                assert_eq!(x.content_type.as_deref(), Some("application/grpc"));
                assert_eq!((x.status, x.grpc_status), (Some(200), Some(0)));
                assert!(x.traceparent.is_some() && !x.headers_incomplete && !x.partial);
                assert_eq!((x.request_body_bytes, x.response_body_bytes), (53, 235));
            }
            other => panic!("{other:?}"),
        }
        out.clear();
        let mut bufs = calls.clone();
        let mut n = 0usize;
        let mut seq = 2u64;
        b.iter(|| {
            n += 1;
            if n % WINDOW == 0 {
                // Fresh connection state so stream ids can start over (as a new connection).
                p.close(seq * 1000, &mut out);
                out.clear();
                p = Http2Parser::new(Role::Server);
                p.feed(&chunk(Direction::Ingress, &wc, 0), &mut out);
                p.feed(&chunk(Direction::Egress, &ws, 1), &mut out);
                out.clear();
            }
            let stream = (2 * (n % WINDOW) + 1) as u32 + 4;
            let (req, resp, tr) = &mut bufs[n % 4];
            // Patch the stream id into every frame (offset 5 of each frame header).
            for buf in [&mut *req, &mut *resp, &mut *tr] {
                let mut at = 0;
                while at + 9 <= buf.len() {
                    buf[at + 5..at + 9].copy_from_slice(&stream.to_be_bytes());
                    at += 9 + (usize::from(buf[at + 1]) << 8 | usize::from(buf[at + 2]));
                }
            }
            seq += 3;
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
            let (req, resp, tr) = &calls[n % 4];
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
