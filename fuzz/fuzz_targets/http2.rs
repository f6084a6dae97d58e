//! Fuzz the HTTP/2 parser: the input is cut into chunks whose direction, capture limit and
//! hidden length come from the input itself; every role is tried, and each run starts either at
//! the connection start (client preface first) or mid-stream. Must never panic, memory and open
//! streams must stay bounded, and every emitted exchange must be well-formed.
//!
//! `cargo +nightly fuzz run http2`. Without cargo-fuzz, the same build by hand (from `fuzz/`):
//! `RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4
//! -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table
//! -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions"
//! cargo +nightly build --release --target x86_64-unknown-linux-gnu --bin http2`, then run
//! `target/x86_64-unknown-linux-gnu/release/http2 -max_total_time=120 CORPUS_DIR`. Seed corpus:
//! `python3 seeds.py` (from `fuzz/`) writes the fixtures in `dataplane/tests/fixtures/http2/` to
//! `corpus/http2/` as records of (direction byte, 2-byte big-endian length, bytes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use telegen_dataplane::protocols::http2::{Http2Parser, MAX_STREAMS, PREFACE};
use telegen_dataplane::protocols::{Chunk, Direction, L7Record, Role};

/// Generous bound on `buffered_bytes`: frame and block buffers, two capped HPACK tables with
/// their scratch, and MAX_STREAMS streams with capped strings.
const BOUND: usize = 4 << 20;

fuzz_target!(|input: &[u8]| {
    for role in [Role::Server, Role::Client, Role::Unknown] {
        for with_preface in [false, true] {
            let mut p = Http2Parser::new(role);
            let mut out = Vec::new();
            let mut input_chunks = telegen_fuzz::chunks(input).wide();
            if with_preface {
                let dir = if role == Role::Client {
                    Direction::Egress
                } else {
                    Direction::Ingress
                };
                let c = Chunk {
                    dir,
                    data: PREFACE,
                    tail: &[],
                    total_len: 24,
                    start_ns: 0,
                    end_ns: 1,
                    seq: 0,
                };
                p.feed(&c, &mut out);
            }
            for (_, c) in input_chunks.by_ref() {
                p.feed(&c, &mut out);
                assert!(p.open_streams() <= MAX_STREAMS);
                assert!(p.buffered_bytes() <= BOUND, "{}", p.buffered_bytes());
                check(&mut out);
            }
            p.close(input_chunks.seq() * 10 + 100, &mut out);
            assert_eq!(p.open_streams(), 0);
            check(&mut out);
        }
    }
});

fn check(out: &mut Vec<L7Record>) {
    for r in out.drain(..) {
        let L7Record::Http2(x) = r else {
            panic!("not HTTP/2: {r:?}");
        };
        assert!(x.role != Role::Unknown);
        assert!(x.end_ns >= x.start_ns);
        assert!(x.stream_id % 2 == 1);
        assert!(x.path.as_ref().is_none_or(|s| s.len() <= 3 * 2048));
    }
}
