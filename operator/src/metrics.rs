//! Operator counters and the admin port: `/metrics` (Prometheus text), `/healthz` (process
//! up), `/readyz` (stores filled, so served snapshots are complete).
//!
//! Inputs: counters bumped by reconcile and the stream server, the publisher's versions and the
//! sidecar registry (versions, breaker states and token totals the sidecars report). Output:
//! plain HTTP on the admin listener. Nothing here reads a snapshot's content, so no secret can
//! reach this port.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{StatusCode, header};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::limits::ServerLimits;
use crate::publish::Publisher;
use crate::sidecars::Registry;

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// The count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The operator's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Scope reconciles started.
    pub reconciles: Counter,
    /// Scope reconciles that failed.
    pub reconcile_errors: Counter,
    /// Status patches written.
    pub status_writes: Counter,
    /// Snapshot lines sent to sidecars.
    pub snapshots_sent: Counter,
    /// Streams opened (authenticated).
    pub streams_opened: Counter,
    /// Requests refused for their token.
    pub auth_failures: Counter,
    /// Sidecar reports accepted.
    pub reports: Counter,
}

/// What the admin port shows.
#[derive(Clone, Debug)]
pub struct AdminState {
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Snapshot versions.
    pub publisher: Publisher,
    /// Sidecars.
    pub sidecars: Registry,
    /// Whether this replica leads.
    pub leader: watch::Receiver<bool>,
    /// Whether the stores are filled.
    pub ready: Arc<AtomicBool>,
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl AdminState {
    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let m = &self.metrics;
        let mut out = String::new();
        for (name, help, value) in [
            (
                "reconciles_total",
                "Scope reconciles started.",
                m.reconciles.get(),
            ),
            (
                "reconcile_errors_total",
                "Scope reconciles that failed.",
                m.reconcile_errors.get(),
            ),
            (
                "status_writes_total",
                "Status patches written.",
                m.status_writes.get(),
            ),
            (
                "snapshots_sent_total",
                "Snapshots sent to sidecars.",
                m.snapshots_sent.get(),
            ),
            (
                "streams_opened_total",
                "Authenticated snapshot streams opened.",
                m.streams_opened.get(),
            ),
            (
                "auth_failures_total",
                "Requests refused for their token.",
                m.auth_failures.get(),
            ),
            (
                "reports_total",
                "Sidecar reports accepted.",
                m.reports.get(),
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP spillway_operator_{name} {help}\n# TYPE spillway_operator_{name} counter\nspillway_operator_{name} {value}"
            );
        }
        let leader = u8::from(*self.leader.borrow());
        let _ = writeln!(
            out,
            "# TYPE spillway_operator_leader gauge\nspillway_operator_leader {leader}"
        );
        let _ = writeln!(out, "# TYPE spillway_operator_snapshot_version gauge");
        let versions: BTreeMap<String, u64> = self.publisher.versions().into_iter().collect();
        for (scope, version) in &versions {
            let _ = writeln!(
                out,
                "spillway_operator_snapshot_version{{scope=\"{}\"}} {version}",
                escape(scope)
            );
        }
        self.render_sidecars(&versions, &mut out);
        out
    }

    fn render_sidecars(&self, versions: &BTreeMap<String, u64>, out: &mut String) {
        let mut sidecars: BTreeMap<(String, &str), u64> = BTreeMap::new();
        let mut open: BTreeMap<(String, String), u64> = BTreeMap::new();
        let mut tokens: BTreeMap<(String, String), u64> = BTreeMap::new();
        for view in self.sidecars.sidecars() {
            let version = view.report.as_ref().and_then(|r| r.version);
            let synced = version.is_some() && version == versions.get(&view.scope).copied();
            let state = if synced { "synced" } else { "behind" };
            *sidecars.entry((view.scope.clone(), state)).or_default() += 1;
            let Some(report) = &view.report else { continue };
            for (backend, state) in &report.breakers {
                if *state == crate::wire::BreakerState::Open {
                    *open
                        .entry((view.scope.clone(), backend.clone()))
                        .or_default() += 1;
                }
            }
            for (app, usage) in &report.usage {
                *tokens.entry((view.scope.clone(), app.clone())).or_default() +=
                    usage.prompt_tokens + usage.completion_tokens;
            }
        }
        let _ = writeln!(out, "# TYPE spillway_operator_sidecars gauge");
        for ((scope, state), n) in &sidecars {
            let _ = writeln!(
                out,
                "spillway_operator_sidecars{{scope=\"{}\",state=\"{state}\"}} {n}",
                escape(scope)
            );
        }
        let _ = writeln!(
            out,
            "# HELP spillway_operator_breakers_open Sidecars reporting the backend's breaker open.\n# TYPE spillway_operator_breakers_open gauge"
        );
        for ((scope, backend), n) in &open {
            let _ = writeln!(
                out,
                "spillway_operator_breakers_open{{scope=\"{}\",backend=\"{}\"}} {n}",
                escape(scope),
                escape(backend)
            );
        }
        let _ = writeln!(
            out,
            "# HELP spillway_operator_app_tokens Tokens per app summed over the connected sidecars' reports.\n# TYPE spillway_operator_app_tokens gauge"
        );
        for ((scope, app), n) in &tokens {
            let _ = writeln!(
                out,
                "spillway_operator_app_tokens{{scope=\"{}\",app=\"{}\"}} {n}",
                escape(scope),
                escape(app)
            );
        }
    }

