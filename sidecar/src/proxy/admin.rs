//! The admin port: `/healthz` (process up), `/readyz` (a configuration is applied),
//! `/admin/config` (applied version, pools and backends — never secrets), `/admin/usage`
//! (token totals per app, pool, backend and model, and the latest records), `/metrics`
//! (Prometheus text, when telemetry runs).

use std::convert::Infallible;
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::json;
use tokio::net::TcpListener;

use super::Gateway;
use crate::telemetry::{Telemetry, prometheus};
use crate::usage::totals::UsageTotals;

/// Serves the admin endpoints on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, gateway: Gateway, totals: UsageTotals) {
    serve_with_metrics(listener, gateway, totals, None).await;
}

/// [`serve`], plus `/metrics` rendered from `telemetry` (404 without it).
pub async fn serve_with_metrics(
    listener: TcpListener,
    gateway: Gateway,
    totals: UsageTotals,
    telemetry: Option<Telemetry>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let gateway = gateway.clone();
        let totals = totals.clone();
        let telemetry = telemetry.clone();
        let service = service_fn(move |req: Request<Incoming>| {
            let (gateway, totals, telemetry) = (gateway.clone(), totals.clone(), telemetry.clone());
            async move {
                let response = match telemetry {
                    Some(telemetry) if req.uri().path() == "/metrics" => metrics(telemetry).await,
                    _ => route(&req, &gateway, &totals),
                };
                Ok::<_, Infallible>(response)
            }
        });
        tokio::spawn(async move {
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn route(
    req: &Request<Incoming>,
    gateway: &Gateway,
    totals: &UsageTotals,
) -> Response<Full<Bytes>> {
    let applied = gateway.applied();
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok"),
        "/readyz" => match applied.as_ref() {
            Some(a) => text(
                StatusCode::OK,
                &format!("ready: configuration version {}", a.snapshot.version),
            ),
            None => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: no configuration applied yet",
            ),
        },
        "/admin/config" => {
            let Some(applied) = applied.as_ref() else {
                return json_response(StatusCode::SERVICE_UNAVAILABLE, &json!({"version": null}));
            };
            let now = Instant::now();
            let pools: Vec<_> = applied
                .snapshot
                .pools
                .iter()
                .map(|pool| {
                    let backends: Vec<_> = pool
                        .backends
                        .iter()
                        .map(|b| {
                            let state = applied
                                .routes
                                .pool(pool.models.first().map_or("", String::as_str))
                                .and_then(|p| p.backends().find(|(c, _)| c.name == b.name))
                                .map(|(_, runtime)| runtime.breaker().state(now).as_str());
                            json!({"name": b.name, "url": b.base_url, "priority": b.priority, "weight": b.weight, "breaker": state})
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
        "/admin/usage" => json_response(StatusCode::OK, &totals.view()),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; try /healthz, /readyz, /admin/config, /admin/usage, /metrics",
        ),
    }
}

/// The Prometheus text, rendered off the async threads.
async fn metrics(telemetry: Telemetry) -> Response<Full<Bytes>> {
    match tokio::task::spawn_blocking(move || telemetry.prometheus()).await {
        Ok(body) => {
            let mut response = Response::new(Full::new(Bytes::from(body)));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(prometheus::CONTENT_TYPE),
            );
            response
        }
        Err(_) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "rendering metrics failed",
        ),
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{body}\n"))));
    *response.status_mut() = status;
    response
}

fn json_response<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}
