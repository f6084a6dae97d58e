use super::*;
use crate::h2enc;
use telegen_dataplane::protocols::hpack::{Decoder, Head};
use telegen_dataplane::shard::{ShardConfig, ShardCore, ShardIo, ShardMsg};
use telegen_dataplane::signal::{AttrValue, ExportMsg};

#[derive(Default)]
struct Io {
    spans: u64,
    traced: u64,
    errors: u64,
    /// Spans by protocol attribute: HTTP, gRPC, DNS, other.
    by_proto: [u64; 4],
    grpc_methods: std::collections::BTreeSet<String>,
    dns_names: std::collections::BTreeSet<String>,
}
impl ShardIo for Io {
    fn forward(&mut self, _to: usize, msg: ShardMsg) -> Result<(), ShardMsg> {
        Err(msg)
    }
    fn export(&mut self, msg: ExportMsg) -> Result<(), ExportMsg> {
        if let ExportMsg::Span(s) = msg {
            self.spans += 1;
            self.traced += u64::from(s.parent_span_id != [0; 8]);
            self.errors += u64::from(s.error.is_some());
            let get = |k: &str| s.attrs.iter().find(|(n, _)| *n == k).map(|(_, v)| v);
            let text = |k: &str| {
                get(k).and_then(|v| match v {
                    AttrValue::Str(x) => Some(x.to_string()),
                    AttrValue::Text(t) => Some(t.as_str().to_string()),
                    _ => None,
                })
            };
            let i = if text("rpc.system").as_deref() == Some("grpc") {
                if let (Some(svc), Some(m)) = (text("rpc.service"), text("rpc.method")) {
                    self.grpc_methods.insert(format!("/{svc}/{m}"));
                }
                1
            } else if let Some(n) = text("dns.question.name") {
                self.dns_names.insert(n);
                2
            } else if get("http.request.method").is_some() {
                0
            } else {
                3
            };
            self.by_proto[i] += 1;
        }
        Ok(())
    }
}

#[test]
fn every_transaction_becomes_one_span_through_a_real_shard() {
    let mut g = Generator::new(WorkloadConfig {
        conns: 16,
        cpus: 1,
        migrate_pct: 0,
        traceparent_pct: 25,
        seed: 7,
        mix: Mix::default(),
    });
    let mut shard = ShardCore::new(ShardConfig::new(0, 1), 0);
    let mut io = Io::default();
    for i in 0..5000u64 {
        g.next_transaction(1_000_000 + i * 1000, &mut |cpu, rec| {
            assert_eq!(cpu, 0);
            shard.on_record(rec, 0, &mut io);
        });
    }
    shard.stop(&mut io);
    let st = shard.stats();
    assert_eq!(g.counts.transactions, 5000);
    assert_eq!(io.spans, 5000, "{st:?}");
    assert!(g.counts.closes > 0);
    assert_eq!(
        st.parse_errors + st.events_malformed + st.reorder_gaps,
        0,
        "{st:?}"
    );
    // The mix is real: some traced (parent from traceparent), some errors (500).
    assert!(io.traced > 500 && io.traced < 2000, "{}", io.traced);
    assert!(io.errors > 0);
    assert_eq!(io.traced, g.counts.traced);
}

/// Feed `n` rounds of the mix through one real shard (finishing open calls) and return
/// the generator, the sink and the shard's stats.
fn through_a_shard(mix: Mix, n: u64) -> (Generator, Io, telegen_dataplane::signal::ShardStats) {
    let mut g = Generator::new(WorkloadConfig {
        conns: 24,
        cpus: 1,
        migrate_pct: 0,
        traceparent_pct: 25,
        seed: 11,
        mix,
    });
    let mut shard = ShardCore::new(ShardConfig::new(0, 1), 0);
    let mut io = Io::default();
    let mut t = 1_000_000u64;
    for _ in 0..n {
        t += 1000;
        g.next_transaction(t, &mut |_, rec| shard.on_record(rec, 0, &mut io));
    }
    g.finish(t + 1000, &mut |_, rec| shard.on_record(rec, 0, &mut io));
    shard.stop(&mut io);
    let st = shard.stats();
    (g, io, st)
}

