//! Byte searches for the short strings of the hot path (header lines, request targets, path
//! segments: tens of bytes). A general searcher's set-up and dispatch cost more than the search
//! itself at these lengths. [`find`] reads sixteen bytes per step with SSE2 (part of every
//! x86_64) and eight from a plain `u64` elsewhere and for the last bytes; [`find2`] reads eight.
//! No allocation.

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
#[inline]
pub fn find(b: u8, s: &[u8]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    {
        let mut chunks = s.chunks_exact(16);
        let mut at = 0;
        for c in chunks.by_ref() {
            let m = mask16(b, c.try_into().expect("16 bytes"));
            if m != 0 {
                return Some(at + m.trailing_zeros() as usize);
            }
            at += 16;
        }
        find_words(b, chunks.remainder()).map(|i| at + i)
    }
    #[cfg(not(target_arch = "x86_64"))]
    find_words(b, s)
}

/// Bit `i` set when `c[i]` is `b`.
#[cfg(target_arch = "x86_64")]
#[inline]
fn mask16(b: u8, c: &[u8; 16]) -> u32 {
    use std::arch::x86_64::{_mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8};
    // SAFETY: SSE2 is part of the x86_64 baseline, and the unaligned load reads exactly the 16
    // bytes `c` borrows.
    unsafe {
        let v = _mm_loadu_si128(c.as_ptr().cast());
        _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b as i8))) as u32
    }
}

/// [`find`], eight bytes per step.
#[inline]
fn find_words(b: u8, s: &[u8]) -> Option<usize> {
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

/// `s` equals `name` but for the case of ASCII letters. `name` is lower case: letters, digits
/// and `-` (a header name), and `s` as long. Compares eight bytes per step: each byte of `s`
/// where `name` has a letter gets its 0x20 bit set (upper case to lower; no other byte can
/// become that letter), every other byte must be equal as it is.
#[inline]
pub fn eq_lower_name(s: &[u8], name: &[u8]) -> bool {
    debug_assert!(name
        .iter()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-'));
    if s.len() != name.len() {
        return false;
    }
    // 0x20 where `name` has a letter (only letters have the 0x40 bit among its bytes).
    let eq = |x: u64, n: u64| x | ((n & (LO * 0x40)) >> 1) == n;
    let n = s.len();
    if n < 8 {
        return s.iter().zip(name).all(|(&x, &c)| {
            let fold = if c & 0x40 != 0 { x | 0x20 } else { x };
            fold == c
        });
    }
    let mut i = 0;
    while i + 8 <= n {
        if !eq(word(&s[i..]), word(&name[i..])) {
            return false;
        }
        i += 8;
    }
    i == n || eq(word(&s[n - 8..]), word(&name[n - 8..]))
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

    /// Every name of a few lengths (below 8, 8 to 16, above 16), in lower, upper and mixed case,
    /// with every single byte replaced by each of the 256 values: the same answer as
    /// `eq_ignore_ascii_case`, and never equal to a shorter or longer string.
    #[test]
    fn eq_lower_name_agrees_with_eq_ignore_ascii_case() {
        for name in [
            &b"te"[..],
            b"x-b3",
            b"host",
            b"chunked",
            b"x-b3-sampled",
            b"traceparent",
            b"content-length",
            b"transfer-encoding",
        ] {
            let cases: [Vec<u8>; 3] = [
                name.to_vec(),
                name.to_ascii_uppercase(),
                name.iter()
                    .enumerate()
                    .map(|(i, c)| {
                        if i % 2 == 0 {
                            c.to_ascii_uppercase()
                        } else {
                            *c
                        }
                    })
                    .collect(),
            ];
            for s in &cases {
                assert!(eq_lower_name(s, name));
                assert!(!eq_lower_name(&s[..s.len() - 1], name));
                assert!(!eq_lower_name(&[s.as_slice(), b"x"].concat(), name));
                for i in 0..s.len() {
                    let mut t = s.clone();
                    for b in 0..=255u8 {
                        t[i] = b;
                        assert_eq!(
                            eq_lower_name(&t, name),
                            t.eq_ignore_ascii_case(name),
                            "{:?} against {:?}",
                            String::from_utf8_lossy(&t),
                            String::from_utf8_lossy(name)
                        );
                    }
                }
            }
        }
    }

    proptest! {
        #[test]
        fn find_agrees_with_a_plain_search(
            s in proptest::collection::vec(prop_oneof![Just(b'\n'), any::<u8>()], 0..100),
            b in prop_oneof![Just(b'\n'), any::<u8>()],
        ) {
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
