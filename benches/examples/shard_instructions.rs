//! Drives the shard's event path (and, with `encode`, the export core's span encoding and gzip)
//! on one thread with synthetic HTTP/1.1 keep-alive traffic, for counting instructions under
//! callgrind: unlike timings, the counts repeat exactly whatever else the machine is doing.
//! `scripts/instructions.sh` runs it twice (two transaction counts) and prints the difference
//! per transaction, so start-up and shutdown cancel out.
//!
//! Usage: `shard_instructions <tx per connection> [encode]`

use telegen_bpf::abi::{self, Event};
use telegen_dataplane::export::{otlp::Gzipper, pb};
use telegen_dataplane::shard::{ShardConfig, ShardCore, ShardIo, ShardMsg};
use telegen_dataplane::signal::ExportMsg;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Connections, as in the perf harness's default synthetic run.
const CONNS: u64 = 1024;
/// Protobuf bytes per gzipped body, about one 512-span batch of the export core.
const BATCH_BYTES: usize = 200_000;

/// Takes the shard's output: with `encode`, spans are encoded and gzipped in batches as the
/// export core does; otherwise only counted.
struct Sink {
    encode: bool,
    spans: u64,
    buf: Vec<u8>,
    scratch: Vec<u8>,
    gz: Gzipper,
    gzipped_bytes: usize,
}

impl Sink {
    fn flush(&mut self) {
        if !self.buf.is_empty() {
            self.gzipped_bytes += self.gz.gzip(&self.buf).map_or(0, |z| z.len());
            self.buf.clear();
        }
    }
}

impl ShardIo for Sink {
    fn forward(&mut self, _to: usize, _msg: ShardMsg) -> Result<(), ShardMsg> {
        Ok(())
    }
    fn export(&mut self, msg: ExportMsg) -> Result<(), ExportMsg> {
        if let ExportMsg::Span(s) = msg {
            self.spans += 1;
            if self.encode {
                pb::append_span(&s, &mut self.buf, &mut self.scratch);
                if self.buf.len() >= BATCH_BYTES {
                    self.flush();
                }
            }
        }
        Ok(())
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(txs) = args.next().and_then(|s| s.parse::<u64>().ok()) else {
        eprintln!("usage: shard_instructions <tx per connection> [encode]");
        std::process::exit(2);
    };
    let encode = args.next().as_deref() == Some("encode");
    let req = b"GET /api/users/1234?page=2 HTTP/1.1\r\nHost: api.internal:8080\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n";
    let req_tp = b"GET /api/orders/99 HTTP/1.1\r\nHost: api.internal:8080\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n";
    let resp = b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n{\"status\":\"ok\"}\r\n";
    let mut shard = ShardCore::new(ShardConfig::new(0, 1), 0);
    let mut sink = Sink {
        encode,
        spans: 0,
        buf: Vec::new(),
        scratch: Vec::new(),
        gz: Gzipper::default(),
        gzipped_bytes: 0,
    };
    let mut rec = Vec::new();
    for t in 0..txs {
        for c in 0..CONNS {
            let request = if c % 4 == 0 { &req_tp[..] } else { &req[..] };
            for (i, (dir, payload)) in [(abi::DIR_INGRESS, request), (abi::DIR_EGRESS, &resp[..])]
                .into_iter()
                .enumerate()
            {
                let at = 1_000_000 * t + 1000 * i as u64;
                let ev = Event {
                    conn_id: 0x1_0000_0000 + c,
                    seq: 2 * t + i as u64,
                    start_ns: at,
                    end_ns: at + 500,
                    pid: 100 + (c % 4) as u32,
                    tid: 100,
                    bytes: payload.len() as u32,
                    kind: abi::EV_DATA,
                    dir,
                    role: abi::ROLE_SERVER,
                    version: abi::ABI_VERSION,
                    ..Default::default()
                };
                rec.clear();
                ev.encode_into(payload, &mut rec);
                shard.on_record(&rec, 0, &mut sink);
            }
        }
        if t % 8 == 0 {
            shard.tick(1_000_000 * t, &mut sink);
        }
    }
    shard.stop(&mut sink);
    sink.flush();
    println!(
        "transactions {} spans {} gzipped bytes {}",
        txs * CONNS,
        sink.spans,
        sink.gzipped_bytes
    );
}
