//! What a load run sends: the [`Plan`] (target, API shape, bounds, mix) and, for request
//! number `seq`, the exact HTTP request ([`Plan::request`]).
//!
//! Input: a plan, validated once ([`Plan::validate`]). Output: deterministic requests — the
//! app rotates with `seq`, the streaming share is exact for each app,
//! and `stream_options.include_usage` is set on a seeded random share of the streams.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Uri, header};
use http_body_util::Full;
use serde_json::json;

/// The API shape requests use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Api {
    /// `POST {url}/v1/chat/completions` with `model` in the body.
    OpenAi {
        /// The `model` field.
        model: String,
    },
    /// `POST {url}/openai/deployments/{deployment}/chat/completions?api-version=…`.
    Azure {
        /// The deployment in the path.
        deployment: String,
        /// The `api-version` query parameter.
        api_version: String,
    },
}

/// A bounded load run; see the module docs. Every run stops after `total_requests` or
/// `duration`, whichever comes first.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Base URL of the endpoint, e.g. `http://127.0.0.1:8080` (a trailing `/v1` is accepted
    /// for the OpenAI shape).
    pub url: String,
    /// API shape.
    pub api: Api,
    /// Concurrent requests at most.
    pub workers: usize,
    /// Requests to send at most.
    pub total_requests: u64,
    /// Open-loop arrival rate in requests per second; `None` sends as fast as the workers go.
    pub rate: Option<f64>,
    /// No request starts after this; in-flight ones get `grace` more, then count as
    /// `cancelled`.
    pub duration: Duration,
    /// Time in-flight requests get after `duration` (or a stop) before being cancelled.
    pub grace: Duration,
    /// Share of requests that stream (0–1).
    pub stream_ratio: f64,
    /// Share of streams that ask for `stream_options.include_usage` (0–1).
    pub include_usage_ratio: f64,
    /// Apps, rotated per request and sent in `app_header`; empty sends none.
    pub apps: Vec<String>,
    /// Header that carries the app.
    pub app_header: HeaderName,
    /// Also send the app as the credential (`api-key` for Azure, `Authorization: Bearer` for
    /// OpenAI), overriding `api_key`.
    pub app_as_key: bool,
    /// Credential sent the same way when set.
    pub api_key: Option<String>,
    /// Approximate prompt length in tokens.
    pub prompt_tokens: u32,
    /// `max_tokens` of every request.
    pub max_tokens: u32,
    /// Time one request may take, body included.
    pub request_timeout: Duration,
    /// Requests carry `x-request-id: {prefix}{seq}`.
    pub request_id_prefix: String,
    /// Seed of the include-usage choice.
    pub seed: u64,
}

/// A plan that cannot run.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    /// The URL does not parse or is not http(s).
    #[error("--url `{0}` is not an http:// or https:// URL")]
    Url(String),
    /// A bound or size is zero.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    /// A share outside 0–1.
    #[error("{0} must be within 0 and 1, got {1}")]
    Ratio(&'static str, String),
    /// A rate that is not a positive number.
    #[error("--rate must be a positive number of requests per second, got {0}")]
    Rate(String),
    /// An app or key that cannot be sent as a header value.
    #[error("`{0}` cannot be sent in an HTTP header")]
    HeaderValue(String),
    /// An empty model or deployment.
    #[error("the model / deployment name must not be empty")]
    Model,
}

const WORDS: [&str; 16] = [
    "water", "flows", "over", "the", "dam", "when", "the", "lake", "is", "full", "and", "the",
    "gates", "stay", "closed", "today",
];

impl Plan {
    /// A plan with defaults: 8 workers, 1000 requests, 60 s, no rate, half the requests
    /// streaming, half of those asking for usage, no apps (header `x-app-id`), ~100 prompt
    /// tokens, `max_tokens` 64.
    pub fn new(url: impl Into<String>, api: Api) -> Self {
        Self {
            url: url.into(),
            api,
            workers: 8,
            total_requests: 1000,
            rate: None,
            duration: Duration::from_secs(60),
            grace: Duration::from_secs(5),
            stream_ratio: 0.5,
            include_usage_ratio: 0.5,
            apps: Vec::new(),
            app_header: HeaderName::from_static("x-app-id"),
            app_as_key: false,
            api_key: None,
            prompt_tokens: 100,
            max_tokens: 64,
            request_timeout: Duration::from_secs(60),
            request_id_prefix: format!("lt-{:08x}-", fastrand::u32(..)),
            seed: 0x5eed,
        }
    }

