//! From finished exchanges to spans: each exchange a parser completed becomes a span, built into
//! a recycled box, counted in its duration histogram, given its parent (a server span this
//! client call was made while serving, or an incoming `traceparent`) and exported.

use std::collections::VecDeque;

use super::correlate::Served;
use super::{shard_of, Flow, ShardCore, ShardIo, ShardMsg};
use crate::l7spans::{dns_span_into, h2_span_into};
use crate::protocols::{L7Record, Role};
use crate::red::http_def;
use crate::signal::{ExportMsg, SpanRecord};
use crate::spans::{http_span_into, parse_traceparent, FlowInfo, SpanCtx};

impl ShardCore {
    pub(super) fn emit_records(
        &mut self,
        conn: u64,
        flow: &Flow,
        end_seq: u64,
        records: &mut Vec<L7Record>,
        io: &mut impl ShardIo,
    ) {
        self.emit_view(conn, &flow.info, &flow.parents, end_seq, records, io);
    }

    /// [`ShardCore::emit_records`] for a flow still in the table: emitting needs `self` whole,
    /// so the flow lends its info and parent memory meanwhile.
    pub(super) fn emit_in_table(
        &mut self,
        conn: u64,
        end_seq: u64,
        records: &mut Vec<L7Record>,
        io: &mut impl ShardIo,
    ) {
        let Some(flow) = self.flows.get_mut(conn, 0) else {
            return;
        };
        let info = flow.info.clone();
        let parents = std::mem::take(&mut flow.parents);
        self.emit_view(conn, &info, &parents, end_seq, records, io);
        if let Some(f) = self.flows.get_mut(conn, 0) {
            f.parents = parents;
        }
    }

    fn emit_view(
        &mut self,
        conn: u64,
        info: &FlowInfo,
        parents: &VecDeque<(u64, u64, u64)>,
        end_seq: u64,
        records: &mut Vec<L7Record>,
        io: &mut impl ShardIo,
    ) {
        for rec in records.drain(..) {
            self.on_record_done(conn, info, parents, end_seq, rec, io);
        }
    }

    /// Build the span of one finished exchange into `out` (and count it in its histogram).
    fn build_span(
        &mut self,
        out: &mut SpanRecord,
        rec: L7Record,
        flow: &FlowInfo,
        ctx: SpanCtx,
        parent: [u8; 8],
    ) {
        let offset = self.clock_offset_ns;
        let metric = match rec {
            L7Record::Http(tx) => {
                http_span_into(out, &tx, flow, ctx, parent, offset, &mut self.span_cache);
                Some(http_def(out.kind))
            }
            L7Record::Http2(x) => {
                h2_span_into(out, x, flow, ctx, parent, offset, &mut self.span_cache)
            }
            L7Record::Dns(x) => dns_span_into(out, &x, flow, ctx, parent, offset),
        };
        if let Some(def) = metric {
            self.red.record(def, out);
        }
    }

    /// A box to build a span in: the span last exported, handed back by `io` (its contents are
    /// overwritten, its attribute vector reused), or a new one.
    fn span_box(io: &mut impl ShardIo) -> Box<SpanRecord> {
        io.recycled()
            .unwrap_or_else(|| Box::new(SpanRecord::blank()))
    }

    /// One finished exchange: its span, its parent (a server span this client call was made
    /// while serving, or an incoming `traceparent`), its metric.
    fn on_record_done(
        &mut self,
        conn: u64,
        info: &FlowInfo,
        parents: &VecDeque<(u64, u64, u64)>,
        end_seq: u64,
        rec: L7Record,
        io: &mut impl ShardIo,
    ) {
        let (role, request_seq, end_ns, traceparent) = match &rec {
            L7Record::Http(tx) => (
                tx.role,
                tx.request_seq,
                tx.end_ns,
                tx.traceparent.as_deref(),
            ),
            L7Record::Http2(x) => (x.role, x.request_seq, x.end_ns, x.traceparent.as_deref()),
            L7Record::Dns(x) => (x.role, x.request_seq, x.end_ns, None),
        };
        let incoming = traceparent.and_then(parse_traceparent);
        match role {
            Role::Client => {
                let parent = parents
                    .iter()
                    .rev()
                    .find(|(s, _, _)| *s == request_seq)
                    .map(|&(_, c, s)| (c, s));
                let ctx = SpanCtx {
                    trace_id: self.ids.trace_id(),
                    span_id: self.ids.span_id(),
                };
                let mut span = Self::span_box(io);
                self.build_span(&mut span, rec, info, ctx, [0; 8]);
                match parent {
                    Some((pconn, pseq)) => {
                        let owner = shard_of(pconn, self.cfg.shards);
                        if owner == self.cfg.id {
                            self.on_child(pconn, pseq, span, end_ns, io);
                        } else if let Err(ShardMsg::Child { span, .. }) = io.forward(
                            owner,
                            ShardMsg::Child {
                                parent_conn: pconn,
                                parent_seq: pseq,
                                span,
                            },
                        ) {
                            // Queue full: better a root span than none.
                            self.stats.queue_drops += 1;
                            self.stats.orphan_children += 1;
                            self.export_span(span, io);
                        }
                    }
                    None => self.export_span(span, io),
                }
            }
            _ => {
                let (trace_id, parent) = match incoming {
                    Some((t, p)) => (t, p),
                    None => (self.ids.trace_id(), [0; 8]),
                };
                let ctx = SpanCtx {
                    trace_id,
                    span_id: self.ids.span_id(),
                };
                let mut span = Self::span_box(io);
                self.build_span(&mut span, rec, info, ctx, parent);
                let served = Served {
                    first_seq: request_seq,
                    end_seq,
                    ctx,
                    at_ns: end_ns,
                };
                self.remember_served(conn, served);
                self.adopt_parked(conn, served, io);
                self.export_span(span, io);
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn export_span_for_test(&mut self, span: SpanRecord, io: &mut impl ShardIo) {
        let mut b = Self::span_box(io);
        *b = span;
        self.export_span(b, io)
    }

    pub(super) fn export_span(&mut self, span: Box<SpanRecord>, io: &mut impl ShardIo) {
        match io.export(ExportMsg::Span(span)) {
            Ok(()) => self.stats.spans_emitted += 1,
            Err(_) => self.stats.export_queue_drops += 1,
        }
    }
}
