//! HTTP/1.x message heads: recognising a message start and parsing a request or status line plus
//! the few headers Telegen needs (Host, traceparent, Content-Length, Transfer-Encoding).
//!
//! Everything here is pure and borrows from the input: no allocation, no panics on any bytes.
//! A head may be *truncated* (capture limit, size bound): then only complete lines are trusted,
//! except the start line, from which a method and a target prefix are still taken.

use crate::bytes::{eq_lower_name, find};

/// Longest method token accepted at a request start.
pub(crate) const MAX_METHOD: usize = 16;

/// Answer of a start check on the first bytes of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    Yes,
    /// Too few bytes to decide; everything seen so far fits.
    NeedMore,
    No,
}

/// Do these bytes start like a request line (`TOKEN SP`)? Token = upper-case letters, `-`, `_`.
pub(crate) fn request_start(data: &[u8]) -> Start {
    for (i, &b) in data.iter().enumerate().take(MAX_METHOD + 1) {
        if b == b' ' {
            return if i == 0 { Start::No } else { Start::Yes };
        }
        if !(b.is_ascii_uppercase() || b == b'-' || b == b'_') {
            return Start::No;
        }
    }
    if data.len() > MAX_METHOD {
        Start::No
    } else {
        Start::NeedMore
    }
}

/// Do these bytes start like a status line (`HTTP/1.`)?
pub(crate) fn response_start(data: &[u8]) -> Start {
    const P: &[u8] = b"HTTP/1.";
    let n = data.len().min(P.len());
    if data[..n] != P[..n] {
        Start::No
    } else if n == P.len() {
        Start::Yes
    } else {
        Start::NeedMore
    }
}

/// Skip the empty lines allowed before a message.
pub(crate) fn skip_crlf(data: &[u8]) -> usize {
    data.iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(data.len())
}

/// What a head says, borrowed from its bytes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Head<'a> {
    /// Request only.
    pub method: &'a [u8],
    pub target: &'a [u8],
    /// Response only.
    pub status: u16,
    pub version: &'static str,
    pub host: Option<&'a [u8]>,
    pub traceparent: Option<&'a [u8]>,
    pub content_length: Option<u64>,
    pub chunked: bool,
    /// Framing headers were malformed (bad or conflicting Content-Length).
    pub bad_framing: bool,
    /// Offset just past the empty line ending the head, when found with CRLF line ends only.
    pub end: Option<usize>,
}

fn trim_cr(line: &[u8]) -> &[u8] {
    match line.split_last() {
        Some((b'\r', rest)) => rest,
        _ => line,
    }
}

fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t' | b'\r'] = v {
        v = rest;
    }
    v
}

fn version(v: &[u8]) -> Option<&'static str> {
    match v {
        b"HTTP/1.1" => Some("1.1"),
        b"HTTP/1.0" => Some("1.0"),
        _ => None,
    }
}

/// Split `head` into its first line and (offset past it, ended in CRLF), `None` when the first
/// line is not complete.
fn first_line(head: &[u8]) -> (&[u8], Option<(usize, bool)>) {
    match find(b'\n', head) {
        Some(i) => (
            trim_cr(&head[..i]),
            Some((i + 1, i > 0 && head[i - 1] == b'\r')),
        ),
        None => (head, None),
    }
}

/// Parse a request head. `complete` means `head` ends with the empty line; otherwise it is a
/// truncated prefix. `None` when the request line is unusable.
pub(crate) fn parse_request(head: &[u8], complete: bool) -> Option<Head<'_>> {
    let (line, rest) = first_line(head);
    let sp = find(b' ', line)?;
    let method = &line[..sp];
    if method.is_empty()
        || method.len() > MAX_METHOD
        || !method
            .iter()
            .all(|&b| b.is_ascii_uppercase() || b == b'-' || b == b'_')
    {
        return None;
    }
    let after = &line[sp + 1..];
    let mut h = Head {
        method,
        ..Head::default()
    };
    match (find(b' ', after), rest) {
        (Some(sp2), _) => {
            h.target = &after[..sp2];
            let v = &after[sp2 + 1..];
            h.version = match version(v) {
                Some(v) => v,
                // A truncated first line may end inside the version.
                None if rest.is_none() && !complete && b"HTTP/1.1".starts_with(v) => "1.1",
                None => return None,
            };
        }
        // Truncated inside the target: keep its prefix.
        (None, None) if !complete => {
            h.target = after;
            h.version = "1.1";
        }
        _ => return None,
    }
    if h.target.is_empty() {
        return None;
    }
    if let Some((off, crlf)) = rest {
        headers(head, off, crlf, complete, &mut h);
    }
    Some(h)
}

/// Parse a response head (see [`parse_request`]). `None` when the status line is unusable.
pub(crate) fn parse_response(head: &[u8], complete: bool) -> Option<Head<'_>> {
    let (line, rest) = first_line(head);
    if line.len() < 12 || line.get(12).is_some_and(|&b| b != b' ') {
        return None;
    }
    let version = version(&line[..8])?;
    if line[8] != b' ' {
        return None;
    }
    let mut status = 0u16;
    for &b in &line[9..12] {
        if !b.is_ascii_digit() {
            return None;
        }
        status = status * 10 + u16::from(b - b'0');
    }
    if status < 100 {
        return None;
    }
    let mut h = Head {
        status,
        version,
        ..Head::default()
    };
    if let Some((off, crlf)) = rest {
        headers(head, off, crlf, complete, &mut h);
    }
    Some(h)
}

fn parse_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 {
        return None;
    }
    let mut n = 0u64;
    for &b in v {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(b - b'0');
    }
    Some(n)
}

