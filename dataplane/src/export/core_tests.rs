use super::*;

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
    use prost::Message;
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

/// Every span encoded goes back to the queue of the shard it came from, whole, once; a full
/// queue frees it here instead (nothing lost from the batch either way).
#[test]
fn encoded_spans_go_back_to_their_shard() {
    let span = |i: u64| SpanRecord {
        span_id: [i as u8; 8],
        attrs: vec![("url.path", AttrValue::Str(format!("/item/{i}")))],
        ..test_span(i)
    };
    let mut consumers = Vec::new();
    let mut producers = Vec::new();
    let mut recycle = Vec::new();
    let mut back = Vec::new();
    for shard in 0..2u64 {
        let (mut p, c) = rtrb::RingBuffer::new(64);
        for i in 0..5 {
            assert!(p
                .push(ExportMsg::Span(Box::new(span(shard * 10 + i))))
                .is_ok());
        }
        producers.push(p);
        consumers.push(c);
        // Room for 3 of shard 1's 5.
        let (rp, rc) = rtrb::RingBuffer::new(if shard == 0 { 16 } else { 3 });
        recycle.push(Some(rp));
        back.push(rc);
    }
    let cfg = ExportConfig {
        discard: Some(super::super::DiscardSink::new(|_: &EncodedBatch<'_>| {})),
        ..ExportConfig::default()
    };
    let stop = StopHandle::new();
    stop.stop();
    let report =
        run_export_core_recycling(cfg, consumers, recycle, Box::new(NoResolver), None, stop)
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.spans_exported, 10);
    for (shard, mut rc) in back.into_iter().enumerate() {
        let mut ids = Vec::new();
        while let Ok(b) = rc.pop() {
            assert_eq!(
                b.attrs[0].1.as_str(),
                Some(format!("/item/{}", b.span_id[0]).as_str())
            );
            ids.push(b.span_id[0]);
        }
        let first = shard as u8 * 10;
        let want: Vec<u8> = (first..first + if shard == 0 { 5 } else { 3 }).collect();
        assert_eq!(ids, want, "shard {shard}");
    }
}
