//! From a finished HTTP transaction to an OpenTelemetry span: ids, W3C `traceparent`, and the
//! attributes of the HTTP semantic conventions. Pure functions plus a small per-shard RNG.

use rustc_hash::FxHashMap;
use telegen_bpf::abi::Addr;

use crate::bytes::find2;
use crate::intern::Interner;
use crate::protocols::http1::HttpTransaction;
use crate::protocols::{route::route_template_into, Role};
use crate::signal::{AttrValue, Attrs, SpanKind, SpanRecord, Text};

/// A fast per-shard generator for trace and span ids (wyrand), seeded from the kernel.
#[derive(Debug, Clone)]
pub struct IdGen(u64);

impl IdGen {
    pub fn new(salt: u64) -> Self {
        let mut seed = [0u8; 8];
        // SAFETY: getrandom writes at most `seed.len()` bytes into the buffer we own.
        let n = unsafe { libc::getrandom(seed.as_mut_ptr().cast(), seed.len(), 0) };
        let mut s = u64::from_ne_bytes(seed);
        if n != 8 {
            s = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0x9E37_79B9);
        }
        Self(s ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xA076_1D64_78BD_642F);
        let t = u128::from(self.0) * u128::from(self.0 ^ 0xE703_7ED1_A0B4_28DB);
        ((t >> 64) ^ t) as u64
    }

    pub fn span_id(&mut self) -> [u8; 8] {
        loop {
            let v = self.next_u64();
            if v != 0 {
                return v.to_be_bytes();
            }
        }
    }

    pub fn trace_id(&mut self) -> [u8; 16] {
        let mut t = [0u8; 16];
        t[..8].copy_from_slice(&self.next_u64().to_be_bytes());
        t[8..].copy_from_slice(&self.span_id());
        t
    }
}

/// Trace identity of a span, as children need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanCtx {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
}

/// Value of each byte as a hex digit, `NOT_HEX` for the rest.
static HEX: [u8; 256] = {
    let mut t = [NOT_HEX; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => NOT_HEX,
        };
        b += 1;
    }
    t
};
const NOT_HEX: u8 = 0xff;

fn hex_into(s: &[u8], out: &mut [u8]) -> Option<()> {
    if s.len() != out.len() * 2 {
        return None;
    }
    // OR every digit's value together: any non-digit sets the high bit.
    let mut bad = 0;
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        let (h, l) = (HEX[usize::from(pair[0])], HEX[usize::from(pair[1])]);
        bad |= h | l;
        *o = (h << 4) | (l & 0xf);
    }
    (bad & 0x80 == 0).then_some(())
}

/// Parse a W3C `traceparent` (version 00 or later-compatible): trace id and parent span id.
/// All-zero ids and malformed values give `None`.
pub fn parse_traceparent(v: &str) -> Option<([u8; 16], [u8; 8])> {
    let b = v.trim().as_bytes();
    if b.len() < 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
        return None;
    }
    if &b[..2] == b"ff" || (b.len() > 55 && (&b[..2] == b"00" || b[55] != b'-')) {
        return None;
    }
    let mut ver = [0u8; 1];
    hex_into(&b[..2], &mut ver)?;
    let mut trace = [0u8; 16];
    let mut span = [0u8; 8];
    let mut flags = [0u8; 1];
    hex_into(&b[3..35], &mut trace)?;
    hex_into(&b[36..52], &mut span)?;
    hex_into(&b[53..55], &mut flags)?;
    if trace == [0; 16] || span == [0; 8] {
        return None;
    }
    Some((trace, span))
}

/// Where a connection goes, as the kernel reported it, with the address texts every span of
/// the connection shares (formatted once per connection, not once per span).
#[derive(Debug, Clone)]
pub struct FlowInfo {
    pub pid: u32,
    pub comm: [u8; 16],
    pub local: Addr,
    pub remote: Addr,
    /// The addresses as text: held in place (IPv4), shared otherwise.
    pub local_ip: Text,
    pub remote_ip: Text,
    /// The payload is TLS plaintext (from the TLS library, not the socket).
    pub tls: bool,
}

impl FlowInfo {
    pub fn new(pid: u32, comm: [u8; 16], local: Addr, remote: Addr) -> Self {
        Self {
            pid,
            comm,
            local,
            remote,
            local_ip: ip_text(local.ip()),
            remote_ip: ip_text(remote.ip()),
            tls: false,
        }
    }

    /// `url.scheme` of HTTP on this connection.
    pub fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }
}

