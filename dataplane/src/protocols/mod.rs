//! Protocol parsers: one protocol per file, each pure over bytes.
//!
//! A parser is owned by one connection in one shard. It is fed the payload chunks of that
//! connection in kernel order ([`Chunk`]) and appends finished [`L7Record`]s to a buffer the caller
//! owns. The kernel copies only the first bytes of each syscall (`data`), and of a syscall that
//! moved more than that also its last bytes (`tail`), but always reports how many bytes the
//! syscall moved (`total_len`): parsers must use `total_len` to skip bodies they cannot see, may
//! use `tail` to see how a long message ended (HTTP/2 trailers), and must never panic or grow
//! without bound on any input (`tail` included: its length need not add up).

pub mod dns;
pub mod grpc;
pub mod hpack;
pub mod http1;
mod http1_framing;
mod http1_headers;
pub mod http2;
pub mod huffman;
pub mod route;
pub mod tls;

/// At most `cap` bytes of a header value as an owned string (invalid UTF-8 replaced, lossy).
/// Targets, hosts and `traceparent` are ASCII: checking that a word at a time costs a third
/// of full UTF-8 validation on these short texts, which only other bytes go through.
pub(crate) fn owned_text(bytes: &[u8], cap: usize) -> String {
    let bytes = &bytes[..bytes.len().min(cap)];
    if bytes.is_ascii() {
        // SAFETY: ASCII bytes are valid UTF-8.
        return unsafe { std::str::from_utf8_unchecked(bytes) }.to_owned();
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// Which way the bytes went, seen from the traced process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The process read the bytes (recv, read...).
    Ingress,
    /// The process wrote the bytes (send, write...).
    Egress,
}

/// The traced process's side of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Role {
    /// Accepted the connection, or was seen reading a request on it.
    Server,
    /// Opened the connection, or was seen writing a request on it.
    Client,
    /// Not known yet (connection found mid-stream); parsers infer it from the first request.
    #[default]
    Unknown,
}

/// One syscall's worth of payload on one connection: `data`, then [`Chunk::gap`] bytes that
/// were not captured, then `tail`, adding up to `total_len`.
#[derive(Debug, Clone, Copy)]
pub struct Chunk<'a> {
    pub dir: Direction,
    /// The captured prefix of what the syscall moved (may be shorter than `total_len`).
    pub data: &'a [u8],
    /// The last bytes the syscall moved, when it moved more than the prefix: empty when `data`
    /// is all of it (or the kernel could not copy the end). Never overlaps `data`.
    pub tail: &'a [u8],
    /// Bytes the syscall really moved.
    pub total_len: u32,
    /// Kernel monotonic timestamps: when the bytes moved (a write's entry; a read's exit, since
    /// a blocking read may have waited long for them) and the syscall's exit.
    pub start_ns: u64,
    pub end_ns: u64,
    /// Per-connection sequence number stamped by the kernel.
    pub seq: u64,
}

impl Chunk<'_> {
    /// Bytes moved that are in neither `data` nor `tail` (between them).
    pub fn gap(&self) -> u64 {
        u64::from(self.total_len).saturating_sub((self.data.len() + self.tail.len()) as u64)
    }

    /// Bytes moved after `data` (the gap and the tail), which a parser that ignores the tail
    /// skips.
    pub fn hidden(&self) -> u64 {
        u64::from(self.total_len).saturating_sub(self.data.len() as u64)
    }
}

/// A finished exchange recognised by a parser.
#[derive(Debug, Clone, PartialEq)]
pub enum L7Record {
    Http(http1::HttpTransaction),
    Dns(dns::DnsExchange),
    /// One HTTP/2 stream (gRPC calls included: see [`grpc`]).
    Http2(http2::H2Exchange),
}

/// Protocols we can recognise from the first bytes of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Http1,
    /// DNS over TCP (length-prefixed). UDP flows are selected by port, see [`dns::looks_like_dns`].
    Dns,
    /// HTTP/2 with prior knowledge (h2c, gRPC): the client preface, or frames mid-stream.
    Http2,
}

/// Guess the protocol from the first payload seen on a TCP connection; cheap, no allocation
/// (DNS only when it is unmistakably a length-prefixed standard query).
pub fn detect(data: &[u8]) -> Option<Protocol> {
    if http1::detect(data) {
        return Some(Protocol::Http1);
    }
    if http2::detect(data) {
        return Some(Protocol::Http2);
    }
    if dns::detect_tcp(data) {
        return Some(Protocol::Dns);
    }
    None
}

#[cfg(test)]
mod tests {
    proptest::proptest! {
        /// Whatever the bytes (ASCII, other UTF-8, invalid) and the cap, the text is the lossy
        /// reading of the first `cap` bytes.
        #[test]
        fn owned_text_reads_like_lossy_utf8(
            s in "[ -~é€\u{1F600}]{0,40}",
            junk in proptest::collection::vec(proptest::num::u8::ANY, 0..4),
            cap in 0usize..60,
        ) {
            let mut b = s.into_bytes();
            b.extend(junk);
            let want = String::from_utf8_lossy(&b[..b.len().min(cap)]).into_owned();
            proptest::prop_assert_eq!(super::owned_text(&b, cap), want);
        }
    }
}
