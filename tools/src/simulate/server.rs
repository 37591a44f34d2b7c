//! The HTTP/1.1 listener of one simulated backend: accepts connections, serves them with
//! hyper — control requests through the axum router of [`super::admin`], model requests
//! through [`super::handler`] — and shuts down gracefully.
//!
//! Input: a bound [`TcpListener`], the backend state and a shutdown signal. Output: served
//! connections until the signal, then in-flight responses get [`SHUTDOWN_GRACE`] to finish
//! before their connections are dropped. Each connection's socket is wrapped so a response
//! can end it with a real TCP reset (`SO_LINGER` 0 on close) instead of a clean FIN.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::admin;
use super::backend::Backend;
use super::body::ConnControl;
use super::handler;

/// How long in-flight responses may run after shutdown starts.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Serves `listener` until `shutdown` turns true (or its sender is dropped).
pub async fn serve(
    listener: TcpListener,
    backend: Arc<Backend>,
    mut shutdown: watch::Receiver<bool>,
) {
    let control = admin::router(Arc::clone(&backend));
    let mut connections = JoinSet::new();
    let mut builder = http1::Builder::new();
    builder.keep_alive(true);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let conn = ConnControl::default();
                    let io = TokioIo::new(ResettableStream { inner: stream, conn: conn.clone() });
                    let backend = Arc::clone(&backend);
                    let control = control.clone();
                    let service = service_fn(move |request: Request<Incoming>| {
                        let (backend, conn, control) =
                            (Arc::clone(&backend), conn.clone(), control.clone());
                        async move {
                            if request.uri().path().starts_with(admin::PREFIX) {
                                Ok(admin::serve(&control, &backend.name, request).await)
                            } else {
                                handler::handle(backend, conn, request).await
                            }
                        }
                    });
                    let connection = builder.serve_connection(io, service);
                    connections.spawn(serve_connection(connection, shutdown.clone()));
                }
                Err(err) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %err, "simulator accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
            }
        }
    }
    drop(listener);
    let drained = async { while connections.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, drained).await;
    connections.abort_all();
    while connections.join_next().await.is_some() {}
}

/// Drives one connection; on shutdown, lets the response in flight finish and closes.
async fn serve_connection<S>(
    connection: http1::Connection<TokioIo<ResettableStream>, S>,
    mut shutdown: watch::Receiver<bool>,
) where
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::ResBody: 'static,
    <S::ResBody as http_body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => return,
        _ = shutdown.wait_for(|stop| *stop) => connection.as_mut().graceful_shutdown(),
    }
    let _ = connection.await;
}

/// A TCP stream that, when its connection asked for it, closes with a reset.
struct ResettableStream {
    inner: TcpStream,
    conn: ConnControl,
}

impl Drop for ResettableStream {
    fn drop(&mut self) {
        if self.conn.reset_requested() {
            // Closing a socket with a zero linger sends RST instead of FIN.
            let _ = self.inner.set_zero_linger();
        }
    }
}

impl AsyncRead for ResettableStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResettableStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.conn.reset_requested() {
            // No FIN before the reset.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}
