//! Streams whose request headers were hidden: client stream ids that may have been opened in
//! request bytes the kernel did not copy.
//!
//! Client stream ids only grow (RFC 9113 5.1.1). While the request direction is followed, every
//! stream it opens is seen, and an unknown id below the highest one seen is a closed stream (or
//! one opened before we joined). Once framing of the requests is lost to a gap
//! (`http2_resync.rs`), a HEADERS frame in the hidden bytes opens a stream we never learn of:
//! when a new id is seen next (the request where framing came back, or an answer) and it is above
//! the next one, the ids skipped may have been opened there, and their answers are not late
//! frames. The skipped ids are kept as ranges, after every new id until a request seen opens a
//! stream (from then on the requests are followed again). Up to [`MAX_RANGES`] ranges per
//! connection, as many as the streams tracked (each range holds at least one id that may be an
//! open stream), allocated as needed (24 bytes each): when more are needed the lowest ids are
//! forgotten, as the oldest stream is evicted when too many are open. Their answers or resets
//! then make no span (never one too many), and as those streams may still send header blocks
//! either way, no HPACK table is kept across a later gap ([`HiddenIds::untracked`]). Merging
//! ranges instead would lose no id, but would take in the ids seen between them: a late frame
//! of a call already counted (a reset after its trailers, as gRPC peers send) would then count
//! it twice. An answer header block of a kept id creates its stream and takes the id out of
//! its range: one stream, hence one span, per id. So does a DATA or RST_STREAM frame of a kept
//! id from either side, as neither is ever sent on a stream that was not opened (PRIORITY may
//! be, and creates nothing): a call refused or cancelled with a reset makes its span (ended by
//! the reset, as a reset stream whose request was seen), and so does an answer whose header
//! block was hidden too, from its DATA. Such a frame naming an id above every one known while
//! the requests are still lost shows that id opened in the lost bytes, as its answer's header
//! block would. On a connection joined mid-stream, before a request seen opens a stream, it
//! shows a call opened before the join, which gets its stream as a header block of it would
//! (starting at that frame: nothing bounds its request, and it is partial, not
//! `headers_incomplete`). Anywhere else it is a late frame of a closed stream, of one opened
//! before we joined (below an id seen), or of none (above every id known, once every stream
//! opened since is seen), and makes nothing.
//!
//! What such a stream knows of its request is nothing: method, path and the other request fields
//! stay unknown, the exchange is partial (its request was not seen) and `headers_incomplete`
//! (the request block was not captured). Its start is the start of the chunk where the loss
//! began: the hidden HEADERS frame was moved by that syscall or a later one, so the request
//! started no earlier, and exactly then in the usual case (the hidden middle of one syscall);
//! the answer's start comes after the request's, so its duration would be too short. Its
//! sequence number is that chunk's too.
//!
//! Only while no stream can have been opened out of our sight before the loss: from the client
//! preface on, or from a request HEADERS seen opening a stream (every earlier id is below it). A
//! connection joined mid-stream may have streams older than anything seen, whose start no bound
//! here fits: their answers stay untracked, as before. A loss to bytes that were not frames
//! (`lose`) gives no bound on when framing went wrong: until a request opens a stream again,
//! nothing is kept unless a gap loss already covers it; what such bytes opened is never kept,
//! and may send header blocks either way at any time ([`HiddenIds::untracked`]).

use super::{BlockMeta, Chunk, Http2Parser, L7Record, Stream, MAX_STREAMS};

/// Ranges of ids kept per connection (see the module comment).
pub(crate) const MAX_RANGES: usize = MAX_STREAMS;

/// What [`HiddenIds::doubt`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Doubt {
    /// Every stream opened is tracked or closed.
    None,
    /// The requests are lost since a gap: ids above the last one known may be open, until a
    /// request opens a stream ([`HiddenIds::opened`] says then whether any was).
    Pending,
    /// Some stream may be open that nothing later will tell of for sure.
    Lost,
}

/// Where the request direction lost framing: the highest client id known then, and the chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Loss {
    last: u32,
    start_ns: u64,
    seq: u64,
}

/// The odd ids strictly between `lo` and `hi`, opened (if at all) no earlier than `start_ns`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    lo: u32,
    hi: u32,
    start_ns: u64,
    seq: u64,
}

