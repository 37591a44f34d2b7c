//! Configuration pushed by the Spillway operator (`spillway run --operator URL`).
//!
//! Inputs: the operator's HTTPS URL, the projected ServiceAccount token file and an optional
//! CA file (both re-read on every request, as the kubelet updates mounted files in place), and
//! the gateway whose state is reported. Outputs: snapshots on the [`SnapshotRx`] channel that
//! [`Gateway::follow`] applies ([`OperatorClient::watch`]), and a report every few seconds
//! ([`OperatorClient::report`] (`POST /v1/sidecars/report`: sidecar id, applied version,
//! breaker state per backend, tokens per app, and tokens left per quota window — at most
//! [`MAX_REPORTED_LEVELS`] of them, marked as Redis-mode local views when the shared counters
//! live in Redis).
//!
//! The stream (`GET /v1/snapshots/watch`, NDJSON) delivers the full snapshot at once and each
//! new version after; [`apply`] decides what is applied. When the stream breaks, is refused, or
//! stays silent for three heartbeats, the sidecar keeps serving the last good snapshot and
//! reconnects with jittered exponential backoff (250 ms doubling to 30 s). The token and the
//! snapshot contents are never logged.

pub mod apply;
mod report;
#[cfg(test)]
mod tests;
pub use spillway_crds::wire;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use tokio::task::JoinHandle;

pub use self::report::{MAX_REPORTED_LEVELS, build_report};

use self::apply::{Applier, Outcome};
use self::wire::{REPORT_PATH, SIDECAR_HEADER, SidecarReport, VERSION_HEADER, WATCH_PATH};
use super::SnapshotRx;
use crate::proxy::Gateway;
use crate::usage::totals::UsageTotals;

/// Options for operator mode, part of `spillway run`.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct OperatorArgs {
    /// Operator URL (https://…) to receive configuration from, instead of --config.
    #[arg(long, env = "SPILLWAY_OPERATOR")]
    pub operator: Option<String>,
    /// Projected ServiceAccount token (audience `spillway`) sent to the operator.
    #[arg(
        long,
        default_value = "/var/run/secrets/spillway/token",
        env = "SPILLWAY_OPERATOR_TOKEN_FILE"
    )]
    pub operator_token_file: PathBuf,
    /// CA certificate(s) (PEM) that signed the operator's certificate; default: public roots.
    #[arg(long, env = "SPILLWAY_OPERATOR_CA_FILE")]
    pub operator_ca_file: Option<PathBuf>,
    /// This sidecar's id at the operator. Default: the pod name (POD_NAME), else host name
    /// and process id.
    #[arg(long, env = "POD_NAME")]
    pub sidecar_id: Option<String>,
    /// The pod UID, reported to the operator.
    #[arg(long, env = "POD_UID")]
    pub pod_uid: Option<String>,
    /// How often the sidecar reports its version and state.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub operator_report_interval: Duration,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    spillway_crds::duration::parse(text)
}

type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;
/// The CA file's content and the client built from it.
type BuiltClient = (Vec<u8>, HttpsClient);

/// Silence allowed before the first `hello` tells the heartbeat interval.
const FIRST_LINE_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest accepted line (a snapshot).
const MAX_LINE_BYTES: usize = 64 * 1024 * 1024;
/// Time allowed for a request to get response headers.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// A connection to the operator.
#[derive(Clone, Debug)]
pub struct OperatorClient {
    base: String,
    token_file: PathBuf,
    sidecar: String,
    pod_uid: Option<String>,
    report_interval: Duration,
    http: Clients,
}

/// HTTPS clients trusting the CA file as it is now: the file is re-read before each request
/// (a mounted CA is updated in place when the operator's certificate is rotated) and the client
/// is rebuilt only when its content changed.
#[derive(Clone, Debug)]
struct Clients {
    ca_file: Option<PathBuf>,
    current: Arc<Mutex<Option<BuiltClient>>>,
}

