//! Software prefetch of a record's bytes and its connection's state as the record arrives.
//!
//! A shard holds thousands of connections whose state (the flow, its parser and the parser's
//! heap pieces) is mostly out of the core's private caches when the connection's next record
//! comes, and the record itself was written by another core. The parser then meets those
//! misses one by one, each found only when the code gets to it. Asking for every piece at
//! once, when the record arrives and when its flow is found, overlaps the misses; the bytes
//! after the record (the start of the next one) are asked for then too.

/// Most bytes prefetched from one place (a larger piece is mostly cold and unused).
const MAX_BYTES: usize = 1024;
const LINE: usize = 64;

/// Start loading the cache lines of `len` bytes at `p` (at most [`MAX_BYTES`]).
#[inline(always)]
pub(crate) fn bytes(p: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        let mut off = 0;
        let end = len.min(MAX_BYTES);
        while off < end {
            // SAFETY: a prefetch is a hint; it never faults, whatever the address.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                    p.wrapping_add(off).cast(),
                )
            };
            off += LINE;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, len);
}

/// Start loading `v`'s bytes.
#[inline(always)]
pub(crate) fn value<T>(v: &T) {
    bytes((v as *const T).cast(), std::mem::size_of::<T>());
}

/// Start loading the elements of `s`.
#[inline(always)]
pub(crate) fn slice<T>(s: &[T]) {
    bytes(s.as_ptr().cast(), std::mem::size_of_val(s));
}
