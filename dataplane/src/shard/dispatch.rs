//! One flow's payload through the right parser: TLS plaintext versus ciphertext, protocol
//! detection from the first bytes (DNS by port for UDP), and the per-protocol parser state.

use telegen_bpf::abi::{self, Event};

use super::Flow;
use crate::protocols::dns::{DnsParser, DnsTransport};
use crate::protocols::http1::Http1Parser;
use crate::protocols::http2::Http2Parser;
use crate::protocols::{detect, tls, Chunk, Direction, L7Record, Protocol};
use crate::signal::ShardStats;

/// Data events seen without recognising a protocol before a flow is given up on.
const DETECT_ATTEMPTS: u32 = 8;

#[derive(Debug)]
pub(super) enum Proto {
    Detecting(u32),
    Http1(Box<Http1Parser>),
    Http2(Box<Http2Parser>),
    Dns(Box<DnsParser>),
    /// TLS records on the socket and no plaintext yet: the bytes are skipped.
    Encrypted,
    Unsupported,
}

impl Proto {
    /// Start loading the parser's state (see [`crate::prefetch`]).
    #[inline]
    pub(super) fn prefetch(&self, dir: Direction) {
        match self {
            Proto::Http1(p) => p.prefetch(),
            Proto::Http2(p) => p.prefetch(dir),
            _ => {}
        }
    }

    pub(super) fn feed(&mut self, chunk: &Chunk<'_>, out: &mut Vec<L7Record>) {
        match self {
            Proto::Http1(p) => p.feed(chunk, out),
            Proto::Http2(p) => p.feed(chunk, out),
            Proto::Dns(p) => p.feed(chunk, out),
            _ => {}
        }
    }

    pub(super) fn close(&mut self, end_ns: u64, out: &mut Vec<L7Record>) {
        match self {
            Proto::Http1(p) => p.close(end_ns, out),
            Proto::Http2(p) => p.close(end_ns, out),
            Proto::Dns(p) => p.close(end_ns, out),
            _ => {}
        }
    }

    pub(super) fn parse_errors(&self) -> u64 {
        match self {
            Proto::Http1(p) => p.parse_errors(),
            Proto::Http2(p) => p.parse_errors(),
            Proto::Dns(p) => p.parse_errors(),
            _ => 0,
        }
    }

    /// Exchanges seen but not emitted because what belongs together is unknown (see
    /// [`crate::signal::ShardStats::exchanges_unpaired`]).
    pub(super) fn unpaired(&self) -> u64 {
        match self {
            Proto::Http1(p) => p.uncertain_pairs(),
            Proto::Http2(p) => p.unattributed(),
            _ => 0,
        }
    }
}

/// Add what the flow's parser counted since last time to the shard's counters.
pub(super) fn count_parser_losses(flow: &mut Flow, stats: &mut ShardStats) {
    let errs = flow.proto.parse_errors();
    stats.parse_errors += errs.saturating_sub(flow.parse_errors_seen);
    flow.parse_errors_seen = errs;
    let unpaired = flow.proto.unpaired();
    stats.exchanges_unpaired += unpaired.saturating_sub(flow.unpaired_seen);
    flow.unpaired_seen = unpaired;
}

/// One in-order data record through a flow: TLS handling, protocol detection, the parser.
/// `kind` is `EV_DATA` (socket bytes) or `EV_TLS_DATA` (plaintext from the TLS library).
pub(super) fn feed_flow(
    flow: &mut Flow,
    kind: u8,
    chunk: &Chunk<'_>,
    out: &mut Vec<L7Record>,
    stats: &mut ShardStats,
) {
    let plaintext = kind == abi::EV_TLS_DATA;
    if plaintext && !flow.info.tls {
        // The TLS library is traced on this connection: from now on its socket bytes are
        // ciphertext and the plaintext events carry the protocol.
        flow.info.tls = true;
        if matches!(flow.proto, Proto::Encrypted | Proto::Unsupported) {
            flow.proto = Proto::Detecting(0);
        }
    } else if !plaintext && flow.info.tls {
        stats.tls_encrypted += 1;
        return;
    }
    if let Proto::Detecting(n) = flow.proto {
        if flow.udp {
            // The kernel reports datagrams on the DNS ports only.
            flow.proto = Proto::Dns(Box::new(DnsParser::new(flow.role, DnsTransport::Udp)));
        } else if !plaintext && tls::looks_like_tls_record(chunk.data) {
            flow.proto = Proto::Encrypted;
        } else {
            flow.proto = match detect(chunk.data) {
                Some(Protocol::Http1) => Proto::Http1(Box::new(Http1Parser::new(flow.role))),
                Some(Protocol::Http2) => Proto::Http2(Box::new(Http2Parser::new(flow.role))),
                Some(Protocol::Dns) => {
                    Proto::Dns(Box::new(DnsParser::new(flow.role, DnsTransport::Tcp)))
                }
                None if n + 1 >= DETECT_ATTEMPTS => {
                    stats.unknown_protocol += 1;
                    Proto::Unsupported
                }
                None => Proto::Detecting(n + 1),
            };
        }
    }
    if matches!(flow.proto, Proto::Encrypted) {
        stats.tls_encrypted += 1;
        return;
    }
    flow.proto.feed(chunk, out);
    count_parser_losses(flow, stats);
}

/// Which way a record's bytes went.
pub(super) fn direction_of(ev: &Event) -> Direction {
    if ev.dir == abi::DIR_EGRESS {
        Direction::Egress
    } else {
        Direction::Ingress
    }
}

/// The parser's view of one data record: the captured prefix and, when the syscall moved more
/// than the capture size, its captured end.
pub(super) fn chunk_of<'a>(ev: &Event, payload: &'a [u8]) -> Chunk<'a> {
    let dir = direction_of(ev);
    let (data, tail) = ev.split(payload);
    // Bytes read arrived when the read returned: a blocking read (a thread-per-connection
    // server waiting for the next request on a keep-alive connection) entered long before the
    // peer sent anything, and that wait is not part of the exchange. Bytes written leave from
    // the write's entry.
    let start_ns = match dir {
        Direction::Ingress => ev.end_ns.max(ev.start_ns),
        Direction::Egress => ev.start_ns,
    };
    Chunk {
        dir,
        data,
        tail,
        total_len: ev.bytes,
        start_ns,
        end_ns: ev.end_ns,
        seq: ev.seq,
    }
}
