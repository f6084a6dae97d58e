//! Telegen's kernel side: the BPF programs (`src/bpf/*.bpf.c`), the one header that defines every
//! struct crossing to user space (`src/bpf/telegen.h`, mirrored in [`abi`]), and a loader whose
//! types follow the lifecycle open -> loaded -> attached, detaching everything on drop. The OpenSSL
//! uprobes are attached per library file by [`TlsManager`] (see [`tls`]).

pub mod abi;
mod floor;
mod loader;
pub mod tls;

pub use floor::{tracer_hooks, Floor};
pub use libbpf_rs::{MapCore, MapHandle, RingBuffer, RingBufferBuilder};
pub use loader::{
    comm_key, enable_program_stats, loaded_programs, preflight, BpfError, CpuRing, ProcessFilter,
    ProgramStats, StatsReader, Tracer, TracerOptions,
};
pub use tls::{AttachFailure, AttachedLibrary, Hook, TlsManager, TlsStats};

#[allow(clippy::all, unsafe_op_in_unsafe_fn, rust_2018_idioms, missing_docs)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/telegen.skel.rs"));
}

#[allow(clippy::all, unsafe_op_in_unsafe_fn, rust_2018_idioms, missing_docs)]
mod floor_skel {
    include!(concat!(env!("OUT_DIR"), "/floor.skel.rs"));
}
