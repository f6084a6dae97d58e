//! Texts kept for the life of the process, so that spans carry them as `&'static str`.
//!
//! A span of a busy route carries the same few texts as the spans before it: its route, its name,
//! its host. Shared as `Arc<str>`, each of those costs a reference count increment when the span
//! is built and a decrement when it is dropped: atomic read-modify-writes that also order the
//! loads around them (an unrelated cache miss cannot overlap them). With the connection's
//! addresses (now held inline, `Text::Inline`), that was 16 per HTTP server span. Interned, a
//! text is a pointer copy.
//!
//! Interned texts are never freed, so all interners together stop at a budget of bytes
//! ([`BUDGET_BYTES`]), counting each text's bytes and its place in its interner's set; a text
//! that arrives after the budget is spent comes back shared (`Text::Shared`), as before. Memory
//! stays bounded whatever the traffic: a route full of identifiers is templated before it gets
//! here, and a flood of distinct host names only spends the budget once.

use std::sync::atomic::{AtomicUsize, Ordering};

use rustc_hash::FxHashSet;

use crate::signal::Text;

/// Bytes all interners of the process may keep, together.
pub const BUDGET_BYTES: usize = 4 << 20;
/// What one text costs beyond its bytes: its entry in the set, the allocator's rounding.
const PER_TEXT_BYTES: usize = 32;

static SPENT: AtomicUsize = AtomicUsize::new(0);

/// One shard's interned texts (each shard interns its own: no lock on the per-span path).
#[derive(Debug)]
pub struct Interner {
    set: FxHashSet<&'static str>,
    /// Bytes spent by every interner sharing this budget, and the budget.
    spent: &'static AtomicUsize,
    budget: usize,
}

impl Default for Interner {
    fn default() -> Self {
        Interner::with_budget(&SPENT, BUDGET_BYTES)
    }
}

impl Interner {
    /// An interner that spends from `spent`, up to `budget` bytes (tests give it a small one).
    pub fn with_budget(spent: &'static AtomicUsize, budget: usize) -> Self {
        Interner {
            set: FxHashSet::default(),
            spent,
            budget,
        }
    }

    /// `s` as a text spans can carry: interned when it already is or the budget has room,
    /// shared otherwise.
    pub fn text(&mut self, s: &str) -> Text {
        if let Some(&t) = self.set.get(s) {
            return Text::Static(t);
        }
        let cost = s.len() + PER_TEXT_BYTES;
        let spent = self
            .spent
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n + cost <= self.budget).then_some(n + cost)
            });
        if spent.is_err() {
            return Text::Shared(s.into());
        }
        let t: &'static str = Box::leak(s.into());
        self.set.insert(t);
        Text::Static(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_is_interned_once_and_the_budget_bounds_the_rest() {
        static SPENT: AtomicUsize = AtomicUsize::new(0);
        let mut a = Interner::with_budget(&SPENT, 2 * (PER_TEXT_BYTES + 4));
        let first = a.text("/api");
        let again = a.text("/api");
        let (Text::Static(x), Text::Static(y)) = (&first, &again) else {
            panic!("not interned: {first:?} {again:?}");
        };
        assert!(std::ptr::eq(*x, *y), "the same text twice is one copy");
        assert_eq!(a.set.len(), 1);

        // A second interner spends from the same budget: one more text fits, then none.
        let mut b = Interner::with_budget(&SPENT, 2 * (PER_TEXT_BYTES + 4));
        assert!(matches!(b.text("/web"), Text::Static("/web")));
        let over = b.text("/far");
        assert!(matches!(over, Text::Shared(_)), "over budget: {over:?}");
        assert_eq!(over, "/far");
        assert!(matches!(a.text("/api"), Text::Static(_)), "kept texts stay");
        assert_eq!(SPENT.load(Ordering::Relaxed), 2 * (PER_TEXT_BYTES + 4));
    }
}
