//! RED metrics (rate, errors, duration) aggregated in a shard: one explicit-bucket histogram per
//! series, flushed as deltas to the export core, which keeps them cumulative.
//!
//! A series is (metric, process, the values of the metric's attribute keys on the span). Finding
//! it must not allocate: the key is a hash of those values, computed straight from the span's
//! attributes, and a hit is confirmed by comparing the values kept in the series. Only a new
//! series allocates. Before that hash of bytes, a cache keyed by the values' addresses finds the
//! series of the usual span, whose strings are shared constants (see `Red::recent`).

use std::hash::{Hash, Hasher};

use rustc_hash::{FxHashMap as HashMap, FxHasher};

use crate::signal::{
    same_str, AttrValue, Attrs, HistogramDelta, SpanKind, SpanRecord, Text, DURATION_BOUNDS_S,
};

/// A duration histogram: its name, unit, the span attributes it keeps, and its buckets.
#[derive(Debug)]
pub struct MetricDef {
    pub name: &'static str,
    pub unit: &'static str,
    /// Attribute keys kept from the span (the conventions' metric attributes).
    pub keys: &'static [&'static str],
    /// Multiplier from seconds to `unit`.
    pub per_second: f64,
    pub bounds: &'static [f64],
}

/// Bucket bounds for histograms in milliseconds (the HTTP bounds, scaled).
pub const DURATION_BOUNDS_MS: &[f64] = &[
    5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2500.0, 5000.0, 7500.0,
    10000.0,
];

pub static HTTP_SERVER: MetricDef = MetricDef {
    name: "http.server.request.duration",
    unit: "s",
    keys: &[
        "http.request.method",
        "http.response.status_code",
        "http.route",
        "url.scheme",
        "network.protocol.name",
        "network.protocol.version",
        "error.type",
    ],
    per_second: 1.0,
    bounds: DURATION_BOUNDS_S,
};

pub static HTTP_CLIENT: MetricDef = MetricDef {
    name: "http.client.request.duration",
    unit: "s",
    keys: &[
        "http.request.method",
        "http.response.status_code",
        "server.address",
        "server.port",
        "url.scheme",
        "network.protocol.name",
        "network.protocol.version",
        "error.type",
    ],
    per_second: 1.0,
    bounds: DURATION_BOUNDS_S,
};

pub static RPC_SERVER: MetricDef = MetricDef {
    name: "rpc.server.duration",
    unit: "ms",
    keys: &[
        "rpc.system",
        "rpc.service",
        "rpc.method",
        "rpc.grpc.status_code",
        "network.protocol.name",
        "network.protocol.version",
        "error.type",
    ],
    per_second: 1000.0,
    bounds: DURATION_BOUNDS_MS,
};

pub static RPC_CLIENT: MetricDef = MetricDef {
    name: "rpc.client.duration",
    unit: "ms",
    keys: &[
        "rpc.system",
        "rpc.service",
        "rpc.method",
        "rpc.grpc.status_code",
        "server.address",
        "server.port",
        "network.protocol.name",
        "network.protocol.version",
        "error.type",
    ],
    per_second: 1000.0,
    bounds: DURATION_BOUNDS_MS,
};

pub static DNS_LOOKUP: MetricDef = MetricDef {
    name: "dns.lookup.duration",
    unit: "s",
    keys: &["dns.question.name", "error.type"],
    per_second: 1.0,
    bounds: DURATION_BOUNDS_S,
};

/// The HTTP histogram for a span of this kind.
pub fn http_def(kind: SpanKind) -> &'static MetricDef {
    match kind {
        SpanKind::Server => &HTTP_SERVER,
        SpanKind::Client => &HTTP_CLIENT,
    }
}

#[derive(Debug)]
struct Accum {
    def: &'static MetricDef,
    pid: u32,
    /// The span's value for each of `def.keys` (None: the span did not have it).
    vals: Vec<Option<AttrValue>>,
    counts: Vec<u64>,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    /// The next series whose key hash is the same (a collision chain), as an index in
    /// `Red::accs`; [`NO_SERIES`] ends the chain.
    next: u32,
    /// `vals` as identity words, when they have that form (see [`Ident`]).
    ident: Option<Ident>,
}

