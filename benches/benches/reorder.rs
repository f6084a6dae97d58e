//! Putting a connection's records back in sequence (`Reorder`): every record passes through it.
//! `in_order`: each record is the next one (the kernel path's usual case). `one_in_four_late`:
//! the first record of every four arrives after the three behind it (a quarter of a connection's
//! records coming through another shard, as in the two-shard synthetic run), so three are held
//! and released per four. Baseline in the same group: the same late arrivals held in a
//! `BTreeMap` and released with `pop_first`, the structure `Reorder` replaced.

use std::collections::BTreeMap;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use telegen_dataplane::reorder::{Reorder, Verdict};

const RECORDS: u64 = 4096;

/// A stand-in for a held record (the shard holds a copy's buffer and its length).
type Item = [u64; 4];

/// Arrival order: sequence numbers 0..RECORDS, in order or with every fourth one late.
fn arrivals(late: bool) -> Vec<u64> {
    (0..RECORDS / 4)
        .flat_map(|b| {
            let s = 4 * b;
            if late {
                [s + 1, s + 2, s + 3, s]
            } else {
                [s, s + 1, s + 2, s + 3]
            }
        })
        .collect()
}

fn through_reorder(order: &[u64], r: &mut Reorder<Item>, ready: &mut Vec<Item>) -> u64 {
    let mut sum = 0;
    for &seq in order {
        match r.arrive(seq) {
            Verdict::Now => {
                sum += seq;
                r.pop_ready(ready);
                for it in ready.drain(..) {
                    sum += it[0];
                }
            }
            Verdict::Hold => {
                r.hold(seq, [seq; 4], 64, 0);
            }
            Verdict::Stale => {}
        }
    }
    sum
}

fn through_btreemap(order: &[u64]) -> u64 {
    let mut next = 0u64;
    let mut held: BTreeMap<u64, Item> = BTreeMap::new();
    let mut sum = 0;
    for &seq in order {
        if seq != next {
            held.insert(seq, [seq; 4]);
            continue;
        }
        sum += seq;
        next += 1;
        while held.first_key_value().is_some_and(|(&s, _)| s == next) {
            if let Some((_, it)) = held.pop_first() {
                sum += it[0];
            }
            next += 1;
        }
    }
    sum
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("reorder");
    g.throughput(Throughput::Elements(RECORDS));
    for (name, late) in [("in_order", false), ("one_in_four_late", true)] {
        let order = arrivals(late);
        g.bench_function(name, |b| {
            let mut ready = Vec::new();
            // Every record comes out once.
            let all = through_reorder(&order, &mut Reorder::default(), &mut ready);
            assert_eq!(all, RECORDS * (RECORDS - 1) / 2);
            b.iter(|| {
                let mut r = Reorder::default();
                black_box(through_reorder(&order, &mut r, &mut ready))
            })
        });
    }
    let order = arrivals(true);
    assert_eq!(through_btreemap(&order), RECORDS * (RECORDS - 1) / 2);
    g.bench_function("btreemap_one_in_four_late_baseline", |b| {
        b.iter(|| black_box(through_btreemap(&order)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
