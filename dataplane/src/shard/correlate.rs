//! Correlation: a client request made by a thread while it served a request becomes a child of
//! that server span. The shard owning the server connection remembers the requests it served
//! (a few per connection) and parks children that arrive before their parent's span, until it
//! comes or their wait ends.

use std::collections::VecDeque;

use super::{ShardCore, ShardIo};
use crate::signal::SpanRecord;
use crate::spans::SpanCtx;

/// Served requests remembered per server connection for late children.
const SERVED_MEMORY: usize = 16;
/// Room a connection's memory of served requests gets after its first request.
const SERVED_SOME: usize = 4;
/// Client spans parked waiting for a parent, per shard.
const MAX_PARKED: usize = 8192;
/// Server connections whose served requests are remembered.
const MAX_SERVED_CONNS: usize = 1 << 16;

#[derive(Debug, Clone, Copy)]
pub(super) struct Served {
    pub(super) first_seq: u64,
    pub(super) end_seq: u64,
    pub(super) ctx: SpanCtx,
    pub(super) at_ns: u64,
}

#[derive(Debug)]
pub(super) struct Parked {
    pub(super) parent_seq: u64,
    pub(super) span: Box<SpanRecord>,
    pub(super) deadline_ns: u64,
}

/// Add a served request to a connection's memory (the last [`SERVED_MEMORY`]). It gets room
/// for one first (most connections of a gateway serve one request, and a closing connection's
/// memory is then kept as it is), then for [`SERVED_SOME`], then for all of them.
pub(super) fn push_served(q: &mut VecDeque<Served>, s: Served) {
    if q.len() == q.capacity() && q.len() < SERVED_MEMORY {
        let room = match q.len() {
            0 => 1,
            n if n < SERVED_SOME => SERVED_SOME,
            _ => SERVED_MEMORY,
        };
        q.reserve_exact(room - q.len());
    }
    if q.len() >= SERVED_MEMORY {
        q.pop_front();
    }
    q.push_back(s);
}

impl ShardCore {
    pub(super) fn remember_served(&mut self, conn: u64, s: Served) {
        // An open connection keeps its own, in its flow: in cache, since the request was just
        // parsed (a map of its own cost a cache miss or two per request).
        if let Some(f) = self.flows.get_mut(conn, 0) {
            push_served(&mut f.served, s);
            return;
        }
        self.keep_served_only(conn, VecDeque::from([s]));
    }

    /// Keep the served requests of a connection whose flow ends, for children still to come,
    /// and hand them the children parked meanwhile: flows finished together (at stop, or idle
    /// in the same tick) are all out of the table while each is finished, so a child emitted
    /// by one of them (a partial call closed then) may have been parked for a parent whose
    /// flow was still waiting its turn.
    pub(super) fn keep_served(&mut self, conn: u64, q: VecDeque<Served>, io: &mut impl ShardIo) {
        let parents: Vec<Served> = if self.parked_count > 0 {
            q.iter().copied().collect()
        } else {
            Vec::new()
        };
        self.keep_served_only(conn, q);
        for s in parents {
            self.adopt_parked(conn, s, io);
        }
    }

    fn keep_served_only(&mut self, conn: u64, mut q: VecDeque<Served>) {
        if q.is_empty() {
            return;
        }
        if let Some(old) = self.served.get_mut(&conn) {
            for s in q {
                push_served(old, s);
            }
            return;
        }
        // Room for what was served, not for the last [`SERVED_MEMORY`] an open connection
        // keeps: most connections of a gateway close after a request or two, and up to
        // [`MAX_SERVED_CONNS`] of them are remembered.
        q.shrink_to_fit();
        // Full: forget the connection remembered first (O(1); was a scan of every entry on
        // each new connection once full).
        while self.served.len() >= MAX_SERVED_CONNS {
            match self.served_order.pop_front() {
                Some(old) => {
                    self.served.remove(&old);
                }
                None => break,
            }
        }
        self.served_order.push_back(conn);
        self.served.insert(conn, q);
    }

    pub(super) fn adopt_parked(&mut self, conn: u64, s: Served, io: &mut impl ShardIo) {
        if self.parked_count == 0 {
            return;
        }
        let Some(list) = self.parked.get_mut(&conn) else {
            return;
        };
        let mut i = 0;
        let mut adopted = Vec::new();
        while i < list.len() {
            if list[i].parent_seq >= s.first_seq && list[i].parent_seq <= s.end_seq {
                adopted.push(list.swap_remove(i));
            } else {
                i += 1;
            }
        }
        if list.is_empty() {
            self.parked.remove(&conn);
        }
        self.parked_count -= adopted.len();
        for p in adopted {
            let mut span = p.span;
            span.trace_id = s.ctx.trace_id;
            span.parent_span_id = s.ctx.span_id;
            self.export_span(span, io);
        }
    }

    pub(super) fn on_child(
        &mut self,
        pconn: u64,
        pseq: u64,
        mut span: Box<SpanRecord>,
        now_ns: u64,
        io: &mut impl ShardIo,
    ) {
        let of = |q: &VecDeque<Served>| {
            q.iter()
                .find(|s| pseq >= s.first_seq && pseq <= s.end_seq)
                .copied()
        };
        // The flow's memory, then the shard's: a flow evicted while its connection stayed open
        // left its memory there, and a new flow took its place.
        let parent = self
            .flows
            .peek(pconn)
            .and_then(|f| of(&f.served))
            .or_else(|| self.served.get(&pconn).and_then(of));
        if let Some(s) = parent {
            span.trace_id = s.ctx.trace_id;
            span.parent_span_id = s.ctx.span_id;
            self.export_span(span, io);
            return;
        }
        if self.parked_count >= MAX_PARKED {
            self.stats.orphan_children += 1;
            self.export_span(span, io);
            return;
        }
        self.parked_count += 1;
        self.parked.entry(pconn).or_default().push(Parked {
            parent_seq: pseq,
            span,
            deadline_ns: now_ns + self.cfg.child_wait_ns,
        });
    }
}
