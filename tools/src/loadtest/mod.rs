//! `spillway loadtest`: a bounded load generator for any OpenAI / Azure OpenAI endpoint —
//! a Spillway gateway, the simulator, or a user's own gateway.
//!
//! Input: [`LoadtestArgs`] (or, as a library, a [`Plan`]). Output: a [`Report`] — requests
//! sent, responses by status, transport errors, throughput, latency p50/p90/p99/max, time to
//! first token of streams, responses per `x-spillway-backend`, retried/spilled responses
//! (`x-spillway-attempts` > 1), tokens — as text or `--json` on stdout, with a progress line
//! on stderr while running when stderr is a terminal.
//!
//! Modules: [`histogram`] and [`report`] (the pure core), [`plan`] (what to send), `exchange`
//! (one request), [`runner`] (workers, rate, bounds; [`start_load`] / [`run_load`], reused by
//! the demo), [`render`] (text).

pub mod histogram;
pub mod plan;
pub mod render;
pub mod report;
pub mod runner;

mod exchange;

use std::io::{IsTerminal, Write as _};
use std::time::Duration;

use anyhow::Context as _;
use http::HeaderName;
use serde::Serialize;

pub use histogram::Histogram;
pub use plan::{Api, Plan, PlanError};
pub use report::{Ending, Report, ReportView, RequestResult};
pub use runner::{Finished, LoadControl, LoadHandle, ResultHook, StopReason, run_load, start_load};

/// The API shape on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ApiKind {
    /// `/v1/chat/completions` with `model` in the body.
    Openai,
    /// `/openai/deployments/{deployment}/chat/completions?api-version=…`.
    Azure,
}

/// Options of `spillway loadtest`.
#[derive(Clone, Debug, clap::Args)]
pub struct LoadtestArgs {
    /// Base URL, e.g. `http://127.0.0.1:8080` (the gateway, or any OpenAI / Azure endpoint).
    #[arg(long)]
    pub url: String,
    /// Request shape.
    #[arg(long, value_enum, default_value = "openai")]
    pub api: ApiKind,
    /// `model` of OpenAI-shaped requests (and the default deployment).
    #[arg(long, default_value = "gpt-4o")]
    pub model: String,
    /// Deployment of Azure-shaped requests; default `--model`.
    #[arg(long)]
    pub deployment: Option<String>,
    /// `api-version` of Azure-shaped requests.
    #[arg(long, default_value = "2024-10-21")]
    pub api_version: String,
    /// Concurrent requests at most.
    #[arg(long, default_value_t = 8)]
    pub workers: usize,
    /// Requests to send at most.
    #[arg(long, default_value_t = 1000)]
    pub total_requests: u64,
    /// Open-loop arrival rate, requests per second (default: as fast as the workers go).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Start no request after this long.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Time in-flight requests get after `--duration` before being cancelled.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub grace: Duration,
    /// Share of requests that stream, 0–1.
    #[arg(long, default_value_t = 0.5)]
    pub stream_ratio: f64,
    /// Share of streams that ask for `stream_options.include_usage`, 0–1.
    #[arg(long, default_value_t = 0.5)]
    pub include_usage_ratio: f64,
    /// Apps to rotate through, e.g. `chat-web,batch-summarizer`, sent in `--app-header`.
    #[arg(long, value_delimiter = ',')]
    pub apps: Vec<String>,
    /// Header that carries the app.
    #[arg(long, default_value = "x-app-id")]
    pub app_header: HeaderName,
    /// Also send the app as the credential (`api-key` for Azure, `Authorization: Bearer` for
    /// OpenAI).
    #[arg(long)]
    pub app_as_key: bool,
    /// A credential to send (as `--app-as-key` does) when no app overrides it.
    #[arg(long, env = "SPILLWAY_LOADTEST_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Approximate prompt length in tokens.
    #[arg(long, default_value_t = 100)]
    pub prompt_tokens: u32,
    /// `max_tokens` of every request.
    #[arg(long, default_value_t = 64)]
    pub max_tokens: u32,
    /// Time one request may take, body included.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    spillway_crds::duration::parse(text)
}

impl LoadtestArgs {
    /// The plan these options describe (not yet validated).
    pub fn plan(&self) -> Plan {
        let api = match self.api {
            ApiKind::Openai => Api::OpenAi {
                model: self.model.clone(),
            },
            ApiKind::Azure => Api::Azure {
                deployment: self
                    .deployment
                    .clone()
                    .unwrap_or_else(|| self.model.clone()),
                api_version: self.api_version.clone(),
            },
        };
        let mut plan = Plan::new(self.url.clone(), api);
        plan.workers = self.workers;
        plan.total_requests = self.total_requests;
        plan.rate = self.rate;
        plan.duration = self.duration;
        plan.grace = self.grace;
        plan.stream_ratio = self.stream_ratio;
        plan.include_usage_ratio = self.include_usage_ratio;
        plan.apps.clone_from(&self.apps);
        plan.app_header = self.app_header.clone();
        plan.app_as_key = self.app_as_key;
        plan.api_key.clone_from(&self.api_key);
        plan.prompt_tokens = self.prompt_tokens;
        plan.max_tokens = self.max_tokens;
        plan.request_timeout = self.timeout;
        plan
    }
}

/// `--json` output.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonReport<'a> {
    endpoint: &'a str,
    stopped_by: StopReason,
    #[serde(flatten)]
    report: ReportView,
}

/// Runs `spillway loadtest`; Ctrl-C stops it early (with the report).
///
/// # Errors
/// Invalid options, or not a single response received.
pub async fn run(args: LoadtestArgs) -> anyhow::Result<()> {
    let plan = args.plan();
    let endpoint = plan.endpoint()?.to_string();
    let handle = start_load(plan, None)?;
    let show_progress = std::io::stderr().is_terminal();
    let finished = {
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        let control = handle.control();
        let finish = handle.finish();
        tokio::pin!(finish);
        loop {
            tokio::select! {
                finished = &mut finish => break finished,
                _ = ticker.tick(), if show_progress => {
                    eprint!("\r{}\x1b[K", render::progress(&control.snapshot()));
                }
                _ = tokio::signal::ctrl_c() => control.stop(),
            }
        }
    };
    if show_progress {
        eprintln!();
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        let json = JsonReport {
            endpoint: &endpoint,
            stopped_by: finished.stopped_by,
            report: ReportView::from(&finished.report),
        };
        writeln!(out, "{}", serde_json::to_string(&json)?)?;
    } else {
        write!(
            out,
            "{}",
            render::text(&finished.report, &endpoint, finished.stopped_by)
        )?;
    }
    out.flush().context("writing the report")?;
    if finished.report.responses() == 0 {
        anyhow::bail!(
            "no response from {endpoint} ({}); is it running?",
            render::progress(&finished.report)
        );
    }
    Ok(())
}