impl Clients {
    fn get(&self) -> anyhow::Result<HttpsClient> {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        let pem = match &self.ca_file {
            Some(path) => std::fs::read(path)
                .with_context(|| format!("reading the CA file {}", path.display()))?,
            None => Vec::new(),
        };
        if let Some((seen, client)) = current.as_ref()
            && *seen == pem
        {
            return Ok(client.clone());
        }
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = match &self.ca_file {
            Some(path) => builder.with_tls_config(
                tls_config(&pem).with_context(|| format!("the CA file {}", path.display()))?,
            ),
            None => builder.with_webpki_roots(),
        };
        let https = builder.https_only().enable_http1().build();
        let client = Client::builder(TokioExecutor::new()).build(https);
        *current = Some((pem, client.clone()));
        Ok(client)
    }
}

impl OperatorClient {
    /// Checks the options and builds the TLS client.
    ///
    /// # Errors
    /// A URL that is not `https://`, or an unreadable CA file.
    pub fn new(url: &str, args: &OperatorArgs) -> anyhow::Result<Self> {
        let base = url.trim_end_matches('/').to_owned();
        let uri: Uri = base.parse().with_context(|| format!("--operator {url}"))?;
        anyhow::ensure!(
            uri.scheme_str() == Some("https") && uri.host().is_some(),
            "--operator must be an https:// URL (the token must not travel in clear), got {url}"
        );
        let http = Clients {
            ca_file: args.operator_ca_file.clone(),
            current: Arc::default(),
        };
        http.get()?;
        let sidecar = args.sidecar_id.clone().unwrap_or_else(default_sidecar_id);
        Ok(Self {
            base,
            token_file: args.operator_token_file.clone(),
            sidecar,
            pod_uid: args.pod_uid.clone(),
            report_interval: args.operator_report_interval,
            http,
        })
    }

    /// Follows the operator's stream in a task, for ever: each good snapshot is published on
    /// the returned channel (version 0 until the first one arrives), the last good one kept
    /// whatever the stream does.
    pub fn watch(self) -> (SnapshotRx, JoinHandle<()>) {
        let (applier, rx) = Applier::new();
        (rx, tokio::spawn(self.follow(applier)))
    }

    /// Reports `gateway`'s state (applied version, breakers, quota levels, usage) to the
    /// operator in a task, every report interval, for ever.
    pub fn report(self, gateway: Gateway, totals: UsageTotals) -> JoinHandle<()> {
        tokio::spawn(self.report_loop(gateway, totals))
    }

    async fn follow(self, mut applier: Applier) {
        let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
        loop {
            let mut delivered = false;
            match self.stream_once(&mut applier, &mut delivered).await {
                Ok(()) => tracing::info!("operator stream ended; reconnecting"),
                Err(error) => {
                    tracing::warn!(error = %format!("{error:#}"), serving = ?applier.serving(), "operator stream failed; keeping the last good configuration")
                }
            }
            if delivered {
                backoff.reset();
            }
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    fn token(&self) -> anyhow::Result<String> {
        let token = std::fs::read_to_string(&self.token_file)
            .with_context(|| format!("reading the token {}", self.token_file.display()))?;
        let token = token.trim();
        anyhow::ensure!(
            !token.is_empty(),
            "the token file {} is empty",
            self.token_file.display()
        );
        Ok(token.to_owned())
    }

    /// One stream, until it ends or fails. `delivered` turns true once a line arrived.
    async fn stream_once(&self, applier: &mut Applier, delivered: &mut bool) -> anyhow::Result<()> {
        let mut request = Request::get(format!("{}{WATCH_PATH}", self.base))
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token()?))
            .header(SIDECAR_HEADER, &self.sidecar);
        if let Some(version) = applier.serving() {
            request = request.header(VERSION_HEADER, version.to_string());
        }
        let response = tokio::time::timeout(
            REQUEST_TIMEOUT,
            self.http.get()?.request(request.body(Full::default())?),
        )
        .await
        .context("the operator did not answer in time")?
        .context("connecting to the operator")?;
        let status = response.status();
        if status != StatusCode::OK {
            let body = response
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let text = String::from_utf8_lossy(&body[..body.len().min(512)])
                .trim()
                .to_owned();
            anyhow::bail!("the operator refused the stream: {status}: {text}");
        }
        let mut body = response.into_body();
        let mut buffer: Vec<u8> = Vec::new();
        let mut silence = FIRST_LINE_TIMEOUT;
        loop {
            let frame = tokio::time::timeout(silence, body.frame())
                .await
                .map_err(|_| anyhow::anyhow!("no line from the operator for {silence:?}"))?;
            let Some(frame) = frame else { return Ok(()) };
            let Ok(data) = frame.context("reading the stream")?.into_data() else {
                continue;
            };
            buffer.extend_from_slice(&data);
            while let Some(end) = memchr::memchr(b'\n', &buffer) {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                *delivered = true;
                if let Some(heartbeat) = handle_line(applier, &line[..end]) {
                    silence =
                        (heartbeat * 3).clamp(Duration::from_secs(1), Duration::from_secs(600));
                }
            }
            anyhow::ensure!(
                buffer.len() <= MAX_LINE_BYTES,
                "a stream line exceeds {MAX_LINE_BYTES} bytes"
            );
        }
    }