    /// The admin routes: `/metrics`, `/healthz`, `/readyz`.
    pub fn router(self) -> Router {
        Router::new()
            .route("/metrics", get(metrics))
            .route("/healthz", get(|| async { plain(StatusCode::OK, "ok\n") }))
            .route("/readyz", get(readyz))
            .fallback(|| async {
                plain(
                    StatusCode::NOT_FOUND,
                    "not found; try /metrics, /healthz, /readyz\n",
                )
            })
            .with_state(self)
    }

    /// Serves the admin endpoints on `listener` until the task is dropped, within `limits`
    /// (see [`ServerLimits::admin`]): each connection is closed when its headers do not
    /// arrive within the header-read timeout (a silent socket included).
    pub async fn serve(self, listener: TcpListener, limits: ServerLimits) {
        let router = self.router();
        let builder = limits.builder();
        let admission = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
        loop {
            let Ok(permit) = Arc::clone(&admission).acquire_owned().await else {
                return;
            };
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            };
            let service = TowerToHyperService::new(router.clone());
            let builder = builder.clone();
            tokio::spawn(async move {
                if limits.first_bytes(&stream).await {
                    let _ = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                }
                drop(permit);
            });
        }
    }
}

/// The Prometheus text exposition format's content type.
const EXPOSITION: &str = "text/plain; version=0.0.4; charset=utf-8";

fn plain(status: StatusCode, body: &'static str) -> Response {
    let headers = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    (status, headers, body).into_response()
}

async fn metrics(State(state): State<AdminState>) -> Response {
    ([(header::CONTENT_TYPE, EXPOSITION)], state.render()).into_response()
}

async fn readyz(State(state): State<AdminState>) -> Response {
    if state.ready.load(Ordering::Relaxed) {
        plain(StatusCode::OK, "ready\n")
    } else {
        plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: stores not filled yet\n",
        )
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use spillway_crds::Snapshot;

    use super::*;
    use crate::wire::{AppUsage, SidecarReport};

    async fn get(router: &Router, path: &str) -> StatusCode {
        use tower::ServiceExt as _;
        let request = http::Request::get(path)
            .body(axum::body::Body::empty())
            .expect("request");
        let response = router.clone().oneshot(request).await.expect("infallible");
        response.status()
    }

    #[tokio::test]
    async fn metrics_show_counters_versions_sidecars_breakers_and_tokens() {
        let publisher = Publisher::new();
        publisher.publish("team", Snapshot::default());
        let sidecars = Registry::new(publisher.clone(), Duration::from_secs(30));
        let report = SidecarReport {
            sidecar: "gw-1".into(),
            version: Some(1),
            breakers: [("chat/east".to_owned(), crate::wire::BreakerState::Open)].into(),
            usage: [(
                "billing \"app\"".to_owned(),
                AppUsage {
                    requests: 2,
                    prompt_tokens: 10,
                    completion_tokens: 5,
                },
            )]
            .into(),
            ..SidecarReport::default()
        };
        sidecars.report("team", report, tokio::time::Instant::now());
        let metrics = Arc::new(Metrics::default());
        metrics.reconciles.inc();
        let state = AdminState {
            metrics,
            publisher,
            sidecars,
            leader: watch::channel(true).1,
            ready: Arc::new(AtomicBool::new(true)),
        };
        let text = state.render();
        for line in [
            "spillway_operator_reconciles_total 1",
            "spillway_operator_leader 1",
            "spillway_operator_snapshot_version{scope=\"team\"} 1",
            "spillway_operator_sidecars{scope=\"team\",state=\"synced\"} 1",
            "spillway_operator_breakers_open{scope=\"team\",backend=\"chat/east\"} 1",
            "spillway_operator_app_tokens{scope=\"team\",app=\"billing \\\"app\\\"\"} 15",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        let router = state.router();
        assert_eq!(get(&router, "/readyz").await, StatusCode::OK);
        assert_eq!(get(&router, "/metrics").await, StatusCode::OK);
        assert_eq!(get(&router, "/nope").await, StatusCode::NOT_FOUND);
    }
}
