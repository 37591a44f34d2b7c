//! The admin port: `/healthz` (process up), `/readyz` (a configuration is applied),
//! `/admin/config` (applied version, pools and backends — never secrets), `/admin/usage`
//! (token totals per app, pool, backend and model, and the latest records), `/metrics`
//! (Prometheus text, when telemetry runs).

use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{StatusCode, header};
use serde_json::json;
use tokio::net::TcpListener;

use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;

use super::Gateway;
use super::limits::{Admission, ConnectionLimits, configure, first_bytes};
use super::refusals::JsonRefusals;
use crate::telemetry::{Telemetry, prometheus};
use crate::usage::totals::UsageTotals;

/// What the admin handlers read.
#[derive(Clone)]
struct Admin {
    gateway: Gateway,
    totals: UsageTotals,
}

/// Serves the admin endpoints on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, gateway: Gateway, totals: UsageTotals) {
    let limits = ConnectionLimits::default().admin();
    serve_with_metrics(listener, gateway, totals, None, limits).await;
}

/// [`serve`], plus `/metrics` rendered from `telemetry` (404 without it), within `limits`.
pub async fn serve_with_metrics(
    listener: TcpListener,
    gateway: Gateway,
    totals: UsageTotals,
    telemetry: Option<Telemetry>,
    limits: ConnectionLimits,
) {
    let router = router(gateway, totals, telemetry);
    let builder = configure(&limits);
    let admission = Admission::new(&limits);
    loop {
        let permit = admission.permit().await;
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(%error, "admin accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let service = TowerToHyperService::new(router.clone());
        let builder = builder.clone();
        tokio::spawn(async move {
            if first_bytes(&stream, &limits).await {
                let _ = builder
                    .serve_connection(TokioIo::new(JsonRefusals::new(stream)), service)
                    .await;
            }
            drop(permit);
        });
    }
}

/// The admin routes.
fn router(gateway: Gateway, totals: UsageTotals, telemetry: Option<Telemetry>) -> Router {
    let admin = Router::new()
        .route("/healthz", get(|| async { text(StatusCode::OK, "ok") }))
        .route("/readyz", get(readyz))
        .route("/admin/config", get(config))
        .route("/admin/usage", get(usage))
        .with_state(Admin { gateway, totals });
    let metrics = match telemetry {
        Some(telemetry) => Router::new()
            .route("/metrics", get(metrics))
            .with_state(telemetry),
        None => Router::new(),
    };
    admin.merge(metrics).fallback(|| async {
        text(
            StatusCode::NOT_FOUND,
            "not found; try /healthz, /readyz, /admin/config, /admin/usage, /metrics",
        )
    })
}

async fn readyz(State(admin): State<Admin>) -> Response {
    match admin.gateway.applied().as_ref() {
        Some(a) => text(
            StatusCode::OK,
            &format!("ready: configuration version {}", a.snapshot.version),
        ),
        None => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no configuration applied yet",
        ),
    }
}

async fn usage(State(admin): State<Admin>) -> Response {
    json_response(StatusCode::OK, &admin.totals.view())
}

/// The applied version, pools, backends and breaker states — never secrets.
async fn config(State(admin): State<Admin>) -> Response {
    let applied = admin.gateway.applied();
    let Some(applied) = applied.as_ref() else {
        return json_response(StatusCode::SERVICE_UNAVAILABLE, &json!({"version": null}));
    };
    let now = Instant::now();
    let pools: Vec<_> = applied
        .snapshot
        .pools
        .iter()
        .map(|pool| {
            let routes = applied
                .routes
                .pool(pool.models.first().map_or("", String::as_str));
            let backends: Vec<_> = pool
                .backends
                .iter()
                .map(|b| {
                    let state = routes
                        .and_then(|p| p.backends().find(|(c, _)| c.name == b.name))
                        .map(|(_, runtime)| runtime.breaker().state(now).as_str());
                    json!({"name": b.name, "url": b.base_url, "priority": b.priority,
                           "weight": b.weight, "breaker": state})
                })
                .collect();
            json!({"name": pool.name, "id": pool.id, "models": pool.models, "backends": backends})
        })
        .collect();
    json_response(
        StatusCode::OK,
        &json!({"version": applied.snapshot.version, "pools": pools}),
    )
}

/// The Prometheus text, rendered off the async threads.
async fn metrics(State(telemetry): State<Telemetry>) -> Response {
    match tokio::task::spawn_blocking(move || telemetry.prometheus()).await {
        Ok(body) => ([(header::CONTENT_TYPE, prometheus::CONTENT_TYPE)], body).into_response(),
        Err(_) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "rendering metrics failed",
        ),
    }
}

fn text(status: StatusCode, body: &str) -> Response {
    let headers = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    (status, headers, format!("{body}\n")).into_response()
}

fn json_response<T: serde::Serialize>(status: StatusCode, value: &T) -> Response {
    (status, axum::Json(value)).into_response()
}
