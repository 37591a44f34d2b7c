//! The pure core of a load run: what one request produced ([`RequestResult`]) and the sums
//! over many ([`Report`]) — counts by status, transport errors, latency and time-to-first-
//! token histograms, traffic per backend and per app, retries and tokens.
//!
//! Input: results in any order, from any number of workers. Output: a [`Report`] that can be
//! merged with others and turned into a serializable [`ReportView`]. Invariant, kept by
//! [`Report::add`]: `sent == responses + errors`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::histogram::Histogram;
use spillway_sidecar::usage::Usage;

/// How one request ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// A response with this status arrived (its body may still have broken; see `body_error`).
    Status(u16),
    /// No response: a transport error, by kind (`connect`, `timeout`, `cancelled`, …).
    Error(&'static str),
}

/// What one request produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestResult {
    /// Position in the run, from 0.
    pub seq: u64,
    /// The `x-request-id` sent.
    pub request_id: String,
    /// The app it was sent as; empty when the run has no apps.
    pub app: String,
    /// It asked for a stream.
    pub stream: bool,
    /// Status or transport error.
    pub ending: Ending,
    /// Reading the body failed after the headers (the request still counts as a response).
    pub body_error: Option<&'static str>,
    /// From sending to the end of the body (or the error).
    pub latency: Duration,
    /// Streams: time to the first generated content.
    pub time_to_first_token: Option<Duration>,
    /// `x-spillway-backend`.
    pub backend: Option<String>,
    /// `x-spillway-attempts`.
    pub attempts: Option<u32>,
    /// Usage from the JSON body, or from the stream's usage chunk when it asked for one.
    pub usage: Option<Usage>,
}

/// Responses served by one backend (by `x-spillway-backend`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendCounts {
    /// Responses that named this backend.
    pub responses: u64,
    /// Of which 2xx.
    pub ok: u64,
}

/// Traffic of one app.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppStats {
    /// Requests sent.
    pub sent: u64,
    /// 2xx responses.
    pub ok: u64,
    /// Non-2xx responses by status, and transport errors by kind.
    pub failures: BTreeMap<String, u64>,
    /// Usage the client saw.
    pub usage: Usage,
    /// Latency of every request with a response.
    pub latency: Histogram,
}

/// Sums over a load run; see the module docs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Requests sent (each ends as a response or an error).
    pub sent: u64,
    /// Responses by status.
    pub by_status: BTreeMap<u16, u64>,
    /// Requests without a response, by kind.
    pub errors: BTreeMap<&'static str, u64>,
    /// Responses whose body broke off, by kind.
    pub body_errors: BTreeMap<&'static str, u64>,
    /// Streaming requests sent.
    pub streams: u64,
    /// Latency of every request with a response.
    pub latency: Histogram,
    /// Time to first token of 2xx streams.
    pub ttft: Histogram,
    /// Responses per backend.
    pub by_backend: BTreeMap<String, BackendCounts>,
    /// Per app (the run's `--apps`; requests without an app are not listed).
    pub by_app: BTreeMap<String, AppStats>,
    /// Responses that took more than one upstream attempt (retried or spilled over).
    pub retried: u64,
    /// Tokens the client saw reported.
    pub usage: Usage,
    /// Responses that carried usage.
    pub with_usage: u64,
    /// Time the run took (or has taken so far).
    pub elapsed: Duration,
}

impl Report {
    /// Responses received (any status).
    pub fn responses(&self) -> u64 {
        self.by_status.values().sum()
    }

    /// 2xx responses.
    pub fn ok(&self) -> u64 {
        self.by_status
            .iter()
            .filter(|(s, _)| (200..300).contains(*s))
            .map(|(_, n)| n)
            .sum()
    }

    /// Requests without a response.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Completed requests per second of `elapsed`.
    pub fn throughput(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            (self.responses() + self.error_count()) as f64 / secs
        } else {
            0.0
        }
    }

    /// Counts one result.
    pub fn add(&mut self, result: &RequestResult) {
        self.sent += 1;
        self.streams += u64::from(result.stream);
        self.add_to_app(result);
        let status = match result.ending {
            Ending::Status(status) => status,
            Ending::Error(kind) => {
                *self.errors.entry(kind).or_default() += 1;
                return;
            }
        };
        let ok = (200..300).contains(&status);
        *self.by_status.entry(status).or_default() += 1;
        self.latency.record(result.latency);
        if let Some(kind) = result.body_error {
            *self.body_errors.entry(kind).or_default() += 1;
        }
        if let (true, true, Some(ttft)) = (ok, result.stream, result.time_to_first_token) {
            self.ttft.record(ttft);
        }
        if let Some(backend) = &result.backend {
            let counts = self.by_backend.entry(backend.clone()).or_default();
            counts.responses += 1;
            counts.ok += u64::from(ok);
        }
        self.retried += u64::from(result.attempts.is_some_and(|n| n > 1));
        if let Some(usage) = result.usage {
            self.with_usage += 1;
            add_usage(&mut self.usage, usage);
        }
    }

    /// Counts `result` for its app (requests without an app are not kept per app).
    fn add_to_app(&mut self, result: &RequestResult) {
        if result.app.is_empty() {
            return;
        }
        let app = self.by_app.entry(result.app.clone()).or_default();
        app.sent += 1;
        match result.ending {
            Ending::Status(status) if (200..300).contains(&status) => app.ok += 1,
            Ending::Status(status) => *app.failures.entry(status.to_string()).or_default() += 1,
            Ending::Error(kind) => *app.failures.entry(kind.to_owned()).or_default() += 1,
        }
        if let Ending::Status(_) = result.ending {
            app.latency.record(result.latency);
        }
        if let Some(usage) = result.usage {
            add_usage(&mut app.usage, usage);
        }
    }

    /// Adds every count of `other` (elapsed becomes the longer of the two).
    pub fn merge(&mut self, other: &Report) {
        self.sent += other.sent;
        merge_counts(&mut self.by_status, &other.by_status);
        merge_counts(&mut self.errors, &other.errors);
        merge_counts(&mut self.body_errors, &other.body_errors);
        self.streams += other.streams;
        self.latency.merge(&other.latency);
        self.ttft.merge(&other.ttft);
        for (name, counts) in &other.by_backend {
            let mine = self.by_backend.entry(name.clone()).or_default();
            mine.responses += counts.responses;
            mine.ok += counts.ok;
        }
        for (name, stats) in &other.by_app {
            let mine = self.by_app.entry(name.clone()).or_default();
            mine.sent += stats.sent;
            mine.ok += stats.ok;
            merge_counts(&mut mine.failures, &stats.failures);
            add_usage(&mut mine.usage, stats.usage);
            mine.latency.merge(&stats.latency);
        }
        self.retried += other.retried;
        add_usage(&mut self.usage, other.usage);
        self.with_usage += other.with_usage;
        self.elapsed = self.elapsed.max(other.elapsed);
    }
}

