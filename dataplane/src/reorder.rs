//! Puts the events of one connection back in kernel order.
//!
//! The kernel stamps every record of a connection with a sequence number starting at 0, and
//! writes them to the ring of the connection's home CPU, but not always in that order: two
//! threads writing one connection at once may reserve their ring slots in the other order, and
//! records can reach the owner from other rings (forwarded: spilled from a nearly full home
//! ring, or written there by the synthetic benchmark), so a shard may see `seq 5` before
//! `seq 4`. [`Reorder`] releases records strictly in sequence: an in-order record passes
//! straight through (no copy), an early one is held until the gap fills, and a gap is skipped
//! and counted only when the caller gives up on it: past its deadline (the missing record was
//! lost in the kernel), or to stay within a memory budget.
//!
//! There is no bound on the records held per connection: a connection gives up a gap only when
//! told to. A count bound would give up a gap that is merely late: a connection's records
//! continue in another ring (forwarded), and the shard draining the first one is descheduled
//! for a while; the connection's owner must wait for it, however many later records pile up
//! meanwhile. Memory is bounded by the caller instead, over all its connections
//! ([`Reorder::held_bytes`], [`Reorder::first_held_since`], [`Reorder::give_up_gap`]).
//!
//! The records held are few and mostly arrive in increasing order, so they sit in a `VecDeque`
//! sorted by sequence: a hold appends, a release pops from the front, and the deque keeps its
//! small buffer for the connection's next hold (`KEEP_HELD` slots). A `BTreeMap` allocated a
//! node of about 500 bytes for a connection's first held record and freed it with the last,
//! once per out-of-order record (in the two-shard synthetic run, where a quarter of each
//! connection's records come through the other shard, its inserts and removals alone took
//! about 3% of the shards' time).

use std::collections::VecDeque;

/// Held slots a connection keeps allocated once it holds none: enough for the usual one or two
/// records waiting for a forwarded predecessor, without keeping a burst's worth per connection.
const KEEP_HELD: usize = 4;

/// A record held while an earlier one is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Held<T> {
    item: T,
    bytes: usize,
    held_since_ns: u64,
}

/// Per-connection reorder state.
#[derive(Debug)]
pub struct Reorder<T> {
    next: u64,
    /// Sorted by sequence, no sequence twice.
    held: VecDeque<(u64, Held<T>)>,
    held_bytes: usize,
    gaps: u64,
}