/// An address as text. IPv4 (most connections) is written by hand: the formatting machinery
/// costs about ten times as much, once per new connection.
fn ip_text(ip: std::net::IpAddr) -> Text {
    let std::net::IpAddr::V4(v4) = ip else {
        return Text::short_or_shared(&ip.to_string());
    };
    let mut buf = [0u8; 15];
    let mut n = 0;
    for (i, o) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            buf[n] = b'.';
            n += 1;
        }
        if o >= 100 {
            buf[n] = b'0' + o / 100;
            n += 1;
        }
        if o >= 10 {
            buf[n] = b'0' + o / 10 % 10;
            n += 1;
        }
        buf[n] = b'0' + o % 10;
        n += 1;
    }
    // Only ASCII digits and dots were written.
    std::str::from_utf8(&buf[..n]).map_or_else(
        |_| Text::short_or_shared(&ip.to_string()),
        Text::short_or_shared,
    )
}

const KNOWN_METHODS: [&str; 9] = [
    "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE",
];

/// Index of a method in [`KNOWN_METHODS`], `KNOWN_METHODS.len()` for `_OTHER`.
fn method_index(m: &str) -> usize {
    KNOWN_METHODS
        .iter()
        .position(|k| *k == m)
        .unwrap_or(KNOWN_METHODS.len())
}

/// The method as the conventions want it (`_OTHER` for unknown ones).
pub fn normalized_method(m: &str) -> &'static str {
    KNOWN_METHODS
        .get(method_index(m))
        .copied()
        .unwrap_or("_OTHER")
}

/// Path part of a request target (origin form or absolute form), without query or fragment.
pub fn target_path(target: &str) -> &str {
    if target.starts_with('/') {
        let end = find2(b'?', b'#', target.as_bytes()).unwrap_or(target.len());
        return &target[..end];
    }
    let t = match target.find("://") {
        Some(i) => {
            let rest = &target[i + 3..];
            rest.find('/').map(|j| &rest[j..]).unwrap_or("/")
        }
        None => target,
    };
    let end = t.find(['?', '#']).unwrap_or(t.len());
    &t[..end]
}

/// Host part of a `Host` header (no port, no brackets).
fn host_name(h: &str) -> &str {
    let h = h.trim();
    if let Some(rest) = h.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    h.rsplit_once(':')
        .map(|(a, p)| {
            if p.bytes().all(|c| c.is_ascii_digit()) {
                a
            } else {
                h
            }
        })
        .unwrap_or(h)
}

/// Entries each [`SpanCache`] map holds before it starts over.
const CACHE_ENTRIES: usize = 4096;

#[derive(Debug)]
struct RouteEntry {
    route: Text,
    /// `"{method} {route}"` per method index, made on first use.
    names: [Option<Text>; KNOWN_METHODS.len() + 1],
}

/// Per-shard memo of the texts spans repeat: routes and span names by path, host names by `Host`
/// header, interned (see [`crate::intern`]). Bounded: a map that reaches `CACHE_ENTRIES`
/// (4,096) entries is cleared (paths full of identifiers miss the path map but still share the
/// route's texts).
#[derive(Debug, Default)]
pub struct SpanCache {
    /// Paths that are their own route (no identifier segment) -> route entry index.
    paths: FxHashMap<Box<str>, usize>,
    routes: FxHashMap<Text, usize>,
    entries: Vec<RouteEntry>,
    hosts: FxHashMap<Box<str>, Text>,
    rpcs: FxHashMap<Box<str>, RpcNames>,
    interner: Interner,
    /// Reused buffer for route templates (no allocation per span for paths with identifiers).
    scratch: String,
}

/// The texts of a gRPC method, shared by its spans.
#[derive(Debug, Clone)]
pub struct RpcNames {
    pub service: Text,
    pub method: Text,
    /// `package.Service/Method`.
    pub name: Text,
}

impl SpanCache {
    fn route_entry(&mut self, path: &str) -> usize {
        if let Some(&i) = self.paths.get(path) {
            return i;
        }
        if self.entries.len() >= CACHE_ENTRIES {
            self.paths.clear();
            self.routes.clear();
            self.entries.clear();
        }
        let mut route = std::mem::take(&mut self.scratch);
        route_template_into(path, &mut route);
        let i = match self.routes.get(route.as_str()) {
            Some(&i) => i,
            None => {
                let route = self.interner.text(&route);
                self.entries.push(RouteEntry {
                    route: route.clone(),
                    names: Default::default(),
                });
                self.routes.insert(route, self.entries.len() - 1);
                self.entries.len() - 1
            }
        };
        if route == path {
            self.paths.insert(path.into(), i);
        }
        self.scratch = route;
        i
    }

