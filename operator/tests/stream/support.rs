//! Real pieces for the stream tests: the operator's stream server in-process (with a fake
//! token reviewer instead of the TokenReview API), `spillway run --operator …` sidecar
//! processes, and small loopback HTTP(S) clients.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Once};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http_body_util::{BodyExt, Full};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use spillway_crds::Snapshot;
use spillway_crds::snapshot::{
    BackendConfig, BreakerConfig, PoolConfig, QuotaConfig, RetryConfig, SecretString,
};
use spillway_operator::limits::ServerLimits;
use spillway_operator::metrics::Metrics;
use spillway_operator::publish::Publisher;
use spillway_operator::server::{Identity, ReviewError, StreamServer, TokenReviewer, tls};
use spillway_operator::sidecars::Registry;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const TEAM_TOKEN: &str = "token-of-team-gateway";
pub const OTHER_TOKEN: &str = "token-of-other-gateway";
pub const TEAM_KEY: &str = "sk-team-secret";

/// Accepts two tokens, one per namespace.
pub struct FakeReviewer;

impl TokenReviewer for FakeReviewer {
    fn review<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Option<Identity>, ReviewError>> {
        let namespace = match token {
            TEAM_TOKEN => Some("team"),
            OTHER_TOKEN => Some("other"),
            _ => None,
        };
        let identity = namespace.map(|ns| Identity {
            namespace: ns.into(),
            service_account: "gateway".into(),
            pod_name: None,
        });
        Box::pin(async move { Ok(identity) })
    }
}

/// A snapshot with one pool (`weight` on its backend) and one quota.
pub fn snapshot(pool: &str, weight: u32) -> Snapshot {
    Snapshot {
        pools: vec![PoolConfig {
            max_output_tokens: None,
            prompt_cache_affinity: None,
            id: format!("team/{pool}"),
            name: pool.into(),
            models: vec!["gpt-4o".into()],
            backends: vec![BackendConfig {
                name: "east".into(),
                kind: spillway_crds::snapshot::BackendType::OpenAI,
                base_url: "http://127.0.0.1:9/v1".into(),
                model: None,
                model_map: Default::default(),
                api_version: None,
                priority: 1,
                weight,
                api_key: Some(SecretString::new(TEAM_KEY)),
                entra_id: None,
                breaker: BreakerConfig {
                    rules: Vec::new(),
                    probe_successes: 1,
                },
                stream_usage: spillway_crds::snapshot::StreamUsage::Auto,
                timeout_ms: 1000,
                pricing: None,
            }],
            retry: RetryConfig {
                max_attempts: 2,
                status_ranges: Vec::new(),
                on_connection_failure: true,
                on_timeout: true,
                deadline_ms: 1000,
            },
        }],
        quotas: vec![QuotaConfig {
            id: "team/app".into(),
            name: "app".into(),
            app_id: Some("app".into()),
            pools: Vec::new(),
            models: Vec::new(),
            tokens_per_minute: Some(6000),
            requests_per_minute: None,
            calendar: Vec::new(),
            default_max_tokens: 100,
            share: 1.0,
            token_weights: Default::default(),
            budgets: Vec::new(),
        }],
        ..Snapshot::default()
    }
}

/// An in-process operator stream server.
pub struct Operator {
    pub publisher: Publisher,
    pub sidecars: Registry,
    pub addr: std::net::SocketAddr,
    pub ca: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Operator {
    /// Serves every namespace on `port` (0: any), with its CA written into `dir`.
    pub async fn start(dir: &Path, port: u16) -> Self {
        Self::start_serving(dir, port, None).await
    }

    /// As [`Operator::start`], serving only `only_namespace` when given.
    pub async fn start_serving(dir: &Path, port: u16, only_namespace: Option<&str>) -> Self {
        let publisher = Publisher::new();
        let sidecars = Registry::new(publisher.clone(), Duration::from_secs(1));
        let limits = ServerLimits::default();
        Self::serve_with(dir, port, only_namespace, publisher, sidecars, limits).await
    }

    /// As [`Operator::start`], with the given connection limits.
    pub async fn start_limited(dir: &Path, limits: ServerLimits) -> Self {
        let publisher = Publisher::new();
        let sidecars = Registry::new(publisher.clone(), Duration::from_secs(1));
        Self::serve_with(dir, 0, None, publisher, sidecars, limits).await
    }

    /// As [`Operator::start_serving`], with a given publisher and registry (those of a
    /// reconcile context).
    pub async fn serve_with(
        dir: &Path,
        port: u16,
        only_namespace: Option<&str>,
        publisher: Publisher,
        sidecars: Registry,
        limits: ServerLimits,
    ) -> Self {
        let tls = tls::self_signed(dir, &["127.0.0.1".into()]).expect("tls");
        let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = StreamServer {
            publisher: publisher.clone(),
            sidecars: sidecars.clone(),
            reviewer: Arc::new(FakeReviewer),
            metrics: Arc::new(Metrics::default()),
            heartbeat: Duration::from_millis(300),
            only_namespace: only_namespace.map(str::to_owned),
            injector: None,
            validator: None,
            limits,
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let serve = tokio::spawn(server.serve(listener, tls.config, async {
            let _ = stopped.await;
        }));
        let sweep = tokio::spawn(sidecars.clone().sweep_every(Duration::from_millis(100)));
        Self {
            publisher,
            sidecars,
            addr,
            ca: tls.generated_ca.expect("generated"),
            stop: Some(stop),
            tasks: vec![serve, sweep],
        }
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Ends every stream and stops serving, like a terminated operator.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let serve = self.tasks.remove(0);
        let _ = tokio::time::timeout(Duration::from_secs(10), serve).await;
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The `spillway` binary: `$SPILLWAY_BIN` when set (the all-tests command builds the
/// workspace first and sets it, so no second build with other features replaces it), else
/// built once per test run.
pub fn spillway_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("SPILLWAY_BIN") {
        return PathBuf::from(bin);
    }
    static BUILD: Once = Once::new();
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| manifest_dir.join("../target"), PathBuf::from);
    BUILD.call_once(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "-p",
                "spillway-tools",
                "--bin",
                "spillway",
            ])
            .current_dir(manifest_dir.join(".."))
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building spillway failed");
    });
    target.join("debug").join("spillway")
}

