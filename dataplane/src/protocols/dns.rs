//! DNS (RFC 1035) over UDP and TCP: pairs queries with answers on one socket or connection.
//!
//! This module owns the DNS state of one UDP socket or TCP connection: the queries waiting for an
//! answer (at most [`MAX_PENDING`]) and, for TCP, the framing of each direction (a 2-byte length
//! prefix, messages split across reads or several in one read). Only the header and the first
//! question are decoded (id, QR, opcode, rcode, counts, QNAME with compression pointers, QTYPE);
//! the rest of a message is skipped. Invariants:
//! - never panics and never grows without bound: pending queries are capped at [`MAX_PENDING`]
//!   (overflow is counted), names at 255 wire bytes, the TCP buffers at [`MAX_MESSAGE_PREFIX`]
//!   bytes per direction; name decoding follows at most one pointer per earlier offset (every
//!   pointer must point strictly before the segment it is found in, so there is no loop);
//! - one UDP socket carries many queries (a resolver sends A and AAAA in parallel, or talks to
//!   several servers): an answer pairs with the pending query of the same transaction id and
//!   question (or the same id alone when a captured prefix was too short to hold the question);
//! - malformed messages count in [`DnsParser::parse_errors`] and are never emitted; answers that
//!   match no query count in [`DnsParser::unmatched_answers`];
//! - a query without an answer is emitted as timed out (`rcode: None`, `timed_out: true`) by
//!   [`DnsParser::expire`] or [`DnsParser::close`].

use std::collections::VecDeque;

use super::{Chunk, Direction, L7Record, Role};

/// Bound on queries waiting for their answer on one socket.
pub const MAX_PENDING: usize = 64;
/// Bound on the bytes of one TCP message kept to decode it (header and question fit easily).
pub const MAX_MESSAGE_PREFIX: usize = 512;
/// Longest name on the wire (RFC 1035 2.3.4), length bytes and root label included.
pub const MAX_NAME_WIRE: usize = 255;
/// The DNS header size.
pub const HEADER_LEN: usize = 12;
/// Compression pointers followed in one name at most (they must also point strictly backwards).
const MAX_POINTERS: usize = 32;

/// How the messages travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DnsTransport {
    /// One message per datagram.
    Udp,
    /// Each message preceded by its 2-byte big-endian length (RFC 1035 4.2.2).
    Tcp,
}

/// One query and its answer (or its absence), as the traced process saw them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsExchange {
    /// Client: the process sent the query; Server: it received the query (never `Unknown`).
    pub role: Role,
    pub transport: DnsTransport,
    /// Transaction id.
    pub id: u16,
    /// First question's name: lowercase, no trailing dot (the root is `.`), bytes outside
    /// printable ASCII and `.`/`\` inside labels escaped as in zone files (`\DDD`, `\.`).
    /// `None` when the captured bytes did not hold it.
    pub question_name: Option<String>,
    /// First question's QTYPE (see [`type_name`]); 0 when unknown.
    pub question_type: u16,
    /// The answer's RCODE (header bits only; see [`rcode_name`]); `None`: no answer (timed out).
    pub rcode: Option<u8>,
    /// ANCOUNT of the answer (0 without one).
    pub answer_count: u16,
    /// No answer came before the timeout or the socket's close.
    pub timed_out: bool,
    /// Kernel monotonic ns: query syscall entry; answer syscall exit (or the timeout).
    pub start_ns: u64,
    pub end_ns: u64,
    /// Kernel sequence number of the chunk that carried the query.
    pub request_seq: u64,
}

/// Name of a QTYPE ("A", "AAAA", ...); "OTHER" for types not listed.
pub fn type_name(t: u16) -> &'static str {
    match t {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        12 => "PTR",
        13 => "HINFO",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        35 => "NAPTR",
        39 => "DNAME",
        41 => "OPT",
        43 => "DS",
        46 => "RRSIG",
        47 => "NSEC",
        48 => "DNSKEY",
        50 => "NSEC3",
        52 => "TLSA",
        64 => "SVCB",
        65 => "HTTPS",
        99 => "SPF",
        251 => "IXFR",
        252 => "AXFR",
        255 => "ANY",
        257 => "CAA",
        _ => "OTHER",
    }
}

/// Name of an RCODE ("NOERROR", "NXDOMAIN", ...); "OTHER" for codes not listed.
pub fn rcode_name(rcode: u8) -> &'static str {
    match rcode {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        _ => "OTHER",
    }
}

