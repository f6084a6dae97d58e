//! Spans of the protocols beyond HTTP/1.1, built like [`crate::spans::http_span_into`]: HTTP/2
//! streams (plain ones as HTTP spans, gRPC calls as RPC spans) and DNS lookups. Each builder also
//! names the duration histogram the span counts in.

use std::borrow::Cow;

use crate::protocols::dns::{rcode_name, type_name, DnsExchange, DnsTransport};
use crate::protocols::grpc;
use crate::protocols::http1::{self, HttpTransaction};
use crate::protocols::http2::H2Exchange;
use crate::protocols::Role;
use crate::red::{http_def, MetricDef, DNS_LOOKUP, RPC_CLIENT, RPC_SERVER};
use crate::signal::{AttrValue, SpanKind, SpanRecord, Text};
use crate::spans::{http_span_into, push_endpoint_attrs, FlowInfo, Head, SpanCache, SpanCtx};

/// The span of one HTTP/2 stream and the histogram it counts in: a gRPC call when its
/// content type says so (or, none seen, its answer's `grpc-status`: [`grpc::is_grpc_call`]),
/// an HTTP request otherwise. Written into `out` like [`http_span_into`].
pub fn h2_span_into(
    out: &mut SpanRecord,
    x: H2Exchange,
    flow: &FlowInfo,
    ctx: SpanCtx,
    parent: [u8; 8],
    clock_offset_ns: u64,
    cache: &mut SpanCache,
) -> Option<&'static MetricDef> {
    if grpc::is_grpc_call(&x) {
        return grpc_span_into(out, &x, flow, ctx, parent, clock_offset_ns, cache);
    }
    // The same fields as an HTTP/1 transaction (the path and authority copied into the owned
    // strings it holds, the rest moved); a method or path HPACK could not decode stays unknown
    // (`_OTHER`, `/`) rather than guessed.
    let tx = HttpTransaction {
        role: x.role,
        method: x.method.map_or(Cow::Borrowed("_OTHER"), |m| {
            http1::method_text(m.as_bytes())
        }),
        target: x.path.as_deref().unwrap_or("/").to_string(),
        version: "2",
        host: x.authority.as_deref().map(str::to_string),
        traceparent: x.traceparent,
        status: x.status,
        start_ns: x.start_ns,
        end_ns: x.end_ns,
        request_seq: x.request_seq,
        request_body_bytes: x.request_body_bytes,
        response_body_bytes: x.response_body_bytes,
        partial: x.partial || x.headers_incomplete,
    };
    http_span_into(out, &tx, flow, ctx, parent, clock_offset_ns, cache);
    Some(http_def(out.kind))
}

/// A gRPC call (OpenTelemetry RPC conventions): name `package.Service/Method`, `rpc.*`
/// attributes, status from the trailers, `rpc.{server,client}.duration`.
fn grpc_span_into(
    out: &mut SpanRecord,
    x: &H2Exchange,
    flow: &FlowInfo,
    ctx: SpanCtx,
    parent: [u8; 8],
    clock_offset_ns: u64,
    cache: &mut SpanCache,
) -> Option<&'static MetricDef> {
    let names = x.path.as_deref().and_then(|p| cache.rpc(p));
    let attrs = &mut out.attrs;
    attrs.clear();
    attrs.reserve(13);
    attrs.push(("rpc.system", AttrValue::Text(Text::Static("grpc"))));
    // The cache's texts are a copy already: moved into the span, not copied again.
    let name = match names {
        Some(n) => {
            attrs.push(("rpc.service", AttrValue::Text(n.service)));
            attrs.push(("rpc.method", AttrValue::Text(n.method)));
            n.name
        }
        None => Text::Static("grpc"),
    };
    let status = grpc::call_status(x);
    if let Some(code) = status {
        attrs.push(("rpc.grpc.status_code", AttrValue::Int(i64::from(code))));
    }
    attrs.push((
        "network.protocol.name",
        AttrValue::Text(Text::Static("http")),
    ));
    attrs.push((
        "network.protocol.version",
        AttrValue::Text(Text::Static("2")),
    ));
    push_endpoint_attrs(attrs, x.role, flow, x.authority.as_deref(), cache);
    let kind = if x.role == Role::Client {
        SpanKind::Client
    } else {
        SpanKind::Server
    };
    let error = match status {
        Some(code) if grpc::is_error(code, x.role) => {
            let name = grpc::status_name(code).unwrap_or("UNKNOWN");
            attrs.push(("error.type", AttrValue::Text(Text::Static(name))));
            Some(match &x.grpc_message {
                Some(m) if !m.is_empty() => format!("{name}: {}", grpc::decode_message(m)),
                _ => name.to_string(),
            })
        }
        Some(_) => None,
        None => {
            attrs.push(("error.type", AttrValue::Text(Text::Static("incomplete"))));
            Some("no gRPC status".to_string())
        }
    };
    let head = Head {
        name,
        kind,
        start_ns: x.start_ns,
        end_ns: x.end_ns,
        error,
    };
    head.write(out, flow, ctx, parent, clock_offset_ns);
    Some(if kind == SpanKind::Server {
        &RPC_SERVER
    } else {
        &RPC_CLIENT
    })
}

