//! Drives the shard's event path (and, with `encode`, the export core's span encoding and gzip)
//! on one thread with the perf harness's own synthetic records, for counting instructions under
//! callgrind: unlike timings, the counts repeat exactly whatever else the machine is doing.
//! `scripts/instructions.sh` runs it twice (two transaction counts) and prints the difference
//! per transaction, so start-up and shutdown cancel out. The records are generated before the
//! shard runs and the script counts only inside [`drive`], so the generator costs nothing.
//!
//! With `forward`, two shards of two consume the records as the harness writes them (on two
//! "CPUs", a quarter of each connection's records on the CPU it does not live on), each
//! forwarding what the other owns; the count covers both, so it shows what forwarding and
//! reordering add per transaction.
//!
//! Usage: `shard_instructions <transactions> [http1|grpc|dns] [encode] [forward]`; the
//! environment variable `CONNS` sets the number of connections (4096 by default; the harness's
//! synthetic phase uses 1024), and `TRACEPARENT_PCT` the percent of requests (HTTP/1.1) or calls
//! (gRPC) carrying a `traceparent` (25 by default, as in the harness).

use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use telegen_dataplane::export::otlp::{self, Gzipper};
use telegen_dataplane::export::pb;
use telegen_dataplane::shard::{ShardConfig, ShardCore, ShardIo, ShardMsg};
use telegen_dataplane::signal::{AttrValue, ExportMsg, SpanChunk, SpanRecord};
use telegen_perf::gen::{Generator, Mix, Proto, WorkloadConfig};

#[global_allocator]
static GLOBAL: telegen_dataplane::alloc::MiMalloc = telegen_dataplane::alloc::MiMalloc;

/// Protobuf bytes per gzipped body, about one 512-span batch of the export core.
const BATCH_BYTES: usize = 200_000;
/// Simulated time between transactions, and transactions between shard ticks.
const STEP_NS: u64 = 1_000;
const TICK_EVERY: usize = 1_024;
/// Spans per chunk, as the runtime sends them to the export core.
const CHUNK_SPANS: usize = 64;

/// Takes the shard's output as the runtime does: each span's box is handed back for the next
/// span (`ShardIo::recycled`), and with `encode` each span is encoded on the spot into a chunk
/// (`SpanChunk`), whose bytes the "export core" then copies into its batch and gzips.
struct Sink {
    spare: Option<Box<SpanRecord>>,
    /// Messages for another shard (`forward`), delivered by [`drive`].
    forwarded: Vec<(usize, ShardMsg)>,
    encode: bool,
    spans: u64,
    chunk: SpanChunk,
    buf: Vec<u8>,
    body: Vec<u8>,
    resource: Resource,
    scope: InstrumentationScope,
    gz: Gzipper,
    /// Encoded span bytes gzipped (the batch's input).
    encoded_bytes: usize,
    gzipped_bytes: usize,
}

impl Sink {
    /// The export core's side of a chunk: copy its spans into the batch, gzip a full batch.
    fn take_chunk(&mut self) {
        for (_, bytes) in self.chunk.iter() {
            self.buf.extend_from_slice(bytes);
        }
        self.chunk.clear();
        if self.buf.len() >= BATCH_BYTES {
            self.gzip_batch();
        }
    }

    fn gzip_batch(&mut self) {
        if !self.buf.is_empty() {
            self.encoded_bytes += self.buf.len();
            // Wrapped in a request and gzipped from its pieces, as the export core does (one
            // process).
            let parts = pb::traces_body_parts(
                [(&self.resource, self.buf.as_slice())],
                &self.scope,
                std::mem::take(&mut self.body),
            );
            self.gzipped_bytes += self.gz.gzip_parts(&parts.pieces()).map_or(0, |z| z.len());
            self.body = parts.into_heads();
            self.buf.clear();
        }
    }

    fn flush(&mut self) {
        self.take_chunk();
        self.gzip_batch();
    }
}

impl ShardIo for Sink {
    fn forward(&mut self, to: usize, msg: ShardMsg) -> Result<(), ShardMsg> {
        self.forwarded.push((to, msg));
        Ok(())
    }
    fn export(&mut self, msg: ExportMsg) -> Result<(), ExportMsg> {
        if let ExportMsg::Span(s) = msg {
            self.spans += 1;
            if self.encode {
                self.chunk.push(&s);
                if self.chunk.len() >= CHUNK_SPANS {
                    self.take_chunk();
                }
            }
            self.spare = Some(s);
        }
        Ok(())
    }
    fn recycled(&mut self) -> Option<Box<SpanRecord>> {
        self.spare.take()
    }
}

/// The records of one generator step (with the "CPU" each was written on), and the simulated
/// time it ended at.
struct Step {
    now_ns: u64,
    records: Vec<(usize, Vec<u8>)>,
}

/// Steps between two deliveries of forwarded messages (a shard's drain cycle).
const DELIVER_EVERY: usize = 16;

/// Hand every forwarded message to its shard, until none is left.
fn deliver(shards: &mut [ShardCore], sinks: &mut [Sink], now_ns: u64) {
    loop {
        let mut any = false;
        for from in 0..sinks.len() {
            for (to, msg) in std::mem::take(&mut sinks[from].forwarded) {
                any = true;
                shards[to].on_message(msg, now_ns, &mut sinks[to]);
            }
        }
        if !any {
            return;
        }
    }
}

