//! Live terminal summary: per (service.name, http.route) request rate, p50/p99 latency and error
//! count over the last interval, derived from the spans passing through the export core, plus a
//! totals line with drops (kernel, queue, export). [`SummaryAgg`] accumulates; [`render_summary`]
//! is the pure text formatter.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::pb::SpanView;
use crate::signal::SpanKind;

/// One table row, over one interval.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryRow {
    pub service: String,
    pub route: String,
    pub requests: u64,
    pub errors: u64,
    pub p50: Duration,
    pub p99: Duration,
}

/// The totals line (cumulative since start).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SummaryTotals {
    pub spans: u64,
    pub kernel_drops: u64,
    pub queue_drops: u64,
    pub export_drops: u64,
}

struct RouteStats {
    requests: u64,
    errors: u64,
    /// Span durations in microseconds.
    hist: Option<Histogram<u64>>,
}

impl RouteStats {
    fn new() -> Self {
        RouteStats {
            requests: 0,
            errors: 0,
            hist: Histogram::new_with_bounds(1, 3_600_000_000, 2).ok(),
        }
    }

    fn add(&mut self, span: &SpanView<'_>) {
        self.requests += 1;
        if is_error(span) {
            self.errors += 1;
        }
        if let Some(h) = self.hist.as_mut() {
            let us = span.end_unix_ns.saturating_sub(span.start_unix_ns) / 1_000;
            h.saturating_record(us.max(1));
        }
    }
}

/// Most rows kept per interval; further (service, route) pairs land in an `(other)` row.
pub const MAX_ROWS: usize = 1024;

/// Accumulates spans between two prints.
#[derive(Default)]
pub struct SummaryAgg {
    /// Per service, per route: looked up by borrowed names, so a span of a known row
    /// allocates nothing.
    rows: HashMap<String, HashMap<String, RouteStats>>,
    /// Rows held, over all services.
    count: usize,
}

/// Whether the span counts as an error: error status, or an HTTP 5xx (server) / 4xx+ (client).
pub fn is_error(span: &SpanView<'_>) -> bool {
    if span.error {
        return true;
    }
    let code = span.status_code.unwrap_or(0);
    match span.kind {
        SpanKind::Server => code >= 500,
        SpanKind::Client => code >= 400,
    }
}

impl SummaryAgg {
    pub fn new() -> Self {
        Self::default()
    }

    /// Account one span of service `service`.
    pub fn record(&mut self, service: &str, span: &SpanView<'_>) {
        let route = span.route.unwrap_or(span.name);
        if let Some(st) = self.rows.get_mut(service).and_then(|m| m.get_mut(route)) {
            st.add(span);
            return;
        }
        let (service, route) = if self.count < MAX_ROWS {
            (service, route)
        } else {
            ("(other)", "(other)")
        };
        let routes = self.rows.entry(service.to_string()).or_default();
        let st = match routes.entry(route.to_string()) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) => {
                self.count += 1;
                v.insert(RouteStats::new())
            }
        };
        st.add(span);
    }

    /// The rows of the interval (busiest first), resetting the aggregate.
    pub fn take_rows(&mut self) -> Vec<SummaryRow> {
        self.count = 0;
        let mut rows: Vec<SummaryRow> = self
            .rows
            .drain()
            .flat_map(|(service, routes)| routes.into_iter().map(move |r| (service.clone(), r)))
            .map(|(service, (route, st))| {
                let q = |p: f64| {
                    st.hist
                        .as_ref()
                        .map(|h| Duration::from_micros(h.value_at_quantile(p)))
                        .unwrap_or_default()
                };
                SummaryRow {
                    service,
                    route,
                    requests: st.requests,
                    errors: st.errors,
                    p50: q(0.5),
                    p99: q(0.99),
                }
            })
            .collect();
        rows.sort_by(|a, b| {
            b.requests
                .cmp(&a.requests)
                .then_with(|| a.service.cmp(&b.service))
                .then_with(|| a.route.cmp(&b.route))
        });
        rows
    }
}

fn fmt_dur(d: Duration) -> String {
    let us = d.as_micros();
    if us < 1_000 {
        format!("{us}us")
    } else if us < 1_000_000 {
        format!("{:.1}ms", us as f64 / 1e3)
    } else {
        format!("{:.2}s", us as f64 / 1e6)
    }
}

fn clip(s: &str, w: usize) -> String {
    if s.chars().count() <= w {
        s.to_string()
    } else {
        let mut o: String = s.chars().take(w.saturating_sub(1)).collect();
        o.push('~');
        o
    }
}

