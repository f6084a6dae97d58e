//! The shard event path: kernel records in, spans and RED deltas out (no threads, no kernel).
//! Baseline in the same group: only decoding the same records, the floor of any shard work.
//! `two_shards_forwarding` runs the same records through two shards that forward to each other.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use telegen_bpf::abi::{self, Event};
use telegen_dataplane::shard::{ShardConfig, ShardCore, ShardIo, ShardMsg};
use telegen_dataplane::signal::ExportMsg;

#[global_allocator]
static GLOBAL: telegen_dataplane::alloc::MiMalloc = telegen_dataplane::alloc::MiMalloc;

/// Discards everything (counts it, so the work is not optimised away); with `keep_forwards`,
/// keeps what is forwarded for the other shard instead.
#[derive(Default)]
struct Sink {
    n: u64,
    keep_forwards: bool,
    forwarded: Vec<ShardMsg>,
}

impl ShardIo for Sink {
    fn forward(&mut self, _to: usize, msg: ShardMsg) -> Result<(), ShardMsg> {
        self.n += 1;
        if self.keep_forwards {
            self.forwarded.push(msg);
        }
        Ok(())
    }
    fn export(&mut self, msg: ExportMsg) -> Result<(), ExportMsg> {
        self.n += 1;
        drop(msg);
        Ok(())
    }
}

const CONNS: u64 = 256;
const TX_PER_CONN: u64 = 8;

/// Keep-alive HTTP/1.1 exchanges over CONNS connections, interleaved, every record owned by
/// the (single) shard.
fn records() -> Vec<Vec<u8>> {
    let req = b"GET /api/users/1234?page=2 HTTP/1.1\r\nHost: api.internal:8080\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n";
    let req_tp = b"GET /api/orders/99 HTTP/1.1\r\nHost: api.internal:8080\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n";
    let resp = b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n{\"status\":\"ok\"}\r\n";
    let mut out = Vec::new();
    for t in 0..TX_PER_CONN {
        for c in 0..CONNS {
            for (i, (dir, payload)) in [
                (
                    abi::DIR_INGRESS,
                    if c % 4 == 0 { &req_tp[..] } else { &req[..] },
                ),
                (abi::DIR_EGRESS, &resp[..]),
            ]
            .into_iter()
            .enumerate()
            {
                let ev = Event {
                    conn_id: 0x1_0000_0000 + c,
                    seq: 2 * t + i as u64,
                    start_ns: 1_000_000 * t + 1000 * i as u64,
                    end_ns: 1_000_000 * t + 1000 * i as u64 + 500,
                    pid: 100 + (c % 4) as u32,
                    tid: 100,
                    bytes: payload.len() as u32,
                    kind: abi::EV_DATA,
                    dir,
                    role: abi::ROLE_SERVER,
                    version: abi::ABI_VERSION,
                    ..Default::default()
                };
                let mut r = Vec::new();
                ev.encode_into(payload, &mut r);
                out.push(r);
            }
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let recs = records();
    let mut g = c.benchmark_group("shard_event_path");
    g.throughput(Throughput::Elements(recs.len() as u64));
    g.bench_function("decode_only_baseline", |b| {
        b.iter(|| {
            let mut n = 0u64;
            for r in &recs {
                if let Ok((ev, p)) = Event::decode(r) {
                    n += ev.seq + p.len() as u64;
                }
            }
            n
        })
    });
    g.bench_function("full_shard_path", |b| {
        b.iter_batched(
            || (ShardCore::new(ShardConfig::new(0, 1), 0), Sink::default()),
            |(mut shard, mut sink)| {
                for r in &recs {
                    shard.on_record(r, 0, &mut sink);
                }
                shard.stop(&mut sink);
                assert!(shard.stats().spans_emitted == CONNS * TX_PER_CONN);
                sink.n
            },
            BatchSize::LargeInput,
        )
    });
    // Two shards of two: requests are drained by shard 0 and responses by shard 1 (as if
    // each connection's two sides ran on different CPUs), each shard keeps the records it owns
    // and forwards the rest, which the other takes in after each round of records, so half of
    // the records are forwarded and many wait in the reorder for the one forwarded before.
    g.bench_function("two_shards_forwarding", |b| {
        b.iter_batched(
            || {
                let shard = |id| ShardCore::new(ShardConfig::new(id, 2), 0);
                let sink = || Sink {
                    keep_forwards: true,
                    ..Default::default()
                };
                ([shard(0), shard(1)], [sink(), sink()])
            },
            |(mut shards, mut sinks)| {
                for round in recs.chunks(2 * CONNS as usize) {
                    for (i, r) in round.iter().enumerate() {
                        shards[i % 2].on_record(r, 0, &mut sinks[i % 2]);
                    }
                    // Each shard's forwards reach the other.
                    for from in 0..2 {
                        let msgs = std::mem::take(&mut sinks[from].forwarded);
                        let to = 1 - from;
                        for m in msgs {
                            shards[to].on_message(m, 0, &mut sinks[to]);
                        }
                    }
                }
                for (s, sink) in shards.iter_mut().zip(sinks.iter_mut()) {
                    s.stop(sink);
                }
                let spans: u64 = shards.iter().map(|s| s.stats().spans_emitted).sum();
                assert_eq!(spans, CONNS * TX_PER_CONN);
                sinks[0].n + sinks[1].n
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
