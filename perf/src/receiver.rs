//! A lean OTLP/HTTP receiver for the overhead phase: it answers 200 at once and counts what each
//! body holds as it arrives (spans off the protobuf wire format, without building the request),
//! reading every body into a buffer its connection reuses. It runs on the machine being
//! measured, so it must cost little there (a real collector would run elsewhere): it used to
//! keep every body until the load stopped, and zeroing the fresh pages for them took about 4% of
//! the machine's CPU under the full agent (`clear_page_erms`, `perf record -a`), more than the
//! agent's shards.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;

use crate::otlpcount::{count_spans, decode_metrics, unzip_into, HistogramCounter};

/// What arrived so far, counted.
#[derive(Default)]
struct Counts {
    received: Received,
    histogram: HistogramCounter,
}

/// What one request body held.
enum Got {
    Spans { all: u64, server: u64 },
    Metrics(ExportMetricsServiceRequest),
    Nothing,
}

/// A connection's buffers, kept from one request to the next: the body, and the body gunzipped.
#[derive(Default)]
struct ConnBufs {
    body: Vec<u8>,
    unzipped: Vec<u8>,
}

/// The running receiver; stops when dropped.
pub struct Receiver {
    addr: SocketAddr,
    counts: Arc<Mutex<Counts>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What was received, decoded.
#[derive(Debug, Clone, Copy, Default)]
pub struct Received {
    pub trace_requests: u64,
    pub metric_requests: u64,
    pub spans: u64,
    pub server_spans: u64,
    /// Observations of `http.server.request.duration` (cumulative: latest count per series).
    pub server_duration_count: u64,
    pub bad_requests: u64,
}

/// Read a body into `buf` (cleared first), frame by frame; false when the body failed.
async fn read_body(body: hyper::body::Incoming, buf: &mut Vec<u8>) -> bool {
    buf.clear();
    let mut body = body;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Ok(data) = f.into_data() {
                    buf.extend_from_slice(&data);
                }
            }
            Err(_) => return false,
        }
    }
    true
}

async fn handle(
    counts: &Mutex<Counts>,
    bufs: &Mutex<ConnBufs>,
    req: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    // Traces, metrics or anything else (counted as a bad request).
    let kind = match req.uri().path() {
        "/v1/traces" => Some(true),
        "/v1/metrics" => Some(false),
        _ => None,
    };
    // The connection's buffers, taken for the time of the read (a connection serves one
    // request at a time) and given back after.
    let mut b = bufs
        .lock()
        .map(|mut b| std::mem::take(&mut *b))
        .unwrap_or_default();
    let ok = read_body(req.into_body(), &mut b.body).await;
    // Gunzipped and counted (or decoded) before the counts are taken: the lock only adds.
    let got = match (kind, ok) {
        (Some(true), true) => unzip_into(&b.body, &mut b.unzipped)
            .and_then(count_spans)
            .map(|(all, server)| Got::Spans { all, server }),
        (Some(false), true) => decode_metrics(&b.body, &mut b.unzipped).map(Got::Metrics),
        _ => Ok(Got::Nothing),
    };
    if let Ok(mut c) = counts.lock() {
        let c = &mut *c;
        match (kind, ok) {
            (Some(true), true) => c.received.trace_requests += 1,
            (Some(false), true) => c.received.metric_requests += 1,
            _ => {}
        }
        match got {
            Ok(Got::Spans { all, server }) => {
                c.received.spans += all;
                c.received.server_spans += server;
            }
            Ok(Got::Metrics(req)) => c.histogram.add(&req, "http.server.request.duration"),
            // Not an OTLP request, its body failed, or the body is not what it says.
            Ok(Got::Nothing) | Err(_) => c.received.bad_requests += 1,
        }
    }
    if let Ok(mut slot) = bufs.lock() {
        *slot = b;
    }
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::OK;
    r
}

impl Receiver {
    pub fn start() -> anyhow::Result<Receiver> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let counts = Arc::new(Mutex::new(Counts::default()));
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let b = counts.clone();
        let thread = std::thread::Builder::new()
            .name("perf-receiver".into())
            .spawn(move || {
                rt.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    loop {
                        tokio::select! {
                            _ = &mut rx => break,
                            acc = listener.accept() => {
                                let Ok((stream, _)) = acc else { continue };
                                let b = b.clone();
                                let bufs = Arc::new(Mutex::new(ConnBufs::default()));
                                tokio::spawn(async move {
                                    let svc = hyper::service::service_fn(move |req| {
                                        let (b, bufs) = (b.clone(), bufs.clone());
                                        async move {
                                            Ok::<_, Infallible>(handle(&b, &bufs, req).await)
                                        }
                                    });
                                    let _ = hyper::server::conn::http1::Builder::new()
                                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                                        .await;
                                });
                            }
                        }
                    }
                });
            })?;
        Ok(Receiver {
            addr,
            counts,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What was received so far, and forget it.
    pub fn take(&self) -> Received {
        let Ok(mut c) = self.counts.lock() else {
            return Received::default();
        };
        let c = std::mem::take(&mut *c);
        Received {
            server_duration_count: c.histogram.total(),
            ..c.received
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
