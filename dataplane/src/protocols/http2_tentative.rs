//! HPACK of the answers kept on trust while the requests are lost, and the spans that wait for
//! the trust to be settled.
//!
//! After a lost stretch of answers, the table is kept when every stream that could have sent a
//! header block in the hidden bytes proves it did not (`http2_resync.rs`). A stream opened in
//! request bytes that were hidden too is not tracked and proves nothing: its whole answer (a
//! trailers-only failure, one HEADERS frame inserting `grpc-status: 7`) may have been in the
//! hidden answer bytes, and a later `grpc-status` by index would then be read off the wrong
//! entry. While the requests are still lost (`HiddenIds::doubt` is `Pending`) nothing says yet
//! whether such a stream exists; forgetting the table then would cost every later call of a
//! connection whose requests are large messages (each of them loses framing) its dynamic-table
//! values. So the table is kept *on trust* instead, and settled by the requests:
//!
//! - **confirmed** when a request seen next opens the next stream id after the ones known when
//!   the requests were lost (client ids only grow: no stream was opened in the hidden bytes);
//! - **refuted** when an answer shows a stream opened in the hidden bytes, when a request skips
//!   ids, when more spans wait than [`MAX_HELD`], when a chunk comes more than
//!   [`MAX_TRUST_NS`] after the trust began, or when the connection closes.
//!
//! Another lost stretch of the answers meanwhile either passes the same checks (the trust then
//! starts again from the table as it is: entries inserted since the first stretch could be
//! shifted by the second) or forgets the table (what waits still waits for the requests' word).
//! When a stream that the requests will never tell of may exist (ids skipped by an earlier loss
//! and not answered yet, requests lost to bytes that were not frames, a connection joined after
//! its start: its streams older than the join), there is nothing to wait for: the table is
//! forgotten.
//!
//! While on trust, header blocks of the answers are decoded with the table as kept, and a field
//! taken from an entry inserted before the trust began (one a hidden insertion would have
//! shifted) is *doubtful*: the stream remembers which of its fields are (`Stream::doubt`, `F_*`
//! bits). Entries inserted since are exact either way (insertions go to the newest end), and so
//! are literals and the static table. Spans emitted with a doubtful field while on trust wait
//! here, and so do the spans emitted after them (so that the order is kept), at most [`MAX_HELD`] of them; no raw
//! bytes are kept. On confirmation they go out as decoded; on refutation their doubtful fields
//! become unknown (`None`, `headers_incomplete`), as do those of open streams, and the table
//! keeps only the entries inserted since the trust began (`Decoder::forget_before`). A value is
//! then unknown, never wrong. The cost: spans wait until the next request is seen (at most
//! [`MAX_TRUST_NS`] while chunks come, else until the connection is closed or given up as idle;
//! for the last call of a connection the wait ends that way, and its doubtful values are then
//! unknown).

use super::fields::{
    F_AUTHORITY, F_CONTENT_TYPE, F_GRPC_MESSAGE, F_GRPC_STATUS, F_METHOD, F_PATH, F_SCHEME,
    F_STATUS, F_TRACEPARENT,
};
use super::{H2Exchange, Http2Parser, L7Record};

/// Spans kept waiting per connection.
pub(crate) const MAX_HELD: usize = 8;
/// How long the trust may wait for the requests (kernel ns, from the chunk that began it).
pub(crate) const MAX_TRUST_NS: u64 = 5_000_000_000;

/// The answer table of one direction kept on trust.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Trust {
    /// The direction (the answers').
    dir: usize,
    /// `Decoder::inserted` when the trust began (entries inserted since are exact, also after
    /// the table was forgotten meanwhile: the count is never reset).
    since: u64,
    /// When it began.
    began_ns: u64,
}

/// A span emitted while on trust, and its doubtful fields.
#[derive(Debug)]
pub(crate) struct Held {
    x: H2Exchange,
    doubt: u16,
}

