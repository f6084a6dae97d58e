//! The synthetic workload: what the kernel would send for a busy HTTP/1.1 server, a gRPC
//! server and a DNS-resolving client, in a chosen [`Mix`].
//!
//! gRPC: long-lived h2c connections seen on the server side. A connection's first client record
//! carries the preface, SETTINGS and a WINDOW_UPDATE, its first server record the server's
//! SETTINGS and the ACK; then each round sends, in one client record, the HEADERS (HPACK from
//! [`crate::h2enc`]: literals with incremental indexing on the first call, dynamic-table
//! references after, then a `grpc-timeout` of a new value inserted into the table on every call,
//! as a client with deadlines sends it) and DATA (END_STREAM) of two new calls, and in one
//! server record the
//! responses of the two calls opened in the previous round (HEADERS of both, DATA in reverse
//! order, then trailers with `grpc-status` and END_STREAM; errors carry `grpc-message` and no
//! DATA), so four streams are open at once. [`Generator::finish`] answers the calls still open.
//! DNS: UDP sockets (`proto` UDP on both ends, server port 53) on the client side, one query
//! datagram out and its answer in, a quarter of the time an A and an AAAA query in parallel with
//! the answers in reverse order, 4% NXDOMAIN, with EDNS OPT records like glibc sends.
//!
//! HTTP/1.1:
//! Many keep-alive connections take turns; each transaction is a request record (ingress) and a
//! response record (egress) encoded exactly as ring records (`abi::Event::encode_into`), with
//! per-connection sequence numbers, kernel-monotonic timestamps and a realistic mix of payloads
//! (GET with ids in the path, POST with a body, a quarter with a W3C `traceparent`, 200/404/500,
//! chunked and content-length bodies). Every record is assigned the "CPU" it was written on:
//! the connection's home CPU, or with `migrate_pct` percent probability another one, so the
//! records of one connection reach different shards and the route-to-owner path is exercised.
//! Connections close after a while (a close record) and new ones take their place.
//! Deterministic for a seed; pure (no threads, no clock: the caller passes `now_ns`).

#[cfg(test)]
use grpc::GRPC_METHODS;
use telegen_bpf::abi::{self, Addr, Event};

#[path = "gen_grpc.rs"]
mod grpc;
use grpc::GrpcConn;

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
    /// Share of transactions per protocol.
    pub mix: Mix,
}

/// The protocols of the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// HTTP/1.1 keep-alive server traffic.
    Http1,
    /// gRPC unary calls over h2c, server side.
    Grpc,
    /// DNS lookups over UDP, client side.
    Dns,
}

pub const PROTOS: [Proto; 3] = [Proto::Http1, Proto::Grpc, Proto::Dns];

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Http1 => "http1",
            Proto::Grpc => "grpc",
            Proto::Dns => "dns",
        }
    }
    pub fn idx(self) -> usize {
        self as usize
    }
}

/// Weights of the protocols (`http1=70,grpc=20,dns=10`); transactions follow them exactly
/// (the generator always serves the protocol furthest behind its share).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix(pub [u32; 3]);

impl Default for Mix {
    fn default() -> Self {
        Mix([1, 0, 0])
    }
}

impl Mix {
    pub fn only(p: Proto) -> Self {
        let mut w = [0; 3];
        w[p.idx()] = 1;
        Mix(w)
    }
    /// The protocol alone in this mix, if there is one.
    pub fn single(&self) -> Option<Proto> {
        let mut it = PROTOS.iter().filter(|p| self.0[p.idx()] > 0);
        match (it.next(), it.next()) {
            (Some(p), None) => Some(*p),
            _ => None,
        }
    }
    pub fn label(&self) -> String {
        PROTOS
            .iter()
            .filter(|p| self.0[p.idx()] > 0)
            .map(|p| format!("{}={}", p.name(), self.0[p.idx()]))
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl std::str::FromStr for Mix {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut w = [0u32; 3];
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part.split_once('=').unwrap_or((part, "1"));
            let p = PROTOS
                .iter()
                .find(|p| p.name() == name.trim())
                .ok_or_else(|| format!("unknown protocol {name:?} (http1, grpc, dns)"))?;
            w[p.idx()] = weight
                .trim()
                .parse()
                .map_err(|e| format!("weight of {name}: {e}"))?;
        }
        if w.iter().all(|&x| x == 0) {
            return Err("the mix needs a protocol with a weight above 0".into());
        }
        Ok(Mix(w))
    }
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
    /// Transactions per protocol (indexed by [`Proto::idx`]).
    pub per_proto: [u64; 3],
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
    grpc: Vec<GrpcConn>,
    next_grpc: usize,
    dns: Vec<DnsConn>,
    next_dns: usize,
    /// Scratch for HTTP/2 payloads.
    h2buf: Vec<u8>,
    grpc_bufs: grpc::Bufs,
}

