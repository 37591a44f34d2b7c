//! Outbound requests: where a call goes at the chosen backend and with which headers.
//!
//! Pure functions decide the target URL, whether the body's `model` must change and whether
//! to ask the backend for stream usage; [`client`] builds the pooled HTTP(S) client. The
//! client's own credential and hop-by-hop headers never reach a backend; the backend's API key
//! or Entra ID token ([`set_bearer`]) is added instead.

use http::{HeaderMap, HeaderName, HeaderValue, header};
use spillway_crds::snapshot::{BackendConfig, BackendType, StreamUsage};

use super::inbound::{Flavor, InboundRoute};
use crate::credentials::AccessToken;
use crate::usage::Operation;

/// `api-version` sent to an Azure backend when neither the client nor the backend gives one.
pub const DEFAULT_AZURE_API_VERSION: &str = "2024-10-21";
/// The first Azure api-version that accepts `stream_options`.
const AZURE_STREAM_OPTIONS_SINCE: &str = "2024-09-01";

/// Where and how one attempt is sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target<'a> {
    /// Full URL of the call at the backend.
    pub url: String,
    /// A `model` to write into the body, when the backend needs another one than the body has.
    pub set_model: Option<&'a str>,
    /// Whether to inject `stream_options.include_usage`.
    pub ask_usage: bool,
}

/// What the proxy learned about the request that the target depends on.
#[derive(Clone, Copy, Debug)]
pub struct CallShape<'a> {
    /// The inbound route.
    pub route: InboundRoute<'a>,
    /// The deployment/model name the client asked for.
    pub requested: &'a str,
    /// The body's `model`, if any.
    pub body_model: Option<&'a str>,
    /// The client asked for a stream.
    pub stream: bool,
    /// The client's `stream_options.include_usage`.
    pub client_include_usage: Option<bool>,
}

/// Decides the URL, body model and usage injection for `backend`.
pub fn target<'a>(backend: &'a BackendConfig, call: &CallShape<'a>) -> Target<'a> {
    let upstream = backend.upstream_model(call.requested);
    let op = call.route.operation.path();
    let base = backend.base_url.as_str();
    if call.route.operation == Operation::Responses {
        return responses_target(backend, call, upstream);
    }
    let (url, classic_azure) = match backend.kind {
        BackendType::AzureOpenAI
            if call.route.flavor == Flavor::AzureDeployments || backend.api_version.is_some() =>
        {
            let version = backend
                .api_version
                .as_deref()
                .or(call.route.api_version)
                .unwrap_or(DEFAULT_AZURE_API_VERSION);
            (
                format!("{base}/openai/deployments/{upstream}/{op}?api-version={version}"),
                Some(version),
            )
        }
        BackendType::AzureOpenAI => (format!("{base}/openai/v1/{op}"), None),
        BackendType::OpenAI => (format!("{base}/{op}"), None),
    };
    let set_model = match classic_azure {
        Some(_) => None,
        None if call.body_model != Some(upstream) => Some(upstream),
        None => None,
    };
    let supports = match backend.stream_usage {
        StreamUsage::Always => true,
        StreamUsage::Never => false,
        StreamUsage::Auto => classic_azure.is_none_or(version_supports_stream_options),
    };
    let streams_text = matches!(
        call.route.operation,
        Operation::ChatCompletions | Operation::Completions
    );
    Target {
        url,
        set_model,
        ask_usage: call.stream
            && streams_text
            && call.client_include_usage != Some(true)
            && supports,
    }
}

/// The Responses API lives outside deployments on Azure: `/openai/responses?api-version=…`
/// when the client itself called that way (its api-version is kept), else `/openai/v1/…`;
/// the deployment goes into the body's `model` either way.
fn responses_target<'a>(
    backend: &'a BackendConfig,
    call: &CallShape<'a>,
    upstream: &'a str,
) -> Target<'a> {
    let url = api_url(
        backend,
        (call.route.flavor, call.route.api_version),
        "responses",
        call.route.suffix,
    );
    Target {
        url,
        set_model: (call.body_model != Some(upstream)).then_some(upstream),
        ask_usage: false,
    }
}