/// Span name of a lookup: `DNS <type>` for the common types, `DNS` otherwise (names stay low
/// cardinality; the queried name is an attribute).
fn dns_span_name(qtype: &'static str) -> &'static str {
    match qtype {
        "A" => "DNS A",
        "AAAA" => "DNS AAAA",
        "CNAME" => "DNS CNAME",
        "MX" => "DNS MX",
        "NS" => "DNS NS",
        "PTR" => "DNS PTR",
        "SOA" => "DNS SOA",
        "SRV" => "DNS SRV",
        "TXT" => "DNS TXT",
        "HTTPS" => "DNS HTTPS",
        "SVCB" => "DNS SVCB",
        _ => "DNS",
    }
}

/// `error.type` of a lookup: `timeout` when no answer came, the response code when it is not
/// NOERROR (NXDOMAIN, SERVFAIL, REFUSED...).
pub fn dns_error(x: &DnsExchange) -> Option<&'static str> {
    if x.timed_out || x.rcode.is_none() {
        return Some("timeout");
    }
    match x.rcode {
        Some(0) | None => None,
        Some(r) => Some(rcode_name(r)),
    }
}

/// The span of one DNS query and its answer (or its timeout), and the histogram it counts in
/// (`dns.lookup.duration` for the client side; a traced DNS server's spans have none). Written
/// into `out` like [`http_span_into`].
pub fn dns_span_into(
    out: &mut SpanRecord,
    x: &DnsExchange,
    flow: &FlowInfo,
    ctx: SpanCtx,
    parent: [u8; 8],
    clock_offset_ns: u64,
) -> Option<&'static MetricDef> {
    let qtype = type_name(x.question_type);
    let attrs = &mut out.attrs;
    attrs.clear();
    attrs.reserve(10);
    if let Some(n) = &x.question_name {
        attrs.push(("dns.question.name", AttrValue::Str(n.clone())));
    }
    attrs.push(("dns.question.type", AttrValue::Text(Text::Static(qtype))));
    if let Some(r) = x.rcode {
        attrs.push((
            "dns.response_code",
            AttrValue::Text(Text::Static(rcode_name(r))),
        ));
    }
    attrs.push((
        "dns.answer.count",
        AttrValue::Int(i64::from(x.answer_count)),
    ));
    attrs.push((
        "network.transport",
        AttrValue::Text(Text::Static(match x.transport {
            DnsTransport::Udp => "udp",
            DnsTransport::Tcp => "tcp",
        })),
    ));
    let kind = if x.role == Role::Server {
        attrs.push(("client.address", AttrValue::Text(flow.remote_ip.clone())));
        attrs.push(("client.port", AttrValue::Int(i64::from(flow.remote.port))));
        attrs.push(("server.port", AttrValue::Int(i64::from(flow.local.port))));
        SpanKind::Server
    } else {
        attrs.push(("server.address", AttrValue::Text(flow.remote_ip.clone())));
        attrs.push(("server.port", AttrValue::Int(i64::from(flow.remote.port))));
        SpanKind::Client
    };
    let err = dns_error(x);
    if let Some(e) = err {
        attrs.push(("error.type", AttrValue::Text(Text::Static(e))));
    }
    let head = Head {
        name: Text::Static(dns_span_name(qtype)),
        kind,
        start_ns: x.start_ns,
        end_ns: x.end_ns,
        error: err.map(|e| match e {
            "timeout" => "no answer".to_string(),
            rc => format!("DNS {rc}"),
        }),
    };
    head.write(out, flow, ctx, parent, clock_offset_ns);
    (kind == SpanKind::Client).then_some(&DNS_LOOKUP)
}

#[cfg(test)]
mod tests {
    use super::*;
    use telegen_bpf::abi::Addr;

    fn x(rcode: Option<u8>, timed_out: bool) -> DnsExchange {
        DnsExchange {
            role: Role::Client,
            transport: DnsTransport::Udp,
            id: 7,
            question_name: Some("svc.test".into()),
            question_type: 1,
            rcode,
            answer_count: u16::from(rcode == Some(0)),
            timed_out,
            start_ns: 100,
            end_ns: 300,
            request_seq: 0,
        }
    }

