//! Helpers shared by the test files: loading recorded fixtures, building chunks and ring
//! records.
// Each test file uses the part it needs.
#![allow(dead_code)]

use std::fs;
use std::path::PathBuf;

use telegen_bpf::abi::{self, Event};
use telegen_dataplane::protocols::{Chunk, Direction};

/// A ring record as the kernel writes it: an event of `kind` (`EV_DATA`, `EV_CLOSE`) on
/// connection `conn` of pid 42 (local port 8080, peer port 50000), carrying `data`, from `t`
/// to `t + 10` ns.
pub fn record(conn: u64, seq: u64, kind: u8, role: u8, dir: u8, data: &[u8], t: u64) -> Vec<u8> {
    let mut ev = Event {
        conn_id: conn,
        seq,
        start_ns: t,
        end_ns: t + 10,
        pid: 42,
        tid: 42,
        bytes: data.len() as u32,
        kind,
        dir,
        role,
        version: abi::ABI_VERSION,
        ..Default::default()
    };
    ev.local.port = 8080;
    ev.remote.port = 50000;
    let mut out = Vec::new();
    ev.encode_into(data, &mut out);
    out
}

/// One file of a recorded fixture, `tests/fixtures/<proto>/<name>.<ext>`.
pub fn fixture_file(proto: &str, name: &str, ext: &str) -> Vec<u8> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(proto);
    fs::read(dir.join(format!("{name}.{ext}"))).unwrap()
}

/// Names of the recorded fixtures of a protocol (those with a `.segments` index).
pub fn fixture_names(proto: &str) -> Vec<String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(proto);
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let p = e.ok()?.path();
            (p.extension()? == "segments").then(|| p.file_stem()?.to_str().map(String::from))?
        })
        .collect();
    names.sort();
    names
}

/// A recorded exchange as (from the client?, bytes) segments, in the order the recording relay
/// received them: `<name>.client` and `<name>.server` hold each side's bytes, `<name>.segments`
/// one `C <len>` or `S <len>` line per read.
pub fn segments(proto: &str, name: &str) -> Vec<(bool, Vec<u8>)> {
    let (client, server) = (
        fixture_file(proto, name, "client"),
        fixture_file(proto, name, "server"),
    );
    let (mut ci, mut si) = (0, 0);
    let mut out = Vec::new();
    let index = String::from_utf8(fixture_file(proto, name, "segments")).unwrap();
    for line in index.lines() {
        let (tag, len) = line.split_once(' ').unwrap();
        let len: usize = len.parse().unwrap();
        if tag == "C" {
            out.push((true, client[ci..ci + len].to_vec()));
            ci += len;
        } else {
            out.push((false, server[si..si + len].to_vec()));
            si += len;
        }
    }
    assert_eq!(
        (ci, si),
        (client.len(), server.len()),
        "{name}: segments cover the bytes"
    );
    out
}

/// The chunk of the `seq`-th generated syscall: `data` cut to `limit` captured bytes, `extra`
/// more bytes moved but not captured, timestamps `step_ns` apart.
pub fn chunk(
    seq: usize,
    ingress: bool,
    data: &[u8],
    extra: u32,
    limit: usize,
    step_ns: u64,
) -> Chunk<'_> {
    tail_chunk(seq, ingress, data, extra, limit, 0, step_ns)
}

/// Like [`chunk`], and when `data` is longer than `limit` the kernel also copied its last
/// `tail` bytes (never overlapping the prefix): the syscall moved the prefix, the rest of
/// `data` but its tail and `extra` unknown bytes (the gap), then the tail.
pub fn tail_chunk(
    seq: usize,
    ingress: bool,
    data: &[u8],
    extra: u32,
    limit: usize,
    tail: usize,
    step_ns: u64,
) -> Chunk<'_> {
    let dir = if ingress {
        Direction::Ingress
    } else {
        Direction::Egress
    };
    let total = (data.len() as u64 + u64::from(extra)).min(u64::from(u32::MAX)) as u32;
    let head = data.len().min(limit);
    let tail = tail.min(data.len() - head);
    Chunk {
        dir,
        data: &data[..head],
        tail: &data[data.len() - tail..],
        total_len: total,
        start_ns: seq as u64 * step_ns,
        end_ns: seq as u64 * step_ns + step_ns / 2,
        seq: seq as u64,
    }
}
