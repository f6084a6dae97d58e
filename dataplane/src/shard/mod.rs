//! A shard: the per-core owner of a slice of the connections.
//!
//! [`ShardCore`] is plain data with no threads and no kernel: the runtime feeds it ring records
//! and messages from other shards and calls [`ShardCore::tick`] on a timer; tests and benches
//! drive it directly. Every connection has exactly one owner, `shard_of(conn_id, n)`. A record
//! drained by another shard is forwarded to the owner, which restores kernel order
//! ([`crate::reorder`]), runs the connection's parser, builds spans, aggregates RED metrics and
//! correlates: a client request made by a thread while it served a request (the kernel stamps the
//! server connection and sequence on the client's records) becomes a child of that server span,
//! resolved by the shard that owns the server connection. All state is owned; nothing is shared.

use std::collections::VecDeque;

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use telegen_bpf::abi::{self, Event};

use crate::flow::FlowTable;

mod bufs;
mod correlate;
mod dispatch;
mod emit;
use crate::protocols::{Direction, L7Record, Role};
use crate::red::Red;
use crate::signal::{ExportMsg, ShardStats, SpanRecord};
use crate::spans::{FlowInfo, IdGen, SpanCache};
use bufs::{Rec, RecordBufs};
use correlate::{Parked, Served};
use dispatch::{chunk_of, direction_of, feed_flow, Proto};

/// The shard that owns a connection: the one that drains the ring of the CPU that wrote the
/// connection's first record (CPU `k`'s ring goes to shard `k % n`), which the kernel stamps in
/// the connection id. The kernel writes a connection's records to that CPU's ring, from
/// whichever CPU its thread runs on, so its owner drains them itself, with no copy and no queue
/// between shards; records drained elsewhere (spilled from a home ring three quarters full, or
/// written on other CPUs' rings by the synthetic benchmark) are forwarded. (Ids without a CPU
/// are spread by a hash.)
#[inline]
pub fn shard_of(conn_id: u64, shards: usize) -> usize {
    let shards = shards.max(1) as u64;
    let cpu = conn_id >> abi::CONN_ID_CPU_SHIFT;
    if cpu > 0 {
        return ((cpu - 1) % shards) as usize;
    }
    // Fibonacci hashing.
    let h = conn_id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    ((h >> 32) % shards) as usize
}

/// What shards send each other.
#[derive(Debug)]
pub enum ShardMsg {
    /// A raw ring record of a connection the receiver owns, forwarded by shard `from`.
    Event { rec: Vec<u8>, from: usize },
    /// A record buffer handed back to a shard that forwards more than it receives (see
    /// `bufs.rs`).
    Spare(Vec<u8>),
    /// A client span whose parent is a request served on `parent_conn` (owned by the receiver).
    Child {
        parent_conn: u64,
        parent_seq: u64,
        span: Box<SpanRecord>,
    },
}

/// The shard's outputs; the runtime implements it with SPSC queues, tests with vectors.
/// Each method hands the message back when the queue is full.
pub trait ShardIo {
    fn forward(&mut self, to: usize, msg: ShardMsg) -> Result<(), ShardMsg>;
    /// Hand a spare record buffer back to shard `to` only while its queue has plenty of room:
    /// a spare must never take the place of an event or a span. Gives the buffer back when it
    /// is not sent (the default: never sent).
    fn forward_spare(&mut self, _to: usize, buf: Vec<u8>) -> Result<(), Vec<u8>> {
        Err(buf)
    }
    fn export(&mut self, msg: ExportMsg) -> Result<(), ExportMsg>;
    /// A box to build the next span in, if the io has one to give back (the runtime's: the box
    /// of the span it encoded last, still in this core's cache). The shard overwrites every
    /// field and reuses its attribute vector, on the thread that allocated them.
    fn recycled(&mut self) -> Option<Box<SpanRecord>> {
        None
    }
    /// Called at the end of every tick and at stop: send on whatever the io batches, and free
    /// what an idle shard need not hold.
    fn flush_batched(&mut self) {}
}

