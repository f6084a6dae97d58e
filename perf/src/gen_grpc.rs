//! The gRPC part of the synthetic workload: long-lived h2c connections seen on the server
//! side, each round carrying new calls' requests and the previous round's responses, with
//! HPACK state per connection and direction ([`crate::h2enc`]).

use telegen_bpf::abi::{self, Addr, Event};

use super::{conn_event, ConnTemplate, Generator, Proto, GRPC_PORT};
use crate::h2enc;

/// The gRPC methods called (the path), with request message sizes.
pub(super) const GRPC_METHODS: &[(&str, usize)] = &[
    ("/telegen.bench.Users/GetUser", 12),
    ("/telegen.bench.Users/ListUsers", 24),
    ("/telegen.bench.Orders/CreateOrder", 64),
    ("/grpc.health.v1.Health/Check", 0),
];
/// Calls opened per round on a connection (the responses come in the connection's next round,
/// so this many streams of one round and of the previous one are open at once).
const GRPC_CALLS_PER_ROUND: u32 = 2;
/// gRPC `Not found` and `Unavailable` status codes.
const GRPC_NOT_FOUND: u32 = 5;
const GRPC_UNAVAILABLE: u32 = 14;

/// Keys of the response's repeated field lists in [`h2enc::Encoder::fields`] (the
/// request's are the method's index).
const RESPONSE_HEADERS: usize = 0;
const TRAILERS: usize = 1;

/// Buffers and fixed payloads reused by every round, so that generating a call costs the
/// harness little next to what the data plane spends on it.
#[derive(Debug)]
pub(super) struct Bufs {
    /// The texts of every connection's HPACK tables.
    texts: h2enc::Texts,
    block: Vec<u8>,
    done: Vec<GrpcCall>,
    /// Per method: the request's and the response's DATA payload (a length-prefixed message).
    requests: Vec<Vec<u8>>,
    responses: Vec<Vec<u8>>,
}

impl Default for Bufs {
    fn default() -> Self {
        let message = |size: usize, first: u8| {
            let mut msg = Vec::with_capacity(size);
            if size > 0 {
                msg.push(0x0a);
                msg.push(size as u8 - 2);
                msg.extend((0..size - 2).map(|k| first + (k % 26) as u8));
            }
            let mut data = Vec::with_capacity(size + 5);
            h2enc::grpc_message(&mut data, &msg);
            data
        };
        Bufs {
            texts: h2enc::Texts::default(),
            block: Vec::with_capacity(256),
            done: Vec::with_capacity(2 * GRPC_CALLS_PER_ROUND as usize),
            requests: GRPC_METHODS.iter().map(|m| message(m.1, b'a')).collect(),
            responses: (0..GRPC_METHODS.len())
                .map(|m| message(8 + m * 10, b'A'))
                .collect(),
        }
    }
}

/// `4990000u` to `4999999u`, drawn from `id`.
fn deadline_left(out: &mut [u8; 8], id: u64) -> &[u8] {
    let mut v = 4_990_000 + id % 10_000;
    for b in out[..7].iter_mut().rev() {
        *b = b'0' + (v % 10) as u8;
        v /= 10;
    }
    out[7] = b'u';
    out
}

/// `00-<trace id>-<span id>-01` from three numbers, in lowercase hex.
fn traceparent(out: &mut [u8; 55], trace_hi: u64, trace_lo: u64, span: u64) -> &[u8] {
    fn hex(dst: &mut [u8], v: u64) {
        for (i, d) in dst.iter_mut().enumerate() {
            *d = b"0123456789abcdef"[((v >> (60 - 4 * i)) & 0xf) as usize];
        }
    }
    out[..3].copy_from_slice(b"00-");
    hex(&mut out[3..19], trace_hi);
    hex(&mut out[19..35], trace_lo);
    out[35] = b'-';
    hex(&mut out[36..52], span);
    out[52..].copy_from_slice(b"-01");
    &out[..]
}

#[derive(Debug, Clone, Copy)]
struct GrpcCall {
    stream: u32,
    method: usize,
    status: u32,
}

/// A long-lived h2c connection to a gRPC server, seen on the server side.
#[derive(Debug, Clone)]
pub(super) struct GrpcConn {
    id: u64,
    seq: u64,
    home: usize,
    /// Calls still to open before the connection closes.
    left: u32,
    pid: u32,
    remote_port: u16,
    next_stream: u32,
    /// Rounds so far: the first carries the preface and SETTINGS, the second the ACK.
    rounds: u64,
    /// HPACK state of the client's header blocks and of the server's.
    req_hpack: h2enc::Encoder,
    resp_hpack: h2enc::Encoder,
    /// Calls whose request was sent and whose response was not.
    pending: Vec<GrpcCall>,
}

