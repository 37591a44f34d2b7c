//! `spillway-operator`: the command line and the wiring of one operator process.
//!
//! Connects to Kubernetes through the usual kubeconfig resolution (`KUBECONFIG`,
//! `~/.kube/config`, or the in-cluster ServiceAccount), so the same binary runs in a pod or
//! against any cluster from a laptop or a test bed. Starts the reflectors and reconciler, the
//! HTTPS stream server, the admin port, the sidecar sweeper and leader election; on SIGINT or
//! SIGTERM it releases the Lease, ends the streams and stops.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::controller::queue::{self, WatchScope, Watches};
use crate::controller::{Context, Stores, WriteLimiter};
use crate::leader::{Elector, LeaseConfig};
use crate::limits::ServerLimits;
use crate::metrics::{AdminState, Metrics};
use crate::presence::{Presence, PresenceConfig};
use crate::publish::Publisher;
use crate::server::StreamServer;
use crate::server::auth::{CachedReviewer, KubeTokenReviewer};
use crate::server::tls;
use crate::sidecars::Registry;
use crate::webhook::{InjectArgs, Validator};

/// Log output format.
#[derive(Clone, Copy, Debug, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Options of `spillway-operator`.
#[derive(Clone, Debug, clap::Parser)]
#[command(
    name = "spillway-operator",
    version,
    about = "Spillway operator: compiles Spillway objects per namespace and pushes them to sidecars"
)]
pub struct OperatorArgs {
    /// Address of the HTTPS config stream that sidecars connect to.
    #[arg(long, default_value = "0.0.0.0:8443", env = "SPILLWAY_STREAM_LISTEN")]
    pub stream_listen: SocketAddr,
    /// Address of /metrics, /healthz and /readyz (plain HTTP).
    #[arg(long, default_value = "0.0.0.0:8080", env = "SPILLWAY_ADMIN_LISTEN")]
    pub admin_listen: SocketAddr,
    /// Time a client of the stream server or the admin port gets to send a request's
    /// headers; an idle keep-alive connection is closed after it too. (The TLS handshake
    /// has 10 s.)
    #[arg(long, default_value = "30s", value_parser = parse_duration, env = "SPILLWAY_HEADER_READ_TIMEOUT")]
    pub header_read_timeout: Duration,
    /// Serving certificate chain (PEM). Without it a CA and certificate are generated.
    #[arg(long, requires = "tls_key", env = "SPILLWAY_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// Private key of --tls-cert (PEM).
    #[arg(long, requires = "tls_cert", env = "SPILLWAY_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Where the generated CA (ca.crt) is written. Default: <temp dir>/spillway-operator.
    #[arg(long)]
    pub generated_tls_dir: Option<PathBuf>,
    /// Names (DNS or IP) of the generated certificate; repeat for several, e.g. the
    /// Service's `spillway-operator.spillway-system.svc`.
    #[arg(long = "tls-san", default_values_t = ["localhost".to_owned(), "127.0.0.1".to_owned()])]
    pub tls_sans: Vec<String>,
    /// Audience sidecar tokens must be issued for.
    #[arg(long, default_value = "spillway", env = "SPILLWAY_TOKEN_AUDIENCE")]
    pub token_audience: String,
    /// How long an accepted token is trusted before it is reviewed again.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub token_cache_ttl: Duration,
    /// Interval between heartbeat lines on each stream.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub heartbeat: Duration,
    /// How long a sidecar still counts (for quota shares and status) after its stream closed
    /// and its last report.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub sidecar_grace: Duration,
    /// Watch only this namespace (all namespaces by default).
    #[arg(long, env = "SPILLWAY_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// Cache only Secrets matching this label selector (all Secrets by default).
    #[arg(long)]
    pub secret_label_selector: Option<String>,
    /// Smallest interval between two status writes.
    #[arg(long, default_value = "50ms", value_parser = parse_duration)]
    pub status_write_interval: Duration,
    /// Act as leader without a Lease (a single replica).
    #[arg(long)]
    pub no_leader_election: bool,
    /// Namespace of the leader Lease.
    #[arg(long, default_value = "default", env = "POD_NAMESPACE")]
    pub lease_namespace: String,
    /// Name of the leader Lease.
    #[arg(long, default_value = "spillway-operator")]
    pub lease_name: String,
    /// How long a Lease is valid without renewal; the leader renews every third of it.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,
    /// This replica's name in the Lease and in Events. Default: the host name.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// The sidecar injection webhook (`POST /mutate`), on when --inject-image is set.
    #[command(flatten)]
    pub inject: InjectArgs,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    spillway_crds::duration::parse(text)
}

fn default_identity() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "spillway-operator".to_owned());
    format!("{host}-{}", std::process::id())
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

fn server_tls(args: &OperatorArgs) -> anyhow::Result<tls::ServerTls> {
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => tls::from_files(cert, key)?,
        _ => {
            let dir = args
                .generated_tls_dir
                .clone()
                .unwrap_or_else(|| std::env::temp_dir().join("spillway-operator"));
            tls::self_signed(&dir, &args.tls_sans)?
        }
    };
    if let Some(ca) = &tls.generated_ca {
        tracing::info!(ca_file = %ca.display(), "generated a CA for the stream; give it to sidecars with --operator-ca-file");
    }
    Ok(tls)
}

