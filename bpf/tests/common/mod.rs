//! Helpers shared by the kernel test files: the serial lock, the BPF/tool prerequisite checks
//! (fail under `CI=true`, skip elsewhere) and reading records back from the per-CPU rings.
// Each test file uses the part it needs.
#![allow(dead_code)]

use std::cell::RefCell;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

use telegen_bpf::abi::Event;
use telegen_bpf::{preflight, CpuRing, RingBufferBuilder, Tracer, TracerOptions};

/// Tests that load the programs run one at a time: each checks what is left in the kernel.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn bpf_or_skip() -> bool {
    match preflight() {
        Ok(()) => true,
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("BPF unavailable under CI: {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED: BPF unavailable: {e}");
            false
        }
    }
}

/// The tracer with default settings but 1 MiB of rings, loaded while this test holds the
/// serial lock (the guard comes first: it outlives the tracer); `None` when BPF is missing and
/// the test is skipped ([`bpf_or_skip`]).
pub fn small_tracer() -> Option<(MutexGuard<'static, ()>, Tracer, Vec<CpuRing>)> {
    if !bpf_or_skip() {
        return None;
    }
    let serial = serial();
    let opts = TracerOptions {
        ring_bytes_total: 1 << 20,
        ..Default::default()
    };
    let (tracer, rings) = Tracer::start(&opts).expect("tracer starts");
    Some((serial, tracer, rings))
}

/// `GET /hello HTTP/1.1\r\nHost: x\r\n\r\n` (32 bytes) and 200 bytes of body.
pub const REQ_LEN: usize = 32 + 200;

#[derive(Debug, Clone)]
pub struct Rec {
    pub ev: Event,
    pub payload: Vec<u8>,
    /// The CPU whose ring the record was read from.
    pub ring: u32,
}

pub fn drain(rings: &[telegen_bpf::CpuRing], out: &RefCell<Vec<Rec>>) {
    let mut b = RingBufferBuilder::new();
    for r in rings {
        let ring = r.cpu;
        b.add(&r.map, move |rec: &[u8]| {
            let (ev, p) = Event::decode(rec).expect("record decodes");
            out.borrow_mut().push(Rec {
                ev,
                payload: p.to_vec(),
                ring,
            });
            0
        })
        .unwrap();
    }
    let rb = b.build().unwrap();
    rb.consume().unwrap();
}

/// A prerequisite program is missing: fail under `CI=true`, skip elsewhere.
pub fn tool_or_skip(ok: bool, what: &str) -> bool {
    if ok {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{what} unavailable under CI (scripts/setup.sh installs it)");
    }
    eprintln!("SKIPPED: {what} unavailable");
    false
}

pub fn runs(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    out.status.success().then_some(text)
}