impl Generator {
    pub(super) fn new_grpc_conn(&mut self, slot: usize) -> GrpcConn {
        let (id, home) = self.new_conn_id();
        GrpcConn {
            id,
            seq: 0,
            home,
            // Long-lived: hundreds to a few thousand calls, an even number (whole rounds).
            left: (200 + self.rng.below(2000) as u32) & !1,
            pid: 5000 + (slot % 4) as u32,
            remote_port: 20_000 + (self.rng.below(40_000) as u16),
            next_stream: 1,
            rounds: 0,
            req_hpack: h2enc::Encoder::default(),
            resp_hpack: h2enc::Encoder::default(),
            pending: Vec::with_capacity(2 * GRPC_CALLS_PER_ROUND as usize),
        }
    }

    fn grpc_event(&self, slot: usize) -> Event {
        let c = &self.grpc[slot];
        conn_event(ConnTemplate {
            id: c.id,
            pid: c.pid,
            fd: 20 + (slot as u32 % 1000),
            role: abi::ROLE_SERVER,
            proto: abi::PROTO_TCP,
            local: Addr::v4([10, 0, 0, 7], GRPC_PORT),
            remote: Addr::v4([10, 2, (slot >> 8) as u8, slot as u8], c.remote_port),
            comm: b"grpc-server",
        })
    }

    /// One round of a gRPC connection: the client's record (preface and SETTINGS first on a
    /// new connection) with the requests of new calls, then the server's record with the
    /// responses of the calls opened in the previous round (frames of the streams interleaved).
    /// The last round also answers its own calls and closes the connection.
    pub(super) fn grpc_round(&mut self, now_ns: u64, out: &mut impl FnMut(usize, &[u8])) {
        let slot = self.next_grpc;
        self.next_grpc = (self.next_grpc + 1) % self.grpc.len();
        let mut p = std::mem::take(&mut self.h2buf);
        p.clear();
        let traced_pct = self.cfg.traceparent_pct;
        // The new calls (drawn before borrowing the connection).
        let mut calls = [GrpcCall {
            stream: 0,
            method: 0,
            status: 0,
        }; GRPC_CALLS_PER_ROUND as usize];
        let mut traced = [false; GRPC_CALLS_PER_ROUND as usize];
        let mut ids = [0u64; GRPC_CALLS_PER_ROUND as usize];
        for i in 0..calls.len() {
            calls[i].method = self.rng.below(GRPC_METHODS.len() as u64) as usize;
            let r = self.rng.below(100);
            calls[i].status = match r {
                0..=5 => GRPC_NOT_FOUND,
                6..=7 => GRPC_UNAVAILABLE,
                _ => 0,
            };
            traced[i] = (self.rng.below(100) as u32) < traced_pct;
            ids[i] = self.rng.next();
        }
        let c = &mut self.grpc[slot];
        if c.rounds == 0 {
            p.extend_from_slice(telegen_dataplane::protocols::http2::PREFACE);
            // ENABLE_PUSH=0, INITIAL_WINDOW_SIZE, MAX_HEADER_LIST_SIZE (like grpc-go).
            h2enc::settings(&mut p, &[(0x2, 0), (0x4, 4_194_304), (0x6, 16_384)]);
            h2enc::frame(
                &mut p,
                h2enc::WINDOW_UPDATE,
                0,
                0,
                &4_128_769u32.to_be_bytes(),
            );
        } else if c.rounds == 1 {
            h2enc::frame(&mut p, h2enc::SETTINGS, h2enc::ACK, 0, &[]);
        }
        // Requests: HEADERS of every new call, then their DATA (END_STREAM).
        let bufs = &mut self.grpc_bufs;
        for (i, call) in calls.iter_mut().enumerate() {
            call.stream = c.next_stream;
            c.next_stream += 2;
            let block = &mut bufs.block;
            block.clear();
            let e = &mut c.req_hpack;
            let fields: [(&[u8], &[u8]); 7] = [
                (b":method", b"POST"),
                (b":scheme", b"http"),
                (b":path", GRPC_METHODS[call.method].0.as_bytes()),
                (b":authority", b"users.internal:50051"),
                (b"content-type", b"application/grpc"),
                (b"user-agent", b"grpc-go/1.64.0"),
                (b"te", b"trailers"),
            ];
            let t = &mut bufs.texts;
            e.fields(t, block, call.method, &fields);
            // What is left of a 5-second deadline, in microseconds: a new value on nearly
            // every call, inserted into the table (as grpc clients send it), which moves every
            // dynamic index by one for the next call.
            let mut timeout = [0u8; 8];
            e.field(
                t,
                block,
                b"grpc-timeout",
                deadline_left(&mut timeout, ids[i]),
            );
            if traced[i] {
                let mut tp = [0u8; 55];
                let (id, hi, lo) = (ids[i], ids[i].rotate_left(17), ids[i].rotate_left(31) | 1);
                let tp = traceparent(&mut tp, id, hi, lo);
                e.field_no_index(t, block, b"traceparent", tp);
            }
            h2enc::frame(
                &mut p,
                h2enc::HEADERS,
                h2enc::END_HEADERS,
                call.stream,
                block,
            );
        }
        for call in &calls {
            let data = &bufs.requests[call.method];
            h2enc::frame(&mut p, h2enc::DATA, h2enc::END_STREAM, call.stream, data);
        }
        c.pending.extend_from_slice(&calls);
        c.left = c.left.saturating_sub(calls.len() as u32);
        let at = (now_ns.saturating_sub(80_000), now_ns.saturating_sub(75_000));
        self.grpc_emit(slot, abi::DIR_INGRESS, at, &p, out);
        self.counts.traced += traced.iter().filter(|&&t| t).count() as u64;
        self.h2buf = p;
        let last = self.grpc[slot].left == 0;
        // The previous round's calls (all pending calls when this is the last round).
        self.grpc_respond(slot, now_ns, !last, out);
        if last {
            let c = &self.grpc[slot];
            let (seq, home) = (c.seq, c.home);
            let mut ev = self.grpc_event(slot);
            self.emit_close(&mut ev, seq, home, now_ns, out);
            self.grpc[slot] = self.new_grpc_conn(slot);
        }
    }