/// The decoded DNS header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub id: u16,
    pub response: bool,
    pub opcode: u8,
    pub truncated: bool,
    pub rcode: u8,
    pub qdcount: u16,
    pub ancount: u16,
    pub nscount: u16,
    pub arcount: u16,
}

impl Header {
    pub fn parse(b: &[u8]) -> Option<Header> {
        let h = b.get(..HEADER_LEN)?;
        let word = |i: usize| u16::from_be_bytes([h[i], h[i + 1]]);
        let flags = word(2);
        Some(Header {
            id: word(0),
            response: flags & 0x8000 != 0,
            opcode: ((flags >> 11) & 0xf) as u8,
            truncated: flags & 0x0200 != 0,
            rcode: (flags & 0xf) as u8,
            qdcount: word(4),
            ancount: word(6),
            nscount: word(8),
            arcount: word(10),
        })
    }

    /// Flags and counts a real message can have: known opcode, Z bit clear, one question (or
    /// none in an error answer), no answers in a query, sane counts.
    fn plausible(&self, flags_z: bool) -> bool {
        if flags_z || !matches!(self.opcode, 0 | 2 | 4 | 5) {
            return false;
        }
        if self.response {
            (self.qdcount == 1 || (self.qdcount == 0 && self.rcode != 0))
                && self.rcode <= 23
                && self.ancount <= 4096
                && self.nscount <= 4096
                && self.arcount <= 4096
        } else {
            self.qdcount == 1
                && self.rcode == 0
                && self.ancount == 0
                && (self.nscount == 0 || self.opcode == 5)
                && self.arcount <= 4
        }
    }
}

/// Why a name could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    /// The bytes end before the name does (a captured prefix, or a short message).
    Truncated,
    /// Reserved label type, pointer forwards or loop, or longer than 255 bytes.
    Malformed,
}

/// Read the (possibly compressed) name at `start` of `msg` into `out` (presentation form, see
/// [`DnsExchange::question_name`]). Returns the offset just past the name where it started.
pub fn read_name(msg: &[u8], start: usize, out: &mut String) -> Result<usize, NameError> {
    out.clear();
    // Size the text first: walking a name costs far less than growing a string label by label.
    // Its labels and dots, as many bytes as its wire form less one; only escapes need more.
    let mut len = 0;
    walk_name(msg, start, |label| len += 1 + label.len())?;
    out.reserve(len.max(1));
    let end = walk_name(msg, start, |label| {
        if !out.is_empty() {
            out.push('.');
        }
        push_label(label, out);
    })?;
    if out.is_empty() {
        out.push('.');
    }
    Ok(end)
}

/// Follow the name at `start`, handing each label to `label`; no allocation. Returns the offset
/// just past the name where it started.
fn walk_name(msg: &[u8], start: usize, mut label: impl FnMut(&[u8])) -> Result<usize, NameError> {
    let mut pos = start;
    let mut segment = start;
    let mut end = None;
    let mut wire = 0usize;
    let mut pointers = 0usize;
    loop {
        let b = *msg.get(pos).ok_or(NameError::Truncated)?;
        match b & 0xc0 {
            0x00 if b == 0 => return Ok(end.unwrap_or(pos + 1)),
            0x00 => {
                let len = usize::from(b);
                wire += 1 + len;
                if wire + 1 > MAX_NAME_WIRE {
                    return Err(NameError::Malformed);
                }
                label(
                    msg.get(pos + 1..pos + 1 + len)
                        .ok_or(NameError::Truncated)?,
                );
                pos += 1 + len;
            }
            0xc0 => {
                let lo = *msg.get(pos + 1).ok_or(NameError::Truncated)?;
                let target = usize::from(b & 0x3f) << 8 | usize::from(lo);
                pointers += 1;
                // Strictly before the segment we are in: offsets only decrease, no loop.
                if target >= segment || pointers > MAX_POINTERS {
                    return Err(NameError::Malformed);
                }
                end.get_or_insert(pos + 2);
                pos = target;
                segment = target;
            }
            _ => return Err(NameError::Malformed),
        }
    }
}

fn push_label(label: &[u8], out: &mut String) {
    for &c in label {
        match c {
            b'.' | b'\\' => {
                out.push('\\');
                out.push(c as char);
            }
            0x21..=0x7e => out.push(c.to_ascii_lowercase() as char),
            _ => {
                out.push('\\');
                out.push((b'0' + c / 100) as char);
                out.push((b'0' + c / 10 % 10) as char);
                out.push((b'0' + c % 10) as char);
            }
        }
    }
}