    fn get<'a>(s: &'a SpanRecord, k: &str) -> Option<&'a AttrValue> {
        s.attrs.iter().find(|(n, _)| *n == k).map(|(_, v)| v)
    }

    #[test]
    fn answers_nxdomain_and_timeouts() {
        let remote = Addr {
            port: 5353,
            ..Default::default()
        };
        let flow = FlowInfo::new(9, [0; 16], Addr::default(), remote);
        let ctx = SpanCtx {
            trace_id: [1; 16],
            span_id: [2; 8],
        };
        let (ok, m) =
            SpanRecord::built(|out| dns_span_into(out, &x(Some(0), false), &flow, ctx, [0; 8], 0));
        assert_eq!(ok.name, "DNS A");
        assert_eq!(ok.kind, SpanKind::Client);
        assert!(ok.error.is_none());
        assert_eq!(m.map(|m| m.name), Some("dns.lookup.duration"));
        assert_eq!(
            get(&ok, "dns.question.name").and_then(|v| v.as_str()),
            Some("svc.test")
        );
        assert_eq!(get(&ok, "dns.answer.count"), Some(&AttrValue::Int(1)));
        assert_eq!(get(&ok, "server.port"), Some(&AttrValue::Int(5353)));
        assert!(get(&ok, "error.type").is_none());
        let (nx, _) =
            SpanRecord::built(|out| dns_span_into(out, &x(Some(3), false), &flow, ctx, [0; 8], 0));
        assert_eq!(
            get(&nx, "error.type").and_then(|v| v.as_str()),
            Some("NXDOMAIN")
        );
        assert!(nx.error.is_some());
        let (to, _) =
            SpanRecord::built(|out| dns_span_into(out, &x(None, true), &flow, ctx, [0; 8], 0));
        assert_eq!(
            get(&to, "error.type").and_then(|v| v.as_str()),
            Some("timeout")
        );
        assert!(get(&to, "dns.response_code").is_none());
    }

    /// The span of `x` on a connection with default addresses, as a root span.
    fn h2(x: H2Exchange) -> (SpanRecord, Option<&'static MetricDef>) {
        let flow = FlowInfo::new(9, [0; 16], Addr::default(), Addr::default());
        let ctx = SpanCtx {
            trace_id: [1; 16],
            span_id: [2; 8],
        };
        SpanRecord::built(|out| {
            h2_span_into(out, x, &flow, ctx, [0; 8], 0, &mut SpanCache::default())
        })
    }

    /// A stream the parser knows only by its reset (its request HEADERS hidden, the server
    /// refusing it): a span in error that counts in a duration histogram like any call, with
    /// nothing claimed of the request.
    #[test]
    fn an_h2_call_known_only_by_its_reset_is_an_error_with_a_histogram() {
        let x = H2Exchange {
            role: Role::Server,
            stream_id: 3,
            start_ns: 100,
            end_ns: 400,
            headers_incomplete: true,
            partial: true,
            ..H2Exchange::default()
        };
        let (span, m) = h2(x);
        assert_eq!(m.map(|m| m.name), Some("http.server.request.duration"));
        assert_eq!(span.kind, SpanKind::Server);
        assert_eq!(
            get(&span, "error.type").and_then(|v| v.as_str()),
            Some("incomplete")
        );
        assert!(get(&span, "http.response.status_code").is_none());
        assert_eq!(span.end_unix_ns - span.start_unix_ns, 300);
    }

    /// Calls whose request HEADERS were hidden (no content type of the request) and whose
    /// answer's content type was not seen either (hidden, or by an index HPACK could not
    /// resolve): the answer's `grpc-status` proves a gRPC call, which counts in `rpc.*` with
    /// that status. A content type that says otherwise is believed; a call known only by a
    /// reset stays HTTP (above).
    #[test]
    fn an_h2_call_whose_answer_has_a_grpc_status_is_a_grpc_call() {
        let trailers_only = H2Exchange {
            role: Role::Server,
            stream_id: 3,
            status: Some(200),
            grpc_status: Some(13),
            grpc_message: Some("no%20such%20user".into()),
            start_ns: 100,
            end_ns: 400,
            headers_incomplete: true,
            partial: true,
            ..H2Exchange::default()
        };
        let trailers = H2Exchange {
            role: Role::Client,
            status: None,
            grpc_status: Some(0),
            grpc_message: None,
            ..trailers_only.clone()
        };
        for (x, metric, code) in [
            (trailers_only.clone(), "rpc.server.duration", 13),
            (trailers, "rpc.client.duration", 0),
        ] {
            let (span, m) = h2(x);
            assert_eq!(m.map(|m| m.name), Some(metric));
            assert_eq!(span.name, "grpc");
            assert_eq!(
                get(&span, "rpc.system").and_then(|v| v.as_str()),
                Some("grpc")
            );
            assert_eq!(
                get(&span, "rpc.grpc.status_code"),
                Some(&AttrValue::Int(code))
            );
            assert!(get(&span, "http.request.method").is_none());
        }
        let (span, _) = h2(trailers_only.clone());
        assert_eq!(span.error.as_deref(), Some("INTERNAL: no such user"));
        let json = H2Exchange {
            content_type: Some("application/json".into()),
            ..trailers_only
        };
        let (_, m) = h2(json);
        assert_eq!(m.map(|m| m.name), Some("http.server.request.duration"));
    }
}
