//! A local OTLP/HTTP sink for the gateway's metric and trace exports during a bench: it
//! accepts every `POST` (`/v1/metrics`, `/v1/traces`), reads the body, counts exports and
//! bytes, and answers `200` with an empty protobuf message (a full success in OTLP/HTTP).
//!
//! Input: nothing (binds 127.0.0.1:0). Output: its base URL for `--otlp-endpoint` and the
//! counts, so the table can show that export really ran. Stops when dropped.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The running sink; see the module docs.
#[derive(Debug)]
pub struct OtlpSink {
    addr: SocketAddr,
    counts: Arc<Counts>,
    task: JoinHandle<()>,
}

#[derive(Debug, Default)]
struct Counts {
    metrics: AtomicU64,
    traces: AtomicU64,
    bytes: AtomicU64,
}

/// What an export carried, by its path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// `…/v1/metrics` (and any other path).
    Metrics,
    /// `…/v1/traces`.
    Traces,
}

impl OtlpSink {
    /// Binds 127.0.0.1:0 and serves.
    ///
    /// # Errors
    /// The port cannot be bound.
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let counts = Arc::new(Counts::default());
        let task = tokio::spawn(serve(listener, Arc::clone(&counts)));
        Ok(Self { addr, counts, task })
    }

    /// The base URL (`/v1/metrics` and `/v1/traces` are added by the exporter).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Export requests of `signal` received so far.
    pub fn exports(&self, signal: Signal) -> u64 {
        match signal {
            Signal::Metrics => self.counts.metrics.load(Ordering::Relaxed),
            Signal::Traces => self.counts.traces.load(Ordering::Relaxed),
        }
    }

    /// Body bytes received so far.
    pub fn bytes(&self) -> u64 {
        self.counts.bytes.load(Ordering::Relaxed)
    }
}

impl Drop for OtlpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, counts: Arc<Counts>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let counts = Arc::clone(&counts);
        let service = service_fn(move |request| accept(Arc::clone(&counts), request));
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn accept(
    counts: Arc<Counts>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let traces = request.uri().path().ends_with("/v1/traces");
    let size = match request.into_body().collect().await {
        Ok(body) => body.to_bytes().len() as u64,
        Err(_) => 0,
    };
    let counter = if traces {
        &counts.traces
    } else {
        &counts.metrics
    };
    counter.fetch_add(1, Ordering::Relaxed);
    counts.bytes.fetch_add(size, Ordering::Relaxed);
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/x-protobuf"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use spillway_sidecar::http_client;

    #[tokio::test]
    async fn counts_each_export_and_answers_ok() {
        let sink = OtlpSink::start().await.expect("bind");
        let client = http_client::client();
        for path in ["/v1/metrics", "/v1/traces"] {
            let request = Request::post(format!("{}{path}", sink.url()))
                .body(Full::new(Bytes::from_static(b"12345")))
                .expect("request");
            let response = client.request(request).await.expect("response");
            assert_eq!(response.status(), StatusCode::OK);
        }
        let exports = (sink.exports(Signal::Metrics), sink.exports(Signal::Traces));
        assert_eq!((exports, sink.bytes()), ((1, 1), 10));
    }
}
