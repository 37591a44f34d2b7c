//! Operator counters and the admin port: `/metrics` (Prometheus text), `/healthz` (process
//! up), `/readyz` (stores filled, so served snapshots are complete).
//!
//! Inputs: counters bumped by reconcile and the stream server, the publisher's versions and the
//! sidecar registry (versions, breaker states and token totals the sidecars report). Output:
//! plain HTTP on the admin listener. Nothing here reads a snapshot's content, so no secret can
//! reach this port.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;

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

    fn respond(&self, path: &str) -> Response<Full<Bytes>> {
        let (status, body) = match path {
            "/metrics" => (StatusCode::OK, self.render()),
            "/healthz" => (StatusCode::OK, "ok\n".to_owned()),
            "/readyz" if self.ready.load(Ordering::Relaxed) => {
                (StatusCode::OK, "ready\n".to_owned())
            }
            "/readyz" => (
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: stores not filled yet\n".to_owned(),
            ),
            _ => (
                StatusCode::NOT_FOUND,
                "not found; try /metrics, /healthz, /readyz\n".to_owned(),
            ),
        };
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/plain; version=0.0.4"),
        );
        response
    }

    /// Serves the admin endpoints on `listener` until the task is dropped.
    pub async fn serve(self, listener: TcpListener) {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            };
            let state = self.clone();
            let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let response = state.respond(req.uri().path());
                async move { Ok::<_, Infallible>(response) }
            });
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use spillway_crds::Snapshot;

    use super::*;
    use crate::wire::{AppUsage, SidecarReport};

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
        assert_eq!(state.respond("/readyz").status(), StatusCode::OK);
        assert_eq!(state.respond("/nope").status(), StatusCode::NOT_FOUND);
    }
}
