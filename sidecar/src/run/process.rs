//! One gateway process, wired once for `spillway run` and the demo.
//!
//! Input: [`GatewayOptions`]. [`start`] loads the manifest file (failing loudly when it
//! cannot be used), binds both ports, applies the first snapshot *before* serving (in Redis
//! mode it also waits, bounded, for Redis' first answer), and spawns: the file watcher feeding the gateway, the usage consumers (totals for
//! `/admin/usage`, metrics, the optional usage log, spans and log records), the admin server (with `/metrics`)
//! and the data path. Telemetry reads quota levels from the gateway's limiter.
//!
//! Output: a [`GatewayProcess`] with the bound addresses and the parts to look at;
//! [`GatewayProcess::shutdown`] stops accepting, lets in-flight requests finish within the
//! grace period, writes the rest of the usage log, and exports the last metrics.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::usage_log::UsageLog;
use crate::audit::writer::{AuditLog, Destinations};
use crate::proxy::limits::ConnectionLimits;
use crate::proxy::{Gateway, admin};
use crate::subscribe::file::{self, LocalSecrets};
use crate::subscribe::operator::OperatorClient;
use crate::telemetry::{
    Exporting, LogSettings, QuotaSource, Sampler, Signal, Telemetry, TelemetryArgs,
    TelemetrySettings, TraceSettings,
};
use crate::usage::UsageSink;
use crate::usage::totals::UsageTotals;

/// Records a slow usage consumer may lag behind before losing some.
const SINK_CAPACITY: usize = 16 * 1024;
/// Longest wait at start-up for a configured Redis to answer before serving.
const REDIS_FIRST_ANSWER: Duration = Duration::from_secs(2);
/// Longest wait at shutdown for the queued spans, then the queued log records, to be sent.
const EXPORT_DEADLINE: Duration = Duration::from_secs(5);

/// Where the configuration comes from.
#[derive(Clone, Debug)]
pub enum ConfigSource {
    /// Standalone: a manifest file (AIBackendPool, AIGateway, TokenQuota, …), watched.
    File {
        /// The manifest file.
        path: PathBuf,
        /// Where `secretRef`s are read from (`env:` and `file:` need nothing).
        secrets: LocalSecrets,
        /// How often the file is checked for changes.
        reload_interval: Duration,
    },
    /// The operator's authenticated config stream; the gateway answers 503 (not ready) until
    /// the first snapshot arrives.
    Operator(Box<OperatorClient>),
}

/// What a gateway process runs on: the options of `spillway run`, resolved.
#[derive(Clone, Debug)]
pub struct GatewayOptions {
    /// Where the configuration comes from.
    pub source: ConfigSource,
    /// Data path address (port 0: a free port, see [`GatewayProcess::listen`]).
    pub listen: SocketAddr,
    /// Admin address (port 0: a free port, see [`GatewayProcess::admin`]).
    pub admin_listen: SocketAddr,
    /// Append one JSON line per request to this file.
    pub usage_log: Option<PathBuf>,
    /// Append the audit log (when the configuration enables it) to this file.
    pub audit_log: Option<PathBuf>,
    /// Latest usage records `/admin/usage` keeps.
    pub recent_records: usize,
    /// Time in-flight requests get to finish on shutdown.
    pub shutdown_grace: Duration,
    /// Timeouts and the connection cap of the data path (the admin port uses the same
    /// timeouts and at most 256 connections).
    pub limits: ConnectionLimits,
    /// OTLP export and label bounds (`/metrics` is always served).
    pub telemetry: TelemetrySettings,
    /// Span export; `None` leaves traces off.
    pub traces: Option<TraceSettings>,
    /// Per-request OTLP log records; `None` leaves them off.
    pub logs: Option<LogSettings>,
    /// Which new traces are sampled (the `traceparent` sent to backends carries it).
    pub sampler: Sampler,
    /// The namespace records carry when the configuration names none.
    pub namespace: Option<String>,
}

