//! The synthetic workload: what the kernel would send for a busy HTTP/1.1 server.
//!
//! Many keep-alive connections take turns; each transaction is a request record (ingress) and a
//! response record (egress) encoded exactly as ring records (`abi::Event::encode_into`), with
//! per-connection sequence numbers, kernel-monotonic timestamps and a realistic mix of payloads
//! (GET with ids in the path, POST with a body, a quarter with a W3C `traceparent`, 200/404/500,
//! chunked and content-length bodies). Every record is assigned the "CPU" it was written on:
//! the connection's home CPU, or with `migrate_pct` percent probability another one, so the
//! records of one connection reach different shards and the route-to-owner path is exercised.
//! Connections close after a while (a close record) and new ones take their place.
//! Deterministic for a seed; pure (no threads, no clock: the caller passes `now_ns`).

use telegen_bpf::abi::{self, Addr, Event};

/// Shape of the workload.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    /// Keep-alive connections open at any time.
    pub conns: usize,
    /// "CPUs" records are written on (one queue each).
    pub cpus: usize,
    /// Percent of records written on a CPU other than the connection's home CPU.
    pub migrate_pct: u32,
    /// Percent of requests that carry a `traceparent`.
    pub traceparent_pct: u32,
    pub seed: u64,
}

/// xorshift64*: cheap, deterministic.
#[derive(Debug, Clone)]
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        ((self.next() >> 32) * n) >> 32
    }
}

#[derive(Debug, Clone)]
struct Conn {
    id: u64,
    seq: u64,
    home: usize,
    left: u32,
    pid: u32,
    remote_port: u16,
}

/// Pre-rendered payloads; per record only the header changes.
#[derive(Debug)]
struct Payloads {
    requests: Vec<Vec<u8>>,
    traced_requests: Vec<Vec<u8>>,
    /// Responses with the share of each (weights out of 100).
    responses: Vec<(u32, Vec<u8>)>,
}

fn payloads(rng: &mut Rng) -> Payloads {
    let mut requests = Vec::new();
    let mut traced_requests = Vec::new();
    for i in 0..64u64 {
        let id = 1000 + rng.below(1_000_000);
        let req = match i % 4 {
            0 => format!(
                "GET /api/users/{id}?page={} HTTP/1.1\r\nHost: api.internal:8080\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\nAccept: application/json\r\nAccept-Encoding: gzip, deflate\r\n\r\n",
                i % 7
            ),
            1 => {
                let body = format!("{{\"item\":{id},\"qty\":{},\"note\":\"synthetic order\"}}", i % 9 + 1);
                format!(
                    "POST /api/orders HTTP/1.1\r\nHost: api.internal:8080\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
            }
            2 => format!(
                "GET /static/app.{:x}.js HTTP/1.1\r\nHost: www.example.com\r\nAccept: */*\r\nIf-None-Match: \"{id:x}\"\r\n\r\n",
                id
            ),
            _ => "GET /healthz HTTP/1.1\r\nHost: 10.0.0.7:8080\r\nUser-Agent: kube-probe/1.29\r\n\r\n".to_string(),
        };
        requests.push(req.clone().into_bytes());
        let tp = format!(
            "traceparent: 00-{:016x}{:016x}-{:016x}-01\r\n",
            rng.next() | 1,
            rng.next(),
            rng.next() | 1
        );
        // Insert the header right after the request line.
        let cut = req.find("\r\n").map(|p| p + 2).unwrap_or(0);
        let mut traced = req[..cut].to_string();
        traced.push_str(&tp);
        traced.push_str(&req[cut..]);
        traced_requests.push(traced.into_bytes());
    }
    let json = "{\"id\":1234,\"name\":\"synthetic\",\"tags\":[\"a\",\"b\"],\"ok\":true}";
    let responses = vec![
        (
            80,
            format!(
                "HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Thu, 26 Nov 2026 01:00:00 GMT\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: keep-alive\r\n\r\n{json}",
                json.len()
            )
            .into_bytes(),
        ),
        (
            10,
            format!(
                "HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{json}\r\n0\r\n\r\n",
                json.len()
            )
            .into_bytes(),
        ),
        (
            7,
            b"HTTP/1.1 404 Not Found\r\nServer: nginx\r\nContent-Type: text/html\r\nContent-Length: 9\r\n\r\nnot found".to_vec(),
        ),
        (
            3,
            b"HTTP/1.1 500 Internal Server Error\r\nServer: nginx\r\nContent-Length: 0\r\n\r\n".to_vec(),
        ),
    ];
    Payloads {
        requests,
        traced_requests,
        responses,
    }
}

/// Counts of what was generated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GenCounts {
    /// Request/response pairs (each must become exactly one span).
    pub transactions: u64,
    /// Records of any kind (data and close).
    pub records: u64,
    pub closes: u64,
    /// Records written on a CPU other than their connection's home CPU.
    pub migrated: u64,
    pub traced: u64,
}