impl Accum {
    fn is(&self, def: &'static MetricDef, pid: u32, found: &[Option<&AttrValue>]) -> bool {
        std::ptr::eq(self.def, def)
            && self.pid == pid
            && found
                .iter()
                .zip(&self.vals)
                .all(|(f, v)| same(*f, v.as_ref()))
    }
}

/// A span's values of a metric's keys as words that are equal only when the values are: a
/// constant or shared string by its address and length, a short inline string by its bytes, a
/// number by its bits, each with its kind. A series keeps its values (a shared string's
/// allocation among them), so no other string can have the address of one of its strings while
/// it exists: equal words are the same values, with no byte compared. A string the span owns
/// has no such form (its address is new every time).
#[derive(Debug, Clone, Copy)]
struct Ident {
    /// [`KIND_BITS`] per key.
    kinds: u64,
    words: [u64; 2 * MAX_KEYS],
}

const KIND_BITS: usize = 3;
const K_INT: u64 = 1;
const K_BOOL: u64 = 2;
const K_DOUBLE: u64 = 3;
const K_ADDRESS: u64 = 4;
const K_INLINE: u64 = 5;

impl Ident {
    const EMPTY: Ident = Ident {
        kinds: 0,
        words: [0; 2 * MAX_KEYS],
    };

    /// Fill in the identity of `found` (at most [`MAX_KEYS`] values); false when a value has
    /// none.
    #[inline]
    fn fill(&mut self, found: &[Option<&AttrValue>]) -> bool {
        self.kinds = 0;
        for (i, v) in found.iter().enumerate() {
            let (kind, a, b) = match v {
                None => (0, 0, 0),
                Some(AttrValue::Int(n)) => (K_INT, *n as u64, 0),
                Some(AttrValue::Bool(x)) => (K_BOOL, u64::from(*x), 0),
                Some(AttrValue::Double(d)) => (K_DOUBLE, d.to_bits(), 0),
                Some(AttrValue::Text(Text::Static(t))) => {
                    (K_ADDRESS, t.as_ptr() as u64, t.len() as u64)
                }
                Some(AttrValue::Text(Text::Shared(t))) => {
                    (K_ADDRESS, t.as_ptr() as u64, t.len() as u64)
                }
                Some(AttrValue::Text(Text::Inline(t))) => {
                    let (x, y) = t.words();
                    (K_INLINE, x, y)
                }
                Some(AttrValue::Str(_) | AttrValue::Text(Text::Owned(_))) => return false,
            };
            self.kinds |= kind << (KIND_BITS * i);
            self.words[2 * i] = a;
            self.words[2 * i + 1] = b;
        }
        true
    }

    /// Equal identities of `n` values (both filled from the same metric's keys).
    #[inline]
    fn same(&self, other: &Ident, n: usize) -> bool {
        let diff = self.words[..2 * n]
            .iter()
            .zip(&other.words[..2 * n])
            .fold(0, |d, (a, b)| d | (a ^ b));
        self.kinds == other.kinds && diff == 0
    }

    #[inline]
    fn slot(&self, defp: usize, pid: u32, n: usize) -> usize {
        let mut h = FxHasher::default();
        h.write_usize(defp);
        h.write_u32(pid);
        h.write_u64(self.kinds);
        for w in &self.words[..2 * n] {
            h.write_u64(*w);
        }
        let h = h.finish();
        ((h ^ (h >> 32)) as usize) & (RECENT - 1)
    }
}

/// Slots of the identity cache (a power of two).
const RECENT: usize = 256;
const NO_SERIES: u32 = u32::MAX;

/// A shard's RED aggregation since the last flush.
#[derive(Debug)]
pub struct Red {
    /// Every series since the last flush.
    accs: Vec<Accum>,
    /// The first series (index in `accs`) by hash of (metric, pid, values).
    series: HashMap<u64, u32>,
    /// A two-way set-associative cache from the *identity* of a span's values ([`Ident`]: the
    /// address of each string, not its bytes) to its series. A span's strings are mostly
    /// constants or shared texts (the method, route, protocol), so the same series comes with
    /// the same addresses: one hash of a few words and one comparison of them replace hashing
    /// every byte, a map lookup and comparing values. A stale or colliding slot only costs the
    /// full search.
    recent: Box<[u32; RECENT]>,
    /// Where each metric's keys sat among the attributes of recent spans (see [`Layout`]):
    /// spans are built with constant keys in a fixed order, so this turns the search of every
    /// attribute key among the metric's keys into one pointer comparison per attribute.
    layouts: Vec<Layout>,
    /// The next layout a new one replaces once there are [`MAX_LAYOUTS`].
    layout_next: usize,
}

