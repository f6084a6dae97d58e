//! HTTP/1.x: incremental request/response parsing across reads. (Interface fixed; parser being written.)

use super::{Chunk, L7Record, Role};

/// One request and its response on one connection, as the traced process saw them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTransaction {
    /// The side the traced process played (never `Unknown` in an emitted transaction).
    pub role: Role,
    /// Request method as sent (`GET`, `POST`, ...); `_OTHER` handling is the span builder's job.
    pub method: String,
    /// The request target as sent (path and query, or absolute form).
    pub target: String,
    /// `1.0` or `1.1`.
    pub version: &'static str,
    /// `Host` header value, if seen.
    pub host: Option<String>,
    /// `traceparent` header value, if seen in the captured bytes.
    pub traceparent: Option<String>,
    /// Response status code; `None` when the connection closed before a response.
    pub status: Option<u16>,
    /// Kernel monotonic ns: first byte of request seen (syscall entry), response finished (syscall exit).
    pub start_ns: u64,
    pub end_ns: u64,
    /// Kernel sequence number of the chunk that started the request.
    pub request_seq: u64,
    /// Body sizes as framed by Content-Length / chunked encoding / connection close.
    pub request_body_bytes: u64,
    pub response_body_bytes: u64,
    /// The parser could not see everything (capture limit, lost chunk); fields may be partial.
    pub partial: bool,
}

/// Cheap check: do these bytes start like an HTTP/1.x request?
pub fn detect(data: &[u8]) -> bool {
    const METHODS: [&[u8]; 9] = [
        b"GET ", b"POST ", b"PUT ", b"DELETE ", b"HEAD ", b"OPTIONS ", b"PATCH ", b"CONNECT ",
        b"TRACE ",
    ];
    METHODS.iter().any(|m| data.starts_with(m))
}

/// Per-connection HTTP/1.x parser state.
#[derive(Debug)]
pub struct Http1Parser {
    role: Role,
}

impl Http1Parser {
    pub fn new(role: Role) -> Self {
        Self { role }
    }

    /// The role, once known.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Feed one chunk; finished transactions are appended to `out`.
    pub fn feed(&mut self, _chunk: &Chunk<'_>, _out: &mut Vec<L7Record>) {}

    /// The connection closed: finish whatever can be finished.
    pub fn close(&mut self, _end_ns: u64, _out: &mut Vec<L7Record>) {}
}
