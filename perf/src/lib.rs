//! The synthetic workload of Telegen's performance harness, as a library so that the
//! `telegen-perf` binary and the instruction-count driver (`examples/shard_instructions.rs`)
//! feed the data plane the very same records.

pub mod gen;
pub mod h2enc;