/// A decoded message: header and first question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub header: Header,
    /// `(name, qtype)`; `None` when there is no question or the captured bytes end inside it.
    pub question: Option<(String, u16)>,
}

/// Decode the header and first question of one message. `complete`: `msg` is the whole message
/// (not a captured prefix), so a question running past its end is malformed, not cut.
pub fn parse_message(msg: &[u8], complete: bool) -> Option<Message> {
    let header = Header::parse(msg)?;
    if !header.plausible(msg[3] & 0x40 != 0) {
        return None;
    }
    if header.qdcount == 0 {
        return Some(Message {
            header,
            question: None,
        });
    }
    let mut name = String::new();
    let question = match read_name(msg, HEADER_LEN, &mut name) {
        Ok(end) => match msg.get(end..end + 4) {
            Some(q) => {
                let class = u16::from_be_bytes([q[2], q[3]]);
                if !matches!(class, 1 | 3 | 4 | 254 | 255) {
                    return None;
                }
                Some((name, u16::from_be_bytes([q[0], q[1]])))
            }
            None if complete => return None,
            None => None,
        },
        Err(NameError::Truncated) if !complete => None,
        Err(_) => return None,
    };
    Some(Message { header, question })
}

/// Do these bytes (one UDP datagram's captured prefix) look like a DNS message? Requires a
/// plausible header and, when the prefix holds it, a well-formed first question.
pub fn looks_like_dns(data: &[u8]) -> bool {
    parse_message(data, false).is_some()
}

/// Strict check for the first bytes a TCP connection carries: a 2-byte length, then a standard
/// query (opcode QUERY, one question, no answers) whose whole question is visible and fits in
/// that length, of class IN, CH or ANY. Used by [`super::detect`], so it must not claim other
/// protocols' bytes. No allocation.
pub fn detect_tcp(data: &[u8]) -> bool {
    let Some(&[hi, lo]) = data.get(..2) else {
        return false;
    };
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    let msg = &data[2..];
    let Some(h) = Header::parse(msg) else {
        return false;
    };
    if h.response || h.opcode != 0 || !h.plausible(msg[3] & 0x40 != 0) {
        return false;
    }
    let Ok(end) = walk_name(msg, HEADER_LEN, |_| {}) else {
        return false;
    };
    let Some(q) = msg.get(end..end + 4) else {
        return false;
    };
    end + 4 <= len && matches!(u16::from_be_bytes([q[2], q[3]]), 1 | 3 | 255)
}

/// A query waiting for its answer.
#[derive(Debug)]
struct Pending {
    id: u16,
    question: Option<(String, u16)>,
    start_ns: u64,
    seq: u64,
}

/// Per-direction TCP framing state.
#[derive(Debug, Default)]
struct Framer {
    /// Length bytes seen of the next message (0, 1 or 2).
    len_have: u8,
    len_hi: u8,
    /// Bytes of the current message still to come (0: reading the length).
    need: usize,
    /// Total length of the current message.
    total: usize,
    /// The first bytes of the current message (bounded by MAX_MESSAGE_PREFIX).
    buf: Vec<u8>,
    start_ns: u64,
    seq: u64,
    /// Framing lost (bytes hidden across a length prefix): wait for a chunk that starts a message.
    lost: bool,
}

/// Per-socket (UDP) or per-connection (TCP) DNS parser state.
#[derive(Debug)]
pub struct DnsParser {
    role: Role,
    transport: DnsTransport,
    pending: VecDeque<Pending>,
    ingress: Framer,
    egress: Framer,
    errors: u64,
    overflow: u64,
    unmatched: u64,
}

/// A finished message with the timing of the chunk(s) that carried it.
struct Seen<'a> {
    dir: Direction,
    bytes: &'a [u8],
    complete: bool,
    start_ns: u64,
    end_ns: u64,
    seq: u64,
}

impl DnsParser {
    pub fn new(role: Role, transport: DnsTransport) -> Self {
        Self {
            role,
            transport,
            pending: VecDeque::new(),
            ingress: Framer::default(),
            egress: Framer::default(),
            errors: 0,
            overflow: 0,
            unmatched: 0,
        }
    }

    /// The role, once known (inferred from the direction of the first query when `Unknown`).
    pub fn role(&self) -> Role {
        self.role
    }

    /// Malformed messages (and TCP framing losses) seen so far.
    pub fn parse_errors(&self) -> u64 {
        self.errors
    }

