//! RED aggregation: counting a span in its duration histogram (`Red::record`).
//! `shared_values`: spans as the shards build them (constant and shared strings) over 16 series.
//! `fresh_strings`: the same values in strings allocated per span, so every series is found by
//! hashing and comparing bytes. Baseline in the same group: one `HashMap` increment per span keyed
//! by a precomputed number, the floor of any aggregation.

use std::collections::HashMap;
use std::sync::Arc;

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use telegen_dataplane::red::{Red, HTTP_SERVER};
use telegen_dataplane::signal::{AttrValue, SpanKind, SpanRecord, Text};

const SPANS: usize = 1024;

fn span(route: &Arc<str>, status: i64, fresh: bool, i: usize) -> SpanRecord {
    let text = |s: &'static str| {
        if fresh {
            AttrValue::Str(s.to_string())
        } else {
            AttrValue::Text(Text::Static(s))
        }
    };
    let route = if fresh {
        AttrValue::Str(route.to_string())
    } else {
        AttrValue::Text(Text::Shared(route.clone()))
    };
    SpanRecord {
        trace_id: [1; 16],
        span_id: [2; 8],
        parent_span_id: [0; 8],
        name: Text::Static("GET"),
        kind: SpanKind::Server,
        start_unix_ns: 1_000,
        end_unix_ns: 1_000 + 50_000 * (i as u64 % 40),
        error: None,
        attrs: vec![
            ("http.request.method", text("GET")),
            ("http.response.status_code", AttrValue::Int(status)),
            ("network.protocol.name", text("http")),
            ("network.protocol.version", text("1.1")),
            ("url.path", route.clone()),
            ("url.scheme", text("http")),
            ("server.address", text("api.internal")),
            ("server.port", AttrValue::Int(8080)),
            ("client.address", text("10.0.0.9")),
            ("http.route", route),
        ],
        pid: 42,
        comm: [0; 16],
    }
}

fn spans(fresh: bool) -> Vec<SpanRecord> {
    let routes: Vec<Arc<str>> = (0..8).map(|r| format!("/api/v1/r{r}").into()).collect();
    (0..SPANS)
        .map(|i| span(&routes[i % 8], [200, 404][i / 8 % 2], fresh, i))
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("red_record");
    g.throughput(Throughput::Elements(SPANS as u64));
    for (name, fresh) in [("shared_values", false), ("fresh_strings", true)] {
        let input = spans(fresh);
        g.bench_function(name, |b| {
            b.iter_batched_ref(
                Red::default,
                |red| {
                    for s in &input {
                        red.record(&HTTP_SERVER, s);
                    }
                    black_box(red.series())
                },
                BatchSize::SmallInput,
            )
        });
    }
    let keys: Vec<u64> = (0..SPANS).map(|i| (i % 16) as u64).collect();
    g.bench_function("hashmap_increment_baseline", |b| {
        b.iter_batched_ref(
            HashMap::<u64, u64>::new,
            |m| {
                for k in &keys {
                    *m.entry(*k).or_default() += 1;
                }
                black_box(m.len())
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
