//! Compiles the BPF programs under `src/bpf/` and generates their Rust skeletons into OUT_DIR.
use std::{env, path::PathBuf};

use libbpf_cargo::SkeletonBuilder;

/// `telegen`: the tracer; `floor`: the do-nothing programs of the overhead floor (perf harness).
const PROGS: &[&str] = &["telegen", "floor"];

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    let arch = match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") => "x86",
        Ok("aarch64") => "arm64",
        Ok(other) => panic!("unsupported target architecture for BPF: {other}"),
        Err(e) => panic!("CARGO_CFG_TARGET_ARCH: {e}"),
    };
    for name in PROGS {
        let src = format!("src/bpf/{name}.bpf.c");
        SkeletonBuilder::new()
            .source(&src)
            .clang_args([
                "-I",
                "src/bpf",
                "-Wall",
                "-Wno-unused-function",
                // BPF ISA v3 (kernel 5.1+; the agent needs 5.17): atomic compare-and-swap.
                "-mcpu=v3",
                &format!("-D__TARGET_ARCH_{arch}"),
            ])
            .build_and_generate(out.join(format!("{name}.skel.rs")))
            .unwrap_or_else(|e| panic!("building {src}: {e:#}"));
        println!("cargo:rerun-if-changed={src}");
    }
    println!("cargo:rerun-if-changed=src/bpf/telegen.h");
    println!("cargo:rerun-if-changed=src/bpf/tls.bpf.h");
    println!("cargo:rerun-if-changed=src/bpf/payload.bpf.h");
    println!("cargo:rerun-if-changed=src/bpf/udp.bpf.h");
    println!("cargo:rerun-if-changed=src/bpf/sock.bpf.h");
    println!("cargo:rerun-if-changed=src/bpf/ring.bpf.h");
    println!("cargo:rerun-if-changed=src/bpf/mmsg.bpf.h");
    println!("cargo:rerun-if-changed=src/bpf/io.bpf.h");
    println!("cargo:rerun-if-changed=src/bpf/filter.bpf.h");
    println!("cargo:rerun-if-changed=src/bpf/vmlinux.h");
}
