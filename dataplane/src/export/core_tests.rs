use super::*;
use crate::export::EncodedBatch;
use crate::signal::SpanRecord;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

fn delta(counts: Vec<u64>, min: f64, max: f64) -> HistogramDelta {
    HistogramDelta {
        name: "http.server.request.duration",
        unit: "s",
        pid: 1,
        attrs: vec![("http.route", AttrValue::Str("/".into()))],
        bounds: &[0.1, 1.0],
        count: counts.iter().sum(),
        bucket_counts: counts,
        sum: 1.0,
        min,
        max,
    }
}

#[test]
fn merges_cumulatively() {
    let mut h = CumulativeHistogram {
        attrs: vec![],
        bounds: &[0.1, 1.0],
        bucket_counts: vec![0; 3],
        count: 0,
        sum: 0.0,
        min: 0.0,
        max: 0.0,
        start_unix_ns: 5,
    };
    assert!(merge_delta(&mut h, &delta(vec![1, 0, 2], 0.05, 3.0)));
    assert!(merge_delta(&mut h, &delta(vec![0, 4, 0], 0.2, 0.9)));
    assert_eq!(h.bucket_counts, vec![1, 4, 2]);
    assert_eq!(h.count, 7);
    assert_eq!((h.min, h.max, h.sum), (0.05, 3.0, 2.0));
    let mut bad = delta(vec![1, 1], 0.0, 0.0);
    assert!(!merge_delta(&mut h, &bad));
    bad.bounds = &[0.5];
    assert!(!merge_delta(&mut h, &bad));
    assert_eq!(h.count, 7);
}

struct NoResolver;
impl ResourceResolver for NoResolver {
    fn host(&self) -> Attrs {
        Vec::new()
    }
    fn process(&mut self, pid: u32) -> Attrs {
        vec![("process.pid", AttrValue::Int(i64::from(pid)))]
    }
}

/// A server span of process 7 ending at 2,000 + `i` ns.
fn test_span(i: u64) -> SpanRecord {
    SpanRecord {
        trace_id: [1; 16],
        span_id: [2; 8],
        parent_span_id: [0; 8],
        name: "GET /".to_string().into(),
        kind: crate::signal::SpanKind::Server,
        start_unix_ns: 1_000 + i,
        end_unix_ns: 2_000 + i,
        error: None,
        attrs: Vec::new(),
        pid: 7,
        comm: [0; 16],
    }
}

