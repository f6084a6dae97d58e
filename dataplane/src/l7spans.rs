//! Spans of the protocols beyond HTTP/1.1, built like [`crate::spans::http_span`]: DNS lookups
//! (and, with HTTP/2, gRPC calls). Each builder also names the duration histogram the span
//! counts in.

use crate::protocols::dns::{rcode_name, type_name, DnsExchange, DnsTransport};
use crate::protocols::Role;
use crate::red::{MetricDef, DNS_LOOKUP};
use crate::signal::{AttrValue, Attrs, SpanKind, SpanRecord, Text};
use crate::spans::{FlowInfo, SpanCtx};

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
/// (`dns.lookup.duration` for the client side; a traced DNS server's spans have none).
pub fn dns_span(
    x: &DnsExchange,
    flow: &FlowInfo,
    ctx: SpanCtx,
    parent: [u8; 8],
    clock_offset_ns: u64,
) -> (SpanRecord, Option<&'static MetricDef>) {
    let qtype = type_name(x.question_type);
    let mut attrs: Attrs = Vec::with_capacity(10);
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
        attrs.push((
            "client.address",
            AttrValue::Text(Text::Shared(flow.remote_ip.clone())),
        ));
        attrs.push(("client.port", AttrValue::Int(i64::from(flow.remote.port))));
        attrs.push(("server.port", AttrValue::Int(i64::from(flow.local.port))));
        SpanKind::Server
    } else {
        attrs.push((
            "server.address",
            AttrValue::Text(Text::Shared(flow.remote_ip.clone())),
        ));
        attrs.push(("server.port", AttrValue::Int(i64::from(flow.remote.port))));
        SpanKind::Client
    };
    let err = dns_error(x);
    if let Some(e) = err {
        attrs.push(("error.type", AttrValue::Text(Text::Static(e))));
    }
    let span = SpanRecord {
        trace_id: ctx.trace_id,
        span_id: ctx.span_id,
        parent_span_id: parent,
        name: Text::Static(dns_span_name(qtype)),
        kind,
        start_unix_ns: x.start_ns.wrapping_add(clock_offset_ns),
        end_unix_ns: x.end_ns.max(x.start_ns).wrapping_add(clock_offset_ns),
        error: err.map(|e| match e {
            "timeout" => "no answer".to_string(),
            rc => format!("DNS {rc}"),
        }),
        attrs,
        pid: flow.pid,
        comm: flow.comm,
    };
    let metric = (kind == SpanKind::Client).then_some(&DNS_LOOKUP);
    (span, metric)
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
        let (ok, m) = dns_span(&x(Some(0), false), &flow, ctx, [0; 8], 0);
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
        let (nx, _) = dns_span(&x(Some(3), false), &flow, ctx, [0; 8], 0);
        assert_eq!(
            get(&nx, "error.type").and_then(|v| v.as_str()),
            Some("NXDOMAIN")
        );
        assert!(nx.error.is_some());
        let (to, _) = dns_span(&x(None, true), &flow, ctx, [0; 8], 0);
        assert_eq!(
            get(&to, "error.type").and_then(|v| v.as_str()),
            Some("timeout")
        );
        assert!(get(&to, "dns.response_code").is_none());
    }
}