    async fn report_loop(self, gateway: Gateway, totals: UsageTotals) {
        let mut ticker = tokio::time::interval(self.report_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let report = build_report(&self.sidecar, self.pod_uid.clone(), &gateway, &totals);
            if let Err(error) = self.send_report(&report).await {
                tracing::debug!(error = %format!("{error:#}"), "report not delivered");
            }
        }
    }

    async fn send_report(&self, report: &SidecarReport) -> anyhow::Result<()> {
        let request = Request::builder()
            .method(Method::POST)
            .uri(format!("{}{REPORT_PATH}", self.base))
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token()?))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(serde_json::to_vec(report)?)))?;
        let response = tokio::time::timeout(REQUEST_TIMEOUT, self.http.get()?.request(request))
            .await
            .context("the operator did not answer in time")??;
        let status = response.status();
        let _ = response.into_body().collect().await;
        anyhow::ensure!(status.is_success(), "the operator answered {status}");
        Ok(())
    }
}

/// Applies one line; returns the heartbeat interval when the line was a `hello`.
fn handle_line(applier: &mut Applier, line: &[u8]) -> Option<Duration> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    match applier.line(line) {
        Ok(Outcome::Hello { heartbeat }) => {
            tracing::info!(?heartbeat, "connected to the operator");
            return Some(heartbeat);
        }
        Ok(Outcome::Heartbeat) => {}
        Ok(Outcome::AlreadyApplied(version)) => {
            tracing::debug!(version, "configuration already serving")
        }
        Ok(Outcome::Applied(version)) => {
            tracing::info!(version, "configuration received from the operator");
        }
        Err(refusal) => {
            tracing::warn!(%refusal, "snapshot not applied; keeping the last good configuration")
        }
    }
    None
}

fn tls_config(pem: &[u8]) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .context("reading PEM certificates")?;
    anyhow::ensure!(!certs.is_empty(), "no certificate found");
    for cert in certs {
        roots.add(cert).context("an invalid CA certificate")?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

fn default_sidecar_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "spillway".to_owned());
    format!("{host}-{}", std::process::id())
}

/// Jittered exponential backoff: the n-th delay is uniform in `[d/2, d]` with
/// `d = min(max, base·2ⁿ)`.
#[derive(Debug)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
    rng: fastrand::Rng,
}

impl Backoff {
    /// Starts at `base`, never waits longer than `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self::with_rng(base, max, fastrand::Rng::new())
    }

    /// As [`Backoff::new`] with a given random source (tests).
    pub fn with_rng(base: Duration, max: Duration, rng: fastrand::Rng) -> Self {
        Self {
            base,
            max,
            attempt: 0,
            rng,
        }
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1 << self.attempt.min(20))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        ceiling / 2 + ceiling.mul_f64(self.rng.f64() / 2.0)
    }

    /// Back to `base` after a stream that delivered.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}