/// Tunables of a shard.
#[derive(Debug, Clone)]
pub struct ShardConfig {
    pub id: usize,
    pub shards: usize,
    /// Flows held by this shard at most.
    pub flow_capacity: usize,
    /// Longest an early record waits for a missing one, whatever the other shards do. The
    /// runtime gives up much sooner when it can tell the missing record was lost in the kernel
    /// (every shard has drained its rings past the time the early record arrived: see
    /// [`ShardCore::tick_at`]); this bound only matters when a shard is starved of CPU.
    pub reorder_timeout_ns: u64,
    /// Most bytes of early records held over all the shard's connections. Past it, the
    /// connections waiting longest give up their first gap until a quarter of the budget is
    /// free again (counted as reorder gaps; their missing records then count as late).
    pub reorder_budget_bytes: usize,
    /// How long a client span waits for its parent server span.
    pub child_wait_ns: u64,
    /// Flows with no event for this long are finished and dropped.
    pub flow_idle_ns: u64,
    /// RED deltas and stats are sent this often (DNS timeouts are checked as often).
    pub flush_interval_ns: u64,
    /// A DNS query with no answer for this long is a timed-out lookup.
    pub dns_timeout_ns: u64,
}

impl ShardConfig {
    pub fn new(id: usize, shards: usize) -> Self {
        Self {
            id,
            shards,
            flow_capacity: 1 << 16,
            reorder_timeout_ns: 2_000_000_000,
            reorder_budget_bytes: 16 << 20,
            child_wait_ns: 10_000_000_000,
            flow_idle_ns: 120_000_000_000,
            flush_interval_ns: 1_000_000_000,
            dns_timeout_ns: 5_000_000_000,
        }
    }
}

/// Client egress records remembered per flow for parent lookup.
const PARENT_MEMORY: usize = 16;

#[derive(Debug)]
struct Flow {
    info: FlowInfo,
    role: Role,
    /// A UDP socket (datagrams on a traced port: DNS).
    udp: bool,
    proto: Proto,
    reorder: crate::reorder::Reorder<Vec<u8>>,
    /// (seq, parent_conn, parent_seq) of recent client egress records.
    parents: VecDeque<(u64, u64, u64)>,
    /// Requests this (server) connection served, the last few, for children that come after
    /// their parent's span (moved to `ShardCore::served` when the flow ends).
    served: VecDeque<Served>,
    last_ns: u64,
    parse_errors_seen: u64,
    unpaired_seen: u64,
}

/// Capacity of the released-records list a shard keeps between releases.
const READY_KEPT: usize = 256;
/// Released records prefetched ahead of the one being processed.
const READY_PREFETCH_AHEAD: usize = 4;

/// Bytes after a record prefetched as it arrives: the start of the next one, in a ring.
const NEXT_RECORD_PREFETCH: usize = 512;

/// One shard's state.
#[derive(Debug)]
pub struct ShardCore {
    cfg: ShardConfig,
    flows: FlowTable<Flow>,
    stats: ShardStats,
    ids: IdGen,
    red: Red,
    span_cache: SpanCache,
    clock_offset_ns: u64,
    /// Requests served on connections whose flow has ended, for children still to come (an
    /// open connection keeps its own in its flow).
    served: HashMap<u64, VecDeque<Served>>,
    /// The keys of `served`, oldest first (which to forget when it is full).
    served_order: VecDeque<u64>,
    parked: HashMap<u64, Vec<Parked>>,
    parked_count: usize,
    held_flows: HashSet<u64>,
    /// Sum of the `held_bytes` of every flow's reorder state.
    held_bytes: usize,
    /// Flows with DNS queries waiting for an answer (checked for timeouts on each tick).
    dns_flows: HashSet<u64>,
    records: Vec<L7Record>,
    /// Held records a reorder released, reused from one release to the next.
    ready: Vec<Vec<u8>>,
    last_flush_ns: u64,
    /// Buffers for records forwarded or held, reused.
    bufs: RecordBufs,
}

fn role_of(r: u8) -> Role {
    match r {
        abi::ROLE_SERVER => Role::Server,
        abi::ROLE_CLIENT => Role::Client,
        _ => Role::Unknown,
    }
}

