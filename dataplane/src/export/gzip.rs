//! gzip request bodies for the export core, through ISA-L's igzip at level 1 (Debian's libisal,
//! reached through the shim `isal_gzip.c`, which this crate's build script compiles).
//!
//! On about 20 slices of 400 KB of the request bodies the perf harness encodes, igzip level 1 took
//! half the time of zlib-rs's level 1 (the compressor it replaced) and compressed better (ratio
//! 6.8 against 6.5 on HTTP/1.1 spans, 7.9 against 7.3 on gRPC spans); gzip was the export core's
//! largest cost per span. The output is an ordinary gzip member
//! (RFC 1952: header, deflate data, CRC-32, length), as any collector reads it.

use std::alloc::{self, Layout};
use std::io;
use std::os::raw::c_int;
use std::ptr::NonNull;

/// The shim's state (`struct tg_gzip`: ISA-L's stream and its level-1 buffer), opaque here.
#[repr(C)]
struct RawGzip {
    _private: [u8; 0],
}

extern "C" {
    fn tg_gzip_state_size() -> usize;
    fn tg_gzip_state_align() -> usize;
    fn tg_gzip_start(g: *mut RawGzip);
    fn tg_gzip_input(g: *mut RawGzip, input: *const u8, len: u32, last: c_int);
    fn tg_gzip_step(g: *mut RawGzip, out: *mut u8, cap: u32, wrote: *mut u32) -> c_int;
}

/// Gzip `data` (a compressor made for this one body: keep a [`Gzipper`] for repeated use).
pub fn gzip(data: &[u8]) -> io::Result<Vec<u8>> {
    Gzipper::default().gzip(data)
}

/// A gzip compressor kept across batches: its state (ISA-L's stream, history buffer and level-1
/// hash tables: 356 KiB with Debian's ISA-L 2.30) is allocated once and only re-initialised per
/// request body.
#[derive(Debug)]
pub struct Gzipper {
    state: NonNull<RawGzip>,
    layout: Layout,
}

// SAFETY: the state is plain memory owned by this value alone (no thread-local or shared data in
// ISA-L's stream); moving it to another thread is moving that memory.
unsafe impl Send for Gzipper {}

impl Default for Gzipper {
    fn default() -> Self {
        // SAFETY: the shim's size and alignment queries read nothing.
        let (size, align) = unsafe { (tg_gzip_state_size(), tg_gzip_state_align()) };
        let layout = Layout::from_size_align(size, align).expect("gzip state layout");
        // SAFETY: `layout` has a non-zero size (the struct holds ISA-L's stream).
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let state = NonNull::new(raw.cast::<RawGzip>())
            .unwrap_or_else(|| alloc::handle_alloc_error(layout));
        Self { state, layout }
    }
}

impl Drop for Gzipper {
    fn drop(&mut self) {
        // SAFETY: allocated in `default` with this layout, freed once.
        unsafe { alloc::dealloc(self.state.as_ptr().cast(), self.layout) };
    }
}

impl Gzipper {
    /// One gzip member (RFC 1952) holding `data`. An error (a body over 4 GiB, which ISA-L's
    /// 32-bit counts cannot take, or an ISA-L failure) leaves the compressor usable.
    pub fn gzip(&mut self, data: &[u8]) -> io::Result<Vec<u8>> {
        self.gzip_parts(&[data])
    }

