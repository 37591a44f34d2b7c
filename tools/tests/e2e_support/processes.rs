//! The long-running processes of the end-to-end test: the `spillway-operator` binary (with the
//! operator ServiceAccount's kubeconfig) and `spillway run --operator …` sidecars (each
//! exporting OTLP metrics to its own in-test receiver), plus an HTTPS probe of the operator's
//! config stream. Every process logs to a file in the test bed's log folder and is killed when
//! dropped, so a failing test leaves nothing running.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::TestBed;
use crate::common::http;
use crate::telemetry_support::otlp_http::OtlpReceiver;

/// A child process, killed when dropped.
pub struct Killed(Child);

impl Killed {
    /// Kills the process and waits until it is gone (its ports are free again).
    pub async fn stop(&mut self) {
        let _ = self.0.kill().await;
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

/// Spawns `command` with stderr to `log` and waits (at most 60 s) for a JSON stdout line
/// holding `key`; keeps draining stdout afterwards.
async fn spawn_ready(mut command: Command, log: &Path, key: &str) -> (Killed, Value) {
    let log_file = std::fs::File::create(log).unwrap();
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log_file))
        .kill_on_drop(true);
    let mut child = command.spawn().expect("spawn");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(value) = serde_json::from_str::<Value>(&line)
                && value.get(key).is_some()
            {
                return Some(value);
            }
        }
        None
    })
    .await
    .ok()
    .flatten();
    let Some(ready) = ready else {
        let log_text = std::fs::read_to_string(log).unwrap_or_default();
        panic!("{command:?} did not print its ready line; log:\n{log_text}");
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (Killed(child), ready)
}

/// The operator process.
pub struct Operator {
    process: Killed,
    /// `https://127.0.0.1:PORT` of the config stream.
    pub url: String,
    /// `http://127.0.0.1:PORT` of /metrics.
    pub admin: String,
    /// The CA it generated for the stream.
    pub ca: PathBuf,
}

impl Operator {
    /// Starts `spillway-operator` as the operator ServiceAccount, with leader election on the
    /// Lease the chart's RBAC allows.
    pub async fn start(bed: &TestBed) -> Operator {
        Self::start_on(bed, "127.0.0.1:0").await
    }

    /// Kills the operator and waits until it is gone.
    pub async fn stop(mut self) {
        self.process.stop().await;
    }

    /// The `host:port` of its config stream (to start a successor on, for the sidecars).
    pub fn stream_address(&self) -> &str {
        self.url.trim_start_matches("https://")
    }

    /// [`Operator::start`] with the config stream on `stream_listen`.
    pub async fn start_on(bed: &TestBed, stream_listen: &str) -> Operator {
        let binary = std::env::var_os("SPILLWAY_E2E_OPERATOR_BIN").map_or_else(
            || bed.root.join("target/debug/spillway-operator"),
            PathBuf::from,
        );
        let mut command = Command::new(&binary);
        command
            .env("KUBECONFIG", &bed.operator_kubeconfig)
            .env("RUST_LOG", "info,kube=warn")
            .args(["--stream-listen", stream_listen])
            .args(["--admin-listen", "127.0.0.1:0"])
            .arg("--generated-tls-dir")
            .arg(bed.log_dir.join("operator-tls"))
            .args(["--lease-namespace", &bed.operator_namespace])
            .args([
                "--lease-name",
                "spillway-operator",
                "--identity",
                "e2e-operator",
            ])
            .args(["--heartbeat", "1s", "--sidecar-grace", "5s"]);
        let (process, ready) =
            spawn_ready(command, &bed.log_dir.join("operator.log"), "stream").await;
        Operator {
            process,
            url: format!("https://{}", ready["stream"].as_str().unwrap()),
            admin: format!("http://{}", ready["admin"].as_str().unwrap()),
            ca: PathBuf::from(ready["caFile"].as_str().expect("a generated CA")),
        }
    }

    /// The operator's `/metrics` text.
    pub async fn metrics(&self) -> String {
        http(
            http::Method::GET,
            &format!("{}/metrics", self.admin),
            &[],
            "",
        )
        .await
        .text()
    }

    /// The value of the sample `name{labels}` exactly as rendered, if present.
    pub async fn metric(&self, sample: &str) -> Option<f64> {
        let text = self.metrics().await;
        text.lines().find_map(|l| {
            l.strip_prefix(sample)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
    }

    /// An HTTPS request to the stream server trusting its CA: (status, body read for at most
    /// one second, as a watch stream never ends by itself).
    pub async fn probe(&self, path: &str, token: &str) -> (u16, String) {
        let pem = std::fs::read(&self.ca).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            roots.add(cert.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_only()
            .enable_http1()
            .build();
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build::<_, Full<Bytes>>(https);
        let request = http::Request::get(format!("{}{path}", self.url))
            .header("authorization", format!("Bearer {token}"))
            .header("x-spillway-sidecar", "e2e-probe")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = client.request(request).await.expect("the operator answers");
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let mut text = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while let Some(Ok(frame)) = body.frame().await {
                text.extend_from_slice(frame.data_ref().map_or(&[][..], |d| &d[..]));
            }
        })
        .await;
        (status, String::from_utf8_lossy(&text).into_owned())
    }
}

/// A `spillway run --operator …` process and the OTLP receiver it exports to.
pub struct Sidecar {
    _process: Killed,
    /// Its id at the operator.
    pub id: String,
    /// `http://…` where apps call it.
    pub url: String,
    /// `http://…` of its admin port.
    pub admin: String,
    /// The receiver of its OTLP metrics.
    pub otlp: OtlpReceiver,
}

impl Sidecar {
    /// Starts sidecar `id` with the ServiceAccount `token`.
    pub async fn start(bed: &TestBed, operator: &Operator, id: &str, token: &str) -> Sidecar {
        let token_file = bed.log_dir.join(format!("{id}.token"));
        std::fs::write(&token_file, token).unwrap();
        let otlp = OtlpReceiver::start().await;
        let mut command = Command::new(env!("CARGO_BIN_EXE_spillway"));
        command
            .args(["run", "--operator", &operator.url, "--sidecar-id", id])
            .arg("--operator-token-file")
            .arg(&token_file)
            .arg("--operator-ca-file")
            .arg(&operator.ca)
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(["--operator-report-interval", "500ms"])
            .env("RUST_LOG", "info")
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp.url)
            .env("OTEL_METRIC_EXPORT_INTERVAL", "300")
            .env("OTEL_TRACES_EXPORTER", "none")
            .env(
                "OTEL_RESOURCE_ATTRIBUTES",
                format!("service.instance.id={id}"),
            );
        let log = bed.log_dir.join(format!("{id}.log"));
        let (process, ready) = spawn_ready(command, &log, "listening").await;
        Sidecar {
            _process: process,
            id: id.to_owned(),
            url: format!("http://{}", ready["listening"].as_str().unwrap()),
            admin: format!("http://{}", ready["admin"].as_str().unwrap()),
            otlp,
        }
    }

    /// The snapshot version it serves (`/admin/config`), if any.
    pub async fn version(&self) -> Option<u64> {
        let reply = http(
            http::Method::GET,
            &format!("{}/admin/config", self.admin),
            &[],
            "",
        )
        .await;
        if reply.status != 200 {
            return None;
        }
        reply.json()["version"].as_u64()
    }
}