    /// (`http.route`, span name `"{method} {route}"`) of a server request.
    pub fn route_and_name(&mut self, method: &'static str, path: &str) -> (Text, Text) {
        let i = self.route_entry(path);
        let e = &mut self.entries[i];
        let m = method_index(method);
        let interner = &mut self.interner;
        let name = e.names[m]
            .get_or_insert_with(|| interner.text(&format!("{method} {}", e.route)))
            .clone();
        (e.route.clone(), name)
    }

    /// Service, method and span name of a gRPC path (`/package.Service/Method`), shared;
    /// `None` when the path is not a gRPC method.
    pub fn rpc(&mut self, path: &str) -> Option<RpcNames> {
        if let Some(n) = self.rpcs.get(path) {
            return Some(n.clone());
        }
        let (service, method) = crate::protocols::grpc::split_method(path)?;
        if self.rpcs.len() >= CACHE_ENTRIES {
            self.rpcs.clear();
        }
        let n = RpcNames {
            service: self.interner.text(service),
            method: self.interner.text(method),
            name: self.interner.text(&format!("{service}/{method}")),
        };
        self.rpcs.insert(path.into(), n.clone());
        Some(n)
    }

    /// The host name of a `Host` header value, shared.
    pub fn host(&mut self, header: &str) -> Text {
        if let Some(h) = self.hosts.get(header) {
            return h.clone();
        }
        if self.hosts.len() >= CACHE_ENTRIES {
            self.hosts.clear();
        }
        let h = self.interner.text(host_name(header));
        self.hosts.insert(header.into(), h.clone());
        h
    }
}

/// `error.type` for a transaction, if it failed.
pub fn error_type(tx: &HttpTransaction) -> Option<String> {
    match tx.status {
        None => Some("incomplete".to_string()),
        Some(s) if s >= 500 => Some(s.to_string()),
        Some(s) if s >= 400 && tx.role == Role::Client => Some(s.to_string()),
        _ => None,
    }
}

/// The endpoint attributes of a span, pushed onto `attrs`. A client span gets `server.address`
/// (the host of `authority` — a `Host` header or `:authority` — when known, else the peer's
/// address), `server.port` and `network.peer.*`; a server span gets `server.address` (the same,
/// else its own address), `server.port` and `client.*`. Returns `server.address`.
pub fn push_endpoint_attrs(
    attrs: &mut Attrs,
    role: Role,
    flow: &FlowInfo,
    authority: Option<&str>,
    cache: &mut SpanCache,
) -> Text {
    let client = role == Role::Client;
    let server = match authority {
        Some(a) => cache.host(a),
        None if client => flow.remote_ip.clone(),
        None => flow.local_ip.clone(),
    };
    let server_port = if client {
        flow.remote.port
    } else {
        flow.local.port
    };
    attrs.push(("server.address", AttrValue::Text(server.clone())));
    attrs.push(("server.port", AttrValue::Int(i64::from(server_port))));
    let (addr_key, port_key) = if client {
        ("network.peer.address", "network.peer.port")
    } else {
        ("client.address", "client.port")
    };
    attrs.push((addr_key, AttrValue::Text(flow.remote_ip.clone())));
    attrs.push((port_key, AttrValue::Int(i64::from(flow.remote.port))));
    server
}