/// The workload generator.
#[derive(Debug)]
pub struct Generator {
    cfg: WorkloadConfig,
    rng: Rng,
    conns: Vec<Conn>,
    next: usize,
    next_conn_id: u64,
    payloads: Payloads,
    /// Encoding scratch, reused across records.
    scratch: Vec<u8>,
    pub counts: GenCounts,
}

const LOCAL_PORT: u16 = 8080;

fn addr_v4(ip: [u8; 4], port: u16) -> Addr {
    let mut a = Addr {
        port,
        family: abi::AF_INET,
        ..Default::default()
    };
    a.addr[10] = 0xff;
    a.addr[11] = 0xff;
    a.addr[12..].copy_from_slice(&ip);
    a
}

impl Generator {
    pub fn new(cfg: WorkloadConfig) -> Self {
        let mut rng = Rng(cfg.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let payloads = payloads(&mut rng);
        let mut g = Generator {
            rng,
            conns: Vec::with_capacity(cfg.conns.max(1)),
            next: 0,
            next_conn_id: 1,
            payloads,
            scratch: Vec::with_capacity(1024),
            counts: GenCounts::default(),
            cfg,
        };
        for i in 0..g.cfg.conns.max(1) {
            let c = g.new_conn(i);
            g.conns.push(c);
        }
        g
    }

    fn new_conn(&mut self, slot: usize) -> Conn {
        let cpus = self.cfg.cpus.max(1) as u64;
        let home = self.rng.below(cpus) as usize;
        // Kernel-style ids: the CPU that saw the connection first in the top bits.
        let id = ((home as u64 + 1) << 48) | self.next_conn_id;
        self.next_conn_id += 1;
        Conn {
            id,
            seq: 0,
            home,
            left: 50 + self.rng.below(200) as u32,
            // A few worker processes.
            pid: 4000 + (slot % 4) as u32,
            remote_port: 20_000 + (self.rng.below(40_000) as u16),
        }
    }

    fn cpu_for(&mut self, home: usize) -> usize {
        let cpus = self.cfg.cpus.max(1);
        if cpus > 1 && (self.rng.below(100) as u32) < self.cfg.migrate_pct {
            self.counts.migrated += 1;
            (home + 1 + self.rng.below(cpus as u64 - 1) as usize) % cpus
        } else {
            home
        }
    }

    /// Emit the next transaction (and, when its connection is done, its close record) ending at
    /// `now_ns` (kernel monotonic). `out(cpu, record)` receives each record in kernel order.
    pub fn next_transaction(&mut self, now_ns: u64, out: &mut impl FnMut(usize, &[u8])) {
        let slot = self.next;
        self.next = (self.next + 1) % self.conns.len();
        let traced = (self.rng.below(100) as u32) < self.cfg.traceparent_pct;
        let ri = self.rng.below(self.payloads.requests.len() as u64) as usize;
        let pick = self.rng.below(100) as u32;
        let mut acc = 0;
        let mut si = self.payloads.responses.len() - 1;
        for (i, (w, _)) in self.payloads.responses.iter().enumerate() {
            acc += w;
            if pick < acc {
                si = i;
                break;
            }
        }
        let cpu_req = self.cpu_for(self.conns[slot].home);
        let cpu_resp = self.cpu_for(self.conns[slot].home);
        let c = &mut self.conns[slot];
        let mut ev = Event {
            conn_id: c.id,
            pid: c.pid,
            tid: c.pid,
            fd: 10 + (slot as u32 % 1000),
            kind: abi::EV_DATA,
            role: abi::ROLE_SERVER,
            version: abi::ABI_VERSION,
            local: addr_v4([10, 0, 0, 7], LOCAL_PORT),
            remote: addr_v4([10, 1, (slot >> 8) as u8, slot as u8], c.remote_port),
            ..Default::default()
        };
        ev.comm[..5].copy_from_slice(b"nginx");
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();

        let req = if traced {
            &self.payloads.traced_requests[ri]
        } else {
            &self.payloads.requests[ri]
        };
        ev.seq = c.seq;
        ev.dir = abi::DIR_INGRESS;
        ev.start_ns = now_ns.saturating_sub(60_000);
        ev.end_ns = now_ns.saturating_sub(55_000);
        ev.bytes = req.len() as u32;
        ev.encode_into(req, &mut buf);
        out(cpu_req, &buf);

        let resp = &self.payloads.responses[si].1;
        buf.clear();
        ev.seq = c.seq + 1;
        ev.dir = abi::DIR_EGRESS;
        ev.start_ns = now_ns.saturating_sub(5_000);
        ev.end_ns = now_ns;
        ev.bytes = resp.len() as u32;
        ev.encode_into(resp, &mut buf);
        out(cpu_resp, &buf);

        c.seq += 2;
        c.left -= 1;
        self.counts.transactions += 1;
        self.counts.records += 2;
        self.counts.traced += u64::from(traced);
        if c.left == 0 {
            buf.clear();
            ev.seq = c.seq;
            ev.kind = abi::EV_CLOSE;
            ev.dir = abi::DIR_INGRESS;
            ev.start_ns = now_ns;
            ev.end_ns = now_ns;
            ev.bytes = 0;
            ev.encode_into(&[], &mut buf);
            let home = c.home;
            let cpu = self.cpu_for(home);
            out(cpu, &buf);
            self.counts.records += 1;
            self.counts.closes += 1;
            self.conns[slot] = self.new_conn(slot);
        }
        self.scratch = buf;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use telegen_dataplane::shard::{ShardConfig, ShardCore, ShardIo, ShardMsg};
    use telegen_dataplane::signal::ExportMsg;

    #[derive(Default)]
    struct Io {
        spans: u64,
        traced: u64,
        errors: u64,
    }
    impl ShardIo for Io {
        fn forward(&mut self, _to: usize, msg: ShardMsg) -> Result<(), ShardMsg> {
            Err(msg)
        }
        fn export(&mut self, msg: ExportMsg) -> Result<(), ExportMsg> {
            if let ExportMsg::Span(s) = msg {
                self.spans += 1;
                self.traced += u64::from(s.parent_span_id != [0; 8]);
                self.errors += u64::from(s.error.is_some());
            }
            Ok(())
        }
    }

    #[test]
    fn every_transaction_becomes_one_span_through_a_real_shard() {
        let mut g = Generator::new(WorkloadConfig {
            conns: 16,
            cpus: 1,
            migrate_pct: 0,
            traceparent_pct: 25,
            seed: 7,
        });
        let mut shard = ShardCore::new(ShardConfig::new(0, 1), 0);
        let mut io = Io::default();
        for i in 0..5000u64 {
            g.next_transaction(1_000_000 + i * 1000, &mut |cpu, rec| {
                assert_eq!(cpu, 0);
                shard.on_record(rec, 0, &mut io);
            });
        }
        shard.stop(&mut io);
        let st = shard.stats();
        assert_eq!(g.counts.transactions, 5000);
        assert_eq!(io.spans, 5000, "{st:?}");
        assert!(g.counts.closes > 0);
        assert_eq!(
            st.parse_errors + st.events_malformed + st.reorder_gaps,
            0,
            "{st:?}"
        );
        // The mix is real: some traced (parent from traceparent), some errors (500).
        assert!(io.traced > 500 && io.traced < 2000, "{}", io.traced);
        assert!(io.errors > 0);
        assert_eq!(io.traced, g.counts.traced);
    }

    #[test]
    fn migration_spreads_a_connection_over_cpus() {
        let mut g = Generator::new(WorkloadConfig {
            conns: 4,
            cpus: 2,
            migrate_pct: 50,
            traceparent_pct: 0,
            seed: 1,
        });
        let mut seen: std::collections::HashMap<u64, [bool; 2]> = Default::default();
        for i in 0..200 {
            g.next_transaction(i, &mut |cpu, rec| {
                let (ev, _) = Event::decode(rec).unwrap_or_default_event();
                seen.entry(ev.conn_id).or_default()[cpu] = true;
            });
        }
        assert!(g.counts.migrated > 0);
        assert!(seen.values().any(|s| s[0] && s[1]));
    }

    trait OrDefault<'a> {
        fn unwrap_or_default_event(self) -> (Event, &'a [u8]);
    }
    impl<'a> OrDefault<'a> for Result<(Event, &'a [u8]), abi::DecodeError> {
        fn unwrap_or_default_event(self) -> (Event, &'a [u8]) {
            match self {
                Ok(v) => v,
                Err(e) => panic!("generated record does not decode: {e}"),
            }
        }
    }
}
