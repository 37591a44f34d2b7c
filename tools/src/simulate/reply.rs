//! Error responses as the real services send them: OpenAI-shaped for routing, JSON, unknown
//! stored responses, conversations and items, and OpenAI-surface auth errors; Azure-shaped for
//! Azure auth, `api-version` and rate limits.
//!
//! Input: what went wrong. Output: a [`Reply`] (status, body, extra headers) that the handler
//! turns into a response and a ledger entry.

use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};

use super::body::SimBody;
use super::payload::{azure_error, openai_error};
use super::ratelimit::{self, Exceeded, Quota};
use super::route::{Api, Flavour};

/// An error response.
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// JSON body.
    pub body: Bytes,
    /// Headers beyond content type and the common ones.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

const INVALID_REQUEST: &str = "invalid_request_error";

impl Reply {
    fn new(status: StatusCode, body: Bytes) -> Self {
        Self {
            status,
            body,
            headers: Vec::new(),
        }
    }

    /// The response, with `content-type: application/json`.
    pub fn into_response(self) -> Response<SimBody> {
        let mut response = Response::new(SimBody::full(self.body));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in self.headers {
            headers.insert(name, value);
        }
        response
    }

    /// 404 for a path no simulated API has.
    pub fn unknown_route(method: &str, path: &str) -> Self {
        let message = format!("Invalid URL ({method} {path})");
        Self::new(
            StatusCode::NOT_FOUND,
            openai_error(&message, INVALID_REQUEST, None, None),
        )
    }

