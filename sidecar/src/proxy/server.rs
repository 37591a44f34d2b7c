//! Accept loop: HTTP/1.1 and h2c on one listener, one task per connection, graceful
//! shutdown that lets in-flight requests (streams included) finish within a grace period.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use super::{Gateway, ProxyBody, handler};
use crate::error::ProxyError;

impl Gateway {
    /// Serves the data path on `listener` until `shutdown` resolves, then waits up to `grace`
    /// for open connections to finish.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
        grace: Duration,
    ) {
        let graceful = GracefulShutdown::new();
        let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = &mut shutdown => break,
            };
            let (stream, _) = match accepted {
                Ok(conn) => conn,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let shared = self.shared.clone();
            let service = service_fn(move |req| {
                // Each request runs in its own task: a client that goes away before the
                // response starts does not cancel the call the backend is already billing
                // for, and its usage is still recorded (the unread body drains on drop).
                let task = tokio::spawn(handler::handle(shared.clone(), req));
                async move {
                    Ok::<_, Infallible>(task.await.unwrap_or_else(|error| {
                        tracing::error!(%error, "request handler failed");
                        ProxyError::Internal.to_response().map(ProxyBody::full)
                    }))
                }
            });
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            let conn = graceful.watch(conn.into_owned());
            tokio::spawn(async move {
                if let Err(error) = conn.await {
                    tracing::debug!(%error, "connection ended with an error");
                }
            });
        }
        if tokio::time::timeout(grace, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("grace period over; closing the remaining connections");
        }
    }
}
