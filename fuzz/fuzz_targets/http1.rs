//! Fuzz the HTTP/1.x parser: the input is cut into chunks whose direction, capture limit and
//! hidden length come from the input itself; every role is tried. Must never panic, and the
//! parser's memory must stay bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use telegen_dataplane::protocols::http1::{Http1Parser, MAX_HEAD, MAX_PENDING};
use telegen_dataplane::protocols::{Chunk, Direction, Role};

fuzz_target!(|input: &[u8]| {
    for role in [Role::Server, Role::Client, Role::Unknown] {
        let mut p = Http1Parser::new(role);
        let mut out = Vec::new();
        let mut rest = input;
        let mut seq = 0u64;
        // Each chunk: 1 control byte (direction, hidden-bytes class), 1 length byte, then data.
        while let [ctl, len, tail @ ..] = rest {
            let n = (*len as usize).min(tail.len());
            let (data, next) = tail.split_at(n);
            rest = next;
            let dir = if ctl & 1 == 0 {
                Direction::Ingress
            } else {
                Direction::Egress
            };
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
            assert!(p.pending() <= MAX_PENDING);
            assert!(p.buffered_bytes() <= 2 * MAX_HEAD + MAX_PENDING * 8192 + 8192);
            if out.len() > 64 {
                out.clear();
            }
        }
        p.close(seq * 10 + 100, &mut out);
    }
});