    /// 405 for a model route called with another method than POST.
    pub fn method_not_allowed(method: &str, path: &str) -> Self {
        let message = format!(
            "Not allowed to {method} on {path}. (HINT: Perhaps you meant to use a different HTTP method?)"
        );
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            openai_error(&message, INVALID_REQUEST, None, None),
        )
    }

    /// 401 in the dialect of the route.
    pub fn unauthorized(flavour: Flavour) -> Self {
        let body = if flavour.is_azure() {
            azure_error(
                "401",
                "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.",
            )
        } else {
            openai_error(
                "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
                INVALID_REQUEST,
                None,
                Some("invalid_api_key"),
            )
        };
        Self::new(StatusCode::UNAUTHORIZED, body)
    }

    /// 400 with an OpenAI-shaped message.
    pub fn bad_request(message: &str, param: Option<&str>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            openai_error(message, INVALID_REQUEST, param, None),
        )
    }

    /// 404 for a response id this backend does not store (OpenAI's wording).
    pub fn response_not_found(id: &str) -> Self {
        let message = format!("Response with id '{id}' not found.");
        Self::new(
            StatusCode::NOT_FOUND,
            openai_error(&message, INVALID_REQUEST, None, None),
        )
    }

    /// 404 for a `previous_response_id` this backend does not store.
    pub fn previous_response_not_found(id: &str) -> Self {
        let message = format!("Previous response with id '{id}' not found.");
        Self::new(
            StatusCode::NOT_FOUND,
            openai_error(
                &message,
                INVALID_REQUEST,
                Some("previous_response_id"),
                Some("previous_response_not_found"),
            ),
        )
    }

    /// 404 for a conversation id this backend does not store, on a conversations route.
    pub fn conversation_not_found(id: &str) -> Self {
        let message = format!("Conversation with id '{id}' not found.");
        Self::new(
            StatusCode::NOT_FOUND,
            openai_error(&message, INVALID_REQUEST, None, None),
        )
    }

    /// 404 for a response create's `conversation` this backend does not store.
    pub fn conversation_param_not_found(id: &str) -> Self {
        let message = format!("Conversation with id '{id}' not found.");
        Self::new(
            StatusCode::NOT_FOUND,
            openai_error(
                &message,
                INVALID_REQUEST,
                Some("conversation"),
                Some("conversation_not_found"),
            ),
        )
    }

    /// 404 for an item a stored conversation does not hold.
    pub fn item_not_found(id: &str) -> Self {
        let message = format!("Item with id '{id}' not found.");
        Self::new(
            StatusCode::NOT_FOUND,
            openai_error(&message, INVALID_REQUEST, None, None),
        )
    }

    /// 404 for a file id this backend does not hold (OpenAI's wording), naming `param`.
    pub fn file_not_found(id: &str, param: &str) -> Self {
        let message = format!("No such File object: {id}");
        Self::new(
            StatusCode::NOT_FOUND,
            openai_error(&message, INVALID_REQUEST, Some(param), None),
        )
    }

    /// 404 for a batch id this backend does not hold.
    pub fn batch_not_found(id: &str) -> Self {
        let message = format!("No such Batch object: {id}");
        Self::new(
            StatusCode::NOT_FOUND,
            openai_error(&message, INVALID_REQUEST, Some("batch_id"), None),
        )
    }

    /// 413 for an upload that does not fit in what the backend's files may hold.
    pub fn files_full(limit: u64) -> Self {
        let message = format!(
            "The files of this backend may hold {limit} bytes in all (filesMaxBytes); delete some files or upload a smaller one."
        );
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            openai_error(&message, INVALID_REQUEST, Some("file"), None),
        )
    }

    /// 400 for cancelling a response that was not created in the background.
    pub fn not_cancellable() -> Self {
        Self::bad_request(
            "Only responses created with background=true can be cancelled.",
            None,
        )
    }

    /// 400 for a body that is not JSON.
    pub fn invalid_json() -> Self {
        Self::bad_request(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
            None,
        )
    }

    /// 413 for a body above the simulator's limit.
    pub fn too_large(limit: u64) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            openai_error(
                &format!("Request body exceeds {limit} bytes"),
                INVALID_REQUEST,
                None,
                None,
            ),
        )
    }

    /// Azure's answer to a missing or unknown `api-version`.
    pub fn resource_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            azure_error("404", "Resource not found"),
        )
    }

    /// Azure's answer to `stream_options` on an `api-version` that predates it.
    pub fn unrecognized_stream_options() -> Self {
        Self::bad_request(
            "Unrecognized request argument supplied: stream_options",
            None,
        )
    }

    /// 429 from the rate window, with `retry-after`, `retry-after-ms` and `x-ratelimit-*`.
    pub fn rate_limited(
        api: Api,
        api_version: Option<&str>,
        quota: &Quota,
        retry_after: Duration,
        exceeded: Exceeded,
    ) -> Self {
        let limit = match exceeded {
            Exceeded::Tokens => "token rate limit",
            Exceeded::Requests => "call rate limit",
        };
        let message = rate_limit_message(api, api_version, limit, retry_after);
        let mut headers = HeaderMap::new();
        ratelimit::write_headers(&mut headers, quota, Some(retry_after));
        Self {
            status: StatusCode::TOO_MANY_REQUESTS,
            body: azure_error("429", &message),
            headers: headers
                .into_iter()
                .filter_map(|(name, value)| Some((name?, value)))
                .collect(),
        }
    }

    /// The response of a `status` fault.
    pub fn fault(
        flavour: Flavour,
        api: Api,
        status: StatusCode,
        headers: Vec<(HeaderName, HeaderValue)>,
        message: Option<&str>,
    ) -> Self {
        let hinted = hinted_retry_after(&headers);
        let default_message = match status.as_u16() {
            429 => rate_limit_message(api, None, "token rate limit", hinted),
            500 => {
                "The server had an error while processing your request. Sorry about that!".into()
            }
            503 => {
                "The service is temporarily unable to process your request. Please try again later."
                    .into()
            }
            _ => status.canonical_reason().unwrap_or("Error").to_owned(),
        };
        let message = message.map_or(default_message, str::to_owned);
        let code = status.as_u16().to_string();
        let body = if flavour.is_azure() || status == StatusCode::TOO_MANY_REQUESTS {
            azure_error(&code, &message)
        } else {
            let kind = if status.is_server_error() {
                "server_error"
            } else {
                INVALID_REQUEST
            };
            openai_error(&message, kind, None, Some(&code))
        };
        Self {
            status,
            body,
            headers,
        }
    }
}

fn rate_limit_message(
    api: Api,
    api_version: Option<&str>,
    limit: &str,
    retry_after: Duration,
) -> String {
    let name = api.azure_operation();
    format!(
        "Requests to the {name} Operation under Azure OpenAI API version {} have exceeded {limit} of your current OpenAI S0 pricing tier. Please retry after {} seconds. Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit.",
        api_version.unwrap_or("v1"),
        spillway_sidecar::protocol::headers::retry_after_secs(retry_after)
    )
}

/// The wait a fault's `retry-after-ms` / `retry-after` headers announce (1 s if neither).
fn hinted_retry_after(headers: &[(HeaderName, HeaderValue)]) -> Duration {
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .and_then(|(_, v)| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
    };
    find("retry-after-ms")
        .and_then(|ms| Duration::try_from_secs_f64(ms / 1000.0).ok())
        .or_else(|| find("retry-after").and_then(|s| Duration::try_from_secs_f64(s).ok()))
        .unwrap_or(Duration::from_secs(1))
}
