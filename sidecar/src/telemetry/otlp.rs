//! The OTLP metrics exporter: OTLP/HTTP protobuf (and gRPC when built with `otlp-grpc`)
//! from `opentelemetry-otlp`, driven by the SDK's periodic reader on its own thread.
//!
//! Input: [`OtlpSettings`] and the Tokio runtime handle of the process. Output: a
//! [`PeriodicReader`] to install on the meter provider, and [`ExportStats`] (exports that
//! succeeded and failed) for `/metrics`.
//!
//! Nothing here touches the request path: the reader collects the SDK's aggregates and
//! exports them on its thread. HTTP requests run on the Tokio runtime through
//! [`TokioHttpClient`] (the pooled hyper client the gateway uses for backends), each bounded
//! by the export timeout; the exporter retries within that same budget. An unreachable or
//! silent collector therefore costs one pending export at a time and nothing else: the
//! aggregates are cumulative and bounded by the cardinality limits, nothing is queued.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{MetricExporter, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{PeriodicReader, Temporality};
use tokio::runtime::Handle;

use super::config::{OtlpProtocol, OtlpSettings};
use crate::http_client;

/// Largest collector response read.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Counts of finished exports.
#[derive(Debug, Default)]
pub struct ExportStats {
    /// Exports the collector accepted.
    pub succeeded: AtomicU64,
    /// Exports that failed after their retries (unreachable, timeout, error status).
    pub failed: AtomicU64,
}

/// Builds the periodic reader exporting to `settings.endpoint`.
///
/// # Errors
/// The exporter cannot be built (bad endpoint, a protocol this build lacks, an invalid
/// `OTEL_EXPORTER_OTLP_*` variable).
pub fn reader(
    settings: &OtlpSettings,
    runtime: Handle,
    stats: Arc<ExportStats>,
) -> anyhow::Result<PeriodicReader<CountingExporter>> {
    let exporter = match settings.protocol {
        OtlpProtocol::HttpProtobuf => MetricExporter::builder()
            .with_http()
            .with_http_client(TokioHttpClient {
                runtime,
                client: http_client::client(),
                timeout: settings.timeout,
            })
            .with_endpoint(settings.endpoint.clone())
            .with_timeout(settings.timeout)
            .build()?,
        OtlpProtocol::Grpc => grpc_exporter(settings, &runtime)?,
    };
    let exporter = CountingExporter {
        inner: exporter,
        stats,
    };
    Ok(PeriodicReader::builder(exporter)
        .with_interval(settings.interval)
        .build())
}

#[cfg(feature = "otlp-grpc")]
fn grpc_exporter(settings: &OtlpSettings, runtime: &Handle) -> anyhow::Result<MetricExporter> {
    // The channel's worker task is spawned on the runtime entered here.
    let _entered = runtime.enter();
    Ok(MetricExporter::builder()
        .with_tonic()
        .with_endpoint(settings.endpoint.clone())
        .with_timeout(settings.timeout)
        .build()?)
}

#[cfg(not(feature = "otlp-grpc"))]
fn grpc_exporter(_settings: &OtlpSettings, _runtime: &Handle) -> anyhow::Result<MetricExporter> {
    anyhow::bail!(
        "OTLP protocol `grpc` needs a spillway built with the `otlp-grpc` feature; use `http/protobuf`"
    )
}

/// The OTLP exporter, counting how its exports end.
#[derive(Debug)]
pub struct CountingExporter {
    inner: MetricExporter,
    stats: Arc<ExportStats>,
}

impl PushMetricExporter for CountingExporter {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let result = self.inner.export(metrics).await;
        let counter = match &result {
            Ok(()) => &self.stats.succeeded,
            Err(error) => {
                tracing::debug!(%error, "OTLP metrics export failed");
                &self.stats.failed
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}

/// An [`HttpClient`] for the exporter's thread: each request runs as a task on the Tokio
/// runtime and is abandoned after `timeout`.
#[derive(Debug)]
pub(super) struct TokioHttpClient {
    pub(super) runtime: Handle,
    pub(super) client: http_client::HttpClient,
    pub(super) timeout: Duration,
}

#[async_trait::async_trait]
impl HttpClient for TokioHttpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let timeout = self.timeout;
        let task = self.runtime.spawn(async move {
            let exchange = async {
                let response = client.request(request.map(Full::new)).await?;
                let (parts, body) = response.into_parts();
                let body = Limited::new(body, MAX_RESPONSE_BYTES).collect().await?;
                Ok::<_, HttpError>(Response::from_parts(parts, body.to_bytes()))
            };
            match tokio::time::timeout(timeout, exchange).await {
                Ok(result) => result,
                Err(_) => Err(HttpError::from(format!(
                    "no answer from the OTLP collector within {timeout:?}"
                ))),
            }
        });
        task.await?
    }
}