impl ShardCore {
    /// `clock_offset_ns` turns kernel monotonic time into Unix time.
    pub fn new(cfg: ShardConfig, clock_offset_ns: u64) -> Self {
        let stats = ShardStats {
            shard: cfg.id as u32,
            ..Default::default()
        };
        Self {
            flows: FlowTable::new(cfg.flow_capacity),
            ids: IdGen::new(cfg.id as u64 + 1),
            cfg,
            stats,
            red: Red::default(),
            span_cache: SpanCache::default(),
            clock_offset_ns,
            served: HashMap::default(),
            served_order: VecDeque::new(),
            parked: HashMap::default(),
            parked_count: 0,
            held_flows: HashSet::default(),
            held_bytes: 0,
            dns_flows: HashSet::default(),
            records: Vec::new(),
            ready: Vec::new(),
            last_flush_ns: 0,
            bufs: RecordBufs::default(),
        }
    }

    pub fn id(&self) -> usize {
        self.cfg.id
    }

    /// Counters so far (flow gauges refreshed).
    pub fn stats(&self) -> ShardStats {
        let mut s = self.stats;
        s.flows_active = self.flows.len() as u64;
        s.reorder_held_bytes = self.held_bytes as u64;
        s.flows_evicted = self.flows.evicted();
        s.flows_expired = self.flows.expired();
        s
    }

    /// A record drained from one of this shard's rings.
    pub fn on_record(&mut self, rec: &[u8], now_ns: u64, io: &mut impl ShardIo) {
        self.stats.events_drained += 1;
        // The record's bytes: written by another core (the kernel, on the CPU of the process
        // traced), and read here piece by piece as the parser gets to them. Rings hold records
        // back to back, so the bytes after it are (mostly) the next record's.
        crate::prefetch::slice(rec);
        crate::prefetch::bytes(rec.as_ptr().wrapping_add(rec.len()), NEXT_RECORD_PREFETCH);
        let ev = match Event::decode(rec) {
            Ok((ev, _)) => ev,
            Err(_) => {
                self.stats.events_malformed += 1;
                return;
            }
        };
        let owner = shard_of(ev.conn_id, self.cfg.shards);
        if owner == self.cfg.id {
            self.owned(&ev, Rec::Borrowed(rec), now_ns, io);
        } else {
            let msg = ShardMsg::Event {
                rec: self.bufs.copy_of(rec),
                from: self.cfg.id,
            };
            match io.forward(owner, msg) {
                Ok(()) => self.stats.events_forwarded += 1,
                Err(m) => {
                    self.stats.queue_drops += 1;
                    if let ShardMsg::Event { rec, .. } = m {
                        self.bufs.give_back(rec);
                    }
                }
            }
        }
    }

    /// A message from another shard.
    pub fn on_message(&mut self, msg: ShardMsg, now_ns: u64, io: &mut impl ShardIo) {
        match msg {
            ShardMsg::Event { rec, from } => {
                self.stats.events_received += 1;
                // Copied by the shard that drained it, on another core.
                crate::prefetch::slice(&rec);
                match Event::decode(&rec) {
                    Ok((ev, _)) => self.owned(&ev, Rec::Owned(rec), now_ns, io),
                    Err(_) => {
                        self.stats.events_malformed += 1;
                        self.bufs.give_back(rec);
                    }
                }
                // Records mostly flow one way (from a ring not their owner's): the sender
                // would allocate every copy and this shard free it, a remote free for the
                // allocator. Surplus buffers go back instead.
                if let Some(v) = self.bufs.surplus() {
                    if let Err(v) = io.forward_spare(from, v) {
                        self.bufs.give_back(v);
                    }
                }
            }
            ShardMsg::Spare(v) => self.bufs.give_back(v),
            ShardMsg::Child {
                parent_conn,
                parent_seq,
                span,
            } => self.on_child(parent_conn, parent_seq, span, now_ns, io),
        }
    }