#[test]
fn every_grpc_call_becomes_one_rpc_span() {
    let (g, io, st) = through_a_shard(Mix::only(Proto::Grpc), 6000);
    assert_eq!(
        st.parse_errors + st.events_malformed + st.reorder_gaps + st.unknown_protocol,
        0,
        "{st:?}"
    );
    let calls = g.counts.per_proto[Proto::Grpc.idx()];
    assert_eq!(calls, g.counts.transactions);
    assert!(calls >= 12_000 - 2, "{calls}");
    // Several connections closed and reopened (preface again) along the way.
    assert!(g.counts.closes > 0);
    assert_eq!(io.by_proto, [0, calls, 0, 0], "{st:?}");
    assert_eq!(io.spans, calls);
    // Errors (NOT_FOUND, UNAVAILABLE in the trailers) and traceparents parsed.
    assert!(io.errors > 0 && io.errors < calls / 5, "{}", io.errors);
    assert_eq!(io.traced, g.counts.traced);
    let methods: Vec<&str> = GRPC_METHODS.iter().map(|m| m.0).collect();
    assert_eq!(
        io.grpc_methods
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        {
            let mut m = methods.clone();
            m.sort_unstable();
            m
        }
    );
}

#[test]
fn every_dns_query_becomes_one_dns_span() {
    let (g, io, st) = through_a_shard(Mix::only(Proto::Dns), 5000);
    assert_eq!(
        st.parse_errors + st.events_malformed + st.reorder_gaps,
        0,
        "{st:?}"
    );
    let q = g.counts.per_proto[Proto::Dns.idx()];
    assert!(q > 5000, "parallel A + AAAA lookups: {q}");
    assert_eq!(io.by_proto, [0, 0, q, 0]);
    assert!(io.errors > 0, "NXDOMAIN answers");
    assert_eq!(io.dns_names.len(), DNS_NAMES.len());
}

#[test]
fn a_mix_follows_its_weights_and_every_protocol_is_traced() {
    let mix: Mix = "http1=70,grpc=20,dns=10".parse().unwrap();
    let (g, io, st) = through_a_shard(mix, 10_000);
    assert_eq!(
        st.parse_errors + st.events_malformed + st.unknown_protocol,
        0,
        "{st:?}"
    );
    let c = g.counts.per_proto;
    let total = c.iter().sum::<u64>();
    assert_eq!(total, g.counts.transactions);
    for (k, w) in [70u64, 20, 10].iter().enumerate() {
        let share = c[k] * 100 / total;
        assert!(share.abs_diff(*w) <= 1, "{c:?}");
    }
    assert_eq!(io.by_proto, [c[0], c[1], c[2], 0]);
}

/// (type, flags, stream, payload) of each frame in `p`.
fn frames(mut p: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
    let mut out = Vec::new();
    while p.len() >= 9 {
        let len = u32::from_be_bytes([0, p[0], p[1], p[2]]) as usize;
        let stream = u32::from_be_bytes([p[5], p[6], p[7], p[8]]);
        out.push((p[3], p[4], stream, p[9..9 + len].to_vec()));
        p = &p[9 + len..];
    }
    assert!(p.is_empty(), "trailing bytes");
    out
}