#[test]
fn discard_sink_gets_encoded_gzipped_batches_counted_as_sent() {
    use std::sync::Mutex;
    let (mut p, c) = rtrb::RingBuffer::new(64);
    for i in 0..3u64 {
        assert!(p.push(ExportMsg::Span(Box::new(test_span(i)))).is_ok());
    }
    /// (items, span end times, body) of each traces batch.
    type Seen = Vec<(u64, Vec<u64>, Vec<u8>)>;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let s2 = seen.clone();
    let cfg = ExportConfig {
        discard: Some(super::super::DiscardSink::new(
            move |b: &EncodedBatch<'_>| {
                if b.kind == SignalKind::Traces {
                    if let Ok(mut v) = s2.lock() {
                        v.push((b.items, b.span_end_unix_ns.to_vec(), b.body.to_vec()));
                    }
                }
            },
        )),
        ..ExportConfig::default()
    };
    let stop = StopHandle::new();
    stop.stop();
    let report = run_export_core(cfg, vec![c], Box::new(NoResolver), None, stop);
    let report = report.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.spans_exported, 3);
    assert_eq!(report.spans_dropped, 0);
    let seen = seen.lock().map(|v| v.clone()).unwrap_or_default();
    assert_eq!(seen.len(), 1);
    let (items, mut ends, body) = seen[0].clone();
    assert_eq!(items, 3);
    ends.sort_unstable();
    assert_eq!(ends, vec![2_000, 2_001, 2_002]);
    assert_eq!(&body[..2], &[0x1f, 0x8b], "gzipped");
    let mut raw = Vec::new();
    let _ = std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut raw);
    let req = ExportTraceServiceRequest::decode(raw.as_slice());
    let spans = req.map(|r| r.resource_spans[0].scope_spans[0].spans.len());
    assert_eq!(spans.ok(), Some(3));
    // An endpoint and the discard sink together are refused.
    let cfg = ExportConfig {
        endpoint: Some("http://127.0.0.1:1".into()),
        discard: Some(super::super::DiscardSink::new(|_: &EncodedBatch<'_>| {})),
        ..ExportConfig::default()
    };
    let r = run_export_core(
        cfg,
        Vec::new(),
        Box::new(NoResolver),
        None,
        StopHandle::new(),
    );
    assert!(matches!(r, Err(ExportError::InvalidConfig { .. })));
}

#[test]
fn series_key_distinguishes_attrs_and_pid() {
    let a = delta(vec![1, 0, 0], 0.0, 0.0);
    let mut b = a.clone();
    b.pid = 2;
    let mut c = a.clone();
    c.attrs.push(("x", AttrValue::Double(1.5)));
    assert_ne!(SeriesKey::new(&a), SeriesKey::new(&b));
    assert_ne!(SeriesKey::new(&a), SeriesKey::new(&c));
    assert_eq!(SeriesKey::new(&c), SeriesKey::new(&c.clone()));
}

/// Spans arrive encoded in chunks (or one by one, unencoded) and all reach the batch; every
/// chunk goes back to the queue of the shard it came from, whole, once; a full queue frees it
/// here instead (nothing lost from the batch either way).
#[test]
fn span_chunks_are_exported_and_go_back_to_their_shard() {
    let span = |i: u64| SpanRecord {
        span_id: [i as u8; 8],
        attrs: vec![("url.path", AttrValue::Str(format!("/item/{i}")))],
        ..test_span(i)
    };
    let mut consumers = Vec::new();
    let mut producers = Vec::new();
    let mut recycle = Vec::new();
    let mut back = Vec::new();
    let mut sent = Vec::new();
    for shard in 0..2u64 {
        let (mut p, c) = rtrb::RingBuffer::new(64);
        // Shard 0: three chunks of two spans, then one span unencoded. Shard 1: five of one.
        let (chunks, per) = if shard == 0 { (3, 2) } else { (5, 1) };
        for k in 0..chunks {
            let mut chunk = SpanChunk::default();
            for j in 0..per {
                let id = shard * 20 + k * per + j;
                chunk.push(&span(id));
                sent.push(id as u8);
            }
            assert!(p.push(ExportMsg::Spans(Box::new(chunk))).is_ok());
        }
        if shard == 0 {
            assert!(p.push(ExportMsg::Span(Box::new(span(19)))).is_ok());
            sent.push(19);
        }
        producers.push(p);
        consumers.push(c);
        // Room for 3 of shard 1's 5 chunks.
        let (rp, rc) = rtrb::RingBuffer::new(if shard == 0 { 16 } else { 3 });
        recycle.push(Some(rp));
        back.push(rc);
    }
    let bodies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = bodies.clone();
    let cfg = ExportConfig {
        discard: Some(super::super::DiscardSink::new(
            move |b: &EncodedBatch<'_>| {
                if b.kind == SignalKind::Traces {
                    seen.lock().unwrap().push(b.body.to_vec());
                }
            },
        )),
        ..ExportConfig::default()
    };
    let stop = StopHandle::new();
    stop.stop();
    let report =
        run_export_core_recycling(cfg, consumers, recycle, Box::new(NoResolver), None, stop)
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.spans_exported, sent.len() as u64);
    let mut exported = Vec::new();
    for body in bodies.lock().unwrap().iter() {
        let mut raw = Vec::new();
        let gz = std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut raw);
        assert!(gz.is_ok(), "gzipped");
        let req = ExportTraceServiceRequest::decode(raw.as_slice()).expect("protobuf");
        for s in req
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
        {
            let path = s.attributes.iter().find(|kv| kv.key == "url.path");
            let want = format!("/item/{}", s.span_id[0]);
            assert_eq!(
                path.and_then(|kv| kv.value.as_ref())
                    .and_then(|v| v.value.clone()),
                Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(want))
            );
            exported.push(s.span_id[0]);
        }
    }
    exported.sort_unstable();
    sent.sort_unstable();
    assert_eq!(exported, sent);
    for (shard, mut rc) in back.into_iter().enumerate() {
        let mut firsts = Vec::new();
        while let Ok(c) = rc.pop() {
            let (_, b) = c.iter().next().expect("a span");
            let v = crate::export::pb::SpanView::decode(b).expect("a span");
            firsts.push(v.start_unix_ns);
        }
        let want: Vec<u64> = if shard == 0 {
            vec![0, 2, 4]
        } else {
            (20..23).collect()
        };
        let want: Vec<u64> = want
            .into_iter()
            .map(|i| test_span(i).start_unix_ns)
            .collect();
        assert_eq!(firsts, want, "shard {shard}");
    }
}