impl<T> Default for Reorder<T> {
    fn default() -> Self {
        Self {
            next: 0,
            held: VecDeque::new(),
            held_bytes: 0,
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

    /// Records held.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Sum of the `bytes` given with the records held.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// When the first record held (the one right after the first gap) was held, if any: how
    /// long the connection has waited for that gap.
    pub fn first_held_since(&self) -> Option<u64> {
        self.held.front().map(|(_, h)| h.held_since_ns)
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

    /// Keep an early record of `bytes` (the caller's measure, for [`Reorder::held_bytes`]). A
    /// second record with a sequence already held is dropped; returns whether it was kept.
    pub fn hold(&mut self, seq: u64, item: T, bytes: usize, now_ns: u64) -> bool {
        let held = Held {
            item,
            bytes,
            held_since_ns: now_ns,
        };
        match self.held.back() {
            // Before the last one held: its place by binary search.
            Some(&(last, _)) if last >= seq => {
                match self.held.binary_search_by_key(&seq, |e| e.0) {
                    Ok(_) => return false,
                    Err(at) => self.held.insert(at, (seq, held)),
                }
            }
            // Usually later than everything held: an append.
            _ => self.held.push_back((seq, held)),
        }
        self.held_bytes += bytes;
        true
    }

    /// Release held records that are now in sequence.
    pub fn pop_ready(&mut self, ready: &mut Vec<T>) {
        while self.held.front().is_some_and(|e| e.0 == self.next) {
            let Some((_, h)) = self.held.pop_front() else {
                break;
            };
            self.held_bytes -= h.bytes;
            ready.push(h.item);
            self.next += 1;
        }
        if self.held.is_empty() && self.held.capacity() > KEEP_HELD {
            self.held.shrink_to(KEEP_HELD);
        }
    }

    /// Give up gaps whose first held record has waited since before `deadline_ns`.
    pub fn expire(&mut self, deadline_ns: u64, ready: &mut Vec<T>) {
        while let Some((_, h)) = self.held.front() {
            if h.held_since_ns > deadline_ns {
                break;
            }
            self.give_up_gap(ready);
        }
    }

    /// Give up the first gap, whatever its age, releasing what becomes ready (to free memory).
    pub fn give_up_gap(&mut self, ready: &mut Vec<T>) {
        self.skip_gap();
        self.pop_ready(ready);
    }

    /// Release everything held, in order, counting the gaps (connection closing or flushing).
    pub fn drain_all(&mut self, ready: &mut Vec<T>) {
        while !self.held.is_empty() {
            self.give_up_gap(ready);
        }
    }

    fn skip_gap(&mut self) {
        if let Some(&(first, _)) = self.held.front() {
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
                Verdict::Hold => {
                    r.hold(s, s, 1, 0);
                }
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
        assert!(r.hold(2, "two", 3, 100));
        assert_eq!(r.held_bytes(), 3);
        r.expire(50, &mut ready);
        assert!(ready.is_empty(), "not yet expired");
        r.expire(100, &mut ready);
        assert_eq!(ready, vec!["two"]);
        assert_eq!(r.gaps(), 1);
        assert_eq!(r.held_bytes(), 0);
        assert_eq!(r.next_seq(), 3);
        assert_eq!(
            r.arrive(1),
            Verdict::Stale,
            "the late record is dropped, not replayed"
        );
    }

    /// However many later records pile up, a gap is kept open until the caller gives it up:
    /// a missing record may be late (its ring's shard starved), not lost.
    #[test]
    fn a_gap_waits_however_many_records_pile_up() {
        let mut r = Reorder::default();
        let mut ready = Vec::new();
        for s in 1..=1000u64 {
            assert_eq!(r.arrive(s), Verdict::Hold);
            assert!(r.hold(s, s, 10, 5000 - s));
        }
        assert!(!r.hold(7, 7, 10, 0), "a duplicate is not held twice");
        assert_eq!((r.held(), r.held_bytes()), (1000, 10_000));
        assert_eq!(r.first_held_since(), Some(4999));
        assert_eq!(r.arrive(0), Verdict::Now);
        r.pop_ready(&mut ready);
        assert_eq!(ready, (1..=1000).collect::<Vec<_>>());
        assert_eq!(
            (r.gaps(), r.held_bytes(), r.first_held_since()),
            (0, 0, None)
        );
    }

    /// Records held out of order, a duplicate among them, come out in sequence, once each.
    #[test]
    fn holds_out_of_order_are_sorted_and_duplicates_refused() {
        let mut r = Reorder::default();
        let mut ready = Vec::new();
        for (s, kept) in [
            (5u64, true),
            (3, true),
            (4, true),
            (3, false),
            (9, true),
            (7, true),
        ] {
            assert_eq!(r.arrive(s), Verdict::Hold);
            assert_eq!(r.hold(s, s, 1, s), kept, "seq {s}");
        }
        assert_eq!(
            (r.held(), r.held_bytes(), r.first_held_since()),
            (5, 5, Some(3))
        );
        for s in 0..3 {
            assert_eq!(r.arrive(s), Verdict::Now);
        }
        r.pop_ready(&mut ready);
        assert_eq!(ready, vec![3, 4, 5]);
        r.drain_all(&mut ready);
        assert_eq!((ready, r.gaps(), r.held()), (vec![3, 4, 5, 7, 9], 2, 0));
    }

    #[test]
    fn giving_up_releases_up_to_the_next_gap() {
        let mut r = Reorder::default();
        let mut ready = Vec::new();
        for s in [2u64, 3, 5] {
            assert_eq!(r.arrive(s), Verdict::Hold);
            r.hold(s, s, 1, 0);
        }
        r.give_up_gap(&mut ready);
        assert_eq!(
            (ready.clone(), r.gaps(), r.held_bytes()),
            (vec![2, 3], 1, 1)
        );
        r.give_up_gap(&mut ready);
        assert_eq!((ready, r.gaps(), r.held()), (vec![2, 3, 5], 2, 0));
        assert_eq!(r.arrive(4), Verdict::Stale);
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