impl Range {
    fn holds(&self, id: u32) -> bool {
        id % 2 == 1 && self.lo < id && id < self.hi
    }

    /// Still holds an odd id.
    fn any(&self) -> bool {
        let first = if self.lo % 2 == 0 {
            u64::from(self.lo) + 1
        } else {
            u64::from(self.lo) + 2
        };
        first < u64::from(self.hi)
    }
}

/// The client stream ids of one connection that may have been opened in hidden request bytes.
#[derive(Debug, Default)]
pub(crate) struct HiddenIds {
    /// No client stream above the highest id known can have been opened out of our sight,
    /// except after `pending`.
    known: bool,
    /// The request direction lost framing to a gap, and no request has opened a stream since.
    pending: Option<Loss>,
    /// In no order, at most [`MAX_RANGES`]; none holds an id another holds.
    ranges: Vec<Range>,
    /// A stream opened out of our sight may exist that is neither tracked nor kept in a range:
    /// ids were forgotten to keep `ranges` bounded, or the requests were lost to bytes that were
    /// not frames (no range can hold what they opened).
    untracked: bool,
}

impl HiddenIds {
    /// The connection starts: no stream exists yet.
    pub(crate) fn connection_start(&mut self) {
        self.known = true;
    }

    /// The request direction lost framing to uncaptured bytes of chunk `c`; `last` is the
    /// highest client id known.
    pub(crate) fn gap(&mut self, last: u32, c: &Chunk<'_>) {
        if self.known && self.pending.is_none() {
            self.pending = Some(Loss {
                last,
                start_ns: c.start_ns,
                seq: c.seq,
            });
        }
    }

    /// The request direction lost framing to bytes that were not frames: nothing says when, nor
    /// which ids they opened (a stream opened there is never kept: `untracked`).
    pub(crate) fn garbage(&mut self) {
        if self.pending.is_none() {
            self.known = false;
            self.untracked = true;
        }
    }

    /// A stream was created for `id`, above every id known before; `request`: by a request
    /// header block (framing of the requests is followed again). While the requests were lost
    /// (`pending`), says whether the lost stretch provably opened no stream: `Some(true)` when
    /// this request opens the next id, `Some(false)` when ids were skipped or this is the answer
    /// of a stream opened out of our sight.
    pub(crate) fn opened(&mut self, id: u32, request: bool) -> Option<bool> {
        let mut none_hidden = None;
        if let Some(p) = &mut self.pending {
            let r = Range {
                lo: p.last,
                hi: id,
                start_ns: p.start_ns,
                seq: p.seq,
            };
            p.last = id;
            none_hidden = Some(request && !r.any());
            if r.any() {
                self.push(r);
            }
        }
        if request {
            self.pending = None;
            self.known = true;
        }
        none_hidden
    }

    /// A frame of the answers, or one that only a stream once opened carries, names `id`, above
    /// every id known, while the requests are lost since a gap: `id` was opened in the lost
    /// bytes ([`HiddenIds::opened`] with `request` false). Returns the (start_ns, seq) bound, or
    /// `None` when the requests are not lost (nothing bounds when such a stream was opened).
    pub(crate) fn opened_hidden(&mut self, id: u32) -> Option<(u64, u64)> {
        let p = self.pending?;
        self.opened(id, false);
        Some((p.start_ns, p.seq))
    }

    /// May a stream opened out of our sight exist that is neither tracked nor kept here (its id
    /// forgotten, or opened in bytes that were not frames)? It may send a header block either
    /// way at any time.
    pub(crate) fn untracked(&self) -> bool {
        self.untracked
    }