#[test]
fn grpc_connections_start_with_the_preface_and_reuse_the_hpack_table() {
    let mut g = Generator::new(WorkloadConfig {
        conns: 1,
        cpus: 1,
        migrate_pct: 0,
        traceparent_pct: 0,
        seed: 3,
        mix: Mix::only(Proto::Grpc),
    });
    let mut recs: Vec<(Event, Vec<u8>)> = Vec::new();
    for i in 0..12 {
        g.next_transaction(1_000_000 + i * 1000, &mut |_, rec| {
            let (ev, payload) = Event::decode(rec).unwrap_or_default_event();
            recs.push((ev, payload.to_vec()));
        });
    }
    // Twelve rounds: client record then server record each, seq in order.
    assert_eq!(recs.len(), 24);
    for (i, (ev, _)) in recs.iter().enumerate() {
        assert_eq!(ev.seq, i as u64);
        let want = if i % 2 == 0 {
            abi::DIR_INGRESS
        } else {
            abi::DIR_EGRESS
        };
        assert_eq!(ev.dir, want);
    }
    let first = &recs[0].1;
    assert!(first.starts_with(telegen_dataplane::protocols::http2::PREFACE));
    let f0 = frames(&first[24..]);
    assert_eq!(f0[0].0, h2enc::SETTINGS);
    // First round: literals with incremental indexing (0x40 prefix) in the first block.
    let h0: Vec<_> = f0.iter().filter(|f| f.0 == h2enc::HEADERS).collect();
    assert_eq!(h0.len(), 2);
    assert!(h0[0].3.iter().any(|&b| b & 0xc0 == 0x40));
    // Later rounds: every field but the last is a one-byte table index, except a :path the
    // connection has not used yet (a literal with incremental indexing, name = static index 4);
    // the last is a grpc-timeout of a new value, inserted (a literal with incremental indexing
    // named after an earlier grpc-timeout entry). Decoded in order, every block reads as sent.
    let mut all_indexed = 0;
    let mut dec = Decoder::new_complete();
    for h in frames(&first[24..])
        .iter()
        .filter(|f| f.0 == h2enc::HEADERS)
    {
        dec.decode(&h.3, |_, _| {}).unwrap();
    }
    for (_, p) in recs.iter().step_by(2).skip(1) {
        for h in frames(p).iter().filter(|f| f.0 == h2enc::HEADERS) {
            let b = &h.3;
            assert_eq!(&b[..2], &[0x83, 0x86], "{b:x?}");
            let mut head = Head::default();
            dec.head(b, &mut head);
            if head.len == 7 {
                all_indexed += 1;
                assert_eq!(head.bytes(7), 7, "{b:x?}");
            } else {
                assert_eq!((head.len, b[2]), (2, 0x44), "{b:x?}");
            }
            let at = head.bytes(head.len);
            assert!(b[at] & 0xc0 == 0x40 && b[at] & 0x3f != 0, "{b:x?}");
            let inserted = dec.inserted();
            let mut fields = Vec::new();
            dec.decode(b, |n, v| fields.push((n.to_vec(), v.to_vec())))
                .unwrap();
            let (n, v) = fields.last().unwrap();
            assert_eq!(n, b"grpc-timeout");
            assert!(
                v.len() == 8 && v.starts_with(b"499") && v.ends_with(b"u"),
                "{v:?}"
            );
            assert!(dec.inserted() > inserted);
            assert_eq!(fields.len(), 8);
            assert_eq!(
                fields[3],
                (b":authority".to_vec(), b"users.internal:50051".to_vec())
            );
            assert!(GRPC_METHODS.iter().any(|m| fields[2].1 == m.0.as_bytes()));
            assert_eq!(fields[6], (b"te".to_vec(), b"trailers".to_vec()));
        }
    }
    assert!(all_indexed > 0);
    let h2: Vec<_> = frames(&recs[4].1)
        .into_iter()
        .filter(|f| f.0 == h2enc::HEADERS)
        .collect();
    // Round 3 opens streams 9 and 11 and answers 5 and 7 (opened in round 2).
    assert_eq!((h2[0].2, h2[1].2), (9, 11));
    let r2 = frames(&recs[5].1);
    let ends: Vec<u32> = r2
        .iter()
        .filter(|f| f.0 == h2enc::HEADERS && f.1 & h2enc::END_STREAM != 0)
        .map(|f| f.2)
        .collect();
    assert_eq!(ends, [5, 7], "round 3 answers the calls of round 2");
    assert_eq!(g.counts.transactions, 22);
}

#[test]
fn mix_parses_and_rejects() {
    let m: Mix = "http1=70, grpc=20,dns=10".parse().unwrap();
    assert_eq!(m.0, [70, 20, 10]);
    assert_eq!(m.label(), "http1=70,grpc=20,dns=10");
    assert_eq!("grpc".parse::<Mix>().unwrap().single(), Some(Proto::Grpc));
    assert!("http3=1".parse::<Mix>().is_err());
    assert!("http1=0".parse::<Mix>().is_err());
    assert!("dns=x".parse::<Mix>().is_err());
}

#[test]
fn migration_spreads_a_connection_over_cpus() {
    let mut g = Generator::new(WorkloadConfig {
        conns: 4,
        cpus: 2,
        migrate_pct: 50,
        traceparent_pct: 0,
        seed: 1,
        mix: Mix::default(),
    });
    let mut seen: std::collections::HashMap<u64, [bool; 2]> = Default::default();
    for i in 0..200 {
        g.next_transaction(i, &mut |cpu, rec| {
            let (ev, _) = Event::decode(rec).unwrap_or_default_event();
            seen.entry(ev.conn_id).or_default()[cpu] = true;
        });
    }
    assert!(g.counts.migrated > 0);
    assert!(seen.values().any(|s| s[0] && s[1]));
}

trait OrDefault<'a> {
    fn unwrap_or_default_event(self) -> (Event, &'a [u8]);
}
impl<'a> OrDefault<'a> for Result<(Event, &'a [u8]), abi::DecodeError> {
    fn unwrap_or_default_event(self) -> (Event, &'a [u8]) {
        match self {
            Ok(v) => v,
            Err(e) => panic!("generated record does not decode: {e}"),
        }
    }
}