/// Binds the stream and admin addresses and prints the ready line.
async fn bind(
    args: &OperatorArgs,
    tls: &tls::ServerTls,
) -> anyhow::Result<(TcpListener, TcpListener)> {
    let stream = TcpListener::bind(args.stream_listen)
        .await
        .with_context(|| format!("binding the stream address {}", args.stream_listen))?;
    let admin = TcpListener::bind(args.admin_listen)
        .await
        .with_context(|| format!("binding the admin address {}", args.admin_listen))?;
    let ready_line = serde_json::json!({
        "stream": stream.local_addr()?.to_string(),
        "admin": admin.local_addr()?.to_string(),
        "caFile": tls.generated_ca.as_ref().map(|p| p.display().to_string()),
    });
    println!("{ready_line}");
    Ok((stream, admin))
}

/// A flag that turns true once the stores hold their first full lists.
fn ready_when_filled(stores: Stores) -> Arc<AtomicBool> {
    let ready = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&ready);
    tokio::spawn(async move {
        if stores.ready().await.is_ok() {
            flag.store(true, Ordering::Relaxed);
            tracing::info!("stores filled; serving complete snapshots");
        }
    });
    ready
}

/// Campaigns for the Lease until `stop`, unless leader election is off.
async fn elect(
    client: Client,
    args: &OperatorArgs,
    identity: &str,
    leads: watch::Sender<bool>,
    stop: watch::Receiver<bool>,
) {
    if args.no_leader_election {
        return;
    }
    let config = LeaseConfig {
        namespace: args.lease_namespace.clone(),
        name: args.lease_name.clone(),
        identity: identity.to_owned(),
        lease_duration: args.lease_duration,
        renew_every: args.lease_duration / 3,
    };
    Elector::new(client, config).run(leads, stopped(stop)).await;
}

/// Shares this replica's sidecars with the other replicas until `stop`, in Leases beside the
/// leader Lease, renewed every third of its duration; off without leader election (a single
/// replica).
async fn share_presence(
    client: Client,
    args: &OperatorArgs,
    identity: &str,
    sidecars: Registry,
    stop: watch::Receiver<bool>,
) {
    if args.no_leader_election {
        return;
    }
    let config = PresenceConfig {
        namespace: args.lease_namespace.clone(),
        identity: identity.to_owned(),
        interval: args.lease_duration / 3,
        lease_duration: args.lease_duration,
    };
    Presence::new(client, config, sidecars)
        .run(stopped(stop))
        .await;
}

/// Runs the operator until SIGINT or SIGTERM.
///
/// # Errors
/// No usable kubeconfig, unusable TLS files, or an address that cannot be bound.
pub async fn run(args: OperatorArgs) -> anyhow::Result<()> {
    let client = Client::try_default()
        .await
        .context("connecting to Kubernetes (KUBECONFIG, ~/.kube/config or in-cluster)")?;
    let tls = server_tls(&args)?;
    let injector = args
        .inject
        .config(&args.token_audience, tls.generated_ca.as_deref())
        .context("the sidecar injection settings (--inject-*)")?
        .map(Arc::new);
    if let Some(cfg) = &injector {
        tracing::info!(
            image = cfg.image,
            port = cfg.port,
            "sidecar injection webhook on at /mutate"
        );
    }
    let (stream_listener, admin_listener) = bind(&args, &tls).await?;
    let identity = args.identity.clone().unwrap_or_else(default_identity);
    let metrics = Arc::new(Metrics::default());
    let publisher = Publisher::new();
    let sidecars = Registry::new(publisher.clone(), args.sidecar_grace);
    let (leads_tx, leads) = watch::channel(args.no_leader_election);
    let (stop_tx, stop) = watch::channel(false);

    let watch_scope = WatchScope {
        namespace: args.watch_namespace.clone(),
        secret_labels: args.secret_label_selector.clone(),
    };
    let watches = Watches::new(&client, &watch_scope);
    let reporter = Reporter {
        controller: "spillway-operator".into(),
        instance: Some(identity.clone()),
    };
    let ctx = Arc::new(Context::new(
        client.clone(),
        watches.stores.clone(),
        publisher.clone(),
        sidecars.clone(),
        leads.clone(),
        Recorder::new(client.clone(), reporter),
        WriteLimiter::new(args.status_write_interval),
        Arc::clone(&metrics),
    ));
    let reviewer = KubeTokenReviewer::new(client.clone(), args.token_audience.clone());
    let limits = ServerLimits {
        header_read_timeout: args.header_read_timeout,
        ..ServerLimits::default()
    };
    let server = StreamServer {
        publisher: publisher.clone(),
        sidecars: sidecars.clone(),
        reviewer: Arc::new(CachedReviewer::new(reviewer, args.token_cache_ttl)),
        metrics: Arc::clone(&metrics),
        heartbeat: args.heartbeat,
        only_namespace: args.watch_namespace.clone(),
        injector,
        validator: Some(Validator::new(watches.stores.pools.clone())),
        limits,
    };
    let admin = AdminState {
        metrics,
        publisher,
        sidecars: sidecars.clone(),
        leader: leads,
        ready: ready_when_filled(watches.stores.clone()),
    };
    let background = [
        tokio::spawn(sidecars.clone().sweep_every(Duration::from_secs(1))),
        tokio::spawn(admin.serve(admin_listener, limits.admin())),
    ];
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        stop_tx.send_replace(true);
    });
    tracing::info!(identity, stream = %args.stream_listen, "spillway operator starting");
    tokio::join!(
        queue::run(watches, ctx, stopped(stop.clone())),
        server.serve(stream_listener, tls.config, stopped(stop.clone())),
        elect(client.clone(), &args, &identity, leads_tx, stop.clone()),
        share_presence(client, &args, &identity, sidecars, stop),
    );
    background.iter().for_each(JoinHandle::abort);
    tracing::info!("spillway operator stopped");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
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
