//! OTLP encoding helpers: pure functions turning the data plane's signal types ([`SpanRecord`],
//! cumulative histograms, attribute lists) into `opentelemetry-proto` messages, plus the
//! protobuf/gzip byte encoders. Nothing here does I/O or keeps state, so all of it is unit-tested
//! directly and benchmarked in `benches/otlp.rs`.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};
use prost::Message;

use crate::signal::{AttrValue, Attrs, SpanKind, SpanRecord};

/// Instrumentation scope name on everything Telegen exports.
pub const SCOPE_NAME: &str = "telegen";

/// One attribute value as OTLP `AnyValue`.
pub fn any_value(v: &AttrValue) -> AnyValue {
    let value = match v {
        AttrValue::Str(s) => any_value::Value::StringValue(s.clone()),
        AttrValue::Text(s) => any_value::Value::StringValue(s.to_string()),
        AttrValue::Int(i) => any_value::Value::IntValue(*i),
        AttrValue::Bool(b) => any_value::Value::BoolValue(*b),
        AttrValue::Double(d) => any_value::Value::DoubleValue(*d),
    };
    AnyValue { value: Some(value) }
}

/// An attribute list as OTLP `KeyValue`s (order preserved).
pub fn key_values(attrs: &Attrs) -> Vec<KeyValue> {
    attrs
        .iter()
        .map(|(k, v)| KeyValue {
            key: (*k).to_string(),
            value: Some(any_value(v)),
            key_strindex: 0,
        })
        .collect()
}

/// Like [`key_values`] but consumes the list, moving strings instead of copying them.
pub fn into_key_values(attrs: Attrs) -> Vec<KeyValue> {
    attrs
        .into_iter()
        .map(|(k, v)| {
            let value = match v {
                AttrValue::Str(s) => any_value::Value::StringValue(s),
                AttrValue::Text(s) => any_value::Value::StringValue(s.into()),
                AttrValue::Int(i) => any_value::Value::IntValue(i),
                AttrValue::Bool(b) => any_value::Value::BoolValue(b),
                AttrValue::Double(d) => any_value::Value::DoubleValue(d),
            };
            KeyValue {
                key: k.to_string(),
                value: Some(AnyValue { value: Some(value) }),
                key_strindex: 0,
            }
        })
        .collect()
}

/// A resource from attributes.
pub fn resource(attrs: &Attrs) -> Resource {
    Resource {
        attributes: key_values(attrs),
        ..Default::default()
    }
}

/// The instrumentation scope `telegen` with the crate version.
pub fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: SCOPE_NAME.to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        ..Default::default()
    }
}

fn otlp_kind(kind: SpanKind) -> span::SpanKind {
    match kind {
        SpanKind::Server => span::SpanKind::Server,
        SpanKind::Client => span::SpanKind::Client,
    }
}

/// A span record as an OTLP span (consumes it to move its strings). The parent id is left empty
/// for a root span (all-zero parent), as OTLP requires; `error: Some(msg)` becomes status
/// `STATUS_CODE_ERROR` with that message, otherwise the status is unset.
pub fn span_to_otlp(rec: SpanRecord) -> Span {
    let status = match rec.error {
        Some(message) => Status {
            message,
            code: status::StatusCode::Error as i32,
        },
        None => Status {
            message: String::new(),
            code: status::StatusCode::Unset as i32,
        },
    };
    let parent_span_id = if rec.parent_span_id == [0u8; 8] {
        Vec::new()
    } else {
        rec.parent_span_id.to_vec()
    };
    Span {
        trace_id: rec.trace_id.to_vec(),
        span_id: rec.span_id.to_vec(),
        parent_span_id,
        name: rec.name.into(),
        kind: otlp_kind(rec.kind) as i32,
        start_time_unix_nano: rec.start_unix_ns,
        end_time_unix_nano: rec.end_unix_ns.max(rec.start_unix_ns),
        attributes: into_key_values(rec.attrs),
        status: Some(status),
        ..Default::default()
    }
}

/// A trace export request: one `ResourceSpans` per (resource, spans) group, each with a single
/// `ScopeSpans` for scope `telegen`.
pub fn traces_request(groups: Vec<(Resource, Vec<Span>)>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: groups
            .into_iter()
            .map(|(resource, spans)| ResourceSpans {
                resource: Some(resource),
                scope_spans: vec![ScopeSpans {
                    scope: Some(scope()),
                    spans,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            })
            .collect(),
    }
}

/// A cumulative explicit-bucket histogram series as the core holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct CumulativeHistogram {
    pub attrs: Attrs,
    pub bounds: &'static [f64],
    /// `bounds.len() + 1` counts.
    pub bucket_counts: Vec<u64>,
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub start_unix_ns: u64,
}