    /// A record of a connection this shard owns; `ev` was decoded from `rec`.
    fn owned(&mut self, ev: &Event, rec: Rec<'_>, now_ns: u64, io: &mut impl ShardIo) {
        let mut evicted = Vec::new();
        let flow = self.flows.get_or_insert_with(
            ev.conn_id,
            now_ns,
            || Flow {
                info: FlowInfo::new(ev.pid, ev.comm, ev.local, ev.remote),
                role: role_of(ev.role),
                udp: ev.is_udp(),
                proto: Proto::Detecting(0),
                reorder: Default::default(),
                parents: VecDeque::new(),
                served: VecDeque::new(),
                last_ns: ev.end_ns,
                parse_errors_seen: 0,
                unpaired_seen: 0,
            },
            |k, f| evicted.push((k, f)),
        );
        // The connection's state is mostly out of this core's caches: ask for all of it at
        // once rather than meet each miss in turn (see `crate::prefetch`).
        crate::prefetch::value(&*flow);
        flow.proto.prefetch(direction_of(ev));
        // A server connection's next request is remembered after its last served one.
        if let Some(last) = flow.served.back() {
            crate::prefetch::bytes(
                (last as *const Served).cast(),
                2 * std::mem::size_of::<Served>(),
            );
        }
        match flow.reorder.arrive(ev.seq) {
            crate::reorder::Verdict::Now => {
                // Processing never holds records, so a flow holding none has none to release
                // after it: the usual in-order case skips two more flow lookups.
                let held = flow.reorder.held() > 0;
                let closed = self.process(ev.conn_id, ev, ev.payload_of(rec.bytes()), io);
                rec.release(&mut self.bufs);
                if closed {
                    self.held_flows.remove(&ev.conn_id);
                } else if held {
                    self.release(ev.conn_id, now_ns, io, |r, out| r.pop_ready(out));
                }
            }
            crate::reorder::Verdict::Hold => {
                let len = rec.bytes().len();
                if flow
                    .reorder
                    .hold(ev.seq, rec.into_vec(&mut self.bufs), len, now_ns)
                {
                    self.held_bytes += len;
                    self.held_flows.insert(ev.conn_id);
                } else {
                    self.stats.events_late += 1;
                }
            }
            crate::reorder::Verdict::Stale => {
                self.stats.events_late += 1;
                rec.release(&mut self.bufs);
            }
        }
        for (k, f) in evicted {
            self.finish(k, f, io);
        }
        if self.held_bytes > self.cfg.reorder_budget_bytes {
            self.over_budget(now_ns, io);
        }
    }

    /// Held records exceed the budget: the connections that have waited longest for a missing
    /// record give up their first gap, until three quarters of the budget are used (so that a
    /// shard at its budget does not rescan its held flows for every record).
    fn over_budget(&mut self, now_ns: u64, io: &mut impl ShardIo) {
        let target = self.cfg.reorder_budget_bytes / 4 * 3;
        let mut waiting: Vec<(u64, u64)> = self
            .held_flows
            .iter()
            .filter_map(|&c| Some((self.flows.peek(c)?.reorder.first_held_since()?, c)))
            .collect();
        waiting.sort_unstable();
        for (_, conn) in waiting {
            if self.held_bytes <= target {
                break;
            }
            self.stats.reorder_budget_gaps +=
                self.release(conn, now_ns, io, |r, out| r.give_up_gap(out));
        }
    }

    /// Apply `op` to the reorder state of `conn`, keeping the shard's held bytes and gap count
    /// in step, then process the records it released. Returns the gaps it gave up.
    fn release(
        &mut self,
        conn: u64,
        now_ns: u64,
        io: &mut impl ShardIo,
        op: impl FnOnce(&mut crate::reorder::Reorder<Vec<u8>>, &mut Vec<Vec<u8>>),
    ) -> u64 {
        let mut ready = std::mem::take(&mut self.ready);
        let mut gaps = 0;
        if let Some(f) = self.flows.get_mut(conn, now_ns) {
            let (bytes, before) = (f.reorder.held_bytes(), f.reorder.gaps());
            op(&mut f.reorder, &mut ready);
            self.held_bytes -= bytes - f.reorder.held_bytes();
            gaps = f.reorder.gaps() - before;
            self.stats.reorder_gaps += gaps;
        }
        self.run_ready(conn, ready, io);
        gaps
    }

