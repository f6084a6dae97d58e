//! DNS traced from the kernel: `dig` (UDP and TCP) and Python's `dnspython` resolver against
//! dnsmasq on a loopback port, an NXDOMAIN, and a server that never answers. One client span per
//! query with the question, type, response code and answer count, and `dns.lookup.duration`
//! counting the same queries, decoded from the OTLP the agent exported.

use std::time::Duration;

use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use telegen_tests::agent::{otlp_agent, require_bpf, serial};
use telegen_tests::peers::{dig, Dnsmasq, PyResolver, SilentDns};
use telegen_tests::receiver::{attr_int, attr_str, metric_count, metric_count_where, Receiver};

fn find<'a>(spans: &'a [&Span], name: &str, qtype: &str, transport: &str) -> Vec<&'a Span> {
    spans
        .iter()
        .copied()
        .filter(|s| {
            attr_str(&s.attributes, "dns.question.name") == Some(name)
                && attr_str(&s.attributes, "dns.question.type") == Some(qtype)
                && attr_str(&s.attributes, "network.transport") == Some(transport)
        })
        .collect()
}

#[test]
fn dig_and_python_lookups_become_dns_spans_and_metrics() {
    if !require_bpf() {
        return;
    }
    let _g = serial();
    let recv = Receiver::start();
    let dns = Dnsmasq::start();
    let silent = SilentDns::start();
    let py = PyResolver::start(dns.port, &["svc.test", "both.test", "nx.test"]);
    let agent = otlp_agent(
        &recv.endpoint(),
        &[py.proc.pid()],
        &[
            "--dns-ports".into(),
            format!("{},{}", dns.port, silent.port),
            "--exe".into(),
            "dig".into(),
        ],
    );

    let a = dig(dns.port, "svc.test", &["A", "+short"], 2);
    assert_eq!(a.trim(), "10.1.2.3");
    let aaaa = dig(dns.port, "both.test", &["AAAA", "+short"], 2);
    assert_eq!(aaaa.trim(), "fd00::9");
    let tcp = dig(dns.port, "svc.test", &["A", "+tcp", "+short"], 2);
    assert_eq!(tcp.trim(), "10.1.2.3");
    let nx = dig(dns.port, "nope.test", &["A"], 2);
    assert!(nx.contains("NXDOMAIN"), "{nx}");
    let dead = dig(silent.port, "svc.test", &["A"], 1);
    assert!(
        dead.contains("timed out") || dead.contains("no servers"),
        "{dead}"
    );
    let lines = py.run();
    assert_eq!(
        lines,
        [
            "svc.test 10.1.2.3",
            "both.test 10.0.0.9",
            "nx.test NXDOMAIN"
        ]
    );

    assert!(
        recv.wait_for_spans(8, Duration::from_secs(20)),
        "spans: {}",
        recv.spans().len()
    );
    std::thread::sleep(Duration::from_millis(1500));
    let log = agent.stop();

    let all = recv.spans();
    let spans: Vec<&Span> = all
        .iter()
        .map(|(_, s)| s)
        .filter(|s| attr_str(&s.attributes, "dns.question.type").is_some())
        .collect();
    assert_eq!(spans.len(), 8, "5 dig + 3 python queries (log:\n{log})");
    assert!(spans.iter().all(|s| s.kind == SpanKind::Client as i32));

    let udp_a = find(&spans, "svc.test", "A", "udp");
    assert_eq!(udp_a.len(), 3, "dig A, python A, dig to the silent server");
    let answered: Vec<_> = udp_a
        .iter()
        .filter(|s| attr_int(&s.attributes, "server.port") == Some(i64::from(dns.port)))
        .collect();
    assert_eq!(answered.len(), 2);
    for s in &answered {
        assert_eq!(
            attr_str(&s.attributes, "dns.response_code"),
            Some("NOERROR")
        );
        assert_eq!(attr_int(&s.attributes, "dns.answer.count"), Some(1));
        assert!(attr_str(&s.attributes, "error.type").is_none());
        assert_eq!(s.name, "DNS A");
    }
    let timed_out: Vec<_> = udp_a
        .iter()
        .filter(|s| attr_int(&s.attributes, "server.port") == Some(i64::from(silent.port)))
        .collect();
    assert_eq!(timed_out.len(), 1);
    assert_eq!(
        attr_str(&timed_out[0].attributes, "error.type"),
        Some("timeout")
    );
    assert_eq!(timed_out[0].status.as_ref().map(|s| s.code), Some(2));

    let aaaa = find(&spans, "both.test", "AAAA", "udp");
    assert_eq!(aaaa.len(), 1);
    assert_eq!(attr_int(&aaaa[0].attributes, "dns.answer.count"), Some(1));
    assert_eq!(
        find(&spans, "both.test", "A", "udp").len(),
        1,
        "python's A query"
    );
    let tcp = find(&spans, "svc.test", "A", "tcp");
    assert_eq!(tcp.len(), 1);
    assert_eq!(
        attr_str(&tcp[0].attributes, "dns.response_code"),
        Some("NOERROR")
    );
    let nxd: Vec<_> = spans
        .iter()
        .filter(|s| attr_str(&s.attributes, "dns.response_code") == Some("NXDOMAIN"))
        .collect();
    assert_eq!(nxd.len(), 2, "dig nope.test and python nx.test");
    for s in &nxd {
        assert_eq!(attr_str(&s.attributes, "error.type"), Some("NXDOMAIN"));
        assert_eq!(s.status.as_ref().map(|s| s.code), Some(2));
    }

    assert_eq!(metric_count(&recv, "dns.lookup.duration"), 8);
    let errors = metric_count_where(&recv, "dns.lookup.duration", |a| {
        attr_str(a, "error.type").is_some()
    });
    assert_eq!(errors, 3, "two NXDOMAIN and one timeout");
}
