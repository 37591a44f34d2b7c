//! One error type for everything the gateway refuses or fails at, and its single mapping to an
//! HTTP response — module errors (identity, quota refusals, request inspection) compose into it
//! and nothing else decides a status: the status, an OpenAI-shaped JSON body
//! (`{"error":{"message","type","param","code"}}`) that the official SDKs parse into their
//! exception types, and `Retry-After` where a retry can succeed.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::json;

use crate::identity::IdentityError;
use crate::limiter::Refusal;
use crate::protocol::request::InspectError;
use crate::usage::{ErrorType, GatewayErrorKind};

/// Longest piece of client input an error message repeats.
const ECHO_LIMIT: usize = 200;

/// `text` as an error message repeats it: at most [`ECHO_LIMIT`] bytes (on a character
/// boundary), then `…(N bytes)` — a 20 KB deployment name is not sent back whole.
fn echo(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= ECHO_LIMIT {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut end = ECHO_LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{}…({} bytes)", &text[..end], text.len()))
}

/// Why the gateway answered instead of a backend.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProxyError {
    /// The path is not one of the supported OpenAI / Azure OpenAI operations.
    #[error(
        "no such API: {} {}; Spillway serves chat/completions, completions, embeddings, responses (and responses/{{id}}, input_items, cancel, input_tokens) and models under /openai/deployments/{{deployment}}/…, /openai/…, /openai/v1/… and /v1/…",
        echo(method),
        echo(path)
    )]
    UnknownRoute {
        /// Request method.
        method: String,
        /// Request path.
        path: String,
    },
    /// The operation exists, but not for this method.
    #[error("method {} is not allowed here; use {allowed}", echo(method))]
    MethodNotAllowed {
        /// The method sent.
        method: String,
        /// The methods the path takes.
        allowed: &'static str,
    },
    /// No pool serves the deployment (Azure-style path).
    #[error(
        "the API deployment `{}` does not exist on this gateway; check the deployment name or ask your platform team to add it to an AIBackendPool",
        echo(.0)
    )]
    DeploymentNotFound(String),
    /// No pool serves the model (OpenAI-style path).
    #[error(
        "the model `{}` does not exist on this gateway; check the model name or ask your platform team to add it to an AIBackendPool",
        echo(.0)
    )]
    ModelNotFound(String),
    /// The app may not use this model (the AIGateway's `modelAccess`).
    #[error(
        "the app `{}` may not use the model `{}`; ask your platform team to grant it in the AIGateway's modelAccess",
        echo(app),
        echo(model)
    )]
    ModelAccessDenied {
        /// The calling app.
        app: String,
        /// The model or deployment it asked for.
        model: String,
    },
    /// No backend holds this stored response or conversation (for this app).
    #[error("{noun} with id '{}' not found.", echo(id))]
    StoredNotFound {
        /// `Response` or `Conversation`.
        noun: &'static str,
        /// The id.
        id: String,
    },
    /// The backend holding a stored response cannot take calls right now; no other backend
    /// has the response's state.
    #[error(
        "the {} `{}` lives on backend `{backend}`, which is unavailable right now; retry after {} ms (its state exists only there; start a new response without previous_response_id or conversation to continue elsewhere)",
        noun.to_ascii_lowercase(),
        echo(id),
        crate::protocol::headers::retry_after_ms(*retry_after)
    )]
    ResponseHomeUnavailable {
        /// `Response` or `Conversation`.
        noun: &'static str,
        /// The id.
        id: String,
        /// The backend that holds it.
        backend: String,
        /// Until its breaker half-opens.
        retry_after: Duration,
    },
    /// An OpenAI-style call without a `model`.
    #[error("you must provide a model parameter")]
    MissingModel,
    /// The body is not a JSON object the gateway can read.
    #[error(transparent)]
    InvalidRequest(#[from] InspectError),
    /// The body could not be read or rewritten.
    #[error("{0}")]
    InvalidBody(String),
    /// The body is over the configured limit.
    #[error("the request body is larger than this gateway accepts ({limit} bytes)")]
    PayloadTooLarge {
        /// The configured limit.
        limit: u64,
    },
    /// The gateway has no configuration yet.
    #[error("the gateway has no configuration yet; retry shortly")]
    NotReady,
    /// Every backend's breaker is open.
    #[error("no backend of pool `{pool}` is available right now; retry after {} ms", crate::protocol::headers::retry_after_ms(*retry_after))]
    NoBackendAvailable {
        /// The pool.
        pool: String,
        /// Until the earliest breaker half-opens.
        retry_after: Duration,
    },
    /// Every attempt failed without an HTTP response.
    #[error("the backend could not be reached: {0}")]
    UpstreamUnreachable(String),
    /// Every attempt timed out.
    #[error("the backend did not answer in time")]
    UpstreamTimeout,
    /// The client did not send its whole request body in time.
    #[error("the request body did not arrive within {}s; send it faster or in a smaller request", .0.as_secs())]
    BodyTimeout(Duration),
    /// The backend's answer was broken before anything reached the client: a success whose
    /// JSON is cut short or invalid, or a stream that ended or broke before its first event.
    #[error("the backend's answer was broken: {0}")]
    BadUpstreamResponse(String),
    /// The caller could not be identified (401), or its identity cannot be checked or
    /// configured (503).
    #[error(transparent)]
    Unauthenticated(#[from] IdentityError),
    /// A quota refused the call: 429 (per-minute), 403 (calendar quota) or 503 (counters
    /// unavailable and the policy is FailClosed).
    #[error("{refusal}")]
    QuotaRefused {
        /// Which limit refused, and why.
        refusal: Refusal,
        /// When a retry can succeed, as seen when it was refused.
        retry_after: Duration,
    },
    /// A CORS preflight the scope's policy does not allow (answered without CORS headers).
    #[error("{0}")]
    CorsRefused(String),
    /// A request head the HTTP parser refused before any handler ran.
    #[error("{0}")]
    BadHead(HeadRefusal),
    /// A bug in the gateway; logged with details.
    #[error("the gateway failed to handle the request; see its logs")]
    Internal,
}

/// Why the HTTP parser refused a request head (hyper answers these itself, before the
/// handler; the gateway gives them the same JSON body as every other error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeadRefusal {
    /// Not a well-formed HTTP/1.1 request head.
    #[error("the request is not well-formed HTTP: check the request line and headers")]
    Malformed,
    /// The request target is longer than the parser accepts.
    #[error("the request URI is too long; send parameters in the body")]
    UriTooLong,
    /// Too many headers, or headers too large.
    #[error(
        "the request headers are too large or too many (at most 100 headers and about 400 KiB)"
    )]
    HeadersTooLarge,
}