    /// Queries not tracked because [`MAX_PENDING`] were already waiting.
    pub fn pending_overflow(&self) -> u64 {
        self.overflow
    }

    /// Answers that matched no waiting query (late after a timeout, or the query was not seen).
    pub fn unmatched_answers(&self) -> u64 {
        self.unmatched
    }

    /// Queries waiting for an answer.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Heap bytes this parser holds; bounded by construction.
    pub fn buffered_bytes(&self) -> usize {
        let names: usize = self
            .pending
            .iter()
            .map(|p| p.question.as_ref().map_or(0, |q| q.0.capacity()))
            .sum();
        self.pending.capacity() * std::mem::size_of::<Pending>()
            + names
            + self.ingress.buf.capacity()
            + self.egress.buf.capacity()
    }

    /// Feed one chunk (a datagram for UDP, a read or write for TCP); finished exchanges are
    /// appended to `out`.
    pub fn feed(&mut self, chunk: &Chunk<'_>, out: &mut Vec<L7Record>) {
        match self.transport {
            DnsTransport::Udp => {
                let seen = Seen {
                    dir: chunk.dir,
                    bytes: chunk.data,
                    complete: chunk.total_len as usize <= chunk.data.len(),
                    start_ns: chunk.start_ns,
                    end_ns: chunk.end_ns,
                    seq: chunk.seq,
                };
                self.on_message(&seen, out);
            }
            DnsTransport::Tcp => self.feed_tcp(chunk, out),
        }
    }

    fn feed_tcp(&mut self, c: &Chunk<'_>, out: &mut Vec<L7Record>) {
        let mut f = std::mem::take(match c.dir {
            Direction::Ingress => &mut self.ingress,
            Direction::Egress => &mut self.egress,
        });
        if f.lost && detect_tcp_message_start(c.data) {
            f = Framer::default();
        }
        if !f.lost {
            self.frame(&mut f, c, out);
        }
        match c.dir {
            Direction::Ingress => self.ingress = f,
            Direction::Egress => self.egress = f,
        }
    }

    fn frame(&mut self, f: &mut Framer, c: &Chunk<'_>, out: &mut Vec<L7Record>) {
        let data = c.data;
        let mut pos = 0;
        while pos < data.len() {
            if f.need == 0 {
                if f.len_have == 0 {
                    f.start_ns = c.start_ns;
                    f.seq = c.seq;
                }
                if f.len_have == 0 && data.len() - pos >= 2 {
                    f.total = usize::from(u16::from_be_bytes([data[pos], data[pos + 1]]));
                    pos += 2;
                } else if f.len_have == 0 {
                    f.len_hi = data[pos];
                    f.len_have = 1;
                    pos += 1;
                    continue;
                } else {
                    f.total = usize::from(u16::from_be_bytes([f.len_hi, data[pos]]));
                    pos += 1;
                }
                f.len_have = 0;
                if f.total < HEADER_LEN {
                    self.errors += 1;
                    f.lost = true;
                    f.buf = Vec::new();
                    return;
                }
                f.need = f.total;
                f.buf.clear();
            }
            let take = f.need.min(data.len() - pos);
            let room = MAX_MESSAGE_PREFIX.saturating_sub(f.buf.len()).min(take);
            f.buf.extend_from_slice(&data[pos..pos + room]);
            pos += take;
            f.need -= take;
            if f.need == 0 {
                self.finish_tcp(f, c, out);
            }
        }
        let hidden = (c.total_len as usize).saturating_sub(data.len());
        if hidden == 0 {
            return;
        }
        if f.need > 0 && hidden <= f.need {
            f.need -= hidden;
            if f.need == 0 {
                self.finish_tcp(f, c, out);
            }
        } else {
            // Hidden bytes cross a length prefix: the framing is lost until a message start.
            self.errors += 1;
            f.lost = true;
            f.need = 0;
            f.len_have = 0;
            f.buf = Vec::new();
        }
    }

    fn finish_tcp(&mut self, f: &mut Framer, c: &Chunk<'_>, out: &mut Vec<L7Record>) {
        let buf = std::mem::take(&mut f.buf);
        let seen = Seen {
            dir: c.dir,
            bytes: &buf,
            complete: buf.len() == f.total,
            start_ns: f.start_ns,
            end_ns: c.end_ns,
            seq: f.seq,
        };
        self.on_message(&seen, out);
        f.buf = buf;
        f.buf.clear();
    }

