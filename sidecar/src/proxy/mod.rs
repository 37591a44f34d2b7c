//! The gateway's HTTP data path.
//!
//! - [`inbound`]: which OpenAI / Azure call a request is.
//! - [`upstream`]: target URL, headers and the pooled client for a chosen backend.
//! - `handler`: one request end to end — read, inspect, route, attempt, respond, record.
//! - `body`: the response body that streams through while learning usage, and keeps
//!   draining (bounded) when the client goes away.
//! - [`server`]: accept loop with graceful shutdown; [`admin`]: health, config and usage.
//!
//! Configuration is read through an [`ArcSwap`]: one atomic load per request, no lock, and a
//! new snapshot is swapped in without dropping in-flight requests.

pub mod admin;
mod attempt;
mod body;
mod call;
pub mod cors;
mod handler;
mod ids;
pub mod inbound;
pub mod limits;
mod models;
mod refusals;
pub mod server;
mod stored;
pub mod upstream;

use std::sync::Arc;

use arc_swap::ArcSwap;
use spillway_crds::Snapshot;
use tokio::sync::watch;

use crate::audit::{self, AuditPolicy, AuditQueue, AuditSink};
use crate::clock::SystemClock;
use crate::identity::Identifier;
use crate::limiter::Limiter;
use crate::routing::Routes;
use crate::telemetry::Sampler;
use crate::usage::UsageSink;

pub use body::ProxyBody;

/// Audited calls waiting for the writer at most; more are dropped (and counted), never
/// waited for.
const AUDIT_QUEUE: usize = 256;

/// A configuration as applied: the snapshot and the routing state built from it.
#[derive(Debug)]
pub struct Applied {
    /// The snapshot.
    pub snapshot: Arc<Snapshot>,
    /// Routing state (breakers carried over from the previous one).
    pub routes: Routes,
    /// Who is calling (JWKS cache carried over from the previous one).
    pub identifier: Identifier,
    /// Cross-origin policy for browsers, if the scope has one.
    pub cors: Option<cors::Cors>,
    /// Audit logging, if the scope enables it.
    pub audit: Option<Arc<AuditPolicy>>,
}

/// State shared by every request.
#[derive(Debug)]
pub struct Shared {
    applied: ArcSwap<Option<Applied>>,
    client: crate::http_client::HttpClient,
    usage: UsageSink,
    limiter: Arc<Limiter>,
    audit: AuditSink,
    audit_queue: std::sync::Mutex<Option<AuditQueue>>,
    sampler: ArcSwap<Sampler>,
    /// Which backend holds each stored response.
    homes: crate::affinity::ResponseHomes,
    /// The namespace records carry when the applied snapshot names none.
    namespace: ArcSwap<Option<String>>,
    /// Time a client gets to send a request body, in milliseconds (see
    /// [`limits::ConnectionLimits`]).
    body_read_timeout_ms: std::sync::atomic::AtomicU64,
}

impl Shared {
    fn set_body_read_timeout(&self, timeout: std::time::Duration) {
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self.body_read_timeout_ms
            .store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    fn body_read_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(
            self.body_read_timeout_ms
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }
}

/// The gateway: cheap to clone, shared by the server, the admin endpoints and the
/// configuration follower.
#[derive(Clone, Debug)]
pub struct Gateway {
    shared: Arc<Shared>,
}

impl Gateway {
    /// A gateway with no configuration yet (it answers 503 until one is applied).
    pub fn new(usage: UsageSink) -> Self {
        let (audit, audit_queue) = audit::queue(AUDIT_QUEUE);
        Self {
            shared: Arc::new(Shared {
                applied: ArcSwap::from_pointee(None),
                client: crate::http_client::client(),
                usage,
                limiter: Arc::new(Limiter::new(Arc::new(SystemClock))),
                audit,
                audit_queue: std::sync::Mutex::new(Some(audit_queue)),
                sampler: ArcSwap::from_pointee(Sampler::default()),
                homes: crate::affinity::ResponseHomes::default(),
                namespace: ArcSwap::from_pointee(None),
                body_read_timeout_ms: std::sync::atomic::AtomicU64::new(60_000),
            }),
        }
    }