impl GatewayOptions {
    /// Options for the manifest at `config`: both ports free ports on 127.0.0.1, reloads
    /// every second, no secrets folder, no usage log, 10 000 recent records, 30 s grace,
    /// metrics on `/metrics` only.
    pub fn new(config: impl Into<PathBuf>) -> Self {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            source: ConfigSource::File {
                path: config.into(),
                secrets: LocalSecrets::default(),
                reload_interval: Duration::from_secs(1),
            },
            listen: loopback,
            admin_listen: loopback,
            usage_log: None,
            audit_log: None,
            recent_records: 10_000,
            shutdown_grace: Duration::from_secs(30),
            limits: ConnectionLimits::default(),
            telemetry: TelemetrySettings::default(),
            traces: None,
            logs: None,
            sampler: Sampler::default(),
            namespace: None,
        }
    }

    /// Sets metrics, traces, logs and the sampler from `args` and the standard
    /// `OTEL_*` environment variables (see `docs/observability.md`).
    ///
    /// # Errors
    /// A setting that cannot be used (an unknown OTLP protocol or sampler, a bad number).
    pub fn telemetry_from_env(mut self, args: &TelemetryArgs) -> anyhow::Result<Self> {
        let error = |e: String| anyhow::anyhow!(e);
        self.telemetry = TelemetrySettings::from_env(args).map_err(error)?;
        self.traces = TraceSettings::from_env(Signal::Traces, args).map_err(error)?;
        self.logs = LogSettings::from_env(Signal::Logs, args).map_err(error)?;
        self.sampler = Sampler::from_env().map_err(error)?;
        Ok(self)
    }
}

/// A running gateway; see the module docs. Dropping it without
/// [`shutdown`](Self::shutdown) leaves its tasks running until the runtime ends.
#[derive(Debug)]
pub struct GatewayProcess {
    /// The data path's bound address.
    pub listen: SocketAddr,
    /// The admin port's bound address.
    pub admin: SocketAddr,
    /// The gateway (applied configuration, breakers, limiter).
    pub gateway: Gateway,
    /// Usage totals, as `/admin/usage` serves them.
    pub totals: UsageTotals,
    /// The metrics pipeline, as `/metrics` serves it.
    pub telemetry: Telemetry,
    stop: oneshot::Sender<()>,
    serving: JoinHandle<()>,
    usage_log: Option<UsageLog>,
    audit_log: Option<AuditLog>,
    exporting: Vec<Exporting>,
    tasks: Vec<JoinHandle<()>>,
}

/// Starts a gateway process; see the module docs. Call inside the Tokio runtime.
///
/// # Errors
/// A manifest file that cannot be used (every reason listed), an address that cannot be
/// bound, a usage log that cannot be opened, or an OTLP exporter that cannot be built.
pub async fn start(options: GatewayOptions) -> anyhow::Result<GatewayProcess> {
    // One config path for both sources: a receiver of checked snapshots (version 0 = none yet).
    let (config, source_task) = match &options.source {
        ConfigSource::File {
            path,
            secrets,
            reload_interval,
        } => file::watch(path.clone(), secrets.clone(), *reload_interval).map_err(|reasons| {
            anyhow::anyhow!(
                "{} cannot be used:\n  {}",
                path.display(),
                reasons.join("\n  ")
            )
        })?,
        ConfigSource::Operator(client) => OperatorClient::clone(client).watch(),
    };
    let (listener, admin_listener) = bind(&options).await?;
    let (listen, admin) = (listener.local_addr()?, admin_listener.local_addr()?);

    let sink = UsageSink::new(SINK_CAPACITY);
    let usage_log = match &options.usage_log {
        Some(path) => Some(UsageLog::start(path, sink.subscribe()).await?),
        None => None,
    };
    let gateway = Gateway::new(sink.clone());
    gateway.set_sampler(options.sampler);
    gateway.set_namespace(options.namespace.clone());
    let first = Arc::clone(&config.borrow());
    if first.version > 0 {
        // The first request is served with this configuration, never refused as "not ready".
        gateway.apply(first);
        wait_for_redis(&gateway).await;
    }
    let telemetry = Telemetry::start(&options.telemetry, Arc::new(gateway.clone()))?;
    let audit_log = start_audit(&options, &gateway, &telemetry).await?;
    let quota_source: Arc<dyn QuotaSource> = Arc::clone(gateway.limiter()) as _;
    telemetry.set_quota_source(quota_source);
    let totals = UsageTotals::new(options.recent_records);

    let mut tasks = vec![
        tokio::spawn(totals.clone().follow(sink.subscribe())),
        tokio::spawn(telemetry.clone().follow(sink.subscribe())),
    ];
    let mut exporting = Vec::new();
    if let Some(settings) = &options.traces {
        exporting.push(telemetry.start_traces(settings, sink.subscribe())?);
    }
    if let Some(settings) = &options.logs {
        exporting.push(telemetry.start_logs(settings, sink.subscribe())?);
    }
    tasks.push(source_task);
    tasks.push(tokio::spawn(gateway.clone().follow(config)));
    if let ConfigSource::Operator(client) = &options.source {
        tasks.push(OperatorClient::clone(client).report(gateway.clone(), totals.clone()));
    }
    tasks.extend([tokio::spawn(admin::serve_with_metrics(
        admin_listener,
        gateway.clone(),
        totals.clone(),
        Some(telemetry.clone()),
        options.limits.admin(),
    ))]);
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(gateway.clone().serve(
        listener,
        async {
            let _ = stopped.await;
        },
        options.shutdown_grace,
        options.limits,
    ));
    Ok(GatewayProcess {
        listen,
        admin,
        gateway,
        totals,
        telemetry,
        stop,
        serving,
        usage_log,
        audit_log,
        exporting,
        tasks,
    })
}

