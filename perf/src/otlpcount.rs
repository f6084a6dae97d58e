//! Counting what arrived in OTLP requests: spans, and the observation count of one histogram
//! metric (cumulative temporality: the latest, i.e. largest, count of each series, summed).

use std::collections::HashMap;
use std::io::Read;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use prost::Message;

/// The body as protobuf bytes: gunzipped into `out` (cleared first) when it is gzip, otherwise
/// `body` itself, not copied. `out` keeps its capacity from one body to the next.
pub fn unzip_into<'a>(body: &'a [u8], out: &'a mut Vec<u8>) -> anyhow::Result<&'a [u8]> {
    if body.starts_with(&[0x1f, 0x8b]) {
        out.clear();
        flate2::read::GzDecoder::new(body).read_to_end(out)?;
        Ok(out)
    } else {
        Ok(body)
    }
}

/// One field of a protobuf message: its number and, for a length-delimited one, its bytes
/// (other wire types give their varint value, or nothing for fixed-size ones).
enum Wire<'a> {
    Varint(u64),
    Len(&'a [u8]),
    Fixed,
}

fn varint(buf: &[u8], pos: &mut usize) -> anyhow::Result<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf
            .get(*pos)
            .ok_or_else(|| anyhow::anyhow!("protobuf: truncated varint"))?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    anyhow::bail!("protobuf: varint longer than 10 bytes")
}

/// Every field of the message `buf`, in order, to `f`.
fn for_each_field<'a>(
    buf: &'a [u8],
    mut f: impl FnMut(u64, Wire<'a>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut pos = 0;
    while pos < buf.len() {
        let tag = varint(buf, &mut pos)?;
        let skip = |pos: &mut usize, n: usize| -> anyhow::Result<()> {
            anyhow::ensure!(buf.len() - *pos >= n, "protobuf: truncated field");
            *pos += n;
            Ok(())
        };
        let wire = match tag & 7 {
            0 => Wire::Varint(varint(buf, &mut pos)?),
            1 => {
                skip(&mut pos, 8)?;
                Wire::Fixed
            }
            2 => {
                let n = usize::try_from(varint(buf, &mut pos)?)?;
                let start = pos;
                skip(&mut pos, n)?;
                Wire::Len(&buf[start..pos])
            }
            5 => {
                skip(&mut pos, 4)?;
                Wire::Fixed
            }
            t => anyhow::bail!("protobuf: wire type {t}"),
        };
        f(tag >> 3, wire)?;
    }
    Ok(())
}

/// Spans in a traces request (protobuf, not gzipped), and how many of them are server spans,
/// read off the wire format without building the request: the overhead phase's receiver counts
/// every body as it arrives, on the machine being measured.
pub fn count_spans(pb: &[u8]) -> anyhow::Result<(u64, u64)> {
    let (mut all, mut server) = (0, 0);
    // ExportTraceServiceRequest.resource_spans = 1, ResourceSpans.scope_spans = 2,
    // ScopeSpans.spans = 2, Span.kind = 6 (SpanKind::Server = 2).
    for_each_field(pb, |f, w| match (f, w) {
        (1, Wire::Len(rs)) => for_each_field(rs, |f, w| match (f, w) {
            (2, Wire::Len(ss)) => for_each_field(ss, |f, w| match (f, w) {
                (2, Wire::Len(span)) => {
                    all += 1;
                    // The last value of a field repeated is its value.
                    let mut kind = 0;
                    for_each_field(span, |f, w| {
                        if let (6, Wire::Varint(k)) = (f, w) {
                            kind = k;
                        }
                        Ok(())
                    })?;
                    server += u64::from(kind == 2);
                    Ok(())
                }
                _ => Ok(()),
            }),
            _ => Ok(()),
        }),
        _ => Ok(()),
    })?;
    Ok((all, server))
}

/// Accumulates cumulative histogram counts of one metric over many metrics requests.
#[derive(Debug, Default)]
pub struct HistogramCounter {
    series: HashMap<String, u64>,
}

/// A metrics request body (gzip or not), decoded; `buf` holds the gunzipped bytes.
pub fn decode_metrics(
    body: &[u8],
    buf: &mut Vec<u8>,
) -> anyhow::Result<ExportMetricsServiceRequest> {
    Ok(ExportMetricsServiceRequest::decode(unzip_into(body, buf)?)?)
}