/// A metric's key positions for spans whose attribute keys are exactly `keys` (each by address
/// and length, only compared, never dereferenced).
#[derive(Debug, Clone)]
struct Layout {
    def: usize,
    len: usize,
    keys: [(usize, usize); MAX_LAID_OUT],
    /// Per key of the metric, its attribute position ([`ABSENT`] when no attribute has it).
    pos: [u8; MAX_KEYS],
}

const ABSENT: u8 = u8::MAX;
/// Most attributes a layout covers (spans with more are searched every time).
const MAX_LAID_OUT: usize = 24;
/// Layouts kept, for all metrics together: a handful per metric (a span with or without a
/// status code, an error, an original method...) for the five metrics, with room to spare, so
/// that a shard seeing every protocol does not evict layouts it still uses.
const MAX_LAYOUTS: usize = 64;

impl Layout {
    fn fits(&self, defp: usize, attrs: &Attrs) -> bool {
        self.def == defp
            && self.len == attrs.len()
            && attrs
                .iter()
                .zip(&self.keys)
                .all(|((k, _), &(p, n))| k.as_ptr() as usize == p && k.len() == n)
    }

    /// The layout of `attrs` for `def`, found by comparing key bytes; `None` for more
    /// attributes than a layout covers.
    fn of(def: &'static MetricDef, attrs: &Attrs) -> Option<Layout> {
        if attrs.len() > MAX_LAID_OUT {
            return None;
        }
        let mut l = Layout {
            def: def as *const MetricDef as usize,
            len: attrs.len(),
            keys: [(0, 0); MAX_LAID_OUT],
            pos: [ABSENT; MAX_KEYS],
        };
        for (i, (k, _)) in attrs.iter().enumerate() {
            l.keys[i] = (k.as_ptr() as usize, k.len());
            if let Some(j) = def.keys.iter().take(MAX_KEYS).position(|d| same_str(d, k)) {
                // The first attribute with a key counts, as in a search of the attributes.
                if l.pos[j] == ABSENT {
                    l.pos[j] = i as u8;
                }
            }
        }
        Some(l)
    }
}

/// Most attribute keys a metric keeps.
const MAX_KEYS: usize = 12;

fn hash_value(h: &mut FxHasher, v: Option<&AttrValue>) {
    match v {
        None => h.write_u8(0),
        Some(v) => match v.as_str() {
            Some(s) => {
                h.write_u8(1);
                s.hash(h);
            }
            None => match v {
                AttrValue::Int(i) => {
                    h.write_u8(2);
                    h.write_i64(*i);
                }
                AttrValue::Bool(b) => {
                    h.write_u8(3);
                    h.write_u8(u8::from(*b));
                }
                AttrValue::Double(d) => {
                    h.write_u8(4);
                    h.write_u64(d.to_bits());
                }
                AttrValue::Str(_) | AttrValue::Text(_) => unreachable!("strings handled above"),
            },
        },
    }
}

fn same(a: Option<&AttrValue>, b: Option<&AttrValue>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(AttrValue::Double(x)), Some(AttrValue::Double(y))) => x.to_bits() == y.to_bits(),
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

impl Default for Red {
    fn default() -> Self {
        Red {
            accs: Vec::new(),
            series: HashMap::default(),
            recent: Box::new([NO_SERIES; RECENT]),
            layouts: Vec::new(),
            layout_next: 0,
        }
    }
}

impl Red {
    /// Series held since the last flush.
    pub fn series(&self) -> usize {
        self.accs.len()
    }