    /// One gzip member holding `parts` one after the other, as if they were one buffer: a
    /// request body compressed from the pieces it is made of, never copied into one.
    pub fn gzip_parts(&mut self, parts: &[&[u8]]) -> io::Result<Vec<u8>> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if u32::try_from(total).is_err() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "gzip: a body over 4 GiB",
            ));
        }
        let g = self.state.as_ptr();
        // SAFETY: the state is ours, and restarted here before any input.
        unsafe { tg_gzip_start(g) };
        let mut out: Vec<u8> = Vec::with_capacity(total / 4 + 64);
        // No pieces is one empty piece: the member still needs its end.
        let parts: &[&[u8]] = if parts.is_empty() { &[&[]] } else { parts };
        let last = parts.len() - 1;
        for (i, part) in parts.iter().enumerate() {
            // SAFETY: ISA-L reads `part` (alive for this call, under 4 GiB as the total is)
            // until it reports it consumed (2) or the member complete (1); the next input or
            // the next start replaces it.
            unsafe { tg_gzip_input(g, part.as_ptr(), part.len() as u32, c_int::from(i == last)) };
            let mut stalled = 0;
            loop {
                if out.len() == out.capacity() {
                    out.reserve(out.capacity() / 2 + 64);
                }
                let room = u32::try_from(out.capacity() - out.len()).unwrap_or(u32::MAX);
                let mut wrote = 0u32;
                // SAFETY: `room` bytes are writable after `out.len()`; the shim writes at
                // most that many and reports how many in `wrote`.
                let rc =
                    unsafe { tg_gzip_step(g, out.as_mut_ptr().add(out.len()), room, &mut wrote) };
                if rc < 0 {
                    return Err(io::Error::other(format!(
                        "gzip: ISA-L deflate failed ({rc})"
                    )));
                }
                let wrote = (wrote as usize).min(room as usize);
                // SAFETY: the shim initialised `wrote` bytes of the spare capacity.
                unsafe { out.set_len(out.len() + wrote) };
                match rc {
                    1 if i == last => return Ok(out),
                    1 => return Err(io::Error::other("gzip: ISA-L ended the member early")),
                    2 => break,
                    _ => {}
                }
                // ISA-L returns early only when the output is full; guard against a stream
                // that makes no progress with room left, rather than spin.
                if wrote == 0 && out.len() < out.capacity() {
                    stalled += 1;
                    if stalled > 2 {
                        return Err(io::Error::other("gzip: ISA-L deflate made no progress"));
                    }
                } else {
                    stalled = 0;
                }
            }
        }
        Err(io::Error::other("gzip: ISA-L did not end the member"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// `n` bytes that do not compress (xorshift).
    fn noise(n: usize) -> Vec<u8> {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn gunzip(gz: &[u8]) -> Vec<u8> {
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(gz)
            .read_to_end(&mut back)
            .unwrap();
        back
    }

    #[test]
    fn a_reused_gzipper_gives_valid_members_of_any_size() {
        let mut g = Gzipper::default();
        // Empty, tiny, repetitive, and incompressible (bigger than the first output guess).
        let inputs: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"a".to_vec(),
            b"spans ".repeat(50_000),
            noise(300_000),
            b"again".to_vec(),
        ];
        for input in inputs {
            let gz = g.gzip(&input).unwrap();
            assert_eq!(gunzip(&gz), input, "round trip of {} bytes", input.len());
        }
    }

    #[test]
    fn a_member_from_pieces_holds_them_one_after_the_other() {
        let mut g = Gzipper::default();
        let text = b"resource spans, scope spans, span ".repeat(4_000);
        let noise = noise(70_000);
        let cases: Vec<Vec<&[u8]>> = vec![
            vec![],
            vec![b""],
            vec![b"", b"head", b"", b"spans", b""],
            vec![&text[..10], &text[10..], b"tail"],
            vec![&noise, &text, &noise[..1], &text[..3]],
        ];
        for parts in cases {
            let gz = g.gzip_parts(&parts).unwrap();
            assert_eq!(gunzip(&gz), parts.concat(), "{} pieces", parts.len());
        }
    }

    #[test]
    fn members_are_what_gzip_readers_expect() {
        let body = b"resource spans ".repeat(1_000);
        let gz = gzip(&body).unwrap();
        // RFC 1952: magic, deflate, and a trailer holding the CRC-32 and length of the input.
        assert_eq!(&gz[..3], &[0x1f, 0x8b, 8]);
        let n = gz.len();
        let crc = u32::from_le_bytes(gz[n - 8..n - 4].try_into().unwrap());
        let len = u32::from_le_bytes(gz[n - 4..].try_into().unwrap());
        let mut h = flate2::Crc::new();
        h.update(&body);
        assert_eq!((crc, len as usize), (h.sum(), body.len()));
        assert!(n * 10 < body.len(), "{n} bytes: level 1 still compresses");
    }
}