/// A cumulative histogram as an OTLP data point at time `now_unix_ns`.
pub fn histogram_point(h: &CumulativeHistogram, now_unix_ns: u64) -> HistogramDataPoint {
    let has = h.count > 0;
    HistogramDataPoint {
        attributes: key_values(&h.attrs),
        start_time_unix_nano: h.start_unix_ns,
        time_unix_nano: now_unix_ns.max(h.start_unix_ns),
        count: h.count,
        sum: Some(h.sum),
        bucket_counts: h.bucket_counts.clone(),
        explicit_bounds: h.bounds.to_vec(),
        min: has.then_some(h.min),
        max: has.then_some(h.max),
        ..Default::default()
    }
}

/// An OTLP cumulative `Histogram` metric.
pub fn histogram_metric(name: &str, unit: &str, points: Vec<HistogramDataPoint>) -> Metric {
    Metric {
        name: name.to_string(),
        unit: unit.to_string(),
        data: Some(metric::Data::Histogram(Histogram {
            data_points: points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        })),
        ..Default::default()
    }
}

/// One integer point (attributes, value).
pub type IntPoint = (Vec<KeyValue>, i64);

fn int_points(points: Vec<IntPoint>, start_unix_ns: u64, now_unix_ns: u64) -> Vec<NumberDataPoint> {
    points
        .into_iter()
        .map(|(attributes, v)| NumberDataPoint {
            attributes,
            start_time_unix_nano: start_unix_ns,
            time_unix_nano: now_unix_ns,
            value: Some(number_data_point::Value::AsInt(v)),
            ..Default::default()
        })
        .collect()
}

/// An OTLP monotonic cumulative `Sum` of integer points.
pub fn monotonic_sum_metric(
    name: &str,
    description: &str,
    points: Vec<IntPoint>,
    start_unix_ns: u64,
    now_unix_ns: u64,
) -> Metric {
    Metric {
        name: name.to_string(),
        description: description.to_string(),
        data: Some(metric::Data::Sum(Sum {
            data_points: int_points(points, start_unix_ns, now_unix_ns),
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        })),
        ..Default::default()
    }
}

/// An OTLP `Gauge` of integer points.
pub fn gauge_metric(
    name: &str,
    description: &str,
    points: Vec<IntPoint>,
    now_unix_ns: u64,
) -> Metric {
    Metric {
        name: name.to_string(),
        description: description.to_string(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: int_points(points, 0, now_unix_ns),
        })),
        ..Default::default()
    }
}

