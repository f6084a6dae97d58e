//! Fuzz the HTTP/1.x parser: the input is cut into chunks whose direction, capture limit and
//! hidden length come from the input itself; every role is tried. Must never panic, and the
//! parser's memory must stay bounded.
//!
//! `cargo +nightly fuzz run http1`; seed corpus: `python3 seeds.py` (from `fuzz/`) writes the
//! fixtures in `dataplane/tests/fixtures/http1/` to `corpus/http1/`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use telegen_dataplane::protocols::http1::{Http1Parser, MAX_HEAD, MAX_PENDING};
use telegen_dataplane::protocols::Role;

fuzz_target!(|input: &[u8]| {
    for role in [Role::Server, Role::Client, Role::Unknown] {
        let mut p = Http1Parser::new(role);
        let mut out = Vec::new();
        let mut input_chunks = telegen_fuzz::chunks(input);
        for (_, c) in input_chunks.by_ref() {
            p.feed(&c, &mut out);
            assert!(p.pending() <= MAX_PENDING);
            assert!(p.buffered_bytes() <= 2 * MAX_HEAD + MAX_PENDING * 8192 + 8192);
            if out.len() > 64 {
                out.clear();
            }
        }
        p.close(input_chunks.seq() * 10 + 100, &mut out);
    }
});