    fn run_ready(&mut self, conn: u64, mut ready: Vec<Vec<u8>>, io: &mut impl ShardIo) {
        let mut closed = false;
        // Held records have sat in memory for a while, mostly out of this core's caches: ask
        // for a few at a time ahead of the one being processed (see `crate::prefetch`).
        for r in ready.iter().take(READY_PREFETCH_AHEAD) {
            crate::prefetch::slice(r);
        }
        for i in 0..ready.len() {
            if let Some(next) = ready.get(i + READY_PREFETCH_AHEAD) {
                crate::prefetch::slice(next);
            }
            let r = std::mem::take(&mut ready[i]);
            // Held records were decoded once already; this cannot fail, but stay fallible.
            // Records after a close are dropped with the flow, as before.
            if !closed {
                match Event::decode(&r) {
                    Ok((ev, payload)) => closed = self.process(conn, &ev, payload, io),
                    Err(_) => self.stats.events_malformed += 1,
                }
            }
            self.bufs.give_back(r);
        }
        ready.clear();
        // Kept for the next release unless a burst grew it.
        if ready.capacity() <= READY_KEPT {
            self.ready = ready;
        }
        if let Some(f) = self.flows.peek(conn) {
            if f.reorder.held() == 0 {
                self.held_flows.remove(&conn);
            }
        } else {
            self.held_flows.remove(&conn);
        }
    }

    /// Process one in-order record. Returns true when the connection closed (flow removed).
    fn process(&mut self, conn: u64, ev: &Event, payload: &[u8], io: &mut impl ShardIo) -> bool {
        let Some(flow) = self.flows.get_mut(conn, 0) else {
            return true;
        };
        flow.last_ns = ev.end_ns;
        let mut records = std::mem::take(&mut self.records);
        if ev.kind == abi::EV_CLOSE {
            flow.proto.close(ev.end_ns, &mut records);
            let gaps = flow.reorder.gaps();
            // Records held past the close (only a broken sequence leaves any) go with it.
            self.held_bytes -= flow.reorder.held_bytes();
            let flow = self.flows.remove(conn);
            self.stats.reorder_gaps += gaps;
            if let Some(mut flow) = flow {
                self.keep_served(conn, std::mem::take(&mut flow.served), io);
                self.emit_records(conn, &flow, ev.seq, &mut records, io);
            }
            self.records = records;
            return true;
        }
        if ev.kind != abi::EV_DATA && ev.kind != abi::EV_TLS_DATA {
            self.stats.events_malformed += 1;
            self.records = records;
            return false;
        }
        let chunk = chunk_of(ev, payload);
        if flow.role == Role::Client && chunk.dir == Direction::Egress && ev.parent_conn_id != 0 {
            if flow.parents.len() >= PARENT_MEMORY {
                flow.parents.pop_front();
            }
            flow.parents
                .push_back((ev.seq, ev.parent_conn_id, ev.parent_seq));
        }
        feed_flow(flow, ev.kind, &chunk, &mut records, &mut self.stats);
        if let Proto::Dns(p) = &flow.proto {
            if p.pending() > 0 {
                self.dns_flows.insert(conn);
            }
        }
        if !records.is_empty() {
            self.emit_in_table(conn, ev.seq, &mut records, io);
        }
        self.records = records;
        false
    }

    fn finish(&mut self, conn: u64, mut flow: Flow, io: &mut impl ShardIo) {
        let mut ready = Vec::new();
        self.held_bytes -= flow.reorder.held_bytes();
        flow.reorder.drain_all(&mut ready);
        self.stats.reorder_gaps += flow.reorder.gaps();
        self.held_flows.remove(&conn);
        let mut records = Vec::new();
        // Replay whatever was held through the parser, then close it.
        for r in &ready {
            if let Ok((ev, payload)) = Event::decode(r) {
                if ev.kind == abi::EV_DATA || ev.kind == abi::EV_TLS_DATA {
                    feed_flow(
                        &mut flow,
                        ev.kind,
                        &chunk_of(&ev, payload),
                        &mut records,
                        &mut self.stats,
                    );
                }
            }
        }
        flow.proto.close(flow.last_ns, &mut records);
        dispatch::count_parser_losses(&mut flow, &mut self.stats);
        let end = flow.reorder.next_seq();
        self.keep_served(conn, std::mem::take(&mut flow.served), io);
        self.emit_records(conn, &flow, end, &mut records, io);
    }