impl Held {
    /// Heap bytes of its strings.
    pub(crate) fn bytes(&self) -> usize {
        self.x.heap_bytes()
    }
}

/// Make the doubtful fields of `x` unknown.
pub(super) fn unknown(x: &mut H2Exchange, doubt: u16) {
    if doubt == 0 {
        return;
    }
    fn clear<T>(slot: &mut Option<T>, doubt: u16, bit: u16) {
        if doubt & bit != 0 {
            *slot = None;
        }
    }
    clear(&mut x.method, doubt, F_METHOD);
    clear(&mut x.path, doubt, F_PATH);
    clear(&mut x.authority, doubt, F_AUTHORITY);
    clear(&mut x.scheme, doubt, F_SCHEME);
    clear(&mut x.status, doubt, F_STATUS);
    clear(&mut x.content_type, doubt, F_CONTENT_TYPE);
    clear(&mut x.traceparent, doubt, F_TRACEPARENT);
    clear(&mut x.grpc_status, doubt, F_GRPC_STATUS);
    clear(&mut x.grpc_message, doubt, F_GRPC_MESSAGE);
    // Any doubtful field (`F_ANY`, even one whose name we ignore) may have hidden one we
    // report.
    x.headers_incomplete = true;
}

impl Http2Parser {
    /// The answers of direction `d` keep their table on trust from now on (again, if already:
    /// entries inserted since the last lost stretch are the exact ones).
    pub(super) fn trust(&mut self, d: usize, now_ns: u64, out: &mut Vec<L7Record>) {
        if self.trust.is_some_and(|t| t.dir != d) {
            self.settle_trust(false, out);
        }
        self.trust = Some(Trust {
            dir: d,
            since: self.dirs[d].hpack.inserted(),
            began_ns: self.trust.map_or(now_ns, |t| t.began_ns),
        });
    }

    /// A chunk entered at `now_ns`: a trust older than [`MAX_TRUST_NS`] is refuted (spans do
    /// not wait longer for a request that may never come).
    pub(super) fn expire_trust(&mut self, now_ns: u64, out: &mut Vec<L7Record>) {
        if self
            .trust
            .is_some_and(|t| now_ns.saturating_sub(t.began_ns) > MAX_TRUST_NS)
        {
            self.settle_trust(false, out);
        }
    }

    /// For decoding a header block of direction `d`: entries inserted before this count are
    /// doubtful.
    pub(super) fn trusted_since(&self, d: usize) -> Option<u64> {
        self.trust.filter(|t| t.dir == d).map(|t| t.since)
    }

    /// The trust is confirmed (`true`) or refuted: release what waited.
    pub(super) fn settle_trust(&mut self, confirmed: bool, out: &mut Vec<L7Record>) {
        let Some(t) = self.trust.take() else {
            return;
        };
        let hpack = &mut self.dirs[t.dir].hpack;
        if confirmed {
            hpack.trust_all();
        } else {
            hpack.forget_before(t.since);
        }
        for s in &mut self.streams {
            if !confirmed {
                unknown(&mut s.x, s.doubt);
            }
            s.doubt = 0;
        }
        for mut h in self.held.drain(..) {
            if !confirmed {
                unknown(&mut h.x, h.doubt);
            }
            out.push(L7Record::Http2(h.x));
        }
    }

    /// A span is done: out now, or waiting behind the trust.
    pub(super) fn release(&mut self, mut x: H2Exchange, doubt: u16, out: &mut Vec<L7Record>) {
        if self.trust.is_none() || (doubt == 0 && self.held.is_empty()) {
            // Nothing to settle, nothing ahead of it.
            out.push(L7Record::Http2(x));
            return;
        }
        if self.held.len() >= MAX_HELD {
            self.settle_trust(false, out);
            unknown(&mut x, doubt);
            out.push(L7Record::Http2(x));
            return;
        }
        self.held.push(Held { x, doubt });
    }
}