/// Everything the instruction count covers: the shards consuming pre-generated records (the
/// records of "CPU" k go to shard k % shards).
#[inline(never)]
fn drive(steps: &[Step], shards: &mut [ShardCore], sinks: &mut [Sink]) {
    let n = shards.len();
    for (i, step) in steps.iter().enumerate() {
        for (cpu, rec) in &step.records {
            shards[cpu % n].on_record(rec, step.now_ns, &mut sinks[cpu % n]);
        }
        if i % DELIVER_EVERY == 0 {
            deliver(shards, sinks, step.now_ns);
        }
        if i % TICK_EVERY == 0 {
            for (s, sink) in shards.iter_mut().zip(sinks.iter_mut()) {
                s.tick(step.now_ns, sink);
            }
        }
    }
    let end = steps.last().map_or(0, |s| s.now_ns);
    deliver(shards, sinks, end);
    for (s, sink) in shards.iter_mut().zip(sinks.iter_mut()) {
        s.stop(sink);
    }
    deliver(shards, sinks, end);
    for (s, sink) in shards.iter_mut().zip(sinks.iter_mut()) {
        s.stop(sink);
        sink.flush();
    }
}

/// The number in the environment variable `name`, `default` when it is unset; exits with a
/// message when it is set to anything `ok` refuses (`what` says what it takes).
fn env_number(name: &str, default: usize, ok: impl Fn(usize) -> bool, what: &str) -> usize {
    match std::env::var(name) {
        Err(_) => default,
        Ok(v) => match v.parse::<usize>() {
            Ok(n) if ok(n) => n,
            _ => {
                eprintln!("shard_instructions: {name}={v:?} is not {what}");
                std::process::exit(2);
            }
        },
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(txs) = args.first().and_then(|s| s.parse::<u64>().ok()) else {
        eprintln!("usage: shard_instructions <transactions> [http1|grpc|dns] [encode] [forward]");
        std::process::exit(2);
    };
    let proto = match args
        .iter()
        .skip(1)
        .find(|a| *a != "encode" && *a != "forward")
        .map(String::as_str)
    {
        None | Some("http1") => Proto::Http1,
        Some("grpc") => Proto::Grpc,
        Some("dns") => Proto::Dns,
        Some(other) => {
            eprintln!("shard_instructions: unknown protocol {other:?} (http1, grpc or dns)");
            std::process::exit(2);
        }
    };
    let encode = args.iter().any(|a| a == "encode");
    let forward = args.iter().any(|a| a == "forward");
    // The harness's defaults for the synthetic phase; without `forward`, on one "CPU" so that
    // records arrive in kernel order (reordering is then not counted).
    let n_shards = if forward { 2 } else { 1 };
    let conns = env_number("CONNS", 4096, |n| n > 0, "a positive number");
    let traceparent_pct = env_number("TRACEPARENT_PCT", 25, |n| n <= 100, "a percentage");
    let mut g = Generator::new(WorkloadConfig {
        conns,
        cpus: n_shards,
        migrate_pct: if forward { 25 } else { 0 },
        traceparent_pct: traceparent_pct as u32,
        seed: 1,
        mix: Mix::only(proto),
    });
    let mut steps = Vec::new();
    let mut now_ns = 1_000_000_000;
    while g.counts.transactions < txs {
        now_ns += STEP_NS;
        let mut records = Vec::new();
        g.next_transaction(now_ns, &mut |cpu, rec| records.push((cpu, rec.to_vec())));
        steps.push(Step { now_ns, records });
    }
    let mut records = Vec::new();
    g.finish(now_ns + STEP_NS, &mut |cpu, rec| {
        records.push((cpu, rec.to_vec()))
    });
    steps.push(Step {
        now_ns: now_ns + STEP_NS,
        records,
    });

    let mut shards: Vec<ShardCore> = (0..n_shards)
        .map(|id| ShardCore::new(ShardConfig::new(id, n_shards), 0))
        .collect();
    let mut sinks: Vec<Sink> = (0..n_shards)
        .map(|_| Sink {
            spare: None,
            forwarded: Vec::new(),
            encode,
            spans: 0,
            chunk: SpanChunk::default(),
            buf: Vec::new(),
            body: Vec::new(),
            resource: otlp::resource(&vec![("service.name", AttrValue::Str("nginx".into()))]),
            scope: otlp::scope(),
            gz: Gzipper::default(),
            encoded_bytes: 0,
            gzipped_bytes: 0,
        })
        .collect();
    let started = std::time::Instant::now();
    drive(&steps, &mut shards, &mut sinks);
    let took = started.elapsed();
    let spans: u64 = sinks.iter().map(|s| s.spans).sum();
    let encoded: usize = sinks.iter().map(|s| s.encoded_bytes).sum();
    let gzipped: usize = sinks.iter().map(|s| s.gzipped_bytes).sum();
    println!(
        "{} transactions {} spans {} encoded bytes {} gzipped bytes {} ({:.0} ns per transaction by the wall \
         clock: noisy, compare runs interleaved)",
        proto.name(),
        g.counts.transactions,
        spans,
        encoded,
        gzipped,
        took.as_nanos() as f64 / g.counts.transactions.max(1) as f64
    );
    if spans != g.counts.transactions {
        eprintln!("shard_instructions: spans differ from transactions");
        std::process::exit(1);
    }
}