const LOCAL_PORT: u16 = 8080;

/// The fixed part of every record of one generated connection, as the kernel would fill it.
struct ConnTemplate<'a> {
    id: u64,
    pid: u32,
    fd: u32,
    role: u8,
    proto: u8,
    local: Addr,
    remote: Addr,
    comm: &'a [u8],
}

fn conn_event(t: ConnTemplate<'_>) -> Event {
    let (mut local, mut remote) = (t.local, t.remote);
    local.proto = t.proto;
    remote.proto = t.proto;
    let mut ev = Event {
        conn_id: t.id,
        pid: t.pid,
        tid: t.pid,
        fd: t.fd,
        kind: abi::EV_DATA,
        role: t.role,
        version: abi::ABI_VERSION,
        local,
        remote,
        ..Default::default()
    };
    let n = t.comm.len().min(ev.comm.len());
    ev.comm[..n].copy_from_slice(&t.comm[..n]);
    ev
}

impl Generator {
    pub fn new(cfg: WorkloadConfig) -> Self {
        let mut rng = Rng(cfg.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let payloads = payloads(&mut rng);
        let mut g = Generator {
            rng,
            conns: Vec::new(),
            next: 0,
            next_conn_id: 1,
            payloads,
            scratch: Vec::with_capacity(1024),
            counts: GenCounts::default(),
            grpc: Vec::new(),
            next_grpc: 0,
            dns: Vec::new(),
            next_dns: 0,
            h2buf: Vec::with_capacity(4096),
            grpc_bufs: grpc::Bufs::default(),
            cfg,
        };
        // Connections per protocol in proportion to its weight (at least one when used).
        let w = g.cfg.mix.0;
        let total: u64 = w.iter().map(|&x| u64::from(x)).sum::<u64>().max(1);
        let share = |x: u32| {
            if x == 0 {
                0
            } else {
                ((g.cfg.conns.max(1) as u64 * u64::from(x) / total) as usize).max(1)
            }
        };
        let (n1, n2, n3) = (share(w[0]), share(w[1]), share(w[2]));
        for i in 0..n1 {
            let c = g.new_conn(i);
            g.conns.push(c);
        }
        for i in 0..n2 {
            let c = g.new_grpc_conn(i);
            g.grpc.push(c);
        }
        for i in 0..n3 {
            let c = g.new_dns_conn(i);
            g.dns.push(c);
        }
        g
    }

    /// The protocol furthest behind its share of the mix.
    fn pick_proto(&self) -> Proto {
        let w = self.cfg.mix.0;
        let mut best = Proto::Http1;
        let mut best_score = f64::INFINITY;
        for p in PROTOS {
            let wi = w[p.idx()];
            if wi == 0 {
                continue;
            }
            let score = self.counts.per_proto[p.idx()] as f64 / f64::from(wi);
            if score < best_score {
                best_score = score;
                best = p;
            }
        }
        best
    }

    /// Emit the next transaction(s) of the mix ending at `now_ns` (kernel monotonic):
    /// one HTTP/1.1 transaction, one round of a gRPC connection (new calls' requests and the
    /// responses of the calls opened in its previous round) or one or two DNS lookups.
    /// `out(cpu, record)` receives each record in kernel order.
    pub fn next_transaction(&mut self, now_ns: u64, out: &mut impl FnMut(usize, &[u8])) {
        match self.pick_proto() {
            Proto::Http1 => self.http1(now_ns, out),
            Proto::Grpc => self.grpc_round(now_ns, out),
            Proto::Dns => self.dns_lookup(now_ns, out),
        }
    }

    /// Complete every call still open (the responses of gRPC calls whose requests were sent),
    /// so that the transactions counted are exactly the ones the data plane can finish.
    pub fn finish(&mut self, now_ns: u64, out: &mut impl FnMut(usize, &[u8])) {
        self.grpc_finish(now_ns, out);
    }

    /// A new connection's home CPU and kernel-style id (the CPU that saw the connection first
    /// in the top bits).
    fn new_conn_id(&mut self) -> (u64, usize) {
        let cpus = self.cfg.cpus.max(1) as u64;
        let home = self.rng.below(cpus) as usize;
        let id = ((home as u64 + 1) << abi::CONN_ID_CPU_SHIFT) | self.next_conn_id;
        self.next_conn_id += 1;
        (id, home)
    }

    fn new_conn(&mut self, slot: usize) -> Conn {
        let (id, home) = self.new_conn_id();
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

    /// One HTTP/1.1 transaction (and, when its connection is done, its close record).
    fn http1(&mut self, now_ns: u64, out: &mut impl FnMut(usize, &[u8])) {
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
        let mut ev = conn_event(ConnTemplate {
            id: c.id,
            pid: c.pid,
            fd: 10 + (slot as u32 % 1000),
            role: abi::ROLE_SERVER,
            // The HTTP/1 records predate the transport byte; TCP's is 0 or PROTO_TCP alike.
            proto: 0,
            local: Addr::v4([10, 0, 0, 7], LOCAL_PORT),
            remote: Addr::v4([10, 1, (slot >> 8) as u8, slot as u8], c.remote_port),
            comm: b"nginx",
        });
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
        self.counts.per_proto[Proto::Http1.idx()] += 1;
        self.counts.records += 2;
        self.counts.traced += u64::from(traced);
        let (left, seq, home) = (c.left, c.seq, c.home);
        self.scratch = buf;
        if left == 0 {
            self.emit_close(&mut ev, seq, home, now_ns, out);
            self.conns[slot] = self.new_conn(slot);
        }
    }
}

/// gRPC server port and DNS server port of the synthetic workload.
const GRPC_PORT: u16 = 50051;
const DNS_PORT: u16 = 53;

/// A resolver's UDP socket talking to a DNS server, seen on the client side.
#[derive(Debug, Clone)]
struct DnsConn {
    id: u64,
    seq: u64,
    home: usize,
    left: u32,
    pid: u32,
    local_port: u16,
    next_id: u16,
}

/// Names looked up (a small set, like a service's dependencies).
const DNS_NAMES: &[&str] = &[
    "api.internal.example.com",
    "db-primary.svc.cluster.local",
    "cache.svc.cluster.local",
    "auth.example.com",
    "telemetry.example.net",
    "www.example.org",
];

/// A DNS message: header, one question, optional answer (A or AAAA, name by compression
/// pointer to the question), and an EDNS OPT record, like glibc and systemd-resolved send.
fn dns_message(out: &mut Vec<u8>, id: u16, name: &str, qtype: u16, answer: Option<u8>) {
    out.extend_from_slice(&id.to_be_bytes());
    let flags: u16 = match answer {
        None => 0x0100,                           // query, RD
        Some(rcode) => 0x8180 | u16::from(rcode), // response, RD, RA
    };
    let ancount: u16 = u16::from(answer == Some(0));
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&ancount.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    for label in name.split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    if ancount == 1 {
        out.extend_from_slice(&[0xc0, 0x0c]);
        out.extend_from_slice(&qtype.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&300u32.to_be_bytes());
        if qtype == 28 {
            out.extend_from_slice(&16u16.to_be_bytes());
            out.extend_from_slice(&[
                0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, id as u8,
            ]);
        } else {
            out.extend_from_slice(&4u16.to_be_bytes());
            out.extend_from_slice(&[10, 2, (id >> 8) as u8, id as u8]);
        }
    }
    // OPT: root name, type 41, UDP size 1232, no extended rcode/flags, no options.
    out.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
}

impl Generator {
    fn new_dns_conn(&mut self, _slot: usize) -> DnsConn {
        let (id, home) = self.new_conn_id();
        DnsConn {
            id,
            seq: 0,
            home,
            left: 20 + self.rng.below(100) as u32,
            pid: 6000 + (self.rng.below(4) as u32),
            local_port: 30_000 + (self.rng.below(30_000) as u16),
            next_id: self.rng.below(65_536) as u16,
        }
    }

    /// Encode and emit one record of a connection's payload.
    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        ev: &mut Event,
        seq: u64,
        dir: u8,
        start_ns: u64,
        end_ns: u64,
        payload: &[u8],
        home: usize,
        out: &mut impl FnMut(usize, &[u8]),
    ) {
        let cpu = self.cpu_for(home);
        ev.seq = seq;
        ev.dir = dir;
        ev.start_ns = start_ns;
        ev.end_ns = end_ns;
        ev.bytes = payload.len() as u32;
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        ev.encode_into(payload, &mut buf);
        out(cpu, &buf);
        self.scratch = buf;
        self.counts.records += 1;
    }

    /// The record the kernel sends when a connection closes (counted as a close).
    fn emit_close(
        &mut self,
        ev: &mut Event,
        seq: u64,
        home: usize,
        now_ns: u64,
        out: &mut impl FnMut(usize, &[u8]),
    ) {
        ev.kind = abi::EV_CLOSE;
        self.emit(ev, seq, abi::DIR_INGRESS, now_ns, now_ns, &[], home, out);
        self.counts.closes += 1;
    }

    fn dns_event(&self, slot: usize) -> Event {
        let c = &self.dns[slot];
        conn_event(ConnTemplate {
            id: c.id,
            pid: c.pid,
            fd: 40 + (slot as u32 % 1000),
            role: abi::ROLE_CLIENT,
            proto: abi::PROTO_UDP,
            local: Addr::v4([10, 0, 0, 7], c.local_port),
            remote: Addr::v4([10, 0, 0, 2], DNS_PORT),
            comm: b"resolver",
        })
    }

    /// One lookup on a resolver socket (a query datagram out, its answer in), or a quarter of
    /// the time an A and an AAAA query in parallel with the answers in reverse order. A few
    /// answers are NXDOMAIN.
    fn dns_lookup(&mut self, now_ns: u64, out: &mut impl FnMut(usize, &[u8])) {
        let slot = self.next_dns;
        self.next_dns = (self.next_dns + 1) % self.dns.len();
        let name = DNS_NAMES[self.rng.below(DNS_NAMES.len() as u64) as usize];
        let parallel = self.rng.below(4) == 0;
        let rcode: u8 = if self.rng.below(100) < 4 { 3 } else { 0 };
        let qtypes: &[u16] = if parallel { &[1, 28] } else { &[1] };
        let c = &mut self.dns[slot];
        let first_id = c.next_id;
        c.next_id = c.next_id.wrapping_add(qtypes.len() as u16);
        let base_seq = c.seq;
        c.seq += 2 * qtypes.len() as u64;
        c.left = c.left.saturating_sub(qtypes.len() as u32);
        let home = c.home;
        let mut ev = self.dns_event(slot);
        let mut p = std::mem::take(&mut self.h2buf);
        let mut seq = base_seq;
        for (i, &qt) in qtypes.iter().enumerate() {
            p.clear();
            dns_message(&mut p, first_id.wrapping_add(i as u16), name, qt, None);
            let t = now_ns.saturating_sub(400_000) + i as u64 * 2_000;
            self.emit(&mut ev, seq, abi::DIR_EGRESS, t, t + 3_000, &p, home, out);
            seq += 1;
        }
        for (i, &qt) in qtypes.iter().enumerate().rev() {
            p.clear();
            dns_message(
                &mut p,
                first_id.wrapping_add(i as u16),
                name,
                qt,
                Some(rcode),
            );
            let t = now_ns.saturating_sub(i as u64 * 2_000);
            self.emit(
                &mut ev,
                seq,
                abi::DIR_INGRESS,
                t.saturating_sub(2_000),
                t,
                &p,
                home,
                out,
            );
            seq += 1;
        }
        self.h2buf = p;
        self.counts.transactions += qtypes.len() as u64;
        self.counts.per_proto[Proto::Dns.idx()] += qtypes.len() as u64;
        if self.dns[slot].left == 0 {
            self.emit_close(&mut ev, seq, home, now_ns, out);
            self.dns[slot] = self.new_dns_conn(slot);
        }
    }
}

#[cfg(test)]
#[path = "gen_tests.rs"]
mod tests;
