//! Scenario (g) of `spillway bench`: what prompt-cache affinity is worth. The same traffic —
//! [`SESSIONS`] sessions, each with its own long system prompt and [`CALLS`] questions sent
//! with the session's `prompt_cache_key` — goes through two in-process gateways in front of
//! one in-process simulator with [`BACKENDS`] equal-weight backends that each keep their own
//! prompt cache (a prefix is cached only where it was seen): one pool without affinity, one
//! with. The share of input tokens the backends report as cached is the result; latency is
//! not measured here.
//!
//! Input: nothing (loopback, bounded: `SESSIONS × CALLS` calls per side). Output: a Markdown
//! table ([`AffinityResult::render`]).

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt as _, Full};
use spillway_sidecar::http_client::client;
use spillway_sidecar::run::{GatewayOptions, start};

use crate::simulate::{self, BackendConfig, LedgerQuery, SimConfig};

/// Sessions per side.
pub const SESSIONS: usize = 40;
/// Calls per session.
pub const CALLS: usize = 6;
/// Backends of the pool.
pub const BACKENDS: usize = 4;

/// Cached input tokens against input tokens, per side.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Side {
    /// Calls that succeeded.
    pub calls: u64,
    /// Input tokens billed.
    pub input: u64,
    /// Of those, reported as cached.
    pub cached: u64,
}

impl Side {
    /// The cached share of input tokens, 0–1.
    #[allow(clippy::cast_precision_loss)]
    pub fn share(&self) -> f64 {
        if self.input == 0 {
            0.0
        } else {
            self.cached as f64 / self.input as f64
        }
    }
}

/// Both sides.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AffinityResult {
    /// The pool without affinity.
    pub off: Side,
    /// The pool with `promptCacheAffinity`.
    pub on: Side,
}

impl AffinityResult {
    /// The table.
    pub fn render(&self) -> String {
        let mut out = format!(
            "\n## g. prompt-cache affinity ({BACKENDS} equal backends, {SESSIONS} sessions × {CALLS} calls, one long system prompt per session)\n\n\
             | pool | calls | input tokens | cached input tokens | cached share |\n|---|---|---|---|---|\n"
        );
        for (label, side) in [("affinity off", self.off), ("affinity on", self.on)] {
            let _ = writeln!(
                out,
                "| {label} | {} | {} | {} | {:.1}% |",
                side.calls,
                side.input,
                side.cached,
                side.share() * 100.0
            );
        }
        out
    }
}

fn manifest(urls: &[String], affinity: bool) -> String {
    let mut out = String::from(
        "apiVersion: spillway.dev/v1alpha1\nkind: AIBackendPool\nmetadata: {name: cached}\nspec:\n  models: [gpt-4o]\n",
    );
    if affinity {
        out.push_str("  promptCacheAffinity: {}\n");
    }
    out.push_str("  backends:\n");
    for (i, url) in urls.iter().enumerate() {
        let _ = writeln!(out, "    - {{name: b{i}, type: OpenAI, url: \"{url}\"}}");
    }
    out
}

/// A session's system prompt: long enough to be cached (~1,500 tokens), unique per session.
fn system_prompt(session: usize) -> String {
    let mut text = format!("You are the assistant of workspace {session}. ");
    for line in 0..120 {
        let _ = write!(
            text,
            "Policy {session}.{line}: answer with care, cite the handbook section, keep it short. "
        );
    }
    text
}

/// Runs scenario (g).
///
/// # Errors
/// The simulator or a gateway does not start, or no call succeeds.
pub async fn measure() -> anyhow::Result<AffinityResult> {
    let backends = (0..BACKENDS)
        .map(|i| {
            let mut backend = BackendConfig::new(format!("b{i}"));
            backend.cache_min_tokens = 1024;
            backend.completion_tokens = 8;
            backend
        })
        .collect();
    let sim = simulate::start(SimConfig { backends }).await?;
    let urls: Vec<String> = (0..BACKENDS)
        .map(|i| sim.url(&format!("b{i}")).context("simulated backend"))
        .collect::<anyhow::Result<_>>()?;
    let dir = tempfile::tempdir()?;
    let mut result = AffinityResult::default();
    for affinity in [false, true] {
        sim.clear_ledger();
        let config = dir.path().join(format!("affinity-{affinity}.yaml"));
        std::fs::write(&config, manifest(&urls, affinity))?;
        let mut options = GatewayOptions::new(&config);
        options.shutdown_grace = Duration::from_secs(1);
        let gateway = start(options).await?;
        let calls = drive(&gateway.url()).await?;
        gateway.shutdown().await?;
        let totals = sim.ledger_query(&LedgerQuery::default()).totals;
        let side = Side {
            calls,
            input: totals.prompt_tokens,
            cached: totals.cached_tokens,
        };
        if affinity {
            result.on = side;
        } else {
            result.off = side;
        }
    }
    sim.shutdown().await;
    Ok(result)
}

/// The traffic: every session's calls, sessions interleaved; the successful calls.
async fn drive(url: &str) -> anyhow::Result<u64> {
    let http = client();
    let prompts: Vec<String> = (0..SESSIONS).map(system_prompt).collect();
    let mut ok = 0;
    for call in 0..CALLS {
        for (session, prompt) in prompts.iter().enumerate() {
            let body = serde_json::json!({
                "model": "gpt-4o",
                "max_tokens": 8,
                "prompt_cache_key": format!("session-{session}"),
                "messages": [
                    {"role": "system", "content": prompt},
                    {"role": "user", "content": format!("Question {call} of session {session}?")},
                ],
            });
            let request = Request::post(format!("{url}/v1/chat/completions"))
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body.to_string())))?;
            let response = tokio::time::timeout(Duration::from_secs(10), http.request(request))
                .await
                .context("a call took over 10 s")??;
            let status = response.status();
            response.into_body().collect().await?;
            ok += u64::from(status.is_success());
        }
    }
    anyhow::ensure!(ok > 0, "no call succeeded");
    Ok(ok)
}
