//! Puts the events of one connection back in kernel order.
//!
//! The kernel stamps every record of a connection with a sequence number starting at 0. Records
//! of one connection can sit in different CPUs' rings (threads migrate), so a shard may see
//! `seq 5` before `seq 4`. [`Reorder`] releases records strictly in sequence: an in-order record
//! passes straight through (no copy), an early one is held (bounded, [`MAX_HELD`]) until the gap
//! fills, and a gap that stays open past the caller's deadline (a record lost in the kernel) is
//! skipped and counted.

use std::collections::BTreeMap;

/// Most early records held per connection; past this the oldest gap is given up.
pub const MAX_HELD: usize = 64;

/// A record held while an earlier one is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held<T> {
    pub item: T,
    pub held_since_ns: u64,
}

/// Per-connection reorder state.
#[derive(Debug)]
pub struct Reorder<T> {
    next: u64,
    held: BTreeMap<u64, Held<T>>,
    gaps: u64,
}

impl<T> Default for Reorder<T> {
    fn default() -> Self {
        Self {
            next: 0,
            held: BTreeMap::new(),
            gaps: 0,
        }
    }
}

/// What to do with an arriving record.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It is the next one: process it now, then call [`Reorder::pop_ready`].
    Now,
    /// Held for later (the caller must pass ownership via [`Reorder::hold`]).
    Hold,
    /// Older than what was already released (a duplicate or a record given up on): drop it.
    Stale,
}

impl<T> Reorder<T> {
    /// The sequence number expected next.
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    /// Gaps given up on so far.
    pub fn gaps(&self) -> u64 {
        self.gaps
    }

    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Classify an arriving record. `Now` advances the expected sequence.
    pub fn arrive(&mut self, seq: u64) -> Verdict {
        if seq == self.next {
            self.next += 1;
            Verdict::Now
        } else if seq > self.next {
            Verdict::Hold
        } else {
            Verdict::Stale
        }
    }

    /// Keep an early record. If too many are held, the gap before the oldest is given up and
    /// the records that became ready are returned through `ready`.
    pub fn hold(&mut self, seq: u64, item: T, now_ns: u64, ready: &mut Vec<T>) {
        self.held.entry(seq).or_insert(Held {
            item,
            held_since_ns: now_ns,
        });
        if self.held.len() > MAX_HELD {
            self.skip_gap();
            self.pop_ready(ready);
        }
    }

    /// Release held records that are now in sequence.
    pub fn pop_ready(&mut self, ready: &mut Vec<T>) {
        while let Some(entry) = self.held.first_entry() {
            if *entry.key() != self.next {
                break;
            }
            ready.push(entry.remove().item);
            self.next += 1;
        }
    }

    /// Give up gaps whose first held record has waited since before `deadline_ns`.
    pub fn expire(&mut self, deadline_ns: u64, ready: &mut Vec<T>) {
        while let Some((_, h)) = self.held.first_key_value() {
            if h.held_since_ns > deadline_ns {
                break;
            }
            self.skip_gap();
            self.pop_ready(ready);
        }
    }

    /// Release everything held, in order, counting the gaps (connection closing or flushing).
    pub fn drain_all(&mut self, ready: &mut Vec<T>) {
        while !self.held.is_empty() {
            self.skip_gap();
            self.pop_ready(ready);
        }
    }

    fn skip_gap(&mut self) {
        if let Some((&first, _)) = self.held.first_key_value() {
            if first > self.next {
                self.gaps += 1;
                self.next = first;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feed `order` through a Reorder the way a shard does; return the release order.
    fn run(order: &[u64]) -> (Vec<u64>, u64) {
        let mut r = Reorder::default();
        let mut out = Vec::new();
        let mut ready = Vec::new();
        for &s in order {
            match r.arrive(s) {
                Verdict::Now => {
                    out.push(s);
                    r.pop_ready(&mut ready);
                }
                Verdict::Hold => r.hold(s, s, 0, &mut ready),
                Verdict::Stale => {}
            }
            out.append(&mut ready);
        }
        r.drain_all(&mut ready);
        out.append(&mut ready);
        (out, r.gaps())
    }

    #[test]
    fn in_order_passes_through() {
        assert_eq!(run(&[0, 1, 2, 3]), (vec![0, 1, 2, 3], 0));
    }

    #[test]
    fn swapped_pairs_are_restored() {
        assert_eq!(run(&[1, 0, 3, 2, 4]), (vec![0, 1, 2, 3, 4], 0));
    }

    #[test]
    fn lost_record_is_skipped_on_expiry_and_counted() {
        let mut r = Reorder::default();
        let mut ready = Vec::new();
        assert_eq!(r.arrive(0), Verdict::Now);
        assert_eq!(r.arrive(2), Verdict::Hold);
        r.hold(2, "two", 100, &mut ready);
        r.expire(50, &mut ready);
        assert!(ready.is_empty(), "not yet expired");
        r.expire(100, &mut ready);
        assert_eq!(ready, vec!["two"]);
        assert_eq!(r.gaps(), 1);
        assert_eq!(r.next_seq(), 3);
        assert_eq!(
            r.arrive(1),
            Verdict::Stale,
            "the late record is dropped, not replayed"
        );
    }

    #[test]
    fn held_records_are_bounded() {
        let mut r = Reorder::default();
        let mut ready = Vec::new();
        for s in 1..=MAX_HELD as u64 {
            assert_eq!(r.arrive(s), Verdict::Hold);
            r.hold(s, s, 0, &mut ready);
        }
        assert_eq!(r.held(), MAX_HELD);
        assert!(ready.is_empty());
        // One more: the gap (seq 0) is given up and everything held is released in order.
        assert_eq!(r.arrive(MAX_HELD as u64 + 1), Verdict::Hold);
        r.hold(MAX_HELD as u64 + 1, MAX_HELD as u64 + 1, 0, &mut ready);
        assert_eq!(r.gaps(), 1);
        assert_eq!(r.held(), 0);
        assert_eq!(ready, (1..=MAX_HELD as u64 + 1).collect::<Vec<_>>());
    }

    proptest! {
        /// Any permutation of 0..n comes out sorted and complete, with no gap counted.
        #[test]
        fn permutations_come_out_sorted(perm in Just((0u64..40).collect::<Vec<_>>()).prop_shuffle()) {
            let (out, gaps) = run(&perm);
            prop_assert_eq!(out, (0u64..40).collect::<Vec<_>>());
            prop_assert_eq!(gaps, 0);
        }

        /// With records missing, the output is strictly increasing and holds every record that
        /// was not stale.
        #[test]
        fn losses_never_reorder(perm in Just((0u64..40).collect::<Vec<_>>()).prop_shuffle(), lose in proptest::collection::vec(0u64..40, 0..5)) {
            let order: Vec<u64> = perm.into_iter().filter(|s| !lose.contains(s)).collect();
            let (out, _) = run(&order);
            prop_assert!(out.windows(2).all(|w| w[0] < w[1]));
        }
    }
}