/// `…/{collection}{rest}` (responses, conversations: resource-level APIs, outside
/// deployments) at `backend` for a client that called with `flavor` and `api_version`: on
/// Azure the classic `/openai/{collection}?api-version=…` when the client itself called that
/// way (its api-version is kept), else `/openai/v1/…`. No query beyond the api-version.
pub fn api_url(
    backend: &BackendConfig,
    (flavor, api_version): (Flavor, Option<&str>),
    collection: &str,
    rest: &str,
) -> String {
    let base = backend.base_url.as_str();
    match (backend.kind, flavor, api_version) {
        (BackendType::AzureOpenAI, Flavor::AzureClassic | Flavor::AzureDeployments, Some(v)) => {
            format!("{base}/openai/{collection}{rest}?api-version={v}")
        }
        (BackendType::AzureOpenAI, ..) => format!("{base}/openai/v1/{collection}{rest}"),
        (BackendType::OpenAI, ..) => format!("{base}/{collection}{rest}"),
    }
}

/// [`api_url`] plus the client's query parameters other than `api-version` (`limit`,
/// `order`, `after`, `include[]`, …).
pub fn with_query(mut url: String, query: Option<&str>) -> String {
    let rest: Vec<&str> = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter(|pair| !pair.is_empty() && !pair.starts_with("api-version="))
        .collect();
    if !rest.is_empty() {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&rest.join("&"));
    }
    url
}

fn version_supports_stream_options(version: &str) -> bool {
    version
        .get(..10)
        .is_some_and(|date| date >= AZURE_STREAM_OPTIONS_SINCE)
}

const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Headers for the backend: the client's, minus hop-by-hop, host, length, encoding
/// negotiation (the gateway must read usage), credentials and the trusted identity header;
/// plus the backend's credential, the request id and the trace context.
pub fn request_headers(
    client: &HeaderMap,
    backend: &BackendConfig,
    strip: Option<&str>,
    request_id: &HeaderValue,
    traceparent: &HeaderValue,
) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(client.len() + 3);
    for (name, value) in client {
        let drop = HOP_BY_HOP.contains(name)
            || name == header::HOST
            || name == header::CONTENT_LENGTH
            || name == header::ACCEPT_ENCODING
            || name == header::UPGRADE
            || name == header::AUTHORIZATION
            || name == header::COOKIE
            || name.as_str() == "api-key"
            || name.as_str().starts_with("x-spillway-")
            || strip.is_some_and(|s| name.as_str() == s);
        if !drop {
            out.append(name.clone(), value.clone());
        }
    }
    if let Some(key) = &backend.api_key {
        let secret = key.expose();
        let (name, value) = match backend.kind {
            BackendType::AzureOpenAI => (
                HeaderName::from_static("api-key"),
                HeaderValue::from_str(secret),
            ),
            BackendType::OpenAI => (
                header::AUTHORIZATION,
                HeaderValue::from_str(&format!("Bearer {secret}")),
            ),
        };
        if let Ok(mut value) = value {
            value.set_sensitive(true);
            out.insert(name, value);
        }
    }
    out.insert(HeaderName::from_static("x-request-id"), request_id.clone());
    out.insert(HeaderName::from_static("traceparent"), traceparent.clone());
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    out
}

/// Sets `Authorization: Bearer <token>` (an Entra ID access token) and removes any `api-key`.
/// Returns `false`, changing nothing, when the token cannot be a header value.
pub fn set_bearer(headers: &mut HeaderMap, token: &AccessToken) -> bool {
    let Ok(mut value) = HeaderValue::from_str(&format!("Bearer {}", token.expose())) else {
        return false;
    };
    value.set_sensitive(true);
    headers.remove("api-key");
    headers.insert(header::AUTHORIZATION, value);
    true
}

/// Backend response headers every app gets: what the SDKs read to decode an answer and to
/// back off. Everything else the backend sends — its own `x-ratelimit-*` (a shared
/// deployment's capacity), `server`, region, deployment, organization and request ids —
/// stays at the gateway unless `AIGateway.spec.passResponseHeaders` names it.
const PASSED_BACK: [&str; 7] = [
    "content-type",
    "content-length",
    "content-encoding",
    "cache-control",
    "retry-after",
    "retry-after-ms",
    "x-ms-retry-after-ms",
];

/// Whether a backend response header is passed back to the client: a default one, or one
/// `extra` names (lower-case names, or prefixes ending in `*`). Never a hop-by-hop header.
pub fn passes_back(name: &HeaderName, extra: &[String]) -> bool {
    let name = name.as_str();
    if PASSED_BACK.contains(&name) {
        return true;
    }
    let hop = HOP_BY_HOP.iter().any(|h| h.as_str() == name) || name == header::UPGRADE.as_str();
    !hop && extra.iter().any(|allowed| match allowed.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == allowed,
    })
}

#[cfg(test)]
mod tests;
