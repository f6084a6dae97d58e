//! A real OTLP/HTTP collector for tests: a hyper server on 127.0.0.1:0, on its own thread and
//! tokio runtime, that accepts protobuf POSTs on `/v1/traces` and `/v1/metrics` (gunzipping when
//! `Content-Encoding: gzip`), decodes and stores them, records every request's headers, and can
//! be told to answer the next N requests with an error status (with or without `Retry-After`).

use std::convert::Infallible;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

/// One request as received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub gzip: bool,
    /// Status answered.
    pub status: u16,
    pub body_len: usize,
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct State {
    traces: Vec<ExportTraceServiceRequest>,
    metrics: Vec<ExportMetricsServiceRequest>,
    requests: Vec<RecordedRequest>,
    fail_remaining: u32,
    fail_status: u16,
    fail_retry_after: Option<String>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The running receiver; stops when dropped.
pub struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    /// Start on 127.0.0.1 with an ephemeral port.
    pub fn start() -> Receiver {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local addr");
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("otlp-receiver".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("receiver runtime");
                rt.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    loop {
                        tokio::select! {
                            _ = &mut rx => break,
                            acc = listener.accept() => {
                                let Ok((stream, _)) = acc else { continue };
                                let sh = sh.clone();
                                tokio::spawn(async move {
                                    let svc = hyper::service::service_fn(move |req| {
                                        let sh = sh.clone();
                                        async move { Ok::<_, Infallible>(handle(&sh, req).await) }
                                    });
                                    let _ = hyper::server::conn::http1::Builder::new()
                                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                                        .await;
                                });
                            }
                        }
                    }
                });
            })
            .expect("spawn receiver thread");
        Receiver {
            addr,
            shared,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answer the next `n` requests with `status` (and `Retry-After: <secs>` when given).
    pub fn fail_next(&self, n: u32, status: u16, retry_after_secs: Option<u64>) {
        let mut st = self.shared.lock();
        st.fail_remaining = n;
        st.fail_status = status;
        st.fail_retry_after = retry_after_secs.map(|s| s.to_string());
    }

    /// Every span received, with its resource attributes.
    pub fn spans(&self) -> Vec<(Vec<KeyValue>, Span)> {
        let st = self.shared.lock();
        let mut out = Vec::new();
        for req in &st.traces {
            for rs in &req.resource_spans {
                let attrs = rs
                    .resource
                    .as_ref()
                    .map(|r| r.attributes.clone())
                    .unwrap_or_default();
                for ss in &rs.scope_spans {
                    for s in &ss.spans {
                        out.push((attrs.clone(), s.clone()));
                    }
                }
            }
        }
        out
    }

    pub fn trace_requests(&self) -> Vec<ExportTraceServiceRequest> {
        self.shared.lock().traces.clone()
    }

    pub fn metrics(&self) -> Vec<ExportMetricsServiceRequest> {
        self.shared.lock().metrics.clone()
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    /// Wait until at least `n` spans were stored; false on timeout.
    pub fn wait_for_spans(&self, n: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |st| {
            st.traces
                .iter()
                .flat_map(|r| r.resource_spans.iter())
                .flat_map(|rs| rs.scope_spans.iter())
                .map(|ss| ss.spans.len())
                .sum::<usize>()
                >= n
        })
    }

    /// Wait until at least `n` requests (any path, any answer) were received.
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |st| st.requests.len() >= n)
    }

    fn wait_until(&self, timeout: Duration, pred: impl Fn(&State) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.lock();
        loop {
            if pred(&st) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = match self.shared.changed.wait_timeout(st, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// String value of attribute `key`, if it is a string.
pub fn attr_str<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) => Some(s.as_str()),
            _ => None,
        }
    })
}

/// Integer value of attribute `key`, if it is an integer.
pub fn attr_int(attrs: &[KeyValue], key: &str) -> Option<i64> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::IntValue(i)) => Some(*i),
            _ => None,
        }
    })
}

fn reply(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/x-protobuf"),
    );
    r
}

async fn handle(sh: &Shared, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let gzip = req
        .headers()
        .get(hyper::header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let mut record = RecordedRequest {
        method: method.clone(),
        path: path.clone(),
        headers,
        gzip,
        status: 200,
        body_len: body.len(),
    };
    let mut st = sh.lock();
    let resp = if st.fail_remaining > 0 {
        st.fail_remaining -= 1;
        let status =
            StatusCode::from_u16(st.fail_status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let mut r = reply(status, Vec::new());
        if let Some(ra) = st.fail_retry_after.as_deref() {
            if let Ok(v) = hyper::header::HeaderValue::from_str(ra) {
                r.headers_mut().insert(hyper::header::RETRY_AFTER, v);
            }
        }
        r
    } else if method != "POST" {
        reply(StatusCode::METHOD_NOT_ALLOWED, Vec::new())
    } else {
        let raw = if gzip {
            let mut out = Vec::new();
            match flate2::read::GzDecoder::new(body.as_ref()).read_to_end(&mut out) {
                Ok(_) => Some(out),
                Err(_) => None,
            }
        } else {
            Some(body.to_vec())
        };
        match (path.as_str(), raw) {
            (_, None) => reply(StatusCode::BAD_REQUEST, Vec::new()),
            ("/v1/traces", Some(raw)) => match ExportTraceServiceRequest::decode(raw.as_slice()) {
                Ok(r) => {
                    st.traces.push(r);
                    reply(
                        StatusCode::OK,
                        ExportTraceServiceResponse::default().encode_to_vec(),
                    )
                }
                Err(_) => reply(StatusCode::BAD_REQUEST, Vec::new()),
            },
            ("/v1/metrics", Some(raw)) => {
                match ExportMetricsServiceRequest::decode(raw.as_slice()) {
                    Ok(r) => {
                        st.metrics.push(r);
                        reply(StatusCode::OK, Vec::new())
                    }
                    Err(_) => reply(StatusCode::BAD_REQUEST, Vec::new()),
                }
            }
            _ => reply(StatusCode::NOT_FOUND, Vec::new()),
        }
    };
    record.status = resp.status().as_u16();
    st.requests.push(record);
    drop(st);
    sh.changed.notify_all();
    resp
}

/// Sum of the latest cumulative count of every series of the histogram `metric` received.
pub fn metric_count(recv: &Receiver, metric: &str) -> u64 {
    metric_count_where(recv, metric, |_| true)
}

/// Like [`metric_count`], only over the data points whose attributes pass `keep`.
pub fn metric_count_where(
    recv: &Receiver,
    metric: &str,
    keep: impl Fn(&[KeyValue]) -> bool,
) -> u64 {
    let mut latest: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    for req in recv.metrics() {
        for rm in &req.resource_metrics {
            let res = format!("{:?}", rm.resource);
            for sm in &rm.scope_metrics {
                for m in sm.metrics.iter().filter(|m| m.name == metric) {
                    if let Some(Data::Histogram(h)) = &m.data {
                        for p in h.data_points.iter().filter(|p| keep(&p.attributes)) {
                            let key = format!("{res}|{:?}", p.attributes);
                            let e = latest.entry(key).or_insert(0);
                            *e = (*e).max(p.count);
                        }
                    }
                }
            }
        }
    }
    latest.values().sum()
}
