//! The input format every fuzz target shares: the input is cut into chunks, each a control byte
//! (bit 0: direction; bits 1-2: how many uncaptured bytes the syscall also moved; the other bits
//! are the target's own), a length (one byte, or two big-endian with [`Chunks::wide`]) and that
//! many bytes of captured data. When the syscall also moved uncaptured bytes and the length is
//! odd, the last half of the captured bytes is the chunk's `tail` (the end of the syscall, after
//! the uncaptured gap). Timestamps and sequence numbers are derived from the position.

use telegen_dataplane::protocols::{Chunk, Direction};

/// The chunks of one fuzz input, in order.
pub struct Chunks<'a> {
    rest: &'a [u8],
    seq: u64,
    wide: bool,
}

/// Chunks with one-byte lengths.
pub fn chunks(input: &[u8]) -> Chunks<'_> {
    Chunks {
        rest: input,
        seq: 0,
        wide: false,
    }
}

impl<'a> Chunks<'a> {
    /// Two-byte lengths (for parsers whose frames exceed 255 bytes).
    pub fn wide(mut self) -> Self {
        self.wide = true;
        self
    }

    /// Sequence number of the last chunk returned (timestamps are `seq * 10`).
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

impl<'a> Iterator for Chunks<'a> {
    /// The control byte (for the target's own bits) and the chunk.
    type Item = (u8, Chunk<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let (ctl, n, rest) = match (self.wide, self.rest) {
            (false, [ctl, len, rest @ ..]) => (*ctl, usize::from(*len), rest),
            (true, [ctl, hi, lo, rest @ ..]) => {
                (*ctl, usize::from(*hi) << 8 | usize::from(*lo), rest)
            }
            _ => return None,
        };
        let n = n.min(rest.len());
        let (data, next) = rest.split_at(n);
        self.rest = next;
        let dir = if ctl & 1 == 0 {
            Direction::Ingress
        } else {
            Direction::Egress
        };
        let hidden: u32 = match (ctl >> 1) & 3 {
            0 => 0,
            1 => u32::from(ctl >> 3),
            2 => 1 << (ctl >> 3),
            _ => u32::MAX - n as u32,
        };
        let (data, tail) = if hidden > 0 && n % 2 == 1 {
            data.split_at(n - n / 2)
        } else {
            (data, &[][..])
        };
        self.seq += 1;
        let seq = self.seq;
        Some((
            ctl,
            Chunk {
                dir,
                data,
                tail,
                total_len: (n as u32).saturating_add(hidden),
                start_ns: seq * 10,
                end_ns: seq * 10 + 5,
                seq,
            },
        ))
    }
}
