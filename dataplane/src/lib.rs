//! Telegen's data plane: per-CPU kernel rings drained by pinned shards, each owning a shard of the
//! flow table and correlation state, merging into one export core over SPSC queues.

pub mod export;
pub mod protocols;
pub mod signal;
pub mod flow;
pub mod red;
pub mod reorder;
pub mod shard;
pub mod spans;
pub mod runtime;