/// A running `spillway run --operator …` process.
pub struct Sidecar {
    pub admin: String,
    pub listen: String,
    child: Child,
}

impl Sidecar {
    pub async fn start(operator: &Operator, dir: &Path, id: &str, token: &str) -> Self {
        let token_file = dir.join(format!("{id}.token"));
        std::fs::write(&token_file, format!("{token}\n")).expect("token file");
        let mut child = Command::new(spillway_binary())
            .args(["run", "--operator", &operator.url(), "--sidecar-id", id])
            .arg("--operator-token-file")
            .arg(&token_file)
            .arg("--operator-ca-file")
            .arg(&operator.ca)
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(["--operator-report-interval", "200ms"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn spillway");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        tokio::time::timeout(
            Duration::from_secs(60),
            BufReader::new(stdout).read_line(&mut line),
        )
        .await
        .expect("the sidecar starts in time")
        .expect("read");
        let ready: serde_json::Value = serde_json::from_str(&line).expect("ready line");
        let admin = ready["admin"].as_str().expect("admin address").to_owned();
        let listen = ready["listening"]
            .as_str()
            .expect("listen address")
            .to_owned();
        Self {
            admin,
            listen,
            child,
        }
    }

    /// `/admin/config` of the sidecar.
    pub async fn config(&self) -> (u16, serde_json::Value) {
        let (status, body) = http_get(&self.admin, "/admin/config").await;
        (status, serde_json::from_str(&body).unwrap_or_default())
    }

    /// The version serving traffic, if any.
    pub async fn version(&self) -> Option<u64> {
        self.config().await.1["version"].as_u64()
    }

    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}

/// A plain HTTP/1.0 GET on loopback: `(status, body)`.
pub async fn http_get(addr: &str, path: &str) -> (u16, String) {
    http_request(addr, "GET", path, "").await
}

/// A plain HTTP/1.0 request with a JSON body on loopback: `(status, body)`.
pub async fn http_request(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        return (0, String::new());
    };
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    if stream.write_all(request.as_bytes()).await.is_err() {
        return (0, String::new());
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response).await;
    let status = response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// An HTTPS request to the operator trusting its CA: `(status, body)`; the body is read for
/// at most one second (a watch stream never ends by itself).
/// A TLS client configuration that trusts `operator`'s CA.
pub fn client_tls(operator: &Operator) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&operator.ca).expect("ca") {
        roots.add(cert.expect("cert")).expect("root");
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

pub async fn https(
    operator: &Operator,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    let config = client_tls(operator);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, Full<Bytes>>(https);
    let mut request = http::Request::builder()
        .method(method)
        .uri(format!("{}{path}", operator.url()))
        .header("x-spillway-sidecar", "probe");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("request");
    let response = client.request(request).await.expect("response");
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut text = Vec::new();
    let deadline = tokio::time::sleep(Duration::from_secs(1));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            frame = body.frame() => match frame {
                Some(Ok(frame)) => text.extend_from_slice(frame.data_ref().map_or(&[][..], |d| &d[..])),
                _ => break,
            },
            () = &mut deadline => break,
        }
    }
    (status, String::from_utf8_lossy(&text).into_owned())
}

/// Polls `check` every 50 ms until it holds, for at most 30 s.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..600 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}