impl ProxyError {
    /// HTTP status of the error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::UnknownRoute { .. }
            | Self::DeploymentNotFound(_)
            | Self::ModelNotFound(_)
            | Self::StoredNotFound { .. } => StatusCode::NOT_FOUND,
            Self::ModelAccessDenied { .. } => StatusCode::FORBIDDEN,
            Self::ResponseHomeUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::MissingModel | Self::InvalidRequest(_) | Self::InvalidBody(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::CorsRefused(_) => StatusCode::FORBIDDEN,
            Self::NotReady | Self::NoBackendAvailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::UpstreamUnreachable(_) | Self::BadUpstreamResponse(_) => StatusCode::BAD_GATEWAY,
            Self::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::BadHead(HeadRefusal::Malformed) => StatusCode::BAD_REQUEST,
            Self::BadHead(HeadRefusal::UriTooLong) => StatusCode::URI_TOO_LONG,
            Self::BadHead(HeadRefusal::HeadersTooLarge) => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            Self::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Unauthenticated(e) => match e {
                // The credential may be fine: retrying can succeed once keys or config are back.
                IdentityError::JwksUnavailable | IdentityError::NotConfigured { .. } => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                _ => StatusCode::UNAUTHORIZED,
            },
            Self::QuotaRefused { refusal, .. } => match refusal {
                Refusal::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
                Refusal::QuotaExhausted { .. } | Refusal::BudgetExhausted { .. } => {
                    StatusCode::FORBIDDEN
                }
                Refusal::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                Refusal::NeverFits { .. } => StatusCode::BAD_REQUEST,
            },
        }
    }

    /// A quota's refusal at `now`, with the wait it tells the client.
    pub fn quota_refused(refusal: Refusal, now: SystemTime) -> Self {
        let retry_after = refusal.retry_after(now);
        Self::QuotaRefused {
            refusal,
            retry_after,
        }
    }

    /// The OpenAI `error.code`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownRoute { .. } => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::DeploymentNotFound(_) => "DeploymentNotFound",
            Self::ModelNotFound(_) => "model_not_found",
            Self::MissingModel => "missing_model",
            Self::ModelAccessDenied { .. } => "model_access_denied",
            Self::StoredNotFound { noun, .. } if *noun == "Conversation" => {
                "conversation_not_found"
            }
            Self::StoredNotFound { .. } => "response_not_found",
            Self::ResponseHomeUnavailable { .. } => "response_backend_unavailable",
            Self::InvalidRequest(_) | Self::InvalidBody(_) => "invalid_request_body",
            Self::PayloadTooLarge { .. } => "request_too_large",
            Self::CorsRefused(_) => "cors_not_allowed",
            Self::NotReady => "gateway_not_ready",
            Self::NoBackendAvailable { .. } => "no_backend_available",
            Self::UpstreamUnreachable(_) => "backend_unreachable",
            Self::BadUpstreamResponse(_) => "bad_backend_response",
            Self::BodyTimeout(_) => "request_timeout",
            Self::BadHead(HeadRefusal::Malformed) => "malformed_request",
            Self::BadHead(HeadRefusal::UriTooLong) => "uri_too_long",
            Self::BadHead(HeadRefusal::HeadersTooLarge) => "request_headers_too_large",
            Self::UpstreamTimeout => "backend_timeout",
            Self::Internal => "internal_error",
            Self::Unauthenticated(e) => e.reason(),
            Self::QuotaRefused { refusal, .. } => refusal.code(),
        }
    }

    /// How usage records, metrics, spans and logs carry this error: its code and kind.
    pub fn recorded(&self) -> ErrorType {
        let kind = match self {
            Self::QuotaRefused {
                refusal: Refusal::QuotaExhausted { .. } | Refusal::BudgetExhausted { .. },
                ..
            } => GatewayErrorKind::QuotaExhausted,
            Self::QuotaRefused {
                refusal: Refusal::RateLimited { .. },
                ..
            } => GatewayErrorKind::RateLimited,
            Self::QuotaRefused {
                refusal: Refusal::NeverFits { .. },
                ..
            } => GatewayErrorKind::Client,
            Self::QuotaRefused { .. } | Self::NotReady | Self::Internal => {
                GatewayErrorKind::Internal
            }
            Self::NoBackendAvailable { .. } | Self::ResponseHomeUnavailable { .. } => {
                GatewayErrorKind::NoBackend
            }
            Self::UpstreamUnreachable(_) | Self::UpstreamTimeout | Self::BadUpstreamResponse(_) => {
                GatewayErrorKind::Backend
            }
            _ => match self.status().as_u16() {
                401 => GatewayErrorKind::Unauthenticated,
                403 => GatewayErrorKind::Forbidden,
                429 => GatewayErrorKind::RateLimited,
                400..=499 => GatewayErrorKind::Client,
                _ => GatewayErrorKind::Internal,
            },
        };
        ErrorType::gateway(self.code(), kind)
    }

    /// The OpenAI `error.type`.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::Unauthenticated(_) => "authentication_error",
            Self::QuotaRefused {
                refusal: Refusal::NeverFits { .. },
                ..
            } => "invalid_request_error",
            Self::QuotaRefused { .. } => "rate_limit_error",
            _ => match self.status().as_u16() {
                400 | 403 | 404 | 405 | 408 | 413 | 414 | 431 => "invalid_request_error",
                _ => "server_error",
            },
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::NoBackendAvailable { retry_after, .. }
            | Self::ResponseHomeUnavailable { retry_after, .. } => Some(*retry_after),
            Self::NotReady => Some(Duration::from_secs(1)),
            Self::QuotaRefused {
                refusal: Refusal::NeverFits { .. },
                ..
            } => None,
            Self::QuotaRefused { retry_after, .. } => Some(*retry_after),
            Self::Unauthenticated(_) if self.status() == StatusCode::SERVICE_UNAVAILABLE => {
                Some(Duration::from_secs(1))
            }
            _ => None,
        }
    }

    /// The HTTP response: status, JSON body and, when a retry can succeed, `Retry-After`
    /// (whole seconds, rounded up) and `retry-after-ms`.
    pub fn to_response(&self) -> Response<Bytes> {
        let param = match self {
            Self::MissingModel | Self::ModelNotFound(_) | Self::ModelAccessDenied { .. } => {
                json!("model")
            }
            _ => serde_json::Value::Null,
        };
        let body = json!({"error": {
            "message": self.to_string(),
            "type": self.error_type(),
            "param": param,
            "code": self.code(),
        }});
        let mut response = Response::new(Bytes::from(body.to_string()));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(delay) = self.retry_after() {
            crate::protocol::headers::insert_retry_after(headers, delay);
        }
        if self.status() == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(e: &ProxyError) -> serde_json::Value {
        serde_json::from_slice(e.to_response().body()).expect("json")
    }

    #[test]
    fn errors_are_openai_shaped_with_the_right_status() {
        let cases = [
            (
                ProxyError::DeploymentNotFound("x".into()),
                404,
                "DeploymentNotFound",
            ),
            (
                ProxyError::ModelNotFound("x".into()),
                404,
                "model_not_found",
            ),
            (ProxyError::MissingModel, 400, "missing_model"),
            (
                ProxyError::InvalidBody("bad".into()),
                400,
                "invalid_request_body",
            ),
            (
                ProxyError::PayloadTooLarge { limit: 10 },
                413,
                "request_too_large",
            ),
            (
                ProxyError::MethodNotAllowed {
                    method: "GET".into(),
                    allowed: "POST",
                },
                405,
                "method_not_allowed",
            ),
            (ProxyError::UpstreamTimeout, 504, "backend_timeout"),
            (
                ProxyError::BadHead(HeadRefusal::HeadersTooLarge),
                431,
                "request_headers_too_large",
            ),
            (
                ProxyError::BadHead(HeadRefusal::UriTooLong),
                414,
                "uri_too_long",
            ),
            (
                ProxyError::BadHead(HeadRefusal::Malformed),
                400,
                "malformed_request",
            ),
            (
                ProxyError::BadUpstreamResponse("cut".into()),
                502,
                "bad_backend_response",
            ),
            (
                ProxyError::from(InspectError::Empty),
                400,
                "invalid_request_body",
            ),
            (ProxyError::from(IdentityError::Expired), 401, "expired"),
            (
                ProxyError::from(IdentityError::JwksUnavailable),
                503,
                "jwks_unavailable",
            ),
            (
                ProxyError::from(IdentityError::NotConfigured { why: "w".into() }),
                503,
                "identity_not_configured",
            ),
            (
                ProxyError::quota_refused(Refusal::Unavailable, SystemTime::now()),
                503,
                "rate_limiter_unavailable",
            ),
        ];
        for (error, status, code) in cases {
            let response = error.to_response();
            assert_eq!(response.status().as_u16(), status);
            let json = body(&error);
            assert_eq!(json["error"]["code"], code);
            assert!(
                json["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty())
            );
            assert!(json["error"]["type"].is_string());
        }
    }

    #[test]
    fn long_client_input_is_not_echoed_whole() {
        let name = "é".repeat(10_000);
        let message = ProxyError::DeploymentNotFound(name).to_string();
        assert!(message.len() < 600, "{} bytes", message.len());
        assert!(message.contains("…(20000 bytes)"), "{message}");
        let short = ProxyError::ModelNotFound("gpt-4o".into()).to_string();
        assert!(short.contains("`gpt-4o`"), "{short}");
    }

    #[test]
    fn every_error_is_recorded_with_its_code_and_kind() {
        use crate::usage::{ErrorType, GatewayErrorKind as K};
        let now = SystemTime::UNIX_EPOCH;
        let exhausted = Refusal::QuotaExhausted {
            quota: "q".into(),
            period: spillway_crds::v1alpha1::QuotaPeriod::Monthly,
            resets_at: now,
        };
        for (error, kind) in [
            (ProxyError::from(IdentityError::Expired), K::Unauthenticated),
            (ProxyError::quota_refused(exhausted, now), K::QuotaExhausted),
            (
                ProxyError::quota_refused(Refusal::Unavailable, now),
                K::Internal,
            ),
            (
                ProxyError::from(IdentityError::JwksUnavailable),
                K::Internal,
            ),
            (
                ProxyError::NoBackendAvailable {
                    pool: "p".into(),
                    retry_after: Duration::from_secs(1),
                },
                K::NoBackend,
            ),
            (ProxyError::UpstreamTimeout, K::Backend),
            (ProxyError::MissingModel, K::Client),
            (ProxyError::NotReady, K::Internal),
        ] {
            let ErrorType::Gateway(recorded) = error.recorded() else {
                panic!("{error:?} is the gateway's own error");
            };
            assert_eq!(
                (recorded.code, recorded.kind),
                (error.code(), kind),
                "{error:?}"
            );
        }
    }

    #[test]
    fn quota_refusals_map_to_429_and_403_with_their_wait() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let limited = ProxyError::quota_refused(
            Refusal::RateLimited {
                quota: "q".into(),
                kind: crate::limiter::LimitKind::Tokens,
                retry_after: Duration::from_millis(1_500),
            },
            now,
        );
        let response = limited.to_response();
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after-ms"], "1500");
        assert_eq!(body(&limited)["error"]["type"], "rate_limit_error");
        let exhausted = ProxyError::quota_refused(
            Refusal::QuotaExhausted {
                quota: "q".into(),
                period: spillway_crds::snapshot::QuotaPeriod::Daily,
                resets_at: now + Duration::from_secs(60),
            },
            now,
        );
        let response = exhausted.to_response();
        assert_eq!(response.status(), 403);
        assert_eq!(response.headers()["retry-after"], "60");
        assert_eq!(body(&exhausted)["error"]["code"], "quota_exceeded");
        let unknown = ProxyError::from(IdentityError::UnknownApiKey).to_response();
        assert_eq!(unknown.headers()["www-authenticate"], "Bearer");
    }

    #[test]
    fn unavailable_carries_exact_retry_after() {
        let error = ProxyError::NoBackendAvailable {
            pool: "p".into(),
            retry_after: Duration::from_millis(1_200),
        };
        let response = error.to_response();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "2");
        assert_eq!(response.headers()["retry-after-ms"], "1200");
    }
}
