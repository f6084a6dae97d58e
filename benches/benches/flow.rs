//! The shard's flow table (`FlowTable::get_or_insert_with`): every record of a connection looks
//! its state up by connection id.
//! `clock_hits`: 4,096 live connections, each access a hit, in a fixed shuffled order (records of
//! many keep-alive connections interleave). `clock_evicting`: 4,096 connections through a table
//! of 1,024, so every access inserts and evicts one (the CLOCK hand at work). Baseline in the same
//! group: the same hits on the standard library's `HashMap` (SipHash), the map a first version
//! would reach for.

use std::collections::HashMap;

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use telegen_bpf::abi;
use telegen_dataplane::flow::FlowTable;

const CONNS: u64 = 4096;
const ACCESSES: usize = 8192;

/// Per-connection state of about the size a shard keeps inline per flow.
type State = [u64; 8];

/// Connection ids as the kernel makes them: the home CPU (plus one) above a counter.
fn conn_id(i: u64) -> u64 {
    ((i % 2 + 1) << abi::CONN_ID_CPU_SHIFT) | i
}

/// ACCESSES connection ids over CONNS connections, shuffled by a fixed-seed xorshift.
fn accesses() -> Vec<u64> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..ACCESSES)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            conn_id(x % CONNS)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let keys = accesses();
    let mut g = c.benchmark_group("flow_table");
    g.throughput(Throughput::Elements(ACCESSES as u64));
    g.bench_function("clock_hits", |b| {
        let mut t = FlowTable::<State>::new(65_536);
        for i in 0..CONNS {
            t.get_or_insert_with(conn_id(i), 0, State::default, |_, _| {});
        }
        let mut now = 0;
        b.iter(|| {
            now += 1;
            for &k in &keys {
                let s = t.get_or_insert_with(k, now, State::default, |_, _| {});
                s[0] += 1;
            }
            black_box(t.len())
        })
    });
    g.bench_function("clock_evicting", |b| {
        b.iter_batched_ref(
            || FlowTable::<State>::new(1024),
            |t| {
                let mut evicted = 0u64;
                for (now, i) in (0..ACCESSES as u64).enumerate() {
                    let s = t.get_or_insert_with(
                        conn_id(i % CONNS),
                        now as u64,
                        State::default,
                        |_, v| evicted += v[0],
                    );
                    s[0] += 1;
                }
                // Every insert past the first 1,024 evicted one.
                assert_eq!(t.evicted(), ACCESSES as u64 - 1024);
                black_box(evicted)
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("std_hashmap_hits_baseline", |b| {
        let mut m: HashMap<u64, State> =
            (0..CONNS).map(|i| (conn_id(i), State::default())).collect();
        b.iter(|| {
            for &k in &keys {
                let s = m.entry(k).or_default();
                s[0] += 1;
            }
            black_box(m.len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
