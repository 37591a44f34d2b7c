//! Accept loop: HTTP/1.1 and h2c on one listener, one task per connection, within the
//! listener's [`ConnectionLimits`]; graceful shutdown that lets in-flight requests (streams
//! included) finish within a grace period.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use super::limits::{Admission, ConnectionLimits, configure, first_bytes};
use super::refusals::JsonRefusals;
use super::{Gateway, ProxyBody, handler};
use crate::error::ProxyError;

impl Gateway {
    /// Serves the data path on `listener` within `limits` until `shutdown` resolves, then
    /// waits up to `grace` for open connections to finish.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
        grace: Duration,
        limits: ConnectionLimits,
    ) {
        let graceful = GracefulShutdown::new();
        let builder = Arc::new(configure(&limits));
        let admission = Admission::new(&limits);
        self.shared.set_body_read_timeout(limits.body_read_timeout);
        tokio::pin!(shutdown);
        loop {
            let (permit, accepted) = tokio::select! {
                accepted = async {
                    let permit = admission.permit().await;
                    (permit, listener.accept().await)
                } => accepted,
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
            let (builder, watcher) = (Arc::clone(&builder), graceful.watcher());
            tokio::spawn(async move {
                if first_bytes(&stream, &limits).await {
                    let conn = builder.serve_connection_with_upgrades(
                        TokioIo::new(JsonRefusals::new(stream)),
                        service,
                    );
                    if let Err(error) = watcher.watch(conn.into_owned()).await {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                }
                drop(permit);
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