    fn on_message(&mut self, m: &Seen<'_>, out: &mut Vec<L7Record>) {
        let Some(msg) = parse_message(m.bytes, m.complete) else {
            self.errors += 1;
            return;
        };
        if msg.header.response {
            self.on_answer(m, msg, out);
        } else {
            self.on_query(m, msg);
        }
    }

    fn on_query(&mut self, m: &Seen<'_>, msg: Message) {
        let role = match m.dir {
            Direction::Egress => Role::Client,
            Direction::Ingress => Role::Server,
        };
        if self.role == Role::Unknown {
            self.role = role;
        } else if self.role != role {
            // A query the wrong way round for this socket's role: not ours to pair.
            self.errors += 1;
            return;
        }
        let id = msg.header.id;
        if self
            .pending
            .iter()
            .any(|p| p.id == id && p.question == msg.question)
        {
            // A retransmission: the exchange is timed from the first send.
            return;
        }
        if self.pending.len() >= MAX_PENDING {
            self.overflow += 1;
            return;
        }
        self.pending.push_back(Pending {
            id,
            question: msg.question,
            start_ns: m.start_ns,
            seq: m.seq,
        });
    }

    fn on_answer(&mut self, m: &Seen<'_>, msg: Message, out: &mut Vec<L7Record>) {
        let query_dir = match self.role {
            Role::Client => Direction::Egress,
            Role::Server => Direction::Ingress,
            Role::Unknown => {
                self.unmatched += 1;
                return;
            }
        };
        if m.dir == query_dir {
            self.errors += 1;
            return;
        }
        let id = msg.header.id;
        // Same id and question; when one side's question was not captured, the same id alone.
        let exact = self
            .pending
            .iter()
            .position(|p| p.id == id && p.question.is_some() && p.question == msg.question);
        let pos = exact.or_else(|| {
            self.pending
                .iter()
                .position(|p| p.id == id && (p.question.is_none() || msg.question.is_none()))
        });
        let Some(p) = pos.and_then(|i| self.pending.remove(i)) else {
            self.unmatched += 1;
            return;
        };
        let mut ex = self.exchange(p, m.end_ns, false);
        if ex.question_name.is_none() {
            if let Some((name, qtype)) = msg.question {
                ex.question_name = Some(name);
                ex.question_type = qtype;
            }
        }
        ex.rcode = Some(msg.header.rcode);
        ex.answer_count = msg.header.ancount;
        out.push(L7Record::Dns(ex));
    }

    fn exchange(&self, p: Pending, end_ns: u64, timed_out: bool) -> DnsExchange {
        let (question_name, question_type) = match p.question {
            Some((n, t)) => (Some(n), t),
            None => (None, 0),
        };
        DnsExchange {
            role: self.role,
            transport: self.transport,
            id: p.id,
            question_name,
            question_type,
            rcode: None,
            answer_count: 0,
            timed_out,
            start_ns: p.start_ns,
            end_ns: end_ns.max(p.start_ns),
            request_seq: p.seq,
        }
    }

    /// Emit, as timed out, the queries sent at least `timeout_ns` before `now_ns` that are still
    /// unanswered; their `end_ns` is `start_ns + timeout_ns`.
    pub fn expire(&mut self, now_ns: u64, timeout_ns: u64, out: &mut Vec<L7Record>) {
        let mut i = 0;
        while i < self.pending.len() {
            let start = self.pending[i].start_ns;
            if start.saturating_add(timeout_ns) <= now_ns {
                if let Some(p) = self.pending.remove(i) {
                    let ex = self.exchange(p, start.saturating_add(timeout_ns), true);
                    out.push(L7Record::Dns(ex));
                }
            } else {
                i += 1;
            }
        }
    }

    /// The socket closed: queries still unanswered are emitted as timed out, ending at `end_ns`.
    /// The parser is then reset (keeping its role and counters) and may be reused.
    pub fn close(&mut self, end_ns: u64, out: &mut Vec<L7Record>) {
        while let Some(p) = self.pending.pop_front() {
            let ex = self.exchange(p, end_ns, true);
            out.push(L7Record::Dns(ex));
        }
        self.ingress = Framer::default();
        self.egress = Framer::default();
    }
}

/// A TCP chunk that could start a message (used to resync after lost framing): length prefix and
/// a plausible header with a readable question.
fn detect_tcp_message_start(data: &[u8]) -> bool {
    data.len() >= 2 + HEADER_LEN
        && usize::from(u16::from_be_bytes([data[0], data[1]])) >= HEADER_LEN
        && looks_like_dns(&data[2..])
}

#[cfg(test)]
#[path = "dns_tests.rs"]
mod tests;
