//! `spillway run`: the gateway process. Wires a configuration source (a watched manifest
//! file, or the operator's stream with `--operator`), the proxy, the admin port and the usage
//! consumers, then serves until SIGINT or SIGTERM and shuts down gracefully.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use spillway_crds::Snapshot;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};

use crate::proxy::{Gateway, admin};
use crate::subscribe::file::{self, LocalSecrets};
use crate::subscribe::operator::{OperatorArgs, OperatorClient};
use crate::telemetry::{Telemetry, TelemetryArgs, TelemetrySettings, TraceSettings};
use crate::usage::totals::UsageTotals;
use crate::usage::{UsageRecord, UsageSink};

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
    /// Time in-flight requests get to finish on shutdown.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// Metrics: OTLP export and label bounds.
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    spillway_crds::duration::parse(text)
}

/// Runs the gateway until a shutdown signal.
///
/// # Errors
/// A config file that cannot be used at start-up, or an address that cannot be bound.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let telemetry_settings =
        TelemetrySettings::from_env(&args.telemetry).map_err(|e| anyhow::anyhow!(e))?;
    let trace_settings =
        TraceSettings::from_env(&args.telemetry).map_err(|e| anyhow::anyhow!(e))?;
    let file_source = match &args.config {
        Some(path) => Some(follow_file(path, &args)?),
        None => None,
    };
    let operator = match &args.operator_args.operator {
        Some(url) => Some(OperatorClient::new(url, &args.operator_args)?),
        None => None,
    };

    let sink = UsageSink::new(16 * 1024);
    let totals = UsageTotals::new(10_000);
    tokio::spawn(totals.clone().follow(sink.subscribe()));
    if let Some(path) = &args.usage_log {
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await
            .with_context(|| format!("opening usage log {}", path.display()))?;
        tokio::spawn(write_usage_log(file, sink.subscribe()));
    }

    let gateway = Gateway::new(sink.clone());
    match (file_source, operator) {
        (Some(rx), _) => {
            // Apply the first configuration before accepting traffic, so the first request
            // is served, not refused as "not ready".
            gateway.apply(rx.borrow().clone());
            tokio::spawn(gateway.clone().follow(rx));
        }
        (None, Some(client)) => {
            tokio::spawn(client.run(gateway.clone(), totals.clone()));
        }
        (None, None) => anyhow::bail!("give --config FILE or --operator URL"),
    }
    let telemetry = Telemetry::start(&telemetry_settings, gateway.clone())?;
    tokio::spawn(telemetry.clone().follow(sink.subscribe()));
    if let Some(settings) = &trace_settings {
        tokio::spawn(telemetry.start_traces(settings)?.follow(sink.subscribe()));
    }
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let admin_listener = TcpListener::bind(args.admin_listen)
        .await
        .with_context(|| format!("binding admin {}", args.admin_listen))?;
    let ready = serde_json::json!({
        "listening": listener.local_addr()?.to_string(),
        "admin": admin_listener.local_addr()?.to_string(),
    });
    println!("{ready}");
    tracing::info!(listen = %listener.local_addr()?, admin = %admin_listener.local_addr()?, "spillway gateway serving");
    tokio::spawn(admin::serve_with_metrics(
        admin_listener,
        gateway.clone(),
        totals,
        Some(telemetry.clone()),
    ));
    gateway
        .serve(listener, shutdown_signal(), args.shutdown_grace)
        .await;
    tokio::task::spawn_blocking(move || telemetry.shutdown()).await?;
    tracing::info!("spillway gateway stopped");
    Ok(())
}

/// Loads the manifest file (failing loudly on a bad one) and watches it for changes.
fn follow_file(
    path: &std::path::Path,
    args: &RunArgs,
) -> anyhow::Result<watch::Receiver<Arc<Snapshot>>> {
    let secrets = LocalSecrets {
        secrets_dir: args.secrets_dir.clone(),
    };
    let first = file::load(path, &secrets).map_err(|reasons| {
        anyhow::anyhow!(
            "{} cannot be used:\n  {}",
            path.display(),
            reasons.join("\n  ")
        )
    })?;
    let (tx, rx) = watch::channel(Arc::new(first));
    tokio::spawn(file::watch_file(
        path.to_owned(),
        secrets,
        args.reload_interval,
        tx,
    ));
    Ok(rx)
}

async fn write_usage_log(mut file: tokio::fs::File, mut rx: broadcast::Receiver<Arc<UsageRecord>>) {
    let mut lost = 0u64;
    loop {
        let record = match rx.recv().await {
            Ok(record) => record,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                lost += n;
                tracing::warn!(lost, "usage log fell behind; records lost");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let mut line = serde_json::to_vec(&*record).unwrap_or_default();
        line.push(b'\n');
        if let Err(error) = file.write_all(&line).await {
            tracing::error!(%error, "cannot write the usage log");
        }
    }
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
