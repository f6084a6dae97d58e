//! Fuzz the DNS parser: the input is cut into chunks whose direction, capture limit and hidden
//! length come from the input itself; both transports and every role are tried, with timeouts
//! expiring along the way. Must never panic, and the parser's memory must stay bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use telegen_dataplane::protocols::dns::{DnsParser, DnsTransport, MAX_MESSAGE_PREFIX, MAX_PENDING};
use telegen_dataplane::protocols::{Chunk, Direction, L7Record, Role};

fuzz_target!(|input: &[u8]| {
    for transport in [DnsTransport::Udp, DnsTransport::Tcp] {
        for role in [Role::Server, Role::Client, Role::Unknown] {
            let mut p = DnsParser::new(role, transport);
            let mut out = Vec::new();
            let mut rest = input;
            let mut seq = 0u64;
            // Each chunk: 1 control byte (direction, hidden-bytes class, expiry), 1 length byte, data.
            while let [ctl, len, tail @ ..] = rest {
                let n = (*len as usize).min(tail.len());
                let (data, next) = tail.split_at(n);
                rest = next;
                let dir = if ctl & 1 == 0 { Direction::Ingress } else { Direction::Egress };
                let hidden: u32 = match (ctl >> 1) & 3 {
                    0 => 0,
                    1 => u32::from(ctl >> 3),
                    2 => 1 << (ctl >> 3),
                    _ => u32::MAX - n as u32,
                };
                seq += 1;
                let c = Chunk {
                    dir,
                    data,
                    total_len: (n as u32).saturating_add(hidden),
                    start_ns: seq * 10,
                    end_ns: seq * 10 + 5,
                    seq,
                };
                p.feed(&c, &mut out);
                if ctl & 0x80 != 0 {
                    p.expire(seq * 10, 50, &mut out);
                }
                assert!(p.pending() <= MAX_PENDING);
                assert!(p.buffered_bytes() <= 4 * MAX_MESSAGE_PREFIX + MAX_PENDING * 2304);
                for r in &out {
                    let L7Record::Dns(d) = r else { panic!("not DNS: {r:?}") };
                    assert!(d.role != Role::Unknown && d.end_ns >= d.start_ns);
                    assert_eq!(d.rcode.is_none(), d.timed_out);
                }
                if out.len() > 64 {
                    out.clear();
                }
            }
            p.close(seq * 10 + 100, &mut out);
        }
    }
});