/// Build the span of a transaction. `ctx` is this span's identity, `parent` its parent span id
/// (zero for a root).
///
/// The span is written into `out`, a span already exported and handed back: every field is set
/// and its attribute vector is reused, so building a span neither allocates that vector nor
/// moves the span (about 150 bytes) through each caller.
pub fn http_span_into(
    out: &mut SpanRecord,
    tx: &HttpTransaction,
    flow: &FlowInfo,
    ctx: SpanCtx,
    parent: [u8; 8],
    clock_offset_ns: u64,
    cache: &mut SpanCache,
) {
    let method = normalized_method(&tx.method);
    let path = target_path(&tx.target);
    let attrs = &mut out.attrs;
    attrs.clear();
    attrs.reserve(13);
    attrs.push(("http.request.method", AttrValue::Text(Text::Static(method))));
    if method == "_OTHER" && tx.method != "_OTHER" && !tx.method.is_empty() {
        attrs.push((
            "http.request.method_original",
            AttrValue::Str(tx.method.to_string()),
        ));
    }
    if let Some(s) = tx.status {
        attrs.push(("http.response.status_code", AttrValue::Int(i64::from(s))));
    }
    attrs.push((
        "network.protocol.name",
        AttrValue::Text(Text::Static("http")),
    ));
    attrs.push((
        "network.protocol.version",
        AttrValue::Text(Text::Static(tx.version)),
    ));
    let err = error_type(tx);
    let scheme = flow.scheme();
    let (kind, name) = if tx.role == Role::Client {
        let server = push_endpoint_attrs(attrs, Role::Client, flow, tx.host.as_deref(), cache);
        let full = format!(
            "{scheme}://{}:{}{}",
            server,
            flow.remote.port,
            if tx.target.starts_with('/') {
                &tx.target
            } else {
                "/"
            }
        );
        attrs.push(("url.full", AttrValue::Str(full)));
        // Opt-In on client spans; it is one of the client duration metric's keys.
        attrs.push(("url.scheme", AttrValue::Text(Text::Static(scheme))));
        (SpanKind::Client, Text::Static(method))
    } else {
        let (route, name) = cache.route_and_name(method, path);
        let url_path = if route == path {
            AttrValue::Text(route.clone())
        } else {
            AttrValue::Str(path.to_string())
        };
        attrs.push(("url.path", url_path));
        attrs.push(("url.scheme", AttrValue::Text(Text::Static(scheme))));
        push_endpoint_attrs(attrs, Role::Server, flow, tx.host.as_deref(), cache);
        attrs.push(("http.route", AttrValue::Text(route)));
        (SpanKind::Server, name)
    };
    let error = err.map(|e| {
        let msg = if e == "incomplete" {
            "no response".to_string()
        } else {
            format!("HTTP {e}")
        };
        // A status code or `incomplete`: few values, interned like the route.
        attrs.push(("error.type", AttrValue::Text(cache.interner.text(&e))));
        msg
    });
    let head = Head {
        name,
        kind,
        start_ns: tx.start_ns,
        end_ns: tx.end_ns,
        error,
    };
    head.write(out, flow, ctx, parent, clock_offset_ns);
}

/// What every span builder sets besides the attributes: name, kind, times (kernel monotonic)
/// and error.
pub struct Head {
    pub name: Text,
    pub kind: SpanKind,
    pub start_ns: u64,
    pub end_ns: u64,
    pub error: Option<String>,
}

impl Head {
    /// Set every field of `out` but its attributes: this head, the span's identity `ctx` under
    /// `parent`, its process, and Unix times (an end before the start becomes the start).
    #[inline(always)]
    pub fn write(
        self,
        out: &mut SpanRecord,
        flow: &FlowInfo,
        ctx: SpanCtx,
        parent: [u8; 8],
        clock_offset_ns: u64,
    ) {
        out.trace_id = ctx.trace_id;
        out.span_id = ctx.span_id;
        out.parent_span_id = parent;
        out.name = self.name;
        out.kind = self.kind;
        out.start_unix_ns = self.start_ns.wrapping_add(clock_offset_ns);
        out.end_unix_ns = self.end_ns.max(self.start_ns).wrapping_add(clock_offset_ns);
        out.error = self.error;
        out.pid = flow.pid;
        out.comm = flow.comm;
    }
}

/// Offset to add to a kernel monotonic timestamp (`bpf_ktime_get_ns`) to get Unix time.
pub fn monotonic_to_unix_offset() -> u64 {
    let mut mono = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the struct we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut mono) };
    let mono_ns = mono.tv_sec as u64 * 1_000_000_000 + mono.tv_nsec as u64;
    let unix_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    unix_ns.saturating_sub(mono_ns)
}

