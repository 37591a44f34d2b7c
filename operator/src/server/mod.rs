//! The config stream server (HTTPS): sidecars watch their scope's snapshots and report back.
//! The protocol is described in [`crate::wire`].
//!
//! - [`tls`]: the serving certificate (files, or generated with a CA file for sidecars).
//! - [`auth`]: token validation with the TokenReview API, behind [`TokenReviewer`] so tests
//!   can run the server without a cluster.
//! - `handlers`: the axum router — the two sidecar endpoints and the stream body, and
//!   `POST /mutate` / `POST /validate` to the webhooks ([`crate::webhook`]), which need no
//!   token: the API server calls them.
//!
//! Every replica serves, leader or not, so a failover does not disconnect sidecars. On
//! shutdown open streams end (sidecars reconnect, through the Service, to another replica) and
//! connections drain.

pub mod auth;
mod handlers;
pub mod tls;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

pub use auth::{Identity, ReviewError, TokenReviewer};

use crate::limits::ServerLimits;
use crate::metrics::Metrics;
use crate::publish::Publisher;
use crate::sidecars::Registry;
use crate::webhook::{InjectConfig, Validator};

/// Time open connections get to finish once shutdown began.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The stream server's shared state.
#[derive(Clone)]
pub struct StreamServer {
    /// Snapshots per scope.
    pub publisher: Publisher,
    /// Sidecar sessions.
    pub sidecars: Registry,
    /// Token validation.
    pub reviewer: Arc<dyn TokenReviewer>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Interval between heartbeat lines.
    pub heartbeat: Duration,
    /// The one namespace served when the operator watches only that one; sidecars of other
    /// namespaces are refused (403) instead of waiting forever for a snapshot.
    pub only_namespace: Option<String>,
    /// The sidecar injection webhook's settings; `POST /mutate` answers 404 without them.
    pub injector: Option<Arc<InjectConfig>>,
    /// The validating webhook; `POST /validate` answers 404 without it.
    pub validator: Option<Validator>,
    /// Timeouts and the connection cap for clients.
    pub limits: ServerLimits,
}

impl StreamServer {
    /// Serves HTTPS on `listener` until `shutdown` resolves, then ends every stream and drains.
    pub async fn serve(
        self,
        listener: TcpListener,
        tls: Arc<rustls::ServerConfig>,
        shutdown: impl Future<Output = ()>,
    ) {
        let acceptor = TlsAcceptor::from(tls);
        let graceful = GracefulShutdown::new();
        let (closing_tx, closing) = watch::channel(false);
        let limits = self.limits;
        let router = self.router(closing);
        let builder = Arc::new(limits.builder());
        let admission = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
        tokio::pin!(shutdown);
        loop {
            let Ok(permit) = Arc::clone(&admission).acquire_owned().await else {
                break;
            };
            let (tcp, peer) = tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: do not spin.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let acceptor = acceptor.clone();
            let builder = Arc::clone(&builder);
            let service = TowerToHyperService::new(router.clone());
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let tls = match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp))
                    .await
                {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(error)) => {
                        tracing::debug!(%peer, %error, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
                let connection = builder.serve_connection(TokioIo::new(tls), service);
                let _ = watcher.watch(connection.into_owned()).await;
                drop(permit);
            });
        }
        drop(listener);
        closing_tx.send_replace(true);
        if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("some stream connections did not close in time");
        }
    }
}