/// The summary text for one interval: a header, one line per row (at most `max_rows`, the rest
/// folded into a count), and the totals line.
pub fn render_summary(
    rows: &[SummaryRow],
    totals: &SummaryTotals,
    interval: Duration,
    max_rows: usize,
) -> String {
    let secs = interval.as_secs_f64().max(1e-3);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<20} {:<32} {:>9} {:>9} {:>9} {:>7}",
        "SERVICE", "ROUTE", "REQ/S", "P50", "P99", "ERRORS"
    );
    for r in rows.iter().take(max_rows) {
        let _ = writeln!(
            out,
            "{:<20} {:<32} {:>9.1} {:>9} {:>9} {:>7}",
            clip(&r.service, 20),
            clip(&r.route, 32),
            r.requests as f64 / secs,
            fmt_dur(r.p50),
            fmt_dur(r.p99),
            r.errors
        );
    }
    if rows.len() > max_rows {
        let _ = writeln!(out, "... {} more routes", rows.len() - max_rows);
    }
    let _ = writeln!(
        out,
        "total spans {}  drops: kernel {}  queue {}  export {}",
        totals.spans, totals.kernel_drops, totals.queue_drops, totals.export_drops
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::pb::append_span;
    use crate::signal::{AttrValue, SpanRecord};

    fn span(route: &str, dur_ms: u64, status: i64, err: bool) -> SpanRecord {
        SpanRecord {
            trace_id: [1; 16],
            span_id: [1; 8],
            parent_span_id: [0; 8],
            name: "GET".into(),
            kind: SpanKind::Server,
            start_unix_ns: 1_000_000_000,
            end_unix_ns: 1_000_000_000 + dur_ms * 1_000_000,
            error: err.then(|| "boom".to_string()),
            attrs: vec![
                ("http.route", AttrValue::Str(route.into())),
                ("http.response.status_code", AttrValue::Int(status)),
            ],
            pid: 1,
            comm: [0; 16],
        }
    }

    /// The span as the export core sees it: encoded, then read back.
    fn encoded(s: &SpanRecord) -> Vec<u8> {
        let mut b = Vec::new();
        append_span(s, &mut b);
        b
    }

    fn record(agg: &mut SummaryAgg, service: &str, s: &SpanRecord) {
        let b = encoded(s);
        agg.record(service, &SpanView::decode(&b).expect("a span"));
    }

    fn is_error_span(s: &SpanRecord) -> bool {
        is_error(&SpanView::decode(&encoded(s)).expect("a span"))
    }

    #[test]
    fn aggregates_and_renders() {
        let mut agg = SummaryAgg::new();
        for i in 0..100 {
            record(
                &mut agg,
                "api",
                &span("/users/{id}", if i < 98 { 10 } else { 500 }, 200, false),
            );
        }
        record(&mut agg, "api", &span("/health", 1, 503, false));
        record(&mut agg, "web", &span("/", 2, 200, true));
        let rows = agg.take_rows();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].route, "/users/{id}");
        assert_eq!(rows[0].requests, 100);
        assert_eq!(rows[0].errors, 0);
        let p50 = rows[0].p50.as_millis();
        let p99 = rows[0].p99.as_millis();
        assert!((9..=11).contains(&p50), "{p50}");
        assert!((480..=520).contains(&p99), "{p99}");
        assert_eq!(rows.iter().map(|r| r.errors).sum::<u64>(), 2);
        assert!(agg.take_rows().is_empty());

        let totals = SummaryTotals {
            spans: 102,
            kernel_drops: 3,
            queue_drops: 4,
            export_drops: 5,
        };
        let text = render_summary(&rows, &totals, Duration::from_secs(10), 2);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("SERVICE"));
        assert!(
            lines[1].contains("api")
                && lines[1].contains("/users/{id}")
                && lines[1].contains("10.0"),
            "{text}"
        );
        assert!(lines[1].contains("ms"));
        assert_eq!(lines[3], "... 1 more routes");
        assert_eq!(
            lines[4],
            "total spans 102  drops: kernel 3  queue 4  export 5"
        );
    }

    #[test]
    fn client_4xx_is_error_and_route_falls_back_to_name() {
        let mut s = span("/x", 1, 404, false);
        s.kind = SpanKind::Client;
        assert!(is_error_span(&s));
        s.kind = SpanKind::Server;
        assert!(!is_error_span(&s));
        s.attrs.clear();
        let mut agg = SummaryAgg::new();
        record(&mut agg, "svc", &s);
        assert_eq!(agg.take_rows()[0].route, "GET");
    }

    /// Past `MAX_ROWS`, new pairs share one `(other)` row, while known rows keep counting.
    #[test]
    fn rows_past_the_bound_land_in_other() {
        let mut agg = SummaryAgg::new();
        for i in 0..MAX_ROWS + 76 {
            record(&mut agg, "svc", &span(&format!("/r{i}"), 1, 200, false));
        }
        record(&mut agg, "svc", &span("/r0", 1, 500, false));
        let rows = agg.take_rows();
        assert_eq!(rows.len(), MAX_ROWS + 1);
        assert_eq!(
            (rows[0].service.as_str(), rows[0].route.as_str()),
            ("(other)", "(other)")
        );
        assert_eq!(rows[0].requests, 76);
        let r0 = rows.iter().find(|r| r.route == "/r0").expect("row /r0");
        assert_eq!((r0.requests, r0.errors), (2, 1));
        // The next interval starts empty, with room for new rows.
        record(&mut agg, "svc", &span("/new", 1, 200, false));
        assert_eq!(agg.take_rows()[0].route, "/new");
    }

    #[test]
    fn formats_durations() {
        assert_eq!(fmt_dur(Duration::from_micros(250)), "250us");
        assert_eq!(fmt_dur(Duration::from_micros(1_500)), "1.5ms");
        assert_eq!(fmt_dur(Duration::from_millis(2_500)), "2.50s");
        assert_eq!(clip("abcdef", 4), "abc~");
    }
}
