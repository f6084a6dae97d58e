//! Counting what arrived in OTLP requests: spans, and the observation count of one histogram
//! metric (cumulative temporality: the latest, i.e. largest, count of each series, summed).

use std::collections::HashMap;
use std::io::Read;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use prost::Message;

/// The body as protobuf bytes (gunzipped when it is gzip).
pub fn unzip(body: &[u8]) -> anyhow::Result<Vec<u8>> {
    if body.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(body).read_to_end(&mut out)?;
        Ok(out)
    } else {
        Ok(body.to_vec())
    }
}

/// Spans in a traces request body, and how many of them are server spans.
pub fn count_spans(body: &[u8]) -> anyhow::Result<(u64, u64)> {
    let req = ExportTraceServiceRequest::decode(unzip(body)?.as_slice())?;
    let mut all = 0;
    let mut server = 0;
    for s in req
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
    {
        all += 1;
        // SpanKind::Server = 2.
        server += u64::from(s.kind == 2);
    }
    Ok((all, server))
}

/// Accumulates cumulative histogram counts of one metric over many metrics requests.
#[derive(Debug, Default)]
pub struct HistogramCounter {
    series: HashMap<String, u64>,
    pub requests: u64,
}

impl HistogramCounter {
    pub fn add_body(&mut self, body: &[u8], metric: &str) -> anyhow::Result<()> {
        let req = ExportMetricsServiceRequest::decode(unzip(body)?.as_slice())?;
        self.add(&req, metric);
        Ok(())
    }

    pub fn add(&mut self, req: &ExportMetricsServiceRequest, metric: &str) {
        self.requests += 1;
        for rm in &req.resource_metrics {
            let res = format!("{:?}", rm.resource.as_ref().map(|r| &r.attributes));
            for m in rm.scope_metrics.iter().flat_map(|s| &s.metrics) {
                if m.name != metric {
                    continue;
                }
                let Some(Data::Histogram(h)) = &m.data else {
                    continue;
                };
                for p in &h.data_points {
                    let key = format!("{res}|{:?}", p.attributes);
                    let e = self.series.entry(key).or_insert(0);
                    *e = (*e).max(p.count);
                }
            }
        }
    }

    /// Observations over every series.
    pub fn total(&self) -> u64 {
        self.series.values().sum()
    }

    pub fn series(&self) -> usize {
        self.series.len()
    }
}

/// Spans of a traces request body by protocol, told apart by their attributes: `[HTTP
/// (http.request.method), gRPC (rpc.system = grpc), DNS (dns.question.name), other]`.
pub fn count_spans_by_protocol(body: &[u8]) -> anyhow::Result<[u64; 4]> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
    let req = ExportTraceServiceRequest::decode(unzip(body)?.as_slice())?;
    let mut out = [0u64; 4];
    for s in req
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
    {
        let has = |k: &str| s.attributes.iter().find(|a| a.key == k);
        let grpc = has("rpc.system").is_some_and(|a| {
            matches!(a.value.as_ref().and_then(|v| v.value.as_ref()), Some(V::StringValue(x)) if x == "grpc")
        });
        let i = if grpc {
            1
        } else if has("dns.question.name").is_some() {
            2
        } else if has("http.request.method").is_some() {
            0
        } else {
            3
        };
        out[i] += 1;
    }
    Ok(out)
}