    /// Count one span in the histogram `def`.
    pub fn record(&mut self, def: &'static MetricDef, span: &SpanRecord) {
        // The span's value of each key, found once (a metric keeps at most MAX_KEYS).
        let mut found: [Option<&AttrValue>; MAX_KEYS] = [None; MAX_KEYS];
        let n = def.keys.len().min(MAX_KEYS);
        let defp = def as *const MetricDef as usize;
        let at = match self.layouts.iter().position(|l| l.fits(defp, &span.attrs)) {
            Some(at) => Some(at),
            None => Layout::of(def, &span.attrs).map(|l| {
                if self.layouts.len() < MAX_LAYOUTS {
                    self.layouts.push(l);
                    self.layouts.len() - 1
                } else {
                    let at = self.layout_next;
                    self.layouts[at] = l;
                    self.layout_next = (at + 1) % MAX_LAYOUTS;
                    at
                }
            }),
        };
        match at {
            Some(at) => {
                let pos = &self.layouts[at].pos;
                for (f, &p) in found[..n].iter_mut().zip(pos) {
                    *f = span.attrs.get(usize::from(p)).map(|(_, v)| v);
                }
            }
            None => {
                for (j, d) in def.keys[..n].iter().enumerate() {
                    found[j] = span
                        .attrs
                        .iter()
                        .find(|(k, _)| same_str(d, k))
                        .map(|(_, v)| v);
                }
            }
        }
        let found = &found[..n];
        let mut id = Ident::EMPTY;
        let i = if id.fill(found) {
            // Two ways per set: the way used last first, so two series whose identities
            // collide do not keep evicting each other.
            let set = id.slot(defp, span.pid, n) & !1;
            let is = |i: u32| {
                self.accs.get(i as usize).is_some_and(|a| {
                    std::ptr::eq(a.def, def)
                        && a.pid == span.pid
                        && a.ident.as_ref().is_some_and(|x| x.same(&id, n))
                })
            };
            let (first, second) = (self.recent[set], self.recent[set + 1]);
            if is(first) {
                first as usize
            } else if is(second) {
                self.recent[set] = second;
                self.recent[set + 1] = first;
                second as usize
            } else {
                let i = self.find_or_add(def, span.pid, found);
                let a = &mut self.accs[i];
                if a.ident.is_none() {
                    // Made from owned strings: take this span's equal values, whose
                    // identity is known, so the next such span is found by it.
                    a.vals = found.iter().map(|v| v.cloned()).collect();
                    a.ident = Some(id);
                }
                self.recent[set] = i as u32;
                self.recent[set + 1] = first;
                i
            }
        } else {
            self.find_or_add(def, span.pid, found)
        };
        let acc = &mut self.accs[i];
        let v = span.end_unix_ns.saturating_sub(span.start_unix_ns) as f64 / 1e9 * def.per_second;
        // The first bound >= v (bounds ascend): a binary search, four or so comparisons.
        let bucket = def.bounds.partition_point(|b| *b < v);
        acc.counts[bucket] += 1;
        acc.count += 1;
        acc.sum += v;
        acc.min = acc.min.min(v);
        acc.max = acc.max.max(v);
    }

    /// The series of these values, found by hashing their bytes, or a new one.
    fn find_or_add(
        &mut self,
        def: &'static MetricDef,
        pid: u32,
        found: &[Option<&AttrValue>],
    ) -> usize {
        let mut h = FxHasher::default();
        h.write_usize(def as *const MetricDef as usize);
        h.write_u32(pid);
        for v in found {
            hash_value(&mut h, *v);
        }
        let new = self.accs.len() as u32;
        let head = self.series.entry(h.finish()).or_insert(new);
        let mut at = *head;
        let mut last = None;
        while let Some(a) = self.accs.get(at as usize) {
            if a.is(def, pid, found) {
                return at as usize;
            }
            last = Some(at);
            at = a.next;
        }
        if let Some(last) = last {
            self.accs[last as usize].next = new;
        }
        self.accs.push(Accum {
            def,
            pid,
            vals: found.iter().map(|v| v.cloned()).collect(),
            counts: vec![0; def.bounds.len() + 1],
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: 0.0,
            next: NO_SERIES,
            ident: {
                let mut id = Ident::EMPTY;
                id.fill(found).then_some(id)
            },
        });
        new as usize
    }