/// Kernel monotonic "now" in ns, comparable with event timestamps.
pub fn monotonic_now_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: as above.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent() {
        let (t, s) =
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(t[0], 0x4b);
        assert_eq!(s[7], 0xb7);
        assert!(
            parse_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none()
        );
        assert!(
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01").is_none()
        );
        assert!(
            parse_traceparent("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").is_none()
        );
        assert!(
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e473z-00f067aa0ba902b7-01").is_none()
        );
        assert!(parse_traceparent("garbage").is_none());
        assert!(
            parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra")
                .is_some()
        );
    }

    proptest::proptest! {
        #[test]
        fn ip_text_agrees_with_display(a: [u8; 4], b: [u8; 16]) {
            for ip in [std::net::IpAddr::from(a), std::net::IpAddr::from(b)] {
                proptest::prop_assert_eq!(ip_text(ip).to_string(), ip.to_string());
            }
        }

        /// The table agrees with the standard library's digit parsing on any bytes.
        #[test]
        fn hex_into_agrees_with_to_digit(s in "[0-9a-fA-F/:gG@`\x00é]{0,34}") {
            let s = s.as_bytes();
            let n = s.len() / 2;
            let mut out = vec![0; n];
            let want: Option<Vec<u8>> = (s.len() == 2 * n).then_some(()).and_then(|()| {
                s.chunks_exact(2)
                    .map(|p| {
                        let h = (p[0] as char).to_digit(16)?;
                        let l = (p[1] as char).to_digit(16)?;
                        Some((h * 16 + l) as u8)
                    })
                    .collect()
            });
            let got = hex_into(s, &mut out).map(|()| out);
            proptest::prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn ids_are_nonzero_and_distinct() {
        let mut g = IdGen::new(1);
        let a = g.trace_id();
        let b = g.trace_id();
        assert_ne!(a, b);
        assert_ne!(g.span_id(), [0; 8]);
    }

    #[test]
    fn paths_and_methods() {
        assert_eq!(target_path("/a/b?x=1"), "/a/b");
        assert_eq!(target_path("http://h:80/p?q"), "/p");
        assert_eq!(target_path("http://h"), "/");
        assert_eq!(normalized_method("GET"), "GET");
        assert_eq!(normalized_method("PURGE"), "_OTHER");
        assert_eq!(host_name("example.com:8080"), "example.com");
        assert_eq!(host_name("[::1]:80"), "::1");
    }

    fn tx(role: Role, status: Option<u16>) -> HttpTransaction {
        HttpTransaction {
            role,
            method: "GET".into(),
            target: "/users/42?x=1".into(),
            version: "1.1",
            host: Some("svc:8080".into()),
            traceparent: None,
            status,
            start_ns: 1_000,
            end_ns: 3_000,
            request_seq: 0,
            request_body_bytes: 0,
            response_body_bytes: 0,
            partial: false,
        }
    }

    /// The span of `tx` on `flow` (a fresh cache each time), with `parent` and the clock offset.
    fn span_of(
        tx: &HttpTransaction,
        flow: &FlowInfo,
        ctx: SpanCtx,
        parent: [u8; 8],
        offset_ns: u64,
    ) -> SpanRecord {
        SpanRecord::built(|out| {
            http_span_into(
                out,
                tx,
                flow,
                ctx,
                parent,
                offset_ns,
                &mut SpanCache::default(),
            )
        })
        .0
    }

    #[test]
    fn server_span_attributes() {
        let mut flow = FlowInfo::new(7, [0; 16], Addr::default(), Addr::default());
        flow.local.port = 8080;
        let ctx = SpanCtx {
            trace_id: [1; 16],
            span_id: [2; 8],
        };
        let s = span_of(&tx(Role::Server, Some(503)), &flow, ctx, [0; 8], 10);
        assert_eq!(s.kind, SpanKind::Server);
        assert_eq!(s.name, "GET /users/{id}");
        assert_eq!(s.start_unix_ns, 1_010);
        let get = |k: &str| {
            s.attrs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            get("http.route"),
            Some(AttrValue::Str("/users/{id}".into()))
        );
        assert_eq!(get("url.path"), Some(AttrValue::Str("/users/42".into())));
        assert_eq!(get("server.port"), Some(AttrValue::Int(8080)));
        assert_eq!(get("server.address"), Some(AttrValue::Str("svc".into())));
        assert_eq!(get("error.type"), Some(AttrValue::Str("503".into())));
        assert!(s.error.is_some());
        let ok = span_of(&tx(Role::Server, Some(404)), &flow, ctx, [0; 8], 0);
        assert!(ok.error.is_none(), "4xx is not a server error");
    }

    #[test]
    fn client_span_attributes() {
        let mut flow = FlowInfo::new(7, [0; 16], Addr::default(), Addr::default());
        flow.remote.port = 80;
        let ctx = SpanCtx {
            trace_id: [1; 16],
            span_id: [2; 8],
        };
        let s = span_of(&tx(Role::Client, Some(404)), &flow, ctx, [3; 8], 0);
        assert_eq!(s.kind, SpanKind::Client);
        assert_eq!(s.name, "GET");
        assert_eq!(s.parent_span_id, [3; 8]);
        assert!(s.error.is_some(), "4xx is a client error");
        assert!(s
            .attrs
            .iter()
            .any(|(k, v)| *k == "url.full"
                && *v == AttrValue::Str("http://svc:80/users/42?x=1".into())));
        assert!(s
            .attrs
            .iter()
            .any(|(k, v)| *k == "url.scheme" && *v == AttrValue::Text(Text::Static("http"))));
        let none = span_of(&tx(Role::Client, None), &flow, ctx, [0; 8], 0);
        assert!(none
            .attrs
            .iter()
            .any(|(k, v)| *k == "error.type" && *v == AttrValue::Str("incomplete".into())));
    }
}