    /// Heap bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.ranges.capacity() * std::mem::size_of::<Range>()
    }

    /// Can a stream above every id known have been opened out of our sight with nothing to
    /// bound when (joined mid-stream, or the requests lost to bytes that were not frames, and no
    /// request seen opening a stream since)?
    pub(crate) fn unbounded(&self) -> bool {
        !self.known
    }

    /// Can a stream we do not track have been opened in hidden request bytes (or before we
    /// joined, or in bytes that were not frames)?
    pub(crate) fn doubt(&self) -> Doubt {
        if !self.ranges.is_empty() || !self.known {
            Doubt::Lost
        } else if self.pending.is_some() {
            Doubt::Pending
        } else {
            Doubt::None
        }
    }

    /// Is `id` one that may have been opened in hidden bytes and has no stream yet? If so it
    /// leaves its range (it gets one stream, ever); returns the (start_ns, seq) bound.
    pub(crate) fn take(&mut self, id: u32) -> Option<(u64, u64)> {
        let k = self.ranges.iter().position(|r| r.holds(id))?;
        let r = self.ranges.swap_remove(k);
        if self.ranges.is_empty() {
            // Free what a burst of losses grew.
            self.ranges = Vec::new();
        }
        let below = Range { hi: id, ..r };
        let above = Range { lo: id, ..r };
        for part in [above, below] {
            if part.any() {
                self.push(part);
            }
        }
        Some((r.start_ns, r.seq))
    }

    /// Keep `r`; when [`MAX_RANGES`] are kept, the range of the lowest ids is forgotten (`r`
    /// itself if it is that one): the older a stream, the likelier its answer came already.
    fn push(&mut self, r: Range) {
        if self.ranges.len() < MAX_RANGES {
            self.ranges.push(r);
            return;
        }
        self.untracked = true;
        if let Some(k) = (0..self.ranges.len()).min_by_key(|&k| self.ranges[k].lo) {
            if self.ranges[k].lo < r.lo {
                self.ranges[k] = r;
            }
        }
    }
}

impl Http2Parser {
    /// A header block of stream `meta.stream` in direction `d`, which no tracked stream has:
    /// the index of the stream created for it, or `None` when it is not tracked.
    pub(super) fn open(
        &mut self,
        d: usize,
        meta: &BlockMeta,
        c: &Chunk<'_>,
        out: &mut Vec<L7Record>,
    ) -> Option<usize> {
        let id = meta.stream;
        let req = self.request_dir();
        if id <= self.last_stream {
            // An answer of a stream opened in hidden request bytes, or else a closed stream (late
            // trailers) or one created before we joined: not tracked.
            let r = req.filter(|&r| r != d)?;
            let bound = self.hidden_ids.take(id)?;
            let s = self.hidden_stream(r, id, bound);
            return Some(self.track(s, c, out));
        }
        if let Some(r) = req {
            if r != d {
                if let Some(bound) = self.hidden_ids.opened_hidden(id) {
                    // The answer of a stream opened in the requests still lost.
                    self.settle_trust(false, out);
                    self.last_stream = id;
                    let s = self.hidden_stream(r, id, bound);
                    return Some(self.track(s, c, out));
                }
            }
            if let Some(none_hidden) = self.hidden_ids.opened(id, r == d) {
                self.settle_trust(none_hidden, out);
            }
        }
        self.last_stream = id;
        let s = self.new_stream(id, (meta.start_ns, meta.seq));
        Some(self.track(s, c, out))
    }

    /// A DATA or RST_STREAM frame of stream `id`, which no tracked stream has. Either peer
    /// sends those only on a stream that was opened (unlike PRIORITY, which may name an idle
    /// one and creates nothing here), so an id that hidden request bytes may have opened, or
    /// one above every id known while the requests are lost, was opened there: it gets its
    /// stream (once: the id leaves its range), as for an answer header block. So does an odd id
    /// above every id known while nothing bounds the streams opened out of sight (a connection
    /// joined mid-stream, before any request seen opens a stream): opened before the join, it
    /// is a call, and starts here as one known by a header block would. Any other is not
    /// tracked (a closed stream's late frame, one opened before we joined and older than an id
    /// seen, an id above the ones known when every stream opened since was seen: never
    /// opened). Returns its index.
    #[cold]
    #[inline(never)]
    pub(super) fn open_by_frame(
        &mut self,
        id: u32,
        c: &Chunk<'_>,
        out: &mut Vec<L7Record>,
    ) -> Option<usize> {
        let req = self.request_dir()?;
        if id % 2 == 0 {
            return None;
        }
        let bound = if id > self.last_stream {
            let Some(bound) = self.hidden_ids.opened_hidden(id) else {
                if !self.hidden_ids.unbounded() {
                    // Every stream opened above the ids known was seen: a frame of none.
                    return None;
                }
                // Opened before we joined (or in bytes that were not frames), with nothing to
                // bound when: as for a header block of it (`open`), its stream starts here.
                self.last_stream = id;
                let s = self.new_stream(id, (c.start_ns, c.seq));
                return Some(self.track(s, c, out));
            };
            // A stream opened out of sight: its answer may have been hidden too (`open`).
            self.settle_trust(false, out);
            self.last_stream = id;
            bound
        } else {
            self.hidden_ids.take(id)?
        };
        let s = self.hidden_stream(req, id, bound);
        Some(self.track(s, c, out))
    }

