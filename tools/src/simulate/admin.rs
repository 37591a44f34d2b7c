//! The control endpoints every simulated backend serves under `/_sim/`:
//!
//! | method | path | effect |
//! |---|---|---|
//! | GET / POST / DELETE | `/_sim/faults` | list / append (one fault, an array, or `{"faults":[…]}`) / clear this backend's faults |
//! | GET / POST | `/_sim/latency` | read / change `latencyMs`, `jitterMs`, `tokensPerSecond` (fields given) |
//! | GET / POST | `/_sim/limits` | read / change `tpm`, `rpm` (fields given; `null` = unlimited) |
//! | GET / DELETE | `/_sim/ledger` | the shared ledger (`?backend=`, `?since=`) / clear it |
//! | GET | `/_sim/health` | `{"backend": name, "status": "ok"}` |
//!
//! Input: the request. Output: a JSON response; bad input gets a 400 with an OpenAI-shaped
//! error. Admin requests are not recorded in the ledger.

use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::Serialize;
use serde_json::{Value, json};

use super::backend::Backend;
use super::body::SimBody;
use super::faults;
use super::ledger::LedgerQuery;
use super::payload::openai_error;
use super::ratelimit::Limits;
use super::route::query_param;

const MAX_ADMIN_BODY: usize = 1 << 20;

/// Serves one `/_sim/…` request.
pub async fn handle(backend: &Backend, request: Request<Incoming>) -> Response<SimBody> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().map(str::to_owned);
    let body = match Limited::new(request.into_body(), MAX_ADMIN_BODY)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(err) => return error(StatusCode::BAD_REQUEST, &format!("body: {err}")),
    };
    let result = match (method, path.as_str()) {
        (Method::GET, "/_sim/faults") => Ok(faults_view(backend)),
        (Method::POST, "/_sim/faults") => faults::parse_posted(&body)
            .and_then(|specs| backend.add_faults(&specs))
            .map(|()| faults_view(backend)),
        (Method::DELETE, "/_sim/faults") => {
            backend.clear_faults();
            Ok(faults_view(backend))
        }
        (Method::GET, "/_sim/latency") => Ok(to_json(&backend.timing())),
        (Method::POST, "/_sim/latency") => set_timing(backend, &body),
        (Method::GET, "/_sim/limits") => Ok(limits_view(backend.limits())),
        (Method::POST, "/_sim/limits") => set_limits(backend, &body),
        (Method::GET, "/_sim/ledger") => Ok(ledger_view(backend, query.as_deref())),
        (Method::DELETE, "/_sim/ledger") => {
            backend.shared.ledger.clear();
            Ok(ledger_view(backend, None))
        }
        (Method::GET, "/_sim/health") => Ok(json!({"backend": backend.name, "status": "ok"})),
        (method, path) => {
            return error(
                StatusCode::NOT_FOUND,
                &format!("no simulator endpoint {method} {path}"),
            );
        }
    };
    match result {
        Ok(value) => respond(StatusCode::OK, value.to_string()),
        Err(message) => error(StatusCode::BAD_REQUEST, &message),
    }
}

fn to_json(value: &impl Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

fn faults_view(backend: &Backend) -> Value {
    json!({"faults": to_json(&backend.faults())})
}

fn limits_view(limits: Limits) -> Value {
    json!({"tpm": limits.tpm, "rpm": limits.rpm})
}

fn ledger_view(backend: &Backend, query: Option<&str>) -> Value {
    let param = |name| query.and_then(|q| query_param(q, name));
    let query = LedgerQuery {
        backend: param("backend").filter(|b| !b.is_empty()),
        since: param("since").and_then(|s| s.parse().ok()),
    };
    to_json(&backend.shared.ledger.snapshot(&query))
}

fn object(body: &[u8]) -> Result<serde_json::Map<String, Value>, String> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("expected a JSON object".into()),
        Err(err) => Err(format!("not valid JSON: {err}")),
    }
}

fn set_timing(backend: &Backend, body: &[u8]) -> Result<Value, String> {
    let map = object(body)?;
    let mut timing = backend.timing();
    for (key, value) in &map {
        let number = value
            .as_u64()
            .ok_or_else(|| format!("`{key}` must be a non-negative integer"))?;
        match key.as_str() {
            "latencyMs" => timing.latency_ms = number,
            "jitterMs" => timing.jitter_ms = number,
            "tokensPerSecond" => {
                timing.tokens_per_second =
                    u32::try_from(number).map_err(|_| "`tokensPerSecond` is too large")?;
            }
            _ => {
                return Err(format!(
                    "unknown field `{key}`; expected latencyMs, jitterMs, tokensPerSecond"
                ));
            }
        }
    }
    backend.set_timing(timing);
    Ok(to_json(&backend.timing()))
}

fn set_limits(backend: &Backend, body: &[u8]) -> Result<Value, String> {
    let map = object(body)?;
    let mut limits = backend.limits();
    for (key, value) in &map {
        let limit = match value {
            Value::Null => None,
            other => Some(
                other
                    .as_u64()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("`{key}` must be a positive integer or null"))?,
            ),
        };
        match key.as_str() {
            "tpm" => limits.tpm = limit,
            "rpm" => limits.rpm = limit,
            _ => return Err(format!("unknown field `{key}`; expected tpm, rpm")),
        }
    }
    backend.set_limits(limits);
    Ok(limits_view(backend.limits()))
}

fn respond(status: StatusCode, body: String) -> Response<SimBody> {
    let mut response = Response::new(SimBody::full(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn error(status: StatusCode, message: &str) -> Response<SimBody> {
    let body = openai_error(message, "invalid_request_error", None, None);
    let mut response = respond(status, String::new());
    *response.body_mut() = SimBody::full(body);
    response
}
