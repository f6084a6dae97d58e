//! RED metrics (rate, errors, duration) aggregated in a shard: one explicit-bucket histogram per
//! series, flushed as deltas to the export core, which keeps them cumulative.

use rustc_hash::FxHashMap as HashMap;

use crate::signal::{AttrValue, Attrs, HistogramDelta, SpanKind, SpanRecord, DURATION_BOUNDS_S};

/// Attribute keys each histogram keeps from its span (the conventions' metric attributes).
const SERVER_KEYS: &[&str] = &[
    "http.request.method",
    "http.response.status_code",
    "http.route",
    "url.scheme",
    "network.protocol.version",
    "error.type",
];
const CLIENT_KEYS: &[&str] = &[
    "http.request.method",
    "http.response.status_code",
    "server.address",
    "server.port",
    "network.protocol.version",
    "error.type",
];

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    kind: u8,
    pid: u32,
    vals: Vec<String>,
}

#[derive(Debug)]
struct Accum {
    attrs: Attrs,
    counts: Vec<u64>,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

/// A shard's RED aggregation since the last flush.
#[derive(Debug, Default)]
pub struct Red {
    series: HashMap<Key, Accum>,
}

fn val_text(v: &AttrValue) -> String {
    match v {
        AttrValue::Str(s) => s.clone(),
        AttrValue::Int(i) => i.to_string(),
        AttrValue::Bool(b) => b.to_string(),
        AttrValue::Double(d) => d.to_string(),
    }
}

impl Red {
    pub fn series(&self) -> usize {
        self.series.len()
    }

    /// Count one span in its histogram.
    pub fn record(&mut self, span: &SpanRecord) {
        let keys = match span.kind {
            SpanKind::Server => SERVER_KEYS,
            SpanKind::Client => CLIENT_KEYS,
        };
        let mut vals = Vec::with_capacity(keys.len());
        for k in keys {
            vals.push(
                span.attrs
                    .iter()
                    .find(|(n, _)| n == k)
                    .map(|(_, v)| val_text(v))
                    .unwrap_or_default(),
            );
        }
        let key = Key {
            kind: span.kind as u8,
            pid: span.pid,
            vals,
        };
        let secs = span.end_unix_ns.saturating_sub(span.start_unix_ns) as f64 / 1e9;
        let acc = self.series.entry(key).or_insert_with(|| Accum {
            attrs: span
                .attrs
                .iter()
                .filter(|(n, _)| keys.contains(n))
                .cloned()
                .collect(),
            counts: vec![0; DURATION_BOUNDS_S.len() + 1],
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: 0.0,
        });
        let bucket = DURATION_BOUNDS_S
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(DURATION_BOUNDS_S.len());
        acc.counts[bucket] += 1;
        acc.count += 1;
        acc.sum += secs;
        acc.min = acc.min.min(secs);
        acc.max = acc.max.max(secs);
    }

    /// Hand every series' delta to `out` and start over.
    pub fn flush(&mut self, mut out: impl FnMut(HistogramDelta)) {
        for (key, acc) in self.series.drain() {
            let name = if key.kind == SpanKind::Server as u8 {
                "http.server.request.duration"
            } else {
                "http.client.request.duration"
            };
            out(HistogramDelta {
                name,
                unit: "s",
                pid: key.pid,
                attrs: acc.attrs,
                bounds: DURATION_BOUNDS_S,
                bucket_counts: acc.counts,
                count: acc.count,
                sum: acc.sum,
                min: acc.min,
                max: acc.max,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(kind: SpanKind, status: i64, dur_ns: u64) -> SpanRecord {
        SpanRecord {
            trace_id: [1; 16],
            span_id: [1; 8],
            parent_span_id: [0; 8],
            name: "GET /".into(),
            kind,
            start_unix_ns: 0,
            end_unix_ns: dur_ns,
            error: None,
            attrs: vec![
                ("http.request.method", AttrValue::Str("GET".into())),
                ("http.response.status_code", AttrValue::Int(status)),
                ("http.route", AttrValue::Str("/".into())),
                ("url.path", AttrValue::Str("/x".into())),
            ],
            pid: 1,
            comm: [0; 16],
        }
    }

    #[test]
    fn groups_by_attributes_and_buckets_durations() {
        let mut r = Red::default();
        r.record(&span(SpanKind::Server, 200, 3_000_000));
        r.record(&span(SpanKind::Server, 200, 20_000_000));
        r.record(&span(SpanKind::Server, 500, 1_000));
        r.record(&span(SpanKind::Client, 200, 1_000));
        assert_eq!(r.series(), 3);
        let mut out = Vec::new();
        r.flush(|d| out.push(d));
        assert_eq!(r.series(), 0);
        let ok = out
            .iter()
            .find(|d| d.name == "http.server.request.duration" && d.count == 2)
            .unwrap();
        assert_eq!(ok.bucket_counts[0], 1, "3 ms <= 5 ms");
        assert_eq!(ok.bucket_counts[2], 1, "20 ms <= 25 ms");
        assert!(
            ok.attrs.iter().all(|(k, _)| *k != "url.path"),
            "high-cardinality keys stay off metrics"
        );
        assert_eq!(out.iter().map(|d| d.count).sum::<u64>(), 4);
    }
}
