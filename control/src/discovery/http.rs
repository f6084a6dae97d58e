//! A deliberately tiny blocking HTTP/1.1 client over `std::net::TcpStream`, for metadata services
//! and a plain-`http://` Kubernetes API (e.g. behind `kubectl proxy`). Every request has a hard
//! deadline covering connect, write and read; bodies are capped; chunked replies are decoded.
//! No TLS, no redirects, no keep-alive: one request per connection.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::util::DiscoveryError;

/// The largest body we accept; metadata documents are a few KiB, pod lists of one node a few MiB.
const MAX_BODY: usize = 32 << 20;

/// One reply.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Splits `http://host[:port]/path` into (host, port, path).
pub fn split_url(url: &str) -> Result<(String, u16, String), DiscoveryError> {
    let err = |r: &str| DiscoveryError::Http {
        url: url.to_string(),
        reason: r.to_string(),
    };
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| err("only http:// URLs are supported"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
        let (h, p) = h.split_once(']').ok_or_else(|| err("bad IPv6 host"))?;
        (
            h.to_string(),
            p.strip_prefix(':').unwrap_or("80").to_string(),
        )
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.to_string()),
            None => (hostport.to_string(), "80".to_string()),
        }
    };
    let port: u16 = port.parse().map_err(|_| err("bad port"))?;
    if host.is_empty() {
        return Err(err("empty host"));
    }
    Ok((host, port, path.to_string()))
}

/// Sends one request and reads the whole reply, all within `timeout`.
pub fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> Result<Response, DiscoveryError> {
    let deadline = Instant::now() + timeout;
    let err = |r: String| DiscoveryError::Http {
        url: url.to_string(),
        reason: r,
    };
    let (host, port, path) = split_url(url)?;
    let addr: SocketAddr = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| err(format!("resolve: {e}")))?
        .next()
        .ok_or_else(|| err("no address".into()))?;
    let left = |d: Instant| {
        d.checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| err("timed out".into()))
    };
    let mut stream = TcpStream::connect_timeout(&addr, left(deadline)?)
        .map_err(|e| err(format!("connect: {e}")))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\nUser-Agent: telegen\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if method == "PUT" || method == "POST" {
        req.push_str("Content-Length: 0\r\n");
    }
    req.push_str("\r\n");
    stream
        .set_write_timeout(Some(left(deadline)?))
        .map_err(|e| err(e.to_string()))?;
    stream
        .write_all(req.as_bytes())
        .map_err(|e| err(format!("write: {e}")))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        stream
            .set_read_timeout(Some(left(deadline)?))
            .map_err(|e| err(e.to_string()))?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                raw.extend_from_slice(&buf[..n]);
                if raw.len() > MAX_BODY {
                    return Err(err("reply too large".into()));
                }
                // Stop early once a Content-Length body is complete (servers may keep the socket).
                if let Some(done) = complete_len(&raw) {
                    if raw.len() >= done {
                        break;
                    }
                }
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return Err(err("timed out".into()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(err(format!("read: {e}"))),
        }
    }
    parse_response(&raw).map_err(err)
}

/// When the head is complete and carries a Content-Length, the total length of the message.
fn complete_len(raw: &[u8]) -> Option<usize> {
    let end = find(raw, b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let len = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())?
    })?;
    Some(end + 4 + len)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parses a complete HTTP/1.x reply.
pub fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let end = find(raw, b"\r\n\r\n").ok_or("no end of headers")?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| "headers not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.split_whitespace();
    let proto = parts.next().unwrap_or_default();
    if !proto.starts_with("HTTP/1.") {
        return Err(format!(
            "not an HTTP reply: {:?}",
            truncate(status_line, 40)
        ));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or("bad status code")?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_ascii_lowercase(), v.trim().to_string()))
        })
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        body = dechunk(&body)?;
    } else if let Some(len) = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        body.truncate(len);
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = find(b, b"\r\n").ok_or("truncated chunk size")?;
        let size_s = std::str::from_utf8(&b[..eol]).map_err(|_| "bad chunk size")?;
        let size_s = size_s.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_s, 16).map_err(|_| "bad chunk size")?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if b.len() < size {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&b[..size]);
        b = b.get(size + 2..).unwrap_or(&[]);
    }
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            split_url("http://127.0.0.1:8080/a/b").unwrap(),
            ("127.0.0.1".into(), 8080, "/a/b".into())
        );
        assert_eq!(
            split_url("http://169.254.169.254").unwrap(),
            ("169.254.169.254".into(), 80, "/".into())
        );
        assert_eq!(split_url("http://[::1]:9/x").unwrap().0, "::1");
        assert!(split_url("https://x/").is_err());
    }

    #[test]
    fn parses_plain_and_chunked() {
        let r =
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b\r\n\r\nhiXX").unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"hi");
        assert_eq!(r.header("x-a"), Some("b"));
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.body, b"abcde");
        assert!(parse_response(b"garbage\r\n\r\n").is_err());
        assert!(parse_response(b"\x00\x01\x02").is_err());
    }
}
