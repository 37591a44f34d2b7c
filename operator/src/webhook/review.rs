//! `AdmissionReview` (admission.k8s.io/v1) in, `AdmissionReview` out.
//!
//! Input: the body the API server posts to [`MUTATE_PATH`]. Output: always a review with a
//! response (HTTP 200): the JSON patch for an injected Pod, an unchanged allow for Pods that
//! are skipped and for requests that are not Pod creations, and — for input that cannot be
//! decoded or a Pod that cannot be injected — an allow with a warning or a denial, per
//! [`OnError`]. Never a panic. This endpoint needs no token: the API server calls it, and it
//! only computes a patch from what it is sent.

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::Full;
use k8s_openapi::api::core::v1::Pod;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};

use super::{InjectConfig, Injection, OnError, inject};

/// The path the webhook is served at.
pub const MUTATE_PATH: &str = "/mutate";
/// Largest accepted review (a Pod is at most ~1.5 MB in etcd; old and new object both travel).
pub const MAX_REVIEW_BYTES: usize = 8 * 1024 * 1024;

/// The answer for a Pod that could not be injected: allowed with a warning, or denied.
fn failed(mut response: AdmissionResponse, reason: &str, cfg: &InjectConfig) -> AdmissionResponse {
    match cfg.on_error {
        OnError::Allow => {
            response.allowed = true;
            response.warnings = Some(vec![format!("spillway sidecar not injected: {reason}")]);
            response
        }
        OnError::Deny => response.deny(format!("spillway sidecar injection failed: {reason}")),
    }
}

/// A response to a body that is not a usable `AdmissionReview`: answered per `on_error`
/// under the request's uid when the body has one, else as invalid.
fn undecodable(body: &[u8], reason: &str, cfg: &InjectConfig) -> AdmissionResponse {
    let uid = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.pointer("/request/uid")?.as_str().map(str::to_owned));
    let mut response = AdmissionResponse::invalid(reason);
    match uid {
        Some(uid) => {
            response.uid = uid;
            response.result = Default::default();
            failed(response, reason, cfg)
        }
        None => response,
    }
}

fn mutate(request: &AdmissionRequest<DynamicObject>, cfg: &InjectConfig) -> AdmissionResponse {
    let response = AdmissionResponse::from(request);
    let is_pod = request.kind.group.is_empty() && request.kind.kind == "Pod";
    if !is_pod || request.sub_resource.is_some() || request.operation != Operation::Create {
        return response;
    }
    let pod = request
        .object
        .as_ref()
        .ok_or_else(|| "the request carries no object".to_owned())
        .and_then(|object| serde_json::to_value(object).map_err(|e| e.to_string()))
        .and_then(|value| serde_json::from_value::<Pod>(value).map_err(|e| e.to_string()));
    let pod = match pod {
        Ok(pod) => pod,
        Err(error) => return failed(response, &format!("not a valid Pod: {error}"), cfg),
    };
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let outcome = match inject(&pod, cfg) {
        Ok(outcome) => outcome,
        Err(error) => {
            tracing::warn!(namespace = request.namespace, name, %error, "cannot inject the sidecar");
            return failed(response, &error.to_string(), cfg);
        }
    };
    match &outcome {
        Injection::Skipped(reason) => {
            tracing::debug!(namespace = request.namespace, name, ?reason, "not injected");
            response
        }
        Injection::Injected(_) => {
            let patched = outcome
                .patch(&pod)
                .map_err(|e| e.to_string())
                .and_then(|patch| {
                    response
                        .clone()
                        .with_patch(patch)
                        .map_err(|e| e.to_string())
                });
            match patched {
                Ok(patched) => {
                    tracing::info!(namespace = request.namespace, name, "injected the sidecar");
                    patched
                }
                Err(error) => failed(response, &error, cfg),
            }
        }
    }
}

/// Answers one `AdmissionReview` body.
pub fn review(body: &[u8], cfg: &InjectConfig) -> AdmissionReview<DynamicObject> {
    let review = match serde_json::from_slice::<AdmissionReview<DynamicObject>>(body) {
        Ok(review) => review,
        Err(error) => {
            let reason = format!("not an AdmissionReview: {error}");
            return undecodable(body, &reason, cfg).into_review();
        }
    };
    let request: Result<AdmissionRequest<DynamicObject>, _> = review.try_into();
    match request {
        Ok(request) => mutate(&request, cfg).into_review(),
        Err(_) => undecodable(body, "the AdmissionReview has no request", cfg).into_review(),
    }
}

fn json(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

/// The `400` answer to a review body that could not be read (too large or broken off).
pub fn unreadable(error: &dyn std::fmt::Display) -> Response<Full<Bytes>> {
    let reason = format!("cannot read the AdmissionReview: {error}");
    let review = AdmissionResponse::invalid(reason).into_review();
    let bytes = serde_json::to_vec(&review).unwrap_or_default();
    json(StatusCode::BAD_REQUEST, bytes)
}

/// An answered `AdmissionReview` as the HTTP response.
pub(super) fn answer(review: &AdmissionReview<DynamicObject>) -> Response<Full<Bytes>> {
    match serde_json::to_vec(review) {
        Ok(bytes) => json(StatusCode::OK, bytes),
        Err(error) => json(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{{\"error\":\"cannot encode the AdmissionReview: {error}\"}}").into_bytes(),
        ),
    }
}

/// Answers `POST /mutate` with [`review`] of the (already bounded) body.
pub fn respond(body: &[u8], cfg: &InjectConfig) -> Response<Full<Bytes>> {
    answer(&review(body, cfg))
}
