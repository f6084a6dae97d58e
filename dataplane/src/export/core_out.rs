//! The export core's outgoing side: a span batch or the metric series made into a request
//! body (gzipped from its pieces when compression is on), handed to the send queue or the
//! discard sink, and written as OTLP JSON lines when no collector is configured.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::Metric;
use prost::Message;

use super::{unix_ns, Core};
use crate::export::selfmon::{self, DropReason, SelfEvent, SignalKind};
use crate::export::transport::Batch;
use crate::export::{otlp, pb, EncodedBatch};
use crate::signal::AttrValue;

impl Core {
    pub(super) fn flush_spans(&mut self) {
        self.batch_started = None;
        if self.span_count == 0 {
            return;
        }
        let items = std::mem::take(&mut self.span_count) as u64;
        // Per-process buffers are kept, cleared, for the next batch (no regrowing them span by
        // span into fresh pages every batch); a process with no span since the last batch gives
        // its buffer back.
        self.spans.retain(|_, b| !b.is_empty());
        let pids: Vec<u32> = self.spans.keys().copied().collect();
        let resources: Vec<_> = pids
            .iter()
            .map(|&pid| otlp::resource(&self.resource_for(pid)))
            .collect();
        let delivered = self.queue.is_some() || self.cfg.discard.is_some();
        let groups = resources
            .iter()
            .zip(self.spans.values())
            .map(|(r, s)| (r, s.as_slice()));
        let mut ends = std::mem::take(&mut self.span_ends);
        if delivered && self.cfg.gzip && self.jsonl.is_none() {
            // Gzipped, the body is only the compressor's input: it reads the groups' heads and
            // span buffers in place instead of a copy of them all in one buffer.
            let parts =
                pb::traces_body_parts(groups, &otlp::scope(), std::mem::take(&mut self.body_buf));
            let pieces = parts.pieces();
            let encoded_bytes = pieces.iter().map(|p| p.len()).sum();
            let gz = self.gzipper.gzip_parts(&pieces);
            drop(pieces);
            self.body_buf = parts.into_heads();
            self.deliver_gzipped(SignalKind::Traces, gz, encoded_bytes, items, &ends);
        } else {
            let mut body = std::mem::take(&mut self.body_buf);
            pb::traces_body_into(groups, &otlp::scope(), &mut body);
            if self.jsonl.is_some() {
                // JSON lines are the no-collector path: decode our own bytes into the message the
                // JSON mapping is defined on (they are valid by construction; tested in `pb`).
                match ExportTraceServiceRequest::decode(body.as_slice()) {
                    Ok(req) => self.write_jsonl(&req),
                    Err(e) => log::warn!("export core: span batch did not decode: {e}"),
                }
            }
            if delivered {
                let cap = body.capacity();
                // Sent uncompressed, the buffer itself becomes the request body: the next batch
                // takes a new one of the same size.
                body = self
                    .enqueue(SignalKind::Traces, body, items, &ends)
                    .unwrap_or_else(|| Vec::with_capacity(cap));
            }
            self.body_buf = body;
        }
        ends.clear();
        self.span_ends = ends;
        for b in self.spans.values_mut() {
            b.clear();
        }
    }

    pub(super) fn export_metrics(&mut self) {
        let now = unix_ns();
        // pid -> (name, unit) -> points, in a stable order.
        let mut by_pid: BTreeMap<u32, BTreeMap<(&'static str, &'static str), Vec<_>>> =
            BTreeMap::new();
        for (key, s) in &self.series {
            by_pid
                .entry(key.pid)
                .or_default()
                .entry((key.name, s.unit))
                .or_default()
                .push(otlp::histogram_point(&s.hist, now));
        }
        let mut groups: Vec<(_, Vec<Metric>)> = Vec::with_capacity(by_pid.len() + 1);
        for (pid, metrics) in by_pid {
            let res = otlp::resource(&self.resource_for(pid));
            let metrics = metrics
                .into_iter()
                .map(|((name, unit), points)| otlp::histogram_metric(name, unit, points))
                .collect();
            groups.push((res, metrics));
        }
        let mut self_attrs = self.host.clone();
        self_attrs.push(("service.name", AttrValue::Str("telegen".into())));
        self_attrs.push((
            "service.version",
            AttrValue::Str(env!("CARGO_PKG_VERSION").into()),
        ));
        let families = selfmon::families(&self.mon.snapshot());
        groups.push((
            otlp::resource(&self_attrs),
            selfmon::otlp_metrics(&families, self.start_unix_ns, now),
        ));
        for (req, points) in otlp::chunk_metrics(groups, self.cfg.max_points_per_batch) {
            self.write_jsonl(&req);
            if self.queue.is_some() || self.cfg.discard.is_some() {
                let body = otlp::encode_metrics(&req);
                self.enqueue(SignalKind::Metrics, body, points, &[]);
            }
        }
    }