    /// Hand every series' delta to `out` and start over.
    pub fn flush(&mut self, mut out: impl FnMut(HistogramDelta)) {
        self.series.clear();
        self.recent.fill(NO_SERIES);
        for acc in self.accs.drain(..) {
            let attrs: Attrs = acc
                .def
                .keys
                .iter()
                .zip(acc.vals)
                .filter_map(|(k, v)| v.map(|v| (*k, v)))
                .collect();
            out(HistogramDelta {
                name: acc.def.name,
                unit: acc.def.unit,
                pid: acc.pid,
                attrs,
                bounds: acc.def.bounds,
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
        for s in [
            span(SpanKind::Server, 200, 3_000_000),
            span(SpanKind::Server, 200, 20_000_000),
            span(SpanKind::Server, 500, 1_000),
            span(SpanKind::Client, 200, 1_000),
        ] {
            r.record(http_def(s.kind), &s);
        }
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

    /// Every histogram's bounds ascend (the bucket search relies on it), and a value lands in
    /// the first bucket whose bound is at least the value: on a bound, just past it, beyond all.
    #[test]
    fn buckets_are_the_first_bound_at_least_the_value() {
        for def in [
            &HTTP_SERVER,
            &HTTP_CLIENT,
            &RPC_SERVER,
            &RPC_CLIENT,
            &DNS_LOOKUP,
        ] {
            assert!(def.bounds.windows(2).all(|w| w[0] < w[1]), "{}", def.name);
            let mut r = Red::default();
            let per_ns = def.per_second / 1e9;
            let mut want = vec![0u64; def.bounds.len() + 1];
            for (i, b) in def.bounds.iter().enumerate() {
                // On the bound: bucket i; a little past it: bucket i + 1.
                for (ns, bucket) in [(b / per_ns, i), (b / per_ns + 1_000.0, i + 1)] {
                    let mut s = span(SpanKind::Server, 200, ns.round() as u64);
                    s.end_unix_ns = s.start_unix_ns + ns.round() as u64;
                    r.record(def, &s);
                    want[bucket] += 1;
                }
            }
            let mut out = Vec::new();
            r.flush(|d| out.push(d));
            assert_eq!(out.len(), 1, "{}", def.name);
            assert_eq!(out[0].bucket_counts, want, "{}", def.name);
        }
    }

    proptest::proptest! {
        /// Whatever mix of shared, constant, inline and freshly allocated strings the spans
        /// carry, and whenever the series are flushed, each span is counted once in the series
        /// of its values (the address cache is only a shortcut).
        #[test]
        fn series_agree_with_plain_grouping(
            picks in proptest::collection::vec((0u8..3, 0u8..2, 0u8..3, 0u8..5, proptest::bool::ANY), 1..300),
        ) {
            use std::collections::BTreeMap;
            use std::sync::Arc;
            use crate::signal::Text;
            let shared: [Arc<str>; 3] = ["/a".into(), "/b".into(), "/a".into()];
            let mut r = Red::default();
            let mut want: BTreeMap<(String, i64, String), u64> = BTreeMap::new();
            let mut got: BTreeMap<(String, i64, String), u64> = BTreeMap::new();
            let mut take = |r: &mut Red| {
                let mut seen = std::collections::BTreeSet::new();
                r.flush(|d| {
                    let text = |k: &str| d.attrs.iter().find(|(n, _)| *n == k).and_then(|(_, v)| v.as_str().map(str::to_string)).unwrap_or_default();
                    let status = d.attrs.iter().find_map(|(n, v)| match (n, v) { (&"http.response.status_code", AttrValue::Int(i)) => Some(*i), _ => None }).unwrap_or(0);
                    let key = (text("http.request.method"), status, text("http.route"));
                    assert!(seen.insert(key.clone()), "one series per set of values: {key:?}");
                    *got.entry(key).or_default() += d.count;
                });
            };
            for (method, status, route, how, flush) in picks {
                let method = ["GET", "POST", "GET"][usize::from(method)];
                let status = [200, 404][usize::from(status)];
                let route_s = &shared[usize::from(route)];
                let mut s = span(SpanKind::Server, status, 1_000);
                s.attrs[0].1 = if how % 2 == 0 {
                    AttrValue::Text(Text::Static(method))
                } else {
                    AttrValue::Str(method.to_string())
                };
                s.attrs[2].1 = match how {
                    0 | 1 => AttrValue::Text(Text::Shared(route_s.clone())),
                    2 => AttrValue::Str(route_s.to_string()),
                    3 => AttrValue::Text(Text::Owned(route_s.to_string())),
                    _ => AttrValue::Text(Text::short_or_shared(route_s)),
                };
                r.record(&HTTP_SERVER, &s);
                *want.entry((method.to_string(), status, route_s.to_string())).or_default() += 1;
                if flush {
                    take(&mut r);
                }
            }
            take(&mut r);
            proptest::prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn more_layouts_than_are_kept_and_spans_too_long_for_one() {
        // Spans of 167 attribute layouts (more than twice MAX_LAYOUTS, and some past
        // MAX_LAID_OUT attributes), each seen twice and out of turn: every one counts in the one
        // series of its values, whether its layout was kept, replaced, or never made.
        const EXTRA: [&str; 48] = [
            "x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8", "x9", "x10", "x11", "x12", "x13",
            "x14", "x15", "x16", "x17", "x18", "x19", "x20", "x21", "x22", "x23", "x24", "x25",
            "x26", "x27", "x28", "x29", "x30", "x31", "x32", "x33", "x34", "x35", "x36", "x37",
            "x38", "x39", "x40", "x41", "x42", "x43", "x44", "x45", "x46", "x47",
        ];
        let mut r = Red::default();
        // The metric's keys after n other attributes, so their positions move: 0 to 20 of them
        // in 7 choices each (147 layouts), or 21 to 40 (too long for a layout).
        let laid_out = (0..=20).flat_map(|n| (0..7).map(move |v| (v..v + n).collect::<Vec<_>>()));
        let long = (21..=40).map(|n| (0..n).collect::<Vec<usize>>());
        let spans: Vec<SpanRecord> = laid_out
            .chain(long)
            .map(|extra| {
                let mut s = span(SpanKind::Server, 200, 1_000);
                let extra = extra
                    .into_iter()
                    .map(|i| (EXTRA[i], AttrValue::Int(i as i64)));
                s.attrs.splice(0..0, extra);
                s
            })
            .collect();
        assert_eq!(spans.len(), 167);
        for round in 0..2 {
            for s in spans
                .iter()
                .skip(round)
                .step_by(2)
                .chain(spans.iter().skip(1 - round).step_by(2))
            {
                r.record(&HTTP_SERVER, s);
            }
        }
        let mut out = Vec::new();
        r.flush(|d| out.push(d));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].count, 334);
        assert!(out[0]
            .attrs
            .contains(&("http.response.status_code", AttrValue::Int(200))));
        assert!(out[0]
            .attrs
            .contains(&("http.route", AttrValue::Str("/".into()))));
    }

    #[test]
    fn attributes_in_another_order_or_missing_land_in_the_right_series() {
        // The layout cache must never pair a value with the wrong key: the same
        // attributes reordered, one replaced by a key the metric does not keep, and one left out.
        let mut r = Red::default();
        let base = span(SpanKind::Server, 200, 1_000);
        let mut reordered = base.clone();
        reordered.attrs.reverse();
        let mut replaced = base.clone();
        replaced.attrs[1] = ("url.scheme", AttrValue::Str("http".into()));
        let mut missing = base.clone();
        missing.attrs.remove(0);
        for s in [&base, &reordered, &base, &replaced, &missing, &reordered] {
            r.record(&HTTP_SERVER, s);
        }
        let mut out = Vec::new();
        r.flush(|d| out.push(d));
        let count_of = |want: &[(&str, AttrValue)]| {
            out.iter()
                .find(|d| {
                    d.attrs.len() == want.len()
                        && want
                            .iter()
                            .all(|(k, v)| d.attrs.iter().any(|(dk, dv)| dk == k && dv == v))
                })
                .map(|d| d.count)
        };
        let get = AttrValue::Str("GET".into());
        let route = AttrValue::Str("/".into());
        let full = [
            ("http.request.method", get.clone()),
            ("http.response.status_code", AttrValue::Int(200)),
            ("http.route", route.clone()),
        ];
        assert_eq!(count_of(&full), Some(4));
        assert_eq!(
            count_of(&[
                ("http.request.method", get),
                ("url.scheme", AttrValue::Str("http".into())),
                ("http.route", route.clone()),
            ]),
            Some(1)
        );
        assert_eq!(
            count_of(&[
                ("http.response.status_code", AttrValue::Int(200)),
                ("http.route", route),
            ]),
            Some(1)
        );
        assert_eq!(out.len(), 3);
    }
}