fn add_usage(total: &mut Usage, usage: Usage) {
    total.prompt_tokens += usage.prompt_tokens;
    total.completion_tokens += usage.completion_tokens;
}

fn merge_counts<K: Ord + Clone>(into: &mut BTreeMap<K, u64>, from: &BTreeMap<K, u64>) {
    for (key, n) in from {
        *into.entry(key.clone()).or_default() += n;
    }
}

/// Percentiles of a histogram in milliseconds, for JSON.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LatencyView {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// Largest sample.
    pub max: Option<f64>,
    /// Mean.
    pub mean: Option<f64>,
}

impl From<&Histogram> for LatencyView {
    fn from(h: &Histogram) -> Self {
        let ms = |d: Option<Duration>| d.map(|d| (d.as_secs_f64() * 1e6).round() / 1e3);
        Self {
            count: h.count(),
            p50: ms(h.quantile(0.5)),
            p90: ms(h.quantile(0.9)),
            p99: ms(h.quantile(0.99)),
            max: ms(h.max()),
            mean: ms(h.mean()),
        }
    }
}

/// One app in [`ReportView`].
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppView {
    /// Requests sent.
    pub sent: u64,
    /// 2xx responses.
    pub ok: u64,
    /// Non-2xx statuses and transport errors.
    pub failures: BTreeMap<String, u64>,
    /// Prompt tokens seen.
    pub prompt_tokens: u64,
    /// Completion tokens seen.
    pub completion_tokens: u64,
    /// Latency.
    pub latency_ms: LatencyView,
}

/// The `--json` form of a [`Report`].
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportView {
    /// Requests sent.
    pub sent: u64,
    /// Responses received.
    pub responses: u64,
    /// 2xx responses.
    pub ok: u64,
    /// Responses by status code.
    pub by_status: BTreeMap<u16, u64>,
    /// Requests without a response, by kind.
    pub errors: BTreeMap<&'static str, u64>,
    /// Responses whose body broke off, by kind.
    pub body_errors: BTreeMap<&'static str, u64>,
    /// Streaming requests.
    pub streams: u64,
    /// Responses that needed more than one upstream attempt.
    pub retried: u64,
    /// Seconds the run took.
    pub elapsed_seconds: f64,
    /// Completed requests per second.
    pub throughput_rps: f64,
    /// Latency to the end of the body.
    pub latency_ms: LatencyView,
    /// Time to first token of successful streams.
    pub ttft_ms: LatencyView,
    /// Responses per `x-spillway-backend`.
    pub by_backend: BTreeMap<String, BackendCounts>,
    /// Per app.
    pub by_app: BTreeMap<String, AppView>,
    /// Prompt tokens reported to the client.
    pub prompt_tokens: u64,
    /// Completion tokens reported to the client.
    pub completion_tokens: u64,
    /// Responses that carried usage.
    pub responses_with_usage: u64,
}

impl From<&Report> for ReportView {
    fn from(r: &Report) -> Self {
        let by_app = r
            .by_app
            .iter()
            .map(|(name, s)| {
                let view = AppView {
                    sent: s.sent,
                    ok: s.ok,
                    failures: s.failures.clone(),
                    prompt_tokens: s.usage.prompt_tokens,
                    completion_tokens: s.usage.completion_tokens,
                    latency_ms: LatencyView::from(&s.latency),
                };
                (name.clone(), view)
            })
            .collect();
        Self {
            sent: r.sent,
            responses: r.responses(),
            ok: r.ok(),
            by_status: r.by_status.clone(),
            errors: r.errors.clone(),
            body_errors: r.body_errors.clone(),
            streams: r.streams,
            retried: r.retried,
            elapsed_seconds: (r.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
            throughput_rps: (r.throughput() * 100.0).round() / 100.0,
            latency_ms: LatencyView::from(&r.latency),
            ttft_ms: LatencyView::from(&r.ttft),
            by_backend: r.by_backend.clone(),
            by_app,
            prompt_tokens: r.usage.prompt_tokens,
            completion_tokens: r.usage.completion_tokens,
            responses_with_usage: r.with_usage,
        }
    }
}

#[cfg(test)]
mod tests;
