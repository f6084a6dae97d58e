//! The generator-to-shard transport of the synthetic phase: one bounded SPSC byte queue (`rtrb`)
//! per simulated CPU, carrying ring records framed as `[u32 little-endian length][record]`,
//! standing in for the kernel's per-CPU ring buffers. The shard side is a
//! [`telegen_dataplane::runtime::RecordSource`]; the generator side stages records and commits
//! them in batches (one atomic publish per batch, like the kernel's unwoken ring writes).

use telegen_dataplane::runtime::RecordSource;

/// Create one queue of `bytes` capacity.
pub fn queue(bytes: usize) -> (FeedWriter, FeedSource) {
    let (p, c) = rtrb::RingBuffer::new(bytes);
    (
        FeedWriter {
            p,
            staged: Vec::with_capacity(64 * 1024),
        },
        FeedSource {
            c,
            scratch: Vec::new(),
        },
    )
}

/// Generator side.
pub struct FeedWriter {
    p: rtrb::Producer<u8>,
    staged: Vec<u8>,
}

/// Staged bytes after which [`FeedWriter::push`] asks for a flush.
const STAGE_BYTES: usize = 32 * 1024;

impl FeedWriter {
    /// Stage one record; true when enough is staged that the caller should [`Self::flush`].
    pub fn push(&mut self, rec: &[u8]) -> bool {
        self.staged
            .extend_from_slice(&(rec.len() as u32).to_le_bytes());
        self.staged.extend_from_slice(rec);
        self.staged.len() >= STAGE_BYTES
    }

    #[cfg(test)]
    pub fn staged(&self) -> usize {
        self.staged.len()
    }

    /// Publish everything staged if the queue has room; false (nothing published) when full.
    pub fn flush(&mut self) -> bool {
        let n = self.staged.len();
        if n == 0 {
            return true;
        }
        // Uninitialised slots: `write_chunk` would first fill them with zeros (a memset of
        // every byte published, 12% of the generator's time in a gRPC run).
        let Ok(mut chunk) = self.p.write_chunk_uninit(n) else {
            return false;
        };
        let (a, b) = chunk.as_mut_slices();
        let (sa, sb) = self.staged.split_at(a.len());
        for (dst, src) in [(a, sa), (b, sb)] {
            for (d, s) in dst.iter_mut().zip(src) {
                d.write(*s);
            }
        }
        // SAFETY: both slices of the chunk (all `n` slots) were written just above.
        unsafe { chunk.commit_all() };
        self.staged.clear();
        true
    }
}

/// Shard side.
pub struct FeedSource {
    c: rtrb::Consumer<u8>,
    /// A record that straddles the queue's wrap point is copied here.
    scratch: Vec<u8>,
}

/// Read a `u32` length at `pos` of the two-slice view.
fn read_len(a: &[u8], b: &[u8], pos: usize) -> usize {
    let mut le = [0u8; 4];
    for (i, byte) in le.iter_mut().enumerate() {
        let p = pos + i;
        *byte = if p < a.len() { a[p] } else { b[p - a.len()] };
    }
    u32::from_le_bytes(le) as usize
}

impl RecordSource for FeedSource {
    fn drain(&mut self, sink: &mut dyn FnMut(&[u8])) -> usize {
        // Everything published so far (frames are published whole).
        let avail = self.c.slots();
        if avail < 4 {
            return 0;
        }
        let Ok(chunk) = self.c.read_chunk(avail) else {
            return 0;
        };
        let (a, b) = chunk.as_slices();
        let total = a.len() + b.len();
        let mut pos = 0;
        let mut n = 0;
        while pos + 4 <= total {
            let len = read_len(a, b, pos);
            let start = pos + 4;
            if start + len > total {
                // Cannot happen (frames are published whole); never read past the data.
                break;
            }
            if start + len <= a.len() {
                sink(&a[start..start + len]);
            } else if start >= a.len() {
                sink(&b[start - a.len()..start - a.len() + len]);
            } else {
                self.scratch.clear();
                self.scratch.extend_from_slice(&a[start..]);
                self.scratch.extend_from_slice(&b[..start + len - a.len()]);
                sink(&self.scratch);
            }
            pos = start + len;
            n += 1;
        }
        chunk.commit(pos);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_cross_the_wrap_point_intact_and_in_order() {
        let (mut w, mut r) = queue(100);
        let mut got: Vec<Vec<u8>> = Vec::new();
        let mut next = 0u8;
        let mut sent = 0u32;
        for round in 0..200u32 {
            // Records of varying sizes so frames land across the wrap point.
            let len = 1 + (round as usize * 7) % 30;
            let rec: Vec<u8> = (0..len).map(|i| next.wrapping_add(i as u8)).collect();
            next = next.wrapping_add(1);
            w.push(&rec);
            while !w.flush() {
                r.drain(&mut |x| got.push(x.to_vec()));
            }
            sent += 1;
            if round % 3 == 0 {
                r.drain(&mut |x| got.push(x.to_vec()));
            }
        }
        while r.drain(&mut |x| got.push(x.to_vec())) > 0 {}
        assert_eq!(got.len() as u32, sent);
        for (i, rec) in got.iter().enumerate() {
            assert_eq!(rec.len(), 1 + (i * 7) % 30);
            assert_eq!(rec[0], i as u8);
            assert!(rec.windows(2).all(|p| p[1] == p[0].wrapping_add(1)));
        }
    }

    #[test]
    fn full_queue_refuses_and_keeps_staged_bytes() {
        let (mut w, mut r) = queue(16);
        w.push(&[1; 20]);
        assert!(!w.flush());
        assert_eq!(w.staged(), 24);
        assert_eq!(r.drain(&mut |_| panic!("nothing was published")), 0);
    }
}
