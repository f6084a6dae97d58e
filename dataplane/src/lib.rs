//! Telegen's data plane: per-CPU kernel rings drained by pinned shards, each owning a shard of the
//! flow table and correlation state, merging into one export core over SPSC queues.

pub mod alloc;
mod bytes;
pub mod export;
pub mod flow;
pub mod intern;
pub mod l7spans;
mod prefetch;
pub mod protocols;
pub mod red;
pub mod reorder;
pub mod runtime;
pub mod shard;
pub mod signal;
pub mod spans;
