//! Building a span from a finished HTTP/1.1 exchange (`http_span_into`): route template, span
//! name, the semantic-convention attributes, ids and times, written into a reused box.
//! `server_spans`: 1,024 server exchanges over 8 routes with identifiers in their paths and 16
//! connections, through one warm `SpanCache`, as a shard builds them. Baseline in the same group:
//! the same attributes with every value a freshly allocated `String` and the name formatted per
//! span, what a builder without the cache and the shared texts would do.

use std::borrow::Cow;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use telegen_bpf::abi::{Addr, PROTO_TCP};
use telegen_dataplane::protocols::http1::HttpTransaction;
use telegen_dataplane::protocols::route::route_template_into;
use telegen_dataplane::protocols::Role;
use telegen_dataplane::signal::{AttrValue, SpanKind, SpanRecord, Text};
use telegen_dataplane::spans::{http_span_into, FlowInfo, SpanCache, SpanCtx};

#[global_allocator]
static GLOBAL: telegen_dataplane::alloc::MiMalloc = telegen_dataplane::alloc::MiMalloc;

const SPANS: usize = 1024;

fn tcp_v4(ip: [u8; 4], port: u16) -> Addr {
    Addr {
        proto: PROTO_TCP,
        ..Addr::v4(ip, port)
    }
}

fn flows() -> Vec<FlowInfo> {
    (0..16)
        .map(|c| {
            FlowInfo::new(
                100,
                *b"nginx\0\0\0\0\0\0\0\0\0\0\0",
                tcp_v4([10, 0, 0, 1], 8080),
                tcp_v4([10, 0, 1, c as u8], 40_000 + c),
            )
        })
        .collect()
}

fn exchanges() -> Vec<HttpTransaction> {
    const ROUTES: [&str; 8] = [
        "/api/users/",
        "/api/orders/",
        "/api/items/",
        "/api/carts/",
        "/v2/accounts/",
        "/v2/invoices/",
        "/static/img/",
        "/health/",
    ];
    (0..SPANS)
        .map(|i| HttpTransaction {
            role: Role::Server,
            method: Cow::Borrowed(if i % 5 == 4 { "POST" } else { "GET" }),
            target: format!("{}{}?page={}", ROUTES[i % 8], 1000 + i * 7, i % 3),
            version: "1.1",
            host: Some("api.internal:8080".to_string()),
            traceparent: None,
            status: Some(if i % 11 == 0 { 404 } else { 200 }),
            start_ns: 1_000_000 * i as u64,
            end_ns: 1_000_000 * i as u64 + 250_000,
            request_seq: 2 * i as u64,
            request_body_bytes: 0,
            response_body_bytes: 17,
            partial: false,
        })
        .collect()
}

/// The same attributes as `http_span_into` writes for a server span, every value owned.
fn owned_span(out: &mut SpanRecord, tx: &HttpTransaction, flow: &FlowInfo, ctx: SpanCtx) {
    let path = tx.target.split('?').next().unwrap_or("/");
    let mut route = String::new();
    route_template_into(path, &mut route);
    let s = |v: &str| AttrValue::Str(v.to_string());
    out.attrs.clear();
    out.attrs.extend([
        ("http.request.method", s(&tx.method)),
        (
            "http.response.status_code",
            AttrValue::Int(tx.status.unwrap_or(0).into()),
        ),
        ("network.protocol.name", s("http")),
        ("network.protocol.version", s(tx.version)),
        ("url.path", s(path)),
        ("url.scheme", s("http")),
        ("server.address", s("api.internal")),
        ("server.port", AttrValue::Int(8080)),
        ("client.address", s(&flow.remote.ip().to_string())),
        ("client.port", AttrValue::Int(flow.remote.port.into())),
        ("http.route", s(&route)),
    ]);
    out.name = Text::Owned(format!("{} {route}", tx.method));
    out.kind = SpanKind::Server;
    out.trace_id = ctx.trace_id;
    out.span_id = ctx.span_id;
    out.start_unix_ns = tx.start_ns;
    out.end_unix_ns = tx.end_ns;
    out.pid = flow.pid;
}

fn bench(c: &mut Criterion) {
    let flows = flows();
    let txs = exchanges();
    let ctx = SpanCtx {
        trace_id: [7; 16],
        span_id: [9; 8],
    };
    let mut g = c.benchmark_group("span_build");
    g.throughput(Throughput::Elements(SPANS as u64));
    g.bench_function("server_spans", |b| {
        let mut cache = SpanCache::default();
        let mut out = SpanRecord::blank();
        // What the bench builds: a templated route and its name.
        http_span_into(&mut out, &txs[0], &flows[0], ctx, [0; 8], 0, &mut cache);
        assert_eq!(out.name.as_str(), "GET /api/users/{id}");
        b.iter(|| {
            let mut n = 0;
            for (i, tx) in txs.iter().enumerate() {
                http_span_into(&mut out, tx, &flows[i % 16], ctx, [0; 8], 0, &mut cache);
                n += out.attrs.len();
            }
            black_box(n)
        })
    });
    g.bench_function("owned_strings_baseline", |b| {
        let mut out = SpanRecord::blank();
        owned_span(&mut out, &txs[0], &flows[0], ctx);
        // The baseline writes what the builder writes.
        let mut built = SpanRecord::blank();
        http_span_into(
            &mut built,
            &txs[0],
            &flows[0],
            ctx,
            [0; 8],
            0,
            &mut SpanCache::default(),
        );
        assert_eq!(out.name.as_str(), built.name.as_str());
        // `Str` and `Text` of the same text are equal values.
        assert_eq!(out.attrs, built.attrs);
        b.iter(|| {
            let mut n = 0;
            for (i, tx) in txs.iter().enumerate() {
                owned_span(&mut out, tx, &flows[i % 16], ctx);
                n += out.attrs.len();
            }
            black_box(n)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