impl HistogramCounter {
    pub fn add(&mut self, req: &ExportMetricsServiceRequest, metric: &str) {
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
    let req = ExportTraceServiceRequest::decode(unzip_into(body, &mut Vec::new())?)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};

    /// A request with every wire type in it: resources and scopes with attributes, spans with
    /// ids, fixed64 times, attributes of each value type, events and a status.
    fn request() -> ExportTraceServiceRequest {
        let attr = |k: &str, v: any_value::Value| KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        };
        let span = |i: u64, kind: i32| Span {
            trace_id: vec![i as u8; 16],
            span_id: vec![i as u8; 8],
            name: format!("span {i}"),
            kind,
            start_time_unix_nano: 1_700_000_000_000_000_000 + i,
            end_time_unix_nano: 1_700_000_000_000_000_100 + i,
            attributes: vec![
                attr(
                    "s",
                    any_value::Value::StringValue("x".repeat(i as usize * 40)),
                ),
                attr("i", any_value::Value::IntValue(-(i as i64))),
                attr("d", any_value::Value::DoubleValue(0.5)),
                attr("b", any_value::Value::BoolValue(true)),
            ],
            events: vec![span::Event {
                name: "e".into(),
                time_unix_nano: 7,
                ..Default::default()
            }],
            status: Some(Status {
                message: "m".into(),
                code: 2,
            }),
            ..Default::default()
        };
        let scope = |first: u64, kinds: &[i32]| ScopeSpans {
            spans: kinds
                .iter()
                .enumerate()
                .map(|(k, &kind)| span(first + k as u64, kind))
                .collect(),
            schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
            ..Default::default()
        };
        ExportTraceServiceRequest {
            resource_spans: vec![
                ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![attr(
                            "service.name",
                            any_value::Value::StringValue("a".into()),
                        )],
                        ..Default::default()
                    }),
                    scope_spans: vec![scope(0, &[2, 3, 2]), scope(10, &[]), scope(20, &[1, 2])],
                    ..Default::default()
                },
                ResourceSpans::default(),
                ResourceSpans {
                    scope_spans: vec![scope(30, &[3, 3, 2, 0, 5])],
                    ..Default::default()
                },
            ],
        }
    }

    /// The prost decoder's count, which the wire count must equal.
    fn decoded(pb: &[u8]) -> (u64, u64) {
        let req = ExportTraceServiceRequest::decode(pb).unwrap();
        let spans: Vec<&Span> = req
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .collect();
        (
            spans.len() as u64,
            spans.iter().filter(|s| s.kind == 2).count() as u64,
        )
    }

    #[test]
    fn the_wire_count_equals_the_decoded_one() {
        let pb = request().encode_to_vec();
        assert_eq!(count_spans(&pb).unwrap(), (10, 4));
        assert_eq!(count_spans(&pb).unwrap(), decoded(&pb));
        assert_eq!(count_spans(&[]).unwrap(), (0, 0));
        let mut gz = Vec::new();
        let body = {
            use flate2::write::GzEncoder;
            use std::io::Write;
            let mut e = GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&pb).unwrap();
            e.finish().unwrap()
        };
        // Gzipped, through a buffer reused from a longer body.
        gz.extend_from_slice(&[0; 100_000]);
        let unzipped = unzip_into(&body, &mut gz).unwrap();
        assert_eq!(count_spans(unzipped).unwrap(), (10, 4));
    }

    #[test]
    fn a_broken_body_is_an_error_not_a_count() {
        let pb = request().encode_to_vec();
        // Cut anywhere inside, the request either fails or counts no more than it holds; cut
        // inside the first span's length prefix or bytes, it fails.
        for cut in 1..pb.len() {
            if let Ok((all, server)) = count_spans(&pb[..cut]) {
                assert!(all <= 10 && server <= 4, "cut at {cut}");
            }
        }
        assert!(count_spans(&pb[..pb.len() - 1]).is_err());
        // A wire type that does not exist (6), and a varint that never ends.
        assert!(count_spans(&[0x0e]).is_err());
        assert!(
            count_spans(&[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
                .is_err()
        );
    }
}