    /// Applies `snapshot` atomically; breaker state of unchanged backends, the JWKS cache
    /// and the counters of unchanged quotas are kept. Call from within the tokio runtime.
    pub fn apply(&self, snapshot: Arc<Snapshot>) {
        let previous = self.shared.applied.load();
        let previous = previous.as_ref().as_ref();
        let routes = Routes::build(&snapshot, previous.map(|a| &a.routes));
        let identifier =
            Identifier::new(&snapshot.gateway.identity, previous.map(|a| &a.identifier));
        if let Err(error) = self.shared.limiter.apply(&snapshot) {
            tracing::error!(%error, "rate limiting is degraded; see the AIGateway's rateLimiting");
        }
        let cors = snapshot.gateway.cors.as_ref().map(cors::Cors::new);
        let audit = snapshot.gateway.audit.as_ref().and_then(|config| {
            AuditPolicy::new(config)
                .map_err(|error| tracing::error!(%error, "audit logging is off: a redaction pattern does not compile"))
                .ok()
                .map(Arc::new)
        });
        self.shared.applied.store(Arc::new(Some(Applied {
            snapshot,
            routes,
            identifier,
            cors,
            audit,
        })));
    }

    /// The namespace usage records carry when the configuration names none.
    pub fn set_namespace(&self, namespace: Option<String>) {
        self.shared.namespace.store(Arc::new(namespace));
    }

    /// Sets the head sampler deciding which new requests' traces are sampled (default:
    /// `parentbased_always_on`).
    pub fn set_sampler(&self, sampler: Sampler) {
        self.shared.sampler.store(Arc::new(sampler));
    }

    /// The writer's end of the audit queue, once: hand it to an audit writer, or drop it
    /// (audited calls are then dropped and counted).
    pub fn take_audit_queue(&self) -> Option<AuditQueue> {
        self.shared
            .audit_queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    /// The audit queue's request-path end (its counts are exported as metrics).
    pub fn audit(&self) -> &AuditSink {
        &self.shared.audit
    }

    /// The quota limiter.
    pub fn limiter(&self) -> &Arc<Limiter> {
        &self.shared.limiter
    }

    /// The applied configuration, if any.
    pub fn applied(&self) -> Arc<Option<Applied>> {
        self.shared.applied.load_full()
    }

    /// The usage sink every request reports into.
    pub fn usage(&self) -> &UsageSink {
        &self.shared.usage
    }

    /// Applies the current and every later snapshot of `rx` until the sender is gone.
    pub async fn follow(self, mut rx: watch::Receiver<Arc<Snapshot>>) {
        loop {
            let snapshot = rx.borrow_and_update().clone();
            let version = snapshot.version;
            let applied = self.applied();
            let current =
                Option::as_ref(&applied).is_some_and(|a| Arc::ptr_eq(&a.snapshot, &snapshot));
            // Version 0 is "nothing yet"; a snapshot applied before following is not re-applied.
            if version > 0 && !current {
                self.apply(snapshot);
                tracing::info!(version, "configuration applied");
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }
}

impl crate::telemetry::GatewayView for Gateway {
    fn snapshot(&self) -> Option<Arc<Snapshot>> {
        Option::as_ref(&self.applied()).map(|applied| Arc::clone(&applied.snapshot))
    }

    fn breakers(
        &self,
        now: std::time::Instant,
        visit: &mut dyn FnMut(&str, &str, crate::breaker::BreakerState),
    ) {
        let applied = self.applied();
        let Some(applied) = applied.as_ref() else {
            return;
        };
        for pool in applied.routes.pools() {
            for (backend, runtime) in pool.backends() {
                visit(
                    &pool.config().name,
                    &backend.name,
                    runtime.breaker().state(now),
                );
            }
        }
    }

    fn audit_counts(&self) -> (u64, u64, u64) {
        self.audit().counts().snapshot()
    }
}