    /// A stream of `id` starting at (start_ns, seq), its directions marked as hidden where they
    /// are suspect now.
    fn new_stream(&self, id: u32, bound: (u64, u64)) -> NewStream {
        NewStream {
            id,
            bound,
            hidden: self.dirs.each_ref().map(|d| d.suspect.is_some()),
            incomplete: false,
        }
    }

    /// The stream of `id`, whose request HEADERS were hidden no earlier than `bound` (start_ns,
    /// seq); `req` is the request direction.
    fn hidden_stream(&self, req: usize, id: u32, bound: (u64, u64)) -> NewStream {
        let mut s = self.new_stream(id, bound);
        // Nor was anything of its requests since: its END_STREAM may have been hidden.
        s.hidden[req] = true;
        // Its request block was not captured.
        s.incomplete = true;
        s
    }

    /// Start tracking stream `n`, making room if [`MAX_STREAMS`] are open; returns its index.
    fn track(&mut self, n: NewStream, c: &Chunk<'_>, out: &mut Vec<L7Record>) -> usize {
        if self.streams.len() >= MAX_STREAMS {
            // Make room: the oldest stream is likely one whose end was not captured.
            self.overflows += 1;
            let oldest = (0..self.streams.len())
                .min_by_key(|&i| self.streams[i].x.stream_id)
                .unwrap_or(0);
            let mut old = self.streams.swap_remove(oldest);
            old.x.partial = true;
            self.emit(old, c.end_ns, out);
        }
        if self.streams.capacity() == 0 {
            // Room for one (then four, eight...): a `Vec` of 240-byte streams grows to room
            // for four at once, which a connection of one call at a time keeps for its life.
            self.streams.reserve_exact(1);
        }
        // Made in its place: a `Stream` built aside was copied in (240 bytes), once per call.
        self.streams.push(Stream::default());
        let i = self.streams.len() - 1;
        let s = &mut self.streams[i];
        s.x.stream_id = n.id;
        (s.x.start_ns, s.x.request_seq) = n.bound;
        s.x.headers_incomplete = n.incomplete;
        s.hidden = n.hidden;
        i
    }
}

/// What a stream starts with: [`Http2Parser::track`] makes the stream from it.
#[derive(Clone, Copy)]
struct NewStream {
    id: u32,
    /// (start_ns, request_seq).
    bound: (u64, u64),
    hidden: [bool; 2],
    /// Its request block was not captured.
    incomplete: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocols::Direction;

