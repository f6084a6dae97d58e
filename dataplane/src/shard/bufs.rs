//! Record buffers a shard reuses: the copy of a record forwarded to its owner shard, or held
//! for reordering, is made into a buffer that an earlier record left behind, not into a new
//! allocation.
//!
//! Records are forwarded when they are drained from a ring other than their connection's
//! owner's (a hash of the connection id once forwarded half of them with two shards; the kernel
//! now writes records to their owner's ring unless it is nearly full, the synthetic benchmark
//! a quarter of them elsewhere). Each forward allocated a `Vec` on the sending thread that the
//! receiving thread freed, a remote free for the allocator, and each held record was copied
//! once more (a forwarded one twice). Buffers now circulate: the receiver keeps a forwarded record's buffer
//! for its own next forward or hold, and past [`KEEP_BEFORE_RETURN`] spare ones hands one back
//! to the sender for each record it receives, whether traffic goes both ways or one way.
//!
//! The pool covers a steady trickle, not bursts: a shard that drains thousands of records in
//! one cycle forwards and holds more than it keeps. In the synthetic benchmark's forwarding run
//! (a quarter of the records forwarded, every core saturated) 76% of 3.1 million copies
//! allocated and as many buffers were freed; a pool of 16,384 buffers removed those
//! allocations and left the throughput where it was (339k against 302k-355k transactions/s),
//! so the bounds stay small.

/// Buffers kept at most, and the largest capacity kept (a record carries at most the capture
/// and its tail, about 1.3 KiB by default): at most 2 MiB per shard, typically far less.
const MAX_SPARE: usize = 512;
const MAX_KEPT_CAPACITY: usize = 4096;
/// Spare buffers a shard keeps for itself before it returns them to the shards that forward
/// to it.
const KEEP_BEFORE_RETURN: usize = 64;

#[derive(Debug, Default)]
pub(super) struct RecordBufs {
    spare: Vec<Vec<u8>>,
}

impl RecordBufs {
    /// A copy of `rec` in a reused buffer when one is spare.
    pub(super) fn copy_of(&mut self, rec: &[u8]) -> Vec<u8> {
        match self.spare.pop() {
            Some(mut v) => {
                v.clear();
                v.extend_from_slice(rec);
                v
            }
            None => rec.to_vec(),
        }
    }

    /// A buffer whose record is done with, kept for the next copy unless enough are kept.
    pub(super) fn give_back(&mut self, v: Vec<u8>) {
        if self.spare.len() < MAX_SPARE && v.capacity() > 0 && v.capacity() <= MAX_KEPT_CAPACITY {
            self.spare.push(v);
        }
    }

    /// A spare buffer beyond what this shard keeps for itself, to hand back to a sender.
    pub(super) fn surplus(&mut self) -> Option<Vec<u8>> {
        if self.spare.len() > KEEP_BEFORE_RETURN {
            self.spare.pop()
        } else {
            None
        }
    }

    #[cfg(test)]
    pub(super) fn spare(&self) -> usize {
        self.spare.len()
    }
}

/// A record as a shard receives it: drained from its own rings (borrowed), or forwarded by
/// another shard (owned, its buffer reusable).
pub(super) enum Rec<'a> {
    Borrowed(&'a [u8]),
    Owned(Vec<u8>),
}

impl Rec<'_> {
    pub(super) fn bytes(&self) -> &[u8] {
        match self {
            Rec::Borrowed(b) => b,
            Rec::Owned(v) => v,
        }
    }

    /// The record as an owned buffer, copied into a spare one when borrowed.
    pub(super) fn into_vec(self, bufs: &mut RecordBufs) -> Vec<u8> {
        match self {
            Rec::Borrowed(b) => bufs.copy_of(b),
            Rec::Owned(v) => v,
        }
    }

    /// Done with: an owned buffer goes back to the spares.
    pub(super) fn release(self, bufs: &mut RecordBufs) {
        if let Rec::Owned(v) = self {
            bufs.give_back(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_and_bounded() {
        let mut b = RecordBufs::default();
        let first = b.copy_of(b"abc");
        let addr = first.as_ptr();
        b.give_back(first);
        let again = b.copy_of(b"xy");
        assert_eq!(again, b"xy");
        assert_eq!(again.as_ptr(), addr, "the spare buffer was reused");
        // Too large a buffer is not kept; neither are more than MAX_SPARE.
        b.give_back(Vec::with_capacity(MAX_KEPT_CAPACITY + 1));
        assert_eq!(b.spare(), 0);
        for _ in 0..MAX_SPARE + 10 {
            b.give_back(Vec::with_capacity(64));
        }
        assert_eq!(b.spare(), MAX_SPARE);
    }
}
