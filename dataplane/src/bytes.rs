//! Byte searches for the short strings of the hot path (header lines, request targets, path
//! segments: tens of bytes). A general searcher's set-up and dispatch cost more than the search
//! itself at these lengths; these read eight bytes per step from a plain `u64`, with no
//! `unsafe` and no allocation.

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

fn word(w: &[u8]) -> u64 {
    u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]])
}

/// High bit set in each byte of `x` that is zero. A borrow can only mark a byte above a true
/// zero, so the lowest marked byte is exact (all a first-match search needs).
fn zero_bytes(x: u64) -> u64 {
    x.wrapping_sub(LO) & !x & HI
}

/// The first `b` in `s`.
pub fn find(b: u8, s: &[u8]) -> Option<usize> {
    let pat = LO * u64::from(b);
    let mut words = s.chunks_exact(8);
    let mut at = 0;
    for w in words.by_ref() {
        let zero = zero_bytes(word(w) ^ pat);
        if zero != 0 {
            return Some(at + (zero.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    words
        .remainder()
        .iter()
        .position(|&c| c == b)
        .map(|i| at + i)
}

/// The first byte of `s` that is `a` or `b`.
pub fn find2(a: u8, b: u8, s: &[u8]) -> Option<usize> {
    let (pa, pb) = (LO * u64::from(a), LO * u64::from(b));
    let mut words = s.chunks_exact(8);
    let mut at = 0;
    for w in words.by_ref() {
        let w = word(w);
        // Each mask's lowest marked byte is exact, so the lower of the two is the first match.
        let (za, zb) = (zero_bytes(w ^ pa), zero_bytes(w ^ pb));
        if za | zb != 0 {
            let first = za.trailing_zeros().min(zb.trailing_zeros());
            return Some(at + (first / 8) as usize);
        }
        at += 8;
    }
    words
        .remainder()
        .iter()
        .position(|&c| c == a || c == b)
        .map(|i| at + i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn find_agrees_with_a_plain_search(s in proptest::collection::vec(any::<u8>(), 0..80), b: u8) {
            prop_assert_eq!(find(b, &s), s.iter().position(|&c| c == b));
        }

        #[test]
        fn find2_agrees_with_a_plain_search(
            s in proptest::collection::vec(any::<u8>(), 0..80), a: u8, b: u8,
        ) {
            prop_assert_eq!(find2(a, b, &s), s.iter().position(|&c| c == a || c == b));
        }

        /// Inputs dense in the bytes searched for and in their neighbours (a borrow from a
        /// matching byte must not mark the byte above it as a match).
        #[test]
        fn searches_in_lines(s in "[a-z: \r\n\x0b\x09/?#@\x21éÿ]{0,70}") {
            let s = s.as_bytes();
            prop_assert_eq!(find(b'\n', s), s.iter().position(|&c| c == b'\n'));
            prop_assert_eq!(find(b' ', s), s.iter().position(|&c| c == b' '));
            prop_assert_eq!(find2(b'?', b'#', s), s.iter().position(|&c| c == b'?' || c == b'#'));
        }
    }
}
