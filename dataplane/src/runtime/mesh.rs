//! A shard's outputs in the runtime ([`MeshIo`]): records and child spans to the other shards,
//! spans encoded on the shard into chunks ([`SpanChunk`]) the export core hands back, metric
//! deltas and counters to the export core.

use std::time::{Duration, Instant};

use crate::shard::{ShardIo, ShardMsg};
use crate::signal::{ExportMsg, SpanChunk, SpanRecord};

/// Spans per chunk at most, and bytes past which a chunk is sent before it holds that many.
const CHUNK_SPANS: usize = 64;
const CHUNK_BYTES: usize = 32 << 10;
/// Span chunks a shard has at most (being filled, queued, at the export core, or back for
/// reuse): with `CHUNK_SPANS`, at most 65,536 spans waiting for the export core per shard.
pub(super) const MAX_CHUNKS: usize = 1024;
/// Chunks back from the export core kept between ticks for reuse; more are freed.
const CHUNKS_KEPT: usize = 16;
/// Longest a stopping shard waits for room in a full export queue for its last chunk.
pub(super) const FINAL_SEND_WAIT: Duration = Duration::from_secs(5);

/// A chunk holding `CHUNK_SPANS` spans or `CHUNK_BYTES` bytes goes out.
fn is_full(c: &SpanChunk) -> bool {
    c.len() >= CHUNK_SPANS || c.bytes.len() >= CHUNK_BYTES
}

pub(super) struct MeshIo {
    out: Vec<Option<rtrb::Producer<ShardMsg>>>,
    export: rtrb::Producer<ExportMsg>,
    /// Chunks the export core has copied its spans out of, back for reuse.
    recycled: rtrb::Consumer<Box<SpanChunk>>,
    /// The chunk being filled.
    chunk: Option<Box<SpanChunk>>,
    /// Chunks in existence, wherever they are (bounded by `MAX_CHUNKS`).
    chunks: usize,
    /// The box of the span encoded last, for the shard's next span.
    spare: Option<Box<SpanRecord>>,
}

impl MeshIo {
    pub(super) fn new(
        out: Vec<Option<rtrb::Producer<ShardMsg>>>,
        export: rtrb::Producer<ExportMsg>,
        recycled: rtrb::Consumer<Box<SpanChunk>>,
    ) -> Self {
        MeshIo {
            out,
            export,
            recycled,
            chunk: None,
            chunks: 0,
            spare: None,
        }
    }

    /// Send the chunk being filled, if it holds anything; when the queue is full it stays.
    /// True when nothing is left unsent.
    fn send_chunk(&mut self) -> bool {
        match self.chunk.take() {
            Some(c) if !c.is_empty() => match self.export.push(ExportMsg::Spans(c)) {
                Ok(()) => true,
                Err(rtrb::PushError::Full(msg)) => {
                    if let ExportMsg::Spans(c) = msg {
                        self.chunk = Some(c);
                    }
                    false
                }
            },
            other => {
                self.chunk = other;
                true
            }
        }
    }

    /// The chunk to put the next span in, taken out: the one being filled, unless it is full
    /// and cannot be sent; else one the export core handed back, or a new one. `None` when
    /// there is no room (the queue is full, or every chunk is in use).
    fn take_chunk_with_room(&mut self) -> Option<Box<SpanChunk>> {
        if self.chunk.as_deref().is_some_and(is_full) && !self.send_chunk() {
            return None;
        }
        if let Some(c) = self.chunk.take() {
            return Some(c);
        }
        match self.recycled.pop() {
            Ok(mut c) => {
                c.clear();
                Some(c)
            }
            Err(_) if self.chunks < MAX_CHUNKS => {
                self.chunks += 1;
                Some(Box::default())
            }
            Err(_) => None,
        }
    }

