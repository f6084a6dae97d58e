//! OTLP encoding cost per span: 512 realistic HTTP server spans from `SpanRecord` to protobuf
//! bytes (the export core's per-batch work), the same plus gzip, and a baseline copying the
//! encoded byte count.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use telegen_dataplane::export::{otlp, pb};
use telegen_dataplane::signal::{AttrValue, SpanKind, SpanRecord};

const BATCH: usize = 512;

fn spans() -> Vec<SpanRecord> {
    let routes = [
        "/api/v1/users/{id}",
        "/api/v1/orders",
        "/health",
        "/api/v1/cart/{id}/items",
    ];
    (0..BATCH as u64)
        .map(|i| {
            let mut trace_id = [0u8; 16];
            trace_id[..8].copy_from_slice(&(i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_le_bytes());
            trace_id[8..].copy_from_slice(&i.to_be_bytes());
            let route = routes[(i % 4) as usize];
            let status = if i % 50 == 0 { 500 } else { 200 };
            SpanRecord {
                trace_id,
                span_id: (i + 1).to_be_bytes(),
                parent_span_id: if i % 3 == 0 {
                    [0; 8]
                } else {
                    (i + 7).to_le_bytes()
                },
                name: format!("GET {route}").into(),
                kind: SpanKind::Server,
                start_unix_ns: 1_700_000_000_000_000_000 + i * 1_000_000,
                end_unix_ns: 1_700_000_000_000_000_000 + i * 1_000_000 + 3_250_000,
                error: (status == 500).then(|| "HTTP 500".to_string()),
                attrs: vec![
                    ("http.request.method", AttrValue::Str("GET".into())),
                    ("http.route", AttrValue::Str(route.into())),
                    (
                        "url.path",
                        AttrValue::Str(route.replace("{id}", &i.to_string())),
                    ),
                    ("url.scheme", AttrValue::Str("http".into())),
                    ("http.response.status_code", AttrValue::Int(status)),
                    ("network.protocol.version", AttrValue::Str("1.1".into())),
                    ("server.address", AttrValue::Str("api.internal".into())),
                    ("server.port", AttrValue::Int(8080)),
                    (
                        "client.address",
                        AttrValue::Str(format!("10.0.{}.{}", i % 7, i % 250)),
                    ),
                    ("user_agent.original", AttrValue::Str("curl/8.5.0".into())),
                ],
                pid: 4242 + (i % 2) as u32,
                comm: [0; 16],
            }
        })
        .collect()
}

fn request(
    records: Vec<SpanRecord>,
) -> opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
    let res = |pid: i64| {
        otlp::resource(&vec![
            ("service.name", AttrValue::Str("api".into())),
            ("process.pid", AttrValue::Int(pid)),
            ("host.name", AttrValue::Str("node-1".into())),
        ])
    };
    let (mut a, mut b) = (Vec::with_capacity(BATCH), Vec::with_capacity(BATCH));
    for r in records {
        if r.pid == 4242 {
            a.push(otlp::span_to_otlp(r));
        } else {
            b.push(otlp::span_to_otlp(r));
        }
    }
    otlp::traces_request(vec![(res(4242), a), (res(4243), b)])
}

fn encode(records: Vec<SpanRecord>) -> Vec<u8> {
    otlp::encode_traces(&request(records))
}

/// What the export core does: each span written straight to protobuf as it arrives, grouped by
/// process, then one request around the groups.
fn encode_direct(records: &[SpanRecord]) -> Vec<u8> {
    let res = |pid: i64| {
        otlp::resource(&vec![
            ("service.name", AttrValue::Str("api".into())),
            ("process.pid", AttrValue::Int(pid)),
            ("host.name", AttrValue::Str("node-1".into())),
        ])
    };
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for r in records {
        let buf = if r.pid == 4242 { &mut a } else { &mut b };
        pb::append_span(r, buf);
    }
    let (ra, rb) = (res(4242), res(4243));
    pb::traces_body([(&ra, a.as_slice()), (&rb, b.as_slice())], &otlp::scope())
}

fn bench(c: &mut Criterion) {
    let input = spans();
    let encoded = encode(input.clone());
    let gz = otlp::gzip(&encoded).unwrap_or_default();
    eprintln!(
        "batch of {BATCH} spans: {} bytes protobuf, {} bytes gzipped",
        encoded.len(),
        gz.len()
    );
    let mut g = c.benchmark_group("otlp_encode");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("encode", |b| {
        b.iter_batched(
            || input.clone(),
            |r| black_box(encode(r)),
            BatchSize::SmallInput,
        )
    });
    // Breakdown: protobuf serialisation alone of an already-built request.
    let built = request(input.clone());
    g.bench_function("protobuf_only", |b| {
        b.iter(|| black_box(otlp::encode_traces(black_box(&built))))
    });
    g.bench_function("direct_encode", |b| {
        b.iter(|| black_box(encode_direct(black_box(&input))))
    });
    // The shard's part alone: each span appended to a reused chunk buffer.
    let mut chunk = Vec::new();
    g.bench_function("append_span", |b| {
        b.iter(|| {
            chunk.clear();
            for r in black_box(&input) {
                pb::append_span(r, &mut chunk);
            }
            black_box(chunk.len())
        })
    });
    g.bench_function("direct_encode_gzip", |b| {
        b.iter(|| black_box(otlp::gzip(&encode_direct(black_box(&input))).unwrap_or_default()))
    });
    // The export core's path: one compressor kept across batches (reset, not rebuilt).
    let mut gzipper = otlp::Gzipper::default();
    g.bench_function("direct_encode_gzip_reused", |b| {
        b.iter(|| {
            black_box(
                gzipper
                    .gzip(&encode_direct(black_box(&input)))
                    .unwrap_or_default(),
            )
        })
    });
    g.bench_function("encode_gzip", |b| {
        b.iter_batched(
            || input.clone(),
            |r| black_box(otlp::gzip(&encode(r)).unwrap_or_default()),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("memcpy_baseline", |b| {
        b.iter(|| black_box(black_box(encoded.as_slice()).to_vec()))
    });
    g.finish();

    // The export core's compressor (ISA-L igzip, level 1) against zlib-rs at its fastest level
    // (flate2, the compressor it replaced), each kept across batches, on the same request body.
    let mut g = c.benchmark_group("gzip");
    g.throughput(Throughput::Bytes(encoded.len() as u64));
    let mut isal = otlp::Gzipper::default();
    g.bench_function("isal_level1", |b| {
        b.iter(|| black_box(isal.gzip(black_box(&encoded)).unwrap_or_default().len()))
    });
    let mut zlib = flate2::Compress::new_gzip(flate2::Compression::fast(), 15);
    g.bench_function("zlib_rs_level1_baseline", |b| {
        b.iter(|| {
            zlib.reset();
            let mut out = Vec::with_capacity(encoded.len() + 1024);
            let st =
                zlib.compress_vec(black_box(&encoded), &mut out, flate2::FlushCompress::Finish);
            assert!(matches!(st, Ok(flate2::Status::StreamEnd)));
            black_box(out.len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