/// A `ResourceMetrics` with one `ScopeMetrics` for scope `telegen`.
pub fn resource_metrics(resource: Resource, metrics: Vec<Metric>) -> ResourceMetrics {
    ResourceMetrics {
        resource: Some(resource),
        scope_metrics: vec![ScopeMetrics {
            scope: Some(scope()),
            metrics,
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    }
}

/// Number of data points in a metric.
pub fn metric_points(m: &Metric) -> usize {
    match &m.data {
        Some(metric::Data::Histogram(h)) => h.data_points.len(),
        Some(metric::Data::Sum(s)) => s.data_points.len(),
        Some(metric::Data::Gauge(g)) => g.data_points.len(),
        Some(metric::Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(metric::Data::Summary(s)) => s.data_points.len(),
        None => 0,
    }
}

/// Move up to `n` data points out of `m` into a new metric with the same name, unit and type;
/// `m` keeps the rest. Types other than Histogram/Sum/Gauge move whole.
pub fn take_points(m: &mut Metric, n: usize) -> Metric {
    let data = match &mut m.data {
        Some(metric::Data::Histogram(h)) => {
            let k = n.min(h.data_points.len());
            Some(metric::Data::Histogram(Histogram {
                data_points: h.data_points.drain(..k).collect(),
                aggregation_temporality: h.aggregation_temporality,
            }))
        }
        Some(metric::Data::Sum(s)) => {
            let k = n.min(s.data_points.len());
            Some(metric::Data::Sum(Sum {
                data_points: s.data_points.drain(..k).collect(),
                aggregation_temporality: s.aggregation_temporality,
                is_monotonic: s.is_monotonic,
            }))
        }
        Some(metric::Data::Gauge(g)) => {
            let k = n.min(g.data_points.len());
            Some(metric::Data::Gauge(Gauge {
                data_points: g.data_points.drain(..k).collect(),
            }))
        }
        other => other.take(),
    };
    Metric {
        name: m.name.clone(),
        description: m.description.clone(),
        unit: m.unit.clone(),
        metadata: m.metadata.clone(),
        data,
    }
}

/// Split resources and their metrics into requests of at most `max_points` data points each
/// (splitting a metric's points across requests when needed). Returns each request with its
/// point count.
pub fn chunk_metrics(
    groups: Vec<(Resource, Vec<Metric>)>,
    max_points: usize,
) -> Vec<(ExportMetricsServiceRequest, u64)> {
    let max_points = max_points.max(1);
    let mut out = Vec::new();
    let mut cur: Vec<ResourceMetrics> = Vec::new();
    let mut cur_points = 0usize;
    for (res, metrics) in groups {
        let mut acc: Vec<Metric> = Vec::new();
        for mut m in metrics {
            while metric_points(&m) > 0 {
                let part = take_points(&mut m, max_points - cur_points);
                cur_points += metric_points(&part);
                acc.push(part);
                if cur_points >= max_points {
                    cur.push(resource_metrics(res.clone(), std::mem::take(&mut acc)));
                    out.push((
                        ExportMetricsServiceRequest {
                            resource_metrics: std::mem::take(&mut cur),
                        },
                        cur_points as u64,
                    ));
                    cur_points = 0;
                }
            }
        }
        if !acc.is_empty() {
            cur.push(resource_metrics(res, acc));
        }
    }
    if cur_points > 0 {
        out.push((
            ExportMetricsServiceRequest {
                resource_metrics: cur,
            },
            cur_points as u64,
        ));
    }
    out
}

/// Protobuf bytes of a trace request.
pub fn encode_traces(req: &ExportTraceServiceRequest) -> Vec<u8> {
    req.encode_to_vec()
}

/// Protobuf bytes of a metrics request.
pub fn encode_metrics(req: &ExportMetricsServiceRequest) -> Vec<u8> {
    req.encode_to_vec()
}

pub use super::gzip::{gzip, Gzipper};

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn rec() -> SpanRecord {
        SpanRecord {
            trace_id: [1; 16],
            span_id: [2; 8],
            parent_span_id: [0; 8],
            name: "GET /users/{id}".into(),
            kind: SpanKind::Server,
            start_unix_ns: 1_000,
            end_unix_ns: 5_000,
            error: None,
            attrs: vec![
                ("http.request.method", AttrValue::Str("GET".into())),
                ("http.response.status_code", AttrValue::Int(200)),
                ("network.peer.ok", AttrValue::Bool(true)),
                ("x.ratio", AttrValue::Double(0.5)),
            ],
            pid: 42,
            comm: [0; 16],
        }
    }

    #[test]
    fn span_fields() {
        let s = span_to_otlp(rec());
        assert_eq!(s.trace_id, vec![1; 16]);
        assert_eq!(s.span_id, vec![2; 8]);
        assert!(s.parent_span_id.is_empty());
        assert_eq!(s.kind, span::SpanKind::Server as i32);
        assert_eq!(s.start_time_unix_nano, 1_000);
        assert_eq!(s.end_time_unix_nano, 5_000);
        assert_eq!(s.status.as_ref().map(|s| s.code), Some(0));
        assert_eq!(s.attributes.len(), 4);
        assert_eq!(s.attributes[1].key, "http.response.status_code");
        assert_eq!(
            s.attributes[1].value.as_ref().and_then(|v| v.value.clone()),
            Some(any_value::Value::IntValue(200))
        );
        assert_eq!(
            s.attributes[3].value.as_ref().and_then(|v| v.value.clone()),
            Some(any_value::Value::DoubleValue(0.5))
        );
    }

    #[test]
    fn span_client_error_parent() {
        let mut r = rec();
        r.kind = SpanKind::Client;
        r.error = Some("connection reset".into());
        r.parent_span_id = [9; 8];
        r.end_unix_ns = 10; // before start: clamped
        let s = span_to_otlp(r);
        assert_eq!(s.kind, span::SpanKind::Client as i32);
        assert_eq!(s.parent_span_id, vec![9; 8]);
        let st = s.status.unwrap_or_default();
        assert_eq!(st.code, status::StatusCode::Error as i32);
        assert_eq!(st.message, "connection reset");
        assert_eq!(s.end_time_unix_nano, s.start_time_unix_nano);
    }

    #[test]
    fn attrs_borrowed_and_owned_agree() {
        let r = rec();
        assert_eq!(key_values(&r.attrs), into_key_values(r.attrs.clone()));
    }

    #[test]
    fn histogram_point_fields() {
        let h = CumulativeHistogram {
            attrs: vec![("http.route", AttrValue::Str("/a".into()))],
            bounds: &[0.1, 1.0],
            bucket_counts: vec![1, 2, 3],
            count: 6,
            sum: 7.5,
            min: 0.05,
            max: 3.0,
            start_unix_ns: 100,
        };
        let p = histogram_point(&h, 200);
        assert_eq!(p.count, 6);
        assert_eq!(p.bucket_counts, vec![1, 2, 3]);
        assert_eq!(p.explicit_bounds, vec![0.1, 1.0]);
        assert_eq!(p.sum, Some(7.5));
        assert_eq!(p.min, Some(0.05));
        assert_eq!(p.start_time_unix_nano, 100);
        assert_eq!(p.time_unix_nano, 200);
        let m = histogram_metric("http.server.request.duration", "s", vec![p]);
        assert_eq!(metric_points(&m), 1);
        match m.data {
            Some(metric::Data::Histogram(h)) => {
                assert_eq!(
                    h.aggregation_temporality,
                    AggregationTemporality::Cumulative as i32
                )
            }
            other => panic!("not a histogram: {other:?}"),
        }
    }

    #[test]
    fn sum_is_monotonic_cumulative() {
        let m = monotonic_sum_metric("a", "b", vec![(vec![], 5)], 1, 2);
        match m.data {
            Some(metric::Data::Sum(s)) => {
                assert!(s.is_monotonic);
                assert_eq!(
                    s.aggregation_temporality,
                    AggregationTemporality::Cumulative as i32
                );
                assert_eq!(
                    s.data_points[0].value,
                    Some(number_data_point::Value::AsInt(5))
                );
            }
            other => panic!("not a sum: {other:?}"),
        }
    }

    #[test]
    fn request_roundtrip_and_gzip() {
        let req = traces_request(vec![(
            resource(&vec![("service.name", AttrValue::Str("svc".into()))]),
            vec![span_to_otlp(rec())],
        )]);
        let bytes = encode_traces(&req);
        let back = ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap_or_default();
        assert_eq!(back, req);
        assert_eq!(
            back.resource_spans[0].scope_spans[0]
                .scope
                .as_ref()
                .map(|s| s.name.as_str()),
            Some("telegen")
        );
        let gz = gzip(&bytes).unwrap_or_default();
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(gz.as_slice())
            .read_to_end(&mut out)
            .unwrap_or_default();
        assert_eq!(out, bytes);
    }

    #[test]
    fn json_uses_hex_ids_and_camel_case() {
        let req = traces_request(vec![(resource(&vec![]), vec![span_to_otlp(rec())])]);
        let json = serde_json::to_string(&req).unwrap_or_default();
        assert!(json.contains("\"resourceSpans\""), "{json}");
        assert!(
            json.contains("\"traceId\":\"01010101010101010101010101010101\""),
            "{json}"
        );
        assert!(json.contains("\"spanId\":\"0202020202020202\""), "{json}");
    }

    #[test]
    fn chunking_respects_max_points() {
        let pts = |n: i64| (0..n).map(|i| (vec![], i)).collect::<Vec<_>>();
        let groups = vec![
            (
                resource(&vec![("service.name", AttrValue::Str("a".into()))]),
                vec![
                    monotonic_sum_metric("m1", "", pts(3), 0, 1),
                    gauge_metric("m2", "", pts(4), 1),
                ],
            ),
            (
                resource(&vec![]),
                vec![monotonic_sum_metric("m3", "", pts(2), 0, 1)],
            ),
        ];
        let reqs = chunk_metrics(groups, 4);
        let counts: Vec<u64> = reqs.iter().map(|(_, n)| *n).collect();
        assert_eq!(counts, vec![4, 4, 1]);
        for (req, n) in &reqs {
            let real: usize = req
                .resource_metrics
                .iter()
                .flat_map(|rm| rm.scope_metrics.iter())
                .flat_map(|sm| sm.metrics.iter())
                .map(metric_points)
                .sum();
            assert_eq!(real as u64, *n);
        }
        // m2 split across requests 1 and 2, keeping its name and type.
        let names: Vec<&str> = reqs[1]
            .0
            .resource_metrics
            .iter()
            .flat_map(|rm| rm.scope_metrics.iter())
            .flat_map(|sm| sm.metrics.iter())
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(names, vec!["m2", "m3"]);
        assert!(chunk_metrics(vec![], 10).is_empty());
    }
}