    /// At shutdown: send the last chunk, waiting (up to `wait`) while the export core drains a
    /// full queue. Returns the spans that could not be sent.
    pub(super) fn finish(&mut self, wait: Duration) -> u64 {
        let deadline = Instant::now() + wait;
        while !self.send_chunk() {
            if Instant::now() >= deadline {
                return self.chunk.take().map_or(0, |c| c.len() as u64);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        0
    }
}

impl ShardIo for MeshIo {
    fn forward(&mut self, to: usize, msg: ShardMsg) -> Result<(), ShardMsg> {
        match self.out.get_mut(to).and_then(Option::as_mut) {
            Some(p) => p.push(msg).map_err(|rtrb::PushError::Full(m)| m),
            None => Err(msg),
        }
    }
    fn forward_spare(&mut self, to: usize, buf: Vec<u8>) -> Result<(), Vec<u8>> {
        match self.out.get_mut(to).and_then(Option::as_mut) {
            Some(p) if p.slots() > p.buffer().capacity() / 2 => {
                // Cannot be full: only this shard pushes, and more than half the slots are free.
                let _ = p.push(ShardMsg::Spare(buf));
                Ok(())
            }
            _ => Err(buf),
        }
    }
    /// Spans are encoded here, on the shard, into the chunk being filled (sent when full or
    /// at the end of the tick); other messages go straight to the export core.
    fn export(&mut self, msg: ExportMsg) -> Result<(), ExportMsg> {
        match msg {
            ExportMsg::Span(span) => {
                let Some(mut c) = self.take_chunk_with_room() else {
                    return Err(ExportMsg::Span(span));
                };
                c.push(&span);
                let full = is_full(&c);
                self.chunk = Some(c);
                if full {
                    // Sent at once; if the queue is full it stays, and is tried again first.
                    self.send_chunk();
                }
                self.spare = Some(span);
                Ok(())
            }
            other => self
                .export
                .push(other)
                .map_err(|rtrb::PushError::Full(m)| m),
        }
    }
    fn recycled(&mut self) -> Option<Box<SpanRecord>> {
        self.spare.take()
    }
    fn flush_batched(&mut self) {
        self.send_chunk();
        while self.recycled.slots() > CHUNKS_KEPT {
            if self.recycled.pop().is_ok() {
                self.chunks -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::pb::SpanView;
    use crate::shard::{ShardConfig, ShardCore};
    use crate::signal::{AttrValue, SpanKind};

    fn span(path: &str) -> SpanRecord {
        SpanRecord {
            trace_id: [1; 16],
            span_id: [2; 8],
            parent_span_id: [0; 8],
            name: path.to_string().into(),
            kind: SpanKind::Server,
            start_unix_ns: 1,
            end_unix_ns: 2,
            error: None,
            attrs: vec![("url.path", AttrValue::Str(path.into()))],
            pid: 7,
            comm: [0; 16],
        }
    }

    /// A mesh io with an export queue of `capacity` messages: (io, export consumer, recycle
    /// producer).
    fn mesh(
        capacity: usize,
    ) -> (
        MeshIo,
        rtrb::Consumer<ExportMsg>,
        rtrb::Producer<Box<SpanChunk>>,
    ) {
        let (exp, exported) = rtrb::RingBuffer::new(capacity);
        let (back, recycled) = rtrb::RingBuffer::new(MAX_CHUNKS);
        (MeshIo::new(Vec::new(), exp, recycled), exported, back)
    }

    fn names(c: &SpanChunk) -> Vec<String> {
        c.iter()
            .map(|(_, b)| SpanView::decode(b).expect("a span").name.to_string())
            .collect()
    }

    /// Spans leave the shard encoded, in order, in chunks of `CHUNK_SPANS` (a partial one at the
    /// end of the tick); the box of the last one comes back for the next span, and a chunk the
    /// export core hands back is reused.
    #[test]
    fn spans_leave_encoded_in_chunks_and_their_boxes_are_reused() {
        let (mut io, mut exported, mut back) = mesh(8);
        let mut core = ShardCore::new(ShardConfig::new(0, 1), 0);
        for i in 0..CHUNK_SPANS + 3 {
            core.export_span_for_test(span(&format!("/{i}")), &mut io);
        }
        let spare = io.spare.as_deref().map(|b| b as *const SpanRecord);
        let Ok(ExportMsg::Spans(first)) = exported.pop() else {
            panic!("no full chunk sent")
        };
        assert_eq!(first.len(), CHUNK_SPANS);
        assert!(
            exported.pop().is_err(),
            "the partial chunk waits for the tick"
        );
        core.tick(1, &mut io);
        let mut second = None;
        while let Ok(m) = exported.pop() {
            if let ExportMsg::Spans(c) = m {
                second = Some(c);
            }
        }
        let second = second.expect("the tick sends the partial chunk");
        let all: Vec<String> = names(&first).into_iter().chain(names(&second)).collect();
        let want: Vec<String> = (0..CHUNK_SPANS + 3).map(|i| format!("/{i}")).collect();
        assert_eq!(all, want);
        assert!(first.spans.iter().all(|e| e.pid == 7 && e.end_unix_ns == 2));

        // The next span is built in the box of the last one encoded.
        let mut got = None;
        struct Spy<'a>(&'a mut MeshIo, &'a mut Option<*const SpanRecord>);
        impl ShardIo for Spy<'_> {
            fn forward(&mut self, to: usize, msg: ShardMsg) -> Result<(), ShardMsg> {
                self.0.forward(to, msg)
            }
            fn export(&mut self, msg: ExportMsg) -> Result<(), ExportMsg> {
                if let ExportMsg::Span(b) = &msg {
                    *self.1 = Some(&**b as *const SpanRecord);
                }
                self.0.export(msg)
            }
            fn recycled(&mut self) -> Option<Box<SpanRecord>> {
                self.0.recycled()
            }
        }
        core.export_span_for_test(span("/next"), &mut Spy(&mut io, &mut got));
        assert_eq!(got, spare, "the box was reused");

        // A chunk handed back is the next one filled: no new chunk is made.
        let addr = &*first as *const SpanChunk;
        assert!(back.push(first).is_ok());
        assert!(back.push(second).is_ok());
        assert_eq!(
            io.chunks, 3,
            "the tick sent the partial chunk; /next is in a third"
        );
        io.flush_batched();
        let Ok(ExportMsg::Spans(third)) = exported.pop() else {
            panic!("the chunk of /next was not sent")
        };
        assert_eq!(names(&third), ["/next"]);
        for i in 0..CHUNK_SPANS {
            core.export_span_for_test(span(&format!("/again{i}")), &mut io);
        }
        let Ok(ExportMsg::Spans(c)) = exported.pop() else {
            panic!("no chunk sent")
        };
        assert_eq!(
            &*c as *const SpanChunk, addr,
            "the handed-back chunk was reused"
        );
        assert_eq!(names(&c)[0], "/again0");
        assert_eq!(io.chunks, 3);
    }

    /// With the export queue full, a chunk stays with the shard and is sent when there is
    /// room; only spans that find no room at all are refused (the shard counts them), and
    /// the chunks a shard makes stay within `MAX_CHUNKS`.
    #[test]
    fn a_full_queue_holds_spans_back_and_refuses_only_what_has_no_room() {
        let (mut io, mut exported, _back) = mesh(1);
        let mut sent = 0;
        let mut refused = 0;
        for i in 0..3 * CHUNK_SPANS {
            match io.export(ExportMsg::Span(Box::new(span(&format!("/{i}"))))) {
                Ok(()) => sent += 1,
                Err(ExportMsg::Span(_)) => refused += 1,
                Err(_) => panic!("another message came back"),
            }
        }
        // One chunk in the queue, one full and waiting: the third chunk's spans are refused.
        assert_eq!((sent, refused), (2 * CHUNK_SPANS, CHUNK_SPANS));
        assert_eq!(io.chunks, 2);
        let mut seen = Vec::new();
        for _ in 0..2 {
            let Ok(ExportMsg::Spans(c)) = exported.pop() else {
                panic!("chunk missing")
            };
            seen.extend(names(&c));
            io.flush_batched();
        }
        let want: Vec<String> = (0..2 * CHUNK_SPANS).map(|i| format!("/{i}")).collect();
        assert_eq!(seen, want, "every accepted span arrives, in order");

        // Chunks never handed back: the shard stops at MAX_CHUNKS.
        let (mut io, mut exported, _back) = mesh(MAX_CHUNKS + 8);
        let mut accepted = 0usize;
        for _ in 0..(MAX_CHUNKS + 2) * CHUNK_SPANS {
            if io.export(ExportMsg::Span(Box::new(span("/x")))).is_ok() {
                accepted += 1;
            }
            while exported.pop().is_ok() {}
        }
        assert_eq!(accepted, MAX_CHUNKS * CHUNK_SPANS);
        assert_eq!(io.chunks, MAX_CHUNKS);
    }

    /// Chunks handed back beyond `CHUNKS_KEPT` are freed at the end of a tick; the last chunk
    /// waits for room at shutdown, and what never finds room is reported, not lost silently.
    #[test]
    fn idle_chunks_are_freed_and_the_last_one_is_sent_or_reported() {
        let (mut io, mut exported, mut back) = mesh(1);
        for _ in 0..CHUNKS_KEPT + 5 {
            assert!(back.push(Box::default()).is_ok());
        }
        io.chunks = CHUNKS_KEPT + 5;
        io.flush_batched();
        assert_eq!(io.recycled.slots(), CHUNKS_KEPT);
        assert_eq!(io.chunks, CHUNKS_KEPT);

        assert!(io.export(ExportMsg::Stats(Box::default())).is_ok());
        for i in 0..3 {
            assert!(io
                .export(ExportMsg::Span(Box::new(span(&format!("/{i}")))))
                .is_ok());
        }
        assert_eq!(
            io.finish(Duration::from_millis(20)),
            3,
            "the queue stayed full"
        );
        assert!(exported.pop().is_ok());
        for i in 0..2 {
            assert!(io
                .export(ExportMsg::Span(Box::new(span(&format!("/{i}")))))
                .is_ok());
        }
        assert_eq!(io.finish(Duration::from_millis(20)), 0);
        let Ok(ExportMsg::Spans(c)) = exported.pop() else {
            panic!("the last chunk was not sent")
        };
        assert_eq!(names(&c), ["/0", "/1"]);
    }
}