    /// Compress (when set) and send an encoded request. Gives `encoded` back when it was not
    /// itself moved into the request (gzipped, delivered to the benchmark sink, or nowhere to
    /// send), for reuse.
    fn enqueue(
        &mut self,
        kind: SignalKind,
        encoded: Vec<u8>,
        items: u64,
        span_ends: &[u64],
    ) -> Option<Vec<u8>> {
        if self.queue.is_none() && self.cfg.discard.is_none() {
            return Some(encoded);
        }
        let encoded_bytes = encoded.len();
        if self.cfg.gzip {
            let gz = self.gzipper.gzip(&encoded);
            self.deliver_gzipped(kind, gz, encoded_bytes, items, span_ends);
            // The uncompressed buffer goes back to the caller for reuse.
            return Some(encoded);
        }
        self.deliver(kind, encoded, encoded_bytes, items, span_ends)
    }

    /// Deliver a gzipped body, or count the batch dropped if gzip failed.
    fn deliver_gzipped(
        &mut self,
        kind: SignalKind,
        gz: std::io::Result<Vec<u8>>,
        encoded_bytes: usize,
        items: u64,
        span_ends: &[u64],
    ) {
        match gz {
            Ok(body) => {
                self.deliver(kind, body, encoded_bytes, items, span_ends);
            }
            Err(e) => {
                log::warn!("export core: gzip failed: {e}");
                self.mon.record(SelfEvent::Dropped {
                    kind,
                    items,
                    reason: DropReason::Encode,
                    whole_batch: true,
                });
            }
        }
    }

    /// Hand `body` (as it goes on the wire) to the discard sink or the send queue. The discard
    /// sink only reads it, so it comes back for reuse.
    fn deliver(
        &mut self,
        kind: SignalKind,
        body: Vec<u8>,
        encoded_bytes: usize,
        items: u64,
        span_ends: &[u64],
    ) -> Option<Vec<u8>> {
        if let Some(d) = &self.cfg.discard {
            d.deliver(&EncodedBatch {
                kind,
                items,
                encoded_bytes,
                body: &body,
                span_end_unix_ns: span_ends,
            });
            self.mon.record(SelfEvent::BatchSent { kind, items });
            return Some(body);
        }
        if let Some(q) = self.queue.as_ref() {
            q.push(Batch {
                kind,
                body: Bytes::from(body),
                items,
            });
        }
        None
    }

    fn write_jsonl<T: JsonRequest>(&mut self, req: &T) {
        let Some(w) = self.jsonl.as_mut() else { return };
        let res = req
            .to_json_writer(&mut *w)
            .and_then(|()| w.write_all(b"\n").map_err(|e| e.to_string()));
        match res {
            Ok(()) => self.mon.record(SelfEvent::JsonlLine),
            Err(e) => {
                log::warn!("OTLP JSON file: write failed: {e}");
                self.mon.record(SelfEvent::JsonlError);
            }
        }
        // Keep the file reasonably current without a syscall per line.
        if w.buffer().len() > 64 * 1024 {
            if let Err(e) = w.flush() {
                log::warn!("OTLP JSON file: flush failed: {e}");
                self.mon.record(SelfEvent::JsonlError);
            }
        }
    }

    pub(super) fn flush_jsonl(&mut self) {
        if let Some(w) = self.jsonl.as_mut() {
            if let Err(e) = w.flush() {
                log::warn!("OTLP JSON file: flush failed: {e}");
                self.mon.record(SelfEvent::JsonlError);
            }
        }
    }
}

/// The two request types written as OTLP JSON lines.
trait JsonRequest {
    fn to_json_writer(&self, w: &mut BufWriter<std::fs::File>) -> Result<(), String>;
}
impl JsonRequest for ExportTraceServiceRequest {
    fn to_json_writer(&self, w: &mut BufWriter<std::fs::File>) -> Result<(), String> {
        serde_json::to_writer(w, self).map_err(|e| e.to_string())
    }
}
impl JsonRequest for ExportMetricsServiceRequest {
    fn to_json_writer(&self, w: &mut BufWriter<std::fs::File>) -> Result<(), String> {
        serde_json::to_writer(w, self).map_err(|e| e.to_string())
    }
}