/// Starts the audit writer for `--audit-log` and/or the OTLP logs endpoint. With neither,
/// the queue's reader is dropped: audited calls are counted as dropped.
async fn start_audit(
    options: &GatewayOptions,
    gateway: &Gateway,
    telemetry: &Telemetry,
) -> anyhow::Result<Option<AuditLog>> {
    let otlp = match &options.logs {
        Some(settings) => Some(telemetry.audit_logger(settings)?),
        None => None,
    };
    let Some(queue) = gateway.take_audit_queue() else {
        return Ok(None);
    };
    if options.audit_log.is_none() && otlp.is_none() {
        return Ok(None);
    }
    let destinations = Destinations {
        file: options.audit_log.clone(),
        otlp,
    };
    Ok(Some(AuditLog::start(destinations, queue).await?))
}

/// In Redis mode, waits (at most [`REDIS_FIRST_ANSWER`]) for Redis to answer once, so the
/// first requests are counted in Redis rather than refused (`FailClosed`), admitted
/// uncounted (`FailOpen`) or held to the local share while it connects.
async fn wait_for_redis(gateway: &Gateway) {
    let limiter = gateway.limiter();
    let deadline = tokio::time::Instant::now() + REDIS_FIRST_ANSWER;
    while limiter.redis_available() == Some(false) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if limiter.redis_available() == Some(false) {
        tracing::warn!(
            waited = ?REDIS_FIRST_ANSWER,
            "Redis has not answered yet; serving with rateLimiting.redis.onRedisUnavailable in force until it does"
        );
    }
}

/// Binds the data path and the admin port.
async fn bind(options: &GatewayOptions) -> anyhow::Result<(TcpListener, TcpListener)> {
    let listener = TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("binding {}", options.listen))?;
    let admin = TcpListener::bind(options.admin_listen)
        .await
        .with_context(|| format!("binding admin {}", options.admin_listen))?;
    Ok((listener, admin))
}

impl GatewayProcess {
    /// The data path's base URL, `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.listen)
    }

    /// The admin port's base URL, `http://ADDR`.
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin)
    }

    /// Stops accepting, waits up to the grace period for in-flight requests (streams
    /// included), writes the rest of the usage log, exports the queued spans and log
    /// records (each within 5 s), stops the other tasks and exports the last metrics.
    ///
    /// # Errors
    /// The data path's task or the final export panicked.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.serving.await.context("the data path failed")?;
        if let Some(log) = self.usage_log {
            log.finish().await;
        }
        if let Some(log) = self.audit_log
            && tokio::time::timeout(EXPORT_DEADLINE, log.finish())
                .await
                .is_err()
        {
            tracing::warn!(
                "the audit log could not be finished in time; its last records are lost"
            );
        }
        for signal in self.exporting {
            signal.finish(EXPORT_DEADLINE).await;
        }
        for task in self.tasks {
            task.abort();
        }
        let telemetry = self.telemetry;
        tokio::task::spawn_blocking(move || telemetry.shutdown())
            .await
            .context("the last metrics export failed")?;
        Ok(())
    }
}