/// Header lines of `head` from offset `off` (just past the start line). Only complete lines are
/// read when the head is truncated. Sets `h.end` when the empty line is found and every line so
/// far ended in CRLF (`crlf`), so that it agrees with a search for `\r\n\r\n`.
fn headers<'a>(head: &'a [u8], off: usize, mut crlf: bool, complete: bool, h: &mut Head<'a>) {
    let mut start = off;
    loop {
        let rest = &head[start..];
        let (raw, next) = match find(b'\n', rest) {
            Some(i) => (&rest[..i], start + i + 1),
            None if complete => (&head[start..], head.len()),
            None => return,
        };
        crlf &= raw.last() == Some(&b'\r');
        let line = trim_cr(raw);
        start = next;
        let Some(&first) = line.first() else {
            if crlf {
                h.end = Some(start);
            }
            return;
        };
        // Only four names matter. The first letter rules out most lines at once; then a colon
        // right where the name would end (a name never contains one) and the name itself.
        let is = |name: &[u8]| {
            line.get(name.len()) == Some(&b':') && eq_lower_name(&line[..name.len()], name)
        };
        let value = |n: usize| trim_ows(&line[n + 1..]);
        match first | 0x20 {
            b'h' if is(b"host") => {
                h.host.get_or_insert(value(4));
            }
            b't' if is(b"traceparent") => {
                h.traceparent.get_or_insert(value(11));
            }
            b't' if is(b"transfer-encoding") => {
                let value = value(17);
                let last = value.rsplit(|&b| b == b',').next().unwrap_or(value);
                h.chunked = eq_lower_name(trim_ows(last), b"chunked");
            }
            b'c' if is(b"content-length") => match parse_length(value(14)) {
                Some(n) if h.content_length.is_none_or(|old| old == n) => {
                    h.content_length = Some(n);
                }
                _ => h.bad_framing = true,
            },
            _ => {}
        }
        if start >= head.len() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts() {
        assert_eq!(request_start(b"GET / HTTP/1.1"), Start::Yes);
        assert_eq!(request_start(b"GE"), Start::NeedMore);
        assert_eq!(request_start(b""), Start::NeedMore);
        assert_eq!(request_start(b"get /"), Start::No);
        assert_eq!(request_start(b" GET"), Start::No);
        assert_eq!(request_start(b"ABCDEFGHIJKLMNOPQRS"), Start::No);
        assert_eq!(response_start(b"HTTP/1.1 200"), Start::Yes);
        assert_eq!(response_start(b"HTT"), Start::NeedMore);
        assert_eq!(response_start(b"HTTP/2"), Start::No);
    }

    #[test]
    fn request_head() {
        let raw = b"POST /a?b=1 HTTP/1.0\r\nhOsT:  example.com \r\nContent-Length: 12\r\nTraceparent: 00-x-y-01\r\nX: y\r\n\r\n";
        let h = parse_request(raw, true).unwrap();
        assert_eq!(h.method, b"POST");
        assert_eq!(h.target, b"/a?b=1");
        assert_eq!(h.version, "1.0");
        assert_eq!(h.host, Some(&b"example.com"[..]));
        assert_eq!(h.traceparent, Some(&b"00-x-y-01"[..]));
        assert_eq!(h.content_length, Some(12));
        assert!(!h.chunked && !h.bad_framing);
    }

    #[test]
    fn request_head_truncated() {
        let h = parse_request(b"GET /very/long/pa", false).unwrap();
        assert_eq!(
            (h.method, h.target, h.version),
            (&b"GET"[..], &b"/very/long/pa"[..], "1.1")
        );
        let h = parse_request(b"GET /x HTTP/1.1\r\nHost: a\r\nTraceparent: 00-ab", false).unwrap();
        assert_eq!(h.host, Some(&b"a"[..]));
        assert_eq!(h.traceparent, None, "an incomplete line is not trusted");
        assert!(parse_request(b"GET /x HTTP/2.0\r\n\r\n", true).is_none());
        assert!(parse_request(b"GET\r\n\r\n", true).is_none());
        assert!(parse_request(b"GET  HTTP/1.1\r\n\r\n", true).is_none());
    }

    #[test]
    fn head_end_offsets() {
        let raw = b"GET / HTTP/1.1\r\nA: b\r\n\r\nBODY";
        assert_eq!(parse_request(raw, false).unwrap().end, Some(raw.len() - 4));
        let raw = b"HTTP/1.1 200 OK\r\n\r\n";
        assert_eq!(parse_response(raw, false).unwrap().end, Some(raw.len()));
        // Bare LF line ends are left to the slow path (which looks for CRLF CRLF).
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\nA: b\r\n\r\n", false)
                .unwrap()
                .end,
            None
        );
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\nA: b\n\r\n", false)
                .unwrap()
                .end,
            None
        );
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\nA: b\r\n", false)
                .unwrap()
                .end,
            None
        );
    }

    #[test]
    fn response_head() {
        let h = parse_response(
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n",
            true,
        )
        .unwrap();
        assert_eq!((h.status, h.version, h.chunked), (404, "1.1", true));
        assert_eq!(
            parse_response(b"HTTP/1.0 204\r\n\r\n", true)
                .unwrap()
                .status,
            204
        );
        assert!(parse_response(b"HTTP/1.1 20x OK\r\n\r\n", true).is_none());
        assert!(parse_response(b"HTTP/1.1 2000 OK\r\n\r\n", true).is_none());
        assert!(parse_response(b"HTTP/1.1 099 OK\r\n\r\n", true).is_none());
        let h = parse_response(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\ncontent-length: 6\r\n\r\n",
            true,
        )
        .unwrap();
        assert!(h.bad_framing);
        let h = parse_response(
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
            true,
        )
        .unwrap();
        assert!(h.bad_framing);
        let h = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", true).unwrap();
        assert!(h.bad_framing);
    }
}
