//! One request sent the way an app sends them, to read what the load report does not keep:
//! the `Retry-After` / `retry-after-ms` headers and the error message of a quota refusal.
//!
//! Input: the app's load [`Plan`] (URL, API shape, its API key, request size) and a request
//! id. Output: a [`ProbeAnswer`]. The whole exchange is bounded by [`PROBE_TIMEOUT`].

use std::time::Duration;

use anyhow::Context as _;
use http::HeaderMap;
use http_body_util::BodyExt as _;

use crate::loadtest::Plan;
use spillway_sidecar::http_client::HttpClient;

/// Longest a probe may take, body included.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the gateway answered a probe.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProbeAnswer {
    /// The app it was sent as.
    pub app: String,
    /// The request id it carried.
    pub request_id: String,
    /// HTTP status.
    pub status: u16,
    /// `Retry-After`, in whole seconds.
    pub retry_after_s: Option<u64>,
    /// `retry-after-ms`.
    pub retry_after_ms: Option<u64>,
    /// `x-spillway-attempts`: 0 when the gateway answered without calling a backend.
    pub attempts: Option<u32>,
    /// The OpenAI-shaped error's `message`, when the body is one.
    pub message: Option<String>,
}

impl ProbeAnswer {
    /// A 429 from the gateway itself (no backend called) that says when to retry.
    pub fn is_quota_429_with_retry_after(&self) -> bool {
        self.status == 429 && self.attempts == Some(0) && self.retry_after_s.is_some_and(|s| s >= 1)
    }
}

/// Sends request `request_id` as `plan` sends its requests (the first one's shape) and
/// reads the whole answer.
///
/// # Errors
/// The plan's URL is invalid, or the gateway did not answer within [`PROBE_TIMEOUT`].
pub async fn probe(
    client: &HttpClient,
    plan: &Plan,
    request_id: &str,
) -> anyhow::Result<ProbeAnswer> {
    let endpoint = plan.endpoint()?;
    let mut request = plan.request(&endpoint, &plan.prompt(), 0)?;
    request.headers_mut().insert(
        "x-request-id",
        request_id
            .parse()
            .context("a request id fit for a header")?,
    );
    let exchange = async {
        let response = client.request(request).await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        anyhow::Ok((parts, body))
    };
    let (parts, body) = tokio::time::timeout(PROBE_TIMEOUT, exchange)
        .await
        .context("the gateway did not answer the probe in time")??;
    let message = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned));
    Ok(ProbeAnswer {
        app: plan.app(0).to_owned(),
        request_id: request_id.to_owned(),
        status: parts.status.as_u16(),
        retry_after_s: number(&parts.headers, "retry-after"),
        retry_after_ms: number(&parts.headers, "retry-after-ms"),
        attempts: number(&parts.headers, "x-spillway-attempts").and_then(|n| u32::try_from(n).ok()),
        message,
    })
}

fn number(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}