    /// Emit one record of connection `slot` (its next sequence number), moving `payload`
    /// between the times `at` (syscall entry, exit).
    fn grpc_emit(
        &mut self,
        slot: usize,
        dir: u8,
        at: (u64, u64),
        payload: &[u8],
        out: &mut impl FnMut(usize, &[u8]),
    ) {
        let c = &mut self.grpc[slot];
        let (seq, home) = (c.seq, c.home);
        c.seq += 1;
        let mut ev = self.grpc_event(slot);
        self.emit(&mut ev, seq, dir, at.0, at.1, payload, home, out);
    }

    /// Answer every call still open, on every connection.
    pub(super) fn grpc_finish(&mut self, now_ns: u64, out: &mut impl FnMut(usize, &[u8])) {
        for slot in 0..self.grpc.len() {
            if !self.grpc[slot].pending.is_empty() {
                self.grpc_respond(slot, now_ns, false, out);
            }
        }
    }

    /// The server's record answering the pending calls of a connection (all of them, or all
    /// but the newest round's when `keep_newest`): HEADERS of each, their DATA in reverse
    /// order, then the trailers (grpc-status, END_STREAM) of each.
    fn grpc_respond(
        &mut self,
        slot: usize,
        now_ns: u64,
        keep_newest: bool,
        out: &mut impl FnMut(usize, &[u8]),
    ) {
        let mut p = std::mem::take(&mut self.h2buf);
        p.clear();
        let c = &mut self.grpc[slot];
        if c.rounds == 0 {
            // The server's SETTINGS and its ACK of the client's.
            h2enc::settings(&mut p, &[(0x3, 100), (0x4, 1_048_576)]);
            h2enc::frame(&mut p, h2enc::SETTINGS, h2enc::ACK, 0, &[]);
        }
        c.rounds += 1;
        let keep = if keep_newest {
            GRPC_CALLS_PER_ROUND as usize
        } else {
            0
        };
        let n = c.pending.len().saturating_sub(keep);
        let bufs = &mut self.grpc_bufs;
        let done = &mut bufs.done;
        done.clear();
        done.extend(c.pending.drain(..n));
        let block = &mut bufs.block;
        for call in done.iter() {
            block.clear();
            let fields: [(&[u8], &[u8]); 2] =
                [(b":status", b"200"), (b"content-type", b"application/grpc")];
            c.resp_hpack
                .fields(&mut bufs.texts, block, RESPONSE_HEADERS, &fields);
            h2enc::frame(
                &mut p,
                h2enc::HEADERS,
                h2enc::END_HEADERS,
                call.stream,
                block,
            );
        }
        for call in done.iter().rev() {
            if call.status != 0 {
                continue;
            }
            let data = &bufs.responses[call.method];
            h2enc::frame(&mut p, h2enc::DATA, 0, call.stream, data);
        }
        for call in done.iter() {
            block.clear();
            let status: &[u8] = match call.status {
                0 => b"0",
                GRPC_NOT_FOUND => b"5",
                GRPC_UNAVAILABLE => b"14",
                other => unreachable!("status {other} is not generated"),
            };
            let key = TRAILERS + call.status as usize;
            let t = &mut bufs.texts;
            c.resp_hpack
                .fields(t, block, key, &[(b"grpc-status", status)]);
            if call.status != 0 {
                c.resp_hpack.field_no_index(
                    t,
                    block,
                    b"grpc-message",
                    if call.status == GRPC_NOT_FOUND {
                        b"user not found"
                    } else {
                        b"backend unavailable"
                    },
                );
            }
            let flags = h2enc::END_HEADERS | h2enc::END_STREAM;
            h2enc::frame(&mut p, h2enc::HEADERS, flags, call.stream, block);
        }
        let answered = done.len() as u64;
        let at = (now_ns.saturating_sub(5_000), now_ns);
        self.grpc_emit(slot, abi::DIR_EGRESS, at, &p, out);
        self.counts.transactions += answered;
        self.counts.per_proto[Proto::Grpc.idx()] += answered;
        self.h2buf = p;
    }
}