    /// Timers: reorder deadlines, parked children, idle flows, RED and stats flush.
    pub fn tick(&mut self, now_ns: u64, io: &mut impl ShardIo) {
        self.tick_at(now_ns, 0, io)
    }

    /// [`ShardCore::tick`], also giving up on missing records whose successors arrived before
    /// `drained_before_ns`: the caller knows every record the kernel submitted before that time
    /// has been drained and delivered to its owner, so anything still missing was lost.
    pub fn tick_at(&mut self, now_ns: u64, drained_before_ns: u64, io: &mut impl ShardIo) {
        if !self.held_flows.is_empty() {
            let deadline = now_ns
                .saturating_sub(self.cfg.reorder_timeout_ns)
                .max(drained_before_ns);
            let conns: Vec<u64> = self.held_flows.iter().copied().collect();
            for conn in conns {
                self.release(conn, now_ns, io, |r, out| r.expire(deadline, out));
            }
        }
        if self.parked_count > 0 {
            let mut expired = Vec::new();
            self.parked.retain(|_, list| {
                let mut i = 0;
                while i < list.len() {
                    if list[i].deadline_ns <= now_ns {
                        expired.push(list.swap_remove(i));
                    } else {
                        i += 1;
                    }
                }
                !list.is_empty()
            });
            self.parked_count -= expired.len();
            for p in expired {
                self.stats.orphan_children += 1;
                self.export_span(p.span, io);
            }
        }
        if now_ns.saturating_sub(self.last_flush_ns) >= self.cfg.flush_interval_ns {
            self.last_flush_ns = now_ns;
            let mut idle = Vec::new();
            self.flows.expire(
                now_ns.saturating_sub(self.cfg.flow_idle_ns),
                1024,
                |k, f| idle.push((k, f)),
            );
            for (k, f) in idle {
                self.finish(k, f, io);
            }
            if !self.dns_flows.is_empty() {
                self.expire_dns(now_ns, io);
            }
            let horizon = now_ns.saturating_sub(self.cfg.flow_idle_ns);
            self.served
                .retain(|_, q| q.back().map(|s| s.at_ns >= horizon).unwrap_or(false));
            let served = &self.served;
            self.served_order.retain(|c| served.contains_key(c));
            self.flush(io);
        }
        io.flush_batched();
    }

    /// Queries unanswered for `dns_timeout_ns` end as timed-out lookups.
    fn expire_dns(&mut self, now_ns: u64, io: &mut impl ShardIo) {
        let conns: Vec<u64> = self.dns_flows.iter().copied().collect();
        let timeout = self.cfg.dns_timeout_ns;
        for conn in conns {
            let mut records = std::mem::take(&mut self.records);
            let Some(flow) = self.flows.get_mut(conn, 0) else {
                self.dns_flows.remove(&conn);
                continue;
            };
            let Proto::Dns(p) = &mut flow.proto else {
                self.dns_flows.remove(&conn);
                continue;
            };
            p.expire(now_ns, timeout, &mut records);
            if p.pending() == 0 {
                self.dns_flows.remove(&conn);
            }
            if !records.is_empty() {
                let end = flow.reorder.next_seq();
                self.emit_in_table(conn, end, &mut records, io);
            }
            self.records = records;
        }
    }

    fn flush(&mut self, io: &mut impl ShardIo) {
        let mut deltas = Vec::new();
        self.red.flush(|d| deltas.push(d));
        for d in deltas {
            if io.export(ExportMsg::Histogram(Box::new(d))).is_err() {
                self.stats.export_queue_drops += 1;
            }
        }
        let s = self.stats();
        if io.export(ExportMsg::Stats(Box::new(s))).is_err() {
            self.stats.export_queue_drops += 1;
        }
    }

    /// Shutdown: finish every flow, release parked children, flush metrics and stats.
    pub fn stop(&mut self, io: &mut impl ShardIo) {
        let flows: Vec<(u64, Flow)> = self.flows.drain().collect();
        for (k, f) in flows {
            self.finish(k, f, io);
        }
        let parked: Vec<Parked> = self.parked.drain().flat_map(|(_, v)| v).collect();
        self.parked_count = 0;
        for p in parked {
            self.stats.orphan_children += 1;
            self.export_span(p.span, io);
        }
        self.flush(io);
        io.flush_batched();
    }
}
