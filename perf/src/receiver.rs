//! A lean OTLP/HTTP receiver for the overhead phase: it answers 200 at once and keeps the raw
//! (gzipped) bodies; decoding and counting happen after the load stops, so the receiver adds as
//! little CPU as possible to the machine being measured (a real collector would run elsewhere).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};

use crate::otlpcount::{count_spans, HistogramCounter};

#[derive(Default)]
struct Bodies {
    traces: Vec<Bytes>,
    metrics: Vec<Bytes>,
    other: u64,
}

/// The running receiver; stops when dropped.
pub struct Receiver {
    addr: SocketAddr,
    bodies: Arc<Mutex<Bodies>>,
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

async fn handle(
    bodies: &Mutex<Bodies>,
    req: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if let Ok(mut b) = bodies.lock() {
        match path.as_str() {
            "/v1/traces" => b.traces.push(body),
            "/v1/metrics" => b.metrics.push(body),
            _ => b.other += 1,
        }
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
        let bodies = Arc::new(Mutex::new(Bodies::default()));
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let b = bodies.clone();
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
                                tokio::spawn(async move {
                                    let svc = hyper::service::service_fn(move |req| {
                                        let b = b.clone();
                                        async move { Ok::<_, Infallible>(handle(&b, req).await) }
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
            bodies,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Decode and count everything received so far, and forget it.
    pub fn take(&self) -> Received {
        let b = match self.bodies.lock() {
            Ok(mut b) => std::mem::take(&mut *b),
            Err(_) => Bodies::default(),
        };
        let mut r = Received {
            trace_requests: b.traces.len() as u64,
            metric_requests: b.metrics.len() as u64,
            bad_requests: b.other,
            ..Default::default()
        };
        for t in &b.traces {
            match count_spans(t) {
                Ok((all, server)) => {
                    r.spans += all;
                    r.server_spans += server;
                }
                Err(_) => r.bad_requests += 1,
            }
        }
        let mut hc = HistogramCounter::default();
        for m in &b.metrics {
            if hc.add_body(m, "http.server.request.duration").is_err() {
                r.bad_requests += 1;
            }
        }
        r.server_duration_count = hc.total();
        r
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