    fn chunk(seq: u64) -> Chunk<'static> {
        Chunk {
            dir: Direction::Ingress,
            data: &[],
            tail: &[],
            total_len: 0,
            start_ns: seq * 100,
            end_ns: seq * 100 + 10,
            seq,
        }
    }

    #[test]
    fn ids_skipped_after_a_gap_are_taken_once() {
        let mut h = HiddenIds::default();
        h.connection_start();
        h.opened(1, true);
        h.gap(1, &chunk(7));
        h.opened(9, true);
        assert_eq!(h.pending, None);
        assert_eq!(h.take(1), None);
        assert_eq!(h.take(9), None);
        assert_eq!(h.take(4), None);
        assert_eq!(h.take(5), Some((700, 7)));
        assert_eq!(h.take(5), None);
        assert_eq!(h.take(3), Some((700, 7)));
        assert_eq!(h.take(7), Some((700, 7)));
        assert_eq!(h.take(3), None);
        assert!(h.ranges.is_empty());
    }

    #[test]
    fn answers_while_still_lost_split_the_stretch() {
        let mut h = HiddenIds::default();
        h.connection_start();
        h.gap(0, &chunk(2));
        // The answer of 5 comes first, then the requests are followed again at 11.
        h.opened(5, false);
        h.opened(11, true);
        assert_eq!(h.pending, None);
        for id in [1, 3, 7, 9] {
            assert_eq!(h.take(id), Some((200, 2)), "{id}");
        }
        assert!(h.ranges.is_empty());
        // The next id after the last known one: nothing skipped.
        h.gap(11, &chunk(3));
        h.opened(13, true);
        assert!(h.ranges.is_empty());
    }

    #[test]
    fn ranges_are_bounded_and_forget_the_oldest() {
        let mut h = HiddenIds::default();
        h.connection_start();
        // Lost stretches, each hiding three ids: three more than can be kept.
        let n = MAX_RANGES as u32 + 3;
        let mut last = 1;
        for k in 0..n {
            h.gap(last, &chunk(u64::from(k)));
            last += 8;
            h.opened(last, true);
        }
        assert_eq!(h.ranges.len(), MAX_RANGES);
        assert!(h.untracked());
        assert!(h.bytes() <= 2 * MAX_RANGES * std::mem::size_of::<Range>());
        assert_eq!(h.take(3), None);
        // The oldest range kept is the 4th stretch's; taking the middle id of the newest
        // splits it in two, which forgets the oldest.
        let (lo3, top) = (1 + 3 * 8, 1 + (n - 1) * 8);
        let seq = u64::from(n - 1);
        assert!(h.ranges.iter().any(|r| r.lo == lo3));
        assert_eq!(h.take(top + 4), Some((seq * 100, seq)));
        assert_eq!(h.ranges.len(), MAX_RANGES);
        assert!(!h.ranges.iter().any(|r| r.lo == lo3));
        assert_eq!(h.take(lo3 + 2), None);
        assert_eq!(h.take(top + 2), Some((seq * 100, seq)));
        assert_eq!(h.take(top + 6), Some((seq * 100, seq)));
    }

    #[test]
    fn nothing_is_forgotten_below_the_bound() {
        let mut h = HiddenIds::default();
        h.connection_start();
        let mut last = 1;
        for k in 0..MAX_RANGES as u64 {
            h.gap(last, &chunk(k));
            last += 4;
            h.opened(last, true);
        }
        assert!(!h.untracked());
        for k in 0..MAX_RANGES as u32 {
            assert!(h.take(3 + 4 * k).is_some(), "{k}");
        }
        assert!(h.ranges.is_empty() && h.bytes() == 0);
        assert_eq!(h.doubt(), Doubt::None);
    }

    #[test]
    fn the_doubt_is_settled_by_the_next_request() {
        let mut h = HiddenIds::default();
        assert_eq!(h.doubt(), Doubt::Lost);
        h.connection_start();
        assert_eq!(h.opened(1, true), None);
        assert_eq!(h.doubt(), Doubt::None);
        h.gap(1, &chunk(1));
        assert_eq!(h.doubt(), Doubt::Pending);
        // The next id: nothing was opened out of sight.
        assert_eq!(h.opened(3, true), Some(true));
        assert_eq!(h.doubt(), Doubt::None);
        // An answer of a stream we never saw opened.
        h.gap(3, &chunk(2));
        assert_eq!(h.opened(5, false), Some(false));
        assert_eq!(h.doubt(), Doubt::Pending);
        assert_eq!(h.opened(7, true), Some(true));
        // Ids skipped: they stay possible until their answers come.
        h.gap(7, &chunk(3));
        assert_eq!(h.opened(11, true), Some(false));
        assert_eq!(h.doubt(), Doubt::Lost);
        assert!(h.take(9).is_some());
        assert_eq!(h.doubt(), Doubt::None);
    }

    #[test]
    fn nothing_is_kept_without_a_bound() {
        // Joined mid-stream: streams may predate everything seen.
        let mut h = HiddenIds::default();
        h.gap(1, &chunk(1));
        h.opened(9, true);
        assert_eq!(h.take(5), None);
        // Framing lost to bytes that were not frames, then a gap before any request opened a
        // stream: the ids hidden at first are not bounded.
        h.garbage();
        h.gap(9, &chunk(2));
        h.opened(15, false);
        assert_eq!(h.take(11), None);
        // A request opening a stream bounds every earlier one again.
        h.opened(17, true);
        h.gap(17, &chunk(3));
        h.opened(21, true);
        assert_eq!(h.take(19), Some((300, 3)));
    }
}
