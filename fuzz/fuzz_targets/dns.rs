//! Fuzz the DNS parser: the input is cut into chunks whose direction, capture limit and hidden
//! length come from the input itself; both transports and every role are tried, with timeouts
//! expiring along the way. Must never panic, and the parser's memory must stay bounded.
//!
//! `cargo +nightly fuzz run dns`; seed corpus: `python3 seeds.py` (from `fuzz/`) writes the
//! fixtures in `dataplane/tests/fixtures/dns/` to `corpus/dns/`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use telegen_dataplane::protocols::dns::{DnsParser, DnsTransport, MAX_MESSAGE_PREFIX, MAX_PENDING};
use telegen_dataplane::protocols::{L7Record, Role};

fuzz_target!(|input: &[u8]| {
    for transport in [DnsTransport::Udp, DnsTransport::Tcp] {
        for role in [Role::Server, Role::Client, Role::Unknown] {
            let mut p = DnsParser::new(role, transport);
            let mut out = Vec::new();
            let mut input_chunks = telegen_fuzz::chunks(input);
            for (ctl, c) in input_chunks.by_ref() {
                p.feed(&c, &mut out);
                if ctl & 0x80 != 0 {
                    p.expire(c.seq * 10, 50, &mut out);
                }
                assert!(p.pending() <= MAX_PENDING);
                assert!(p.buffered_bytes() <= 4 * MAX_MESSAGE_PREFIX + MAX_PENDING * 2304);
                for r in &out {
                    let L7Record::Dns(d) = r else {
                        panic!("not DNS: {r:?}")
                    };
                    assert!(d.role != Role::Unknown && d.end_ns >= d.start_ns);
                    assert_eq!(d.rcode.is_none(), d.timed_out);
                }
                if out.len() > 64 {
                    out.clear();
                }
            }
            p.close(input_chunks.seq() * 10 + 100, &mut out);
        }
    }
});
