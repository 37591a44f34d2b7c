//! `spillway run`: the gateway process. The flags ([`RunArgs`]) become [`GatewayOptions`];
//! [`start`] wires the process — the same wiring the demo runs — and [`run`] serves until
//! SIGINT or SIGTERM, then shuts down gracefully.
//!
//! - `process`: [`start`], [`GatewayOptions`] and the running [`GatewayProcess`].
//! - `usage_log`: the `--usage-log` writer.

mod process;
mod usage_log;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::proxy::limits::ConnectionLimits;
use crate::subscribe::file::LocalSecrets;
use crate::subscribe::operator::{OperatorArgs, OperatorClient};
use crate::telemetry::TelemetryArgs;

pub use process::{ConfigSource, GatewayOptions, GatewayProcess, start};

/// Options of `spillway run`.
#[derive(Clone, Debug, clap::Args)]
pub struct RunArgs {
    /// Manifest file (AIBackendPool, AIGateway, … as for `kubectl apply`); watched for changes.
    /// Either this or --operator.
    #[arg(
        long,
        env = "SPILLWAY_CONFIG",
        conflicts_with = "operator",
        required_unless_present = "operator"
    )]
    pub config: Option<PathBuf>,
    /// Configuration from the Spillway operator instead of a file.
    #[command(flatten)]
    pub operator_args: OperatorArgs,
    /// Address of the data path.
    #[arg(long, default_value = "127.0.0.1:8080", env = "SPILLWAY_LISTEN")]
    pub listen: SocketAddr,
    /// Address of the admin endpoints (/healthz, /readyz, /admin/…).
    #[arg(long, default_value = "127.0.0.1:9901", env = "SPILLWAY_ADMIN_LISTEN")]
    pub admin_listen: SocketAddr,
    /// Folder with one sub-folder per Secret name, one file per key (a mounted Secret).
    #[arg(long, env = "SPILLWAY_SECRETS_DIR")]
    pub secrets_dir: Option<PathBuf>,
    /// How often the config file is checked for changes.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub reload_interval: Duration,
    /// Append one JSON line per request (app, pool, backend, model, tokens, status, latency).
    #[arg(long, env = "SPILLWAY_USAGE_LOG")]
    pub usage_log: Option<PathBuf>,
    /// Append the audit log here (prompts and completions, redacted) when the AIGateway
    /// enables `audit`; without it audited calls are dropped and counted.
    #[arg(long, env = "SPILLWAY_AUDIT_LOG")]
    pub audit_log: Option<PathBuf>,
    /// Time in-flight requests get to finish on shutdown.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// The namespace usage records and metrics carry (`k8s.namespace.name`) when the
    /// configuration does not say (a manifest file); in operator mode the operator's snapshot
    /// names it.
    #[arg(long, env = "SPILLWAY_NAMESPACE")]
    pub namespace: Option<String>,
    /// Time a client gets to send a request's headers; also how long an idle keep-alive
    /// connection stays open (data path and admin port).
    #[arg(long, default_value = "30s", value_parser = parse_duration, env = "SPILLWAY_HEADER_READ_TIMEOUT")]
    pub header_read_timeout: Duration,
    /// Time a client gets to send a whole request body (408 after it).
    #[arg(long, default_value = "60s", value_parser = parse_duration, env = "SPILLWAY_BODY_READ_TIMEOUT")]
    pub body_read_timeout: Duration,
    /// Open connections at most on the data path (the admin port: 256); past it the
    /// listener waits for one to close.
    #[arg(long, default_value_t = 10_000, env = "SPILLWAY_MAX_CONNECTIONS")]
    pub max_connections: usize,
    /// Telemetry: OTLP endpoint and protocol (metrics, traces, logs) and label bounds.
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    spillway_crds::duration::parse(text)
}

impl RunArgs {
    /// The process these flags describe, telemetry resolved against the environment
    /// (`OTEL_*`).
    ///
    /// # Errors
    /// Telemetry settings that cannot be used (an unknown OTLP protocol, say), or an
    /// operator URL that is not https.
    pub fn options(&self) -> anyhow::Result<GatewayOptions> {
        let source = match (&self.config, &self.operator_args.operator) {
            (Some(path), _) => ConfigSource::File {
                path: path.clone(),
                secrets: LocalSecrets {
                    secrets_dir: self.secrets_dir.clone(),
                },
                reload_interval: self.reload_interval,
            },
            (None, Some(url)) => {
                ConfigSource::Operator(Box::new(OperatorClient::new(url, &self.operator_args)?))
            }
            (None, None) => anyhow::bail!("give --config FILE or --operator URL"),
        };
        let options = GatewayOptions {
            source,
            listen: self.listen,
            admin_listen: self.admin_listen,
            usage_log: self.usage_log.clone(),
            audit_log: self.audit_log.clone(),
            recent_records: 10_000,
            shutdown_grace: self.shutdown_grace,
            namespace: self.namespace.clone(),
            limits: ConnectionLimits {
                header_read_timeout: self.header_read_timeout,
                body_read_timeout: self.body_read_timeout,
                max_connections: self.max_connections,
            },
            ..GatewayOptions::new("")
        };
        options.telemetry_from_env(&self.telemetry)
    }
}

/// Runs the gateway until SIGINT or SIGTERM, then shuts it down gracefully. Prints one JSON
/// line with the bound addresses on stdout once serving.
///
/// # Errors
/// As [`start`], or a shutdown that failed.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let process = start(args.options()?).await?;
    let ready = serde_json::json!({
        "listening": process.listen.to_string(),
        "admin": process.admin.to_string(),
    });
    println!("{ready}");
    tracing::info!(listen = %process.listen, admin = %process.admin, "spillway gateway serving");
    shutdown_signal().await;
    process.shutdown().await?;
    tracing::info!("spillway gateway stopped");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