    /// The full URL every request goes to.
    ///
    /// # Errors
    /// A URL that is not http(s).
    pub fn endpoint(&self) -> Result<Uri, PlanError> {
        let base = self.url.trim_end_matches('/');
        let full = match &self.api {
            Api::OpenAi { .. } if base.ends_with("/v1") => format!("{base}/chat/completions"),
            Api::OpenAi { .. } => format!("{base}/v1/chat/completions"),
            Api::Azure {
                deployment,
                api_version,
            } => format!(
                "{base}/openai/deployments/{deployment}/chat/completions?api-version={api_version}"
            ),
        };
        let uri: Uri = full.parse().map_err(|_| PlanError::Url(self.url.clone()))?;
        match (uri.scheme_str(), uri.host()) {
            (Some("http" | "https"), Some(_)) => Ok(uri),
            _ => Err(PlanError::Url(self.url.clone())),
        }
    }

    /// Checks every field.
    ///
    /// # Errors
    /// The first problem found.
    pub fn validate(&self) -> Result<(), PlanError> {
        self.endpoint()?;
        let zero = [
            (self.workers == 0, "--workers"),
            (self.total_requests == 0, "--total-requests"),
            (self.duration.is_zero(), "--duration"),
            (self.max_tokens == 0, "--max-tokens"),
        ];
        if let Some((_, name)) = zero.iter().find(|(bad, _)| *bad) {
            return Err(PlanError::Zero(name));
        }
        for (name, ratio) in [
            ("--stream-ratio", self.stream_ratio),
            ("--include-usage-ratio", self.include_usage_ratio),
        ] {
            if !(0.0..=1.0).contains(&ratio) {
                return Err(PlanError::Ratio(name, ratio.to_string()));
            }
        }
        if let Some(rate) = self.rate
            && !(rate.is_finite() && rate > 0.0)
        {
            return Err(PlanError::Rate(rate.to_string()));
        }
        let model = match &self.api {
            Api::OpenAi { model } => model,
            Api::Azure { deployment, .. } => deployment,
        };
        if model.is_empty() {
            return Err(PlanError::Model);
        }
        for value in self.apps.iter().chain(&self.api_key) {
            if value.is_empty() || HeaderValue::try_from(value.as_str()).is_err() {
                return Err(PlanError::HeaderValue(value.clone()));
            }
        }
        Ok(())
    }

    /// The app of request `seq` (empty without apps).
    pub fn app(&self, seq: u64) -> &str {
        if self.apps.is_empty() {
            return "";
        }
        let index = usize::try_from(seq % self.apps.len() as u64).unwrap_or(0);
        &self.apps[index]
    }

    /// Whether request `seq` streams. Decided per round of apps (`seq / apps`), so every app
    /// gets exactly `stream_ratio` of its requests streaming (±1 over any prefix).
    pub fn streams(&self, seq: u64) -> bool {
        let round = seq / self.apps.len().max(1) as u64;
        let at = |n: u64| (n as f64 * self.stream_ratio).floor();
        at(round + 1) > at(round)
    }

    /// Whether streaming request `seq` asks for usage in the stream.
    pub fn asks_usage(&self, seq: u64) -> bool {
        self.streams(seq)
            && fastrand::Rng::with_seed(self.seed ^ seq.wrapping_mul(0x9E37_79B9_7F4A_7C15)).f64()
                < self.include_usage_ratio
    }

    /// The prompt text: about `prompt_tokens` tokens of filler words.
    pub fn prompt(&self) -> String {
        // Chat framing takes ~8 tokens; each filler word is one token.
        let words = self.prompt_tokens.saturating_sub(8).max(1) as usize;
        let mut text = String::with_capacity(words * 8);
        for (i, word) in WORDS.iter().cycle().take(words).enumerate() {
            if i > 0 {
                text.push(' ');
            }
            text.push_str(word);
        }
        text
    }

    /// The request number `seq`, to `endpoint`, with `prompt` as the user message.
    ///
    /// # Errors
    /// Only for values [`validate`](Self::validate) rejects.
    pub fn request(
        &self,
        endpoint: &Uri,
        prompt: &str,
        seq: u64,
    ) -> Result<Request<Full<Bytes>>, http::Error> {
        let stream = self.streams(seq);
        let mut body = json!({
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": self.max_tokens,
            "stream": stream,
        });
        if let Api::OpenAi { model } = &self.api {
            body["model"] = json!(model);
        }
        if self.asks_usage(seq) {
            body["stream_options"] = json!({"include_usage": true});
        }
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(endpoint.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header("x-request-id", format!("{}{seq}", self.request_id_prefix));
        let app = self.app(seq);
        if !app.is_empty() {
            builder = builder.header(&self.app_header, app);
        }
        let key = if self.app_as_key && !app.is_empty() {
            Some(app)
        } else {
            self.api_key.as_deref()
        };
        if let Some(key) = key {
            builder = match self.api {
                Api::Azure { .. } => builder.header("api-key", key),
                Api::OpenAi { .. } => {
                    builder.header(header::AUTHORIZATION, format!("Bearer {key}"))
                }
            };
        }
        builder.body(Full::new(Bytes::from(body.to_string())))
    }
}

#[cfg(test)]
mod tests;
