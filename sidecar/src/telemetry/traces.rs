//! The trace pipeline: finished requests' usage records become spans (see `spans`), queued
//! in a bounded queue and exported in batches by the `opentelemetry-otlp` span exporter —
//! OTLP/HTTP protobuf through the same runtime-bound HTTP client as metrics, or OTLP/gRPC
//! with the `otlp-grpc` feature.
//!
//! Input: the [`UsageSink`](crate::usage::UsageSink) records (the request path only
//! generated ids, timestamps and the sampling decision) and [`TraceSettings`]. Output: OTLP
//! trace exports and the `spillway.telemetry.spans` counter (`success`, `failure`,
//! `dropped`). A slow or silent collector never slows requests (see `pipeline`).

use std::sync::Arc;

use opentelemetry_otlp::{SpanExporter, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter as _};
use tokio::sync::broadcast;

use super::config::OtlpProtocol;
use super::export_config::TraceSettings;
use super::otlp::TokioHttpClient;
use super::pipeline::{self, BatchExport, Counts, Exporting};
use super::semconv;
use super::{Telemetry, resource};
use crate::http_client;
use crate::usage::UsageRecord;

impl Telemetry {
    /// Starts exporting the spans of the sampled records of `rx` as `settings` say; the
    /// follower and the exporter run as tasks on the current Tokio runtime. Stop with
    /// [`Exporting::finish`], which exports what is queued.
    ///
    /// # Errors
    /// Not inside a Tokio runtime, or the exporter cannot be built from `settings`.
    pub fn start_traces(
        &self,
        settings: &TraceSettings,
        rx: broadcast::Receiver<Arc<UsageRecord>>,
    ) -> anyhow::Result<Exporting> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| anyhow::anyhow!("traces must start inside the Tokio runtime"))?;
        let mut exporter = match settings.protocol {
            OtlpProtocol::HttpProtobuf => SpanExporter::builder()
                .with_http()
                .with_http_client(TokioHttpClient {
                    runtime,
                    client: http_client::client(),
                    timeout: settings.timeout,
                })
                .with_endpoint(settings.endpoint.clone())
                .with_timeout(settings.timeout)
                .build()?,
            OtlpProtocol::Grpc => grpc_exporter(settings)?,
        };
        exporter.set_resource(&resource());
        let counts = Arc::new(Counts::default());
        let (queue, export) = pipeline::spawn_export(
            Spans(exporter),
            settings.max_queue,
            settings.max_batch,
            settings.schedule_delay,
            &counts,
        );
        pipeline::register(self, semconv::SPANS, "{span}", &counts);
        tracing::info!(endpoint = %settings.endpoint, protocol = ?settings.protocol, "exporting traces over OTLP");
        let telemetry = self.clone();
        let on_record = move |record: &UsageRecord| {
            if !record.trace.is_some_and(|t| t.sampled) {
                return;
            }
            let index = telemetry.inner.current_index();
            queue.push_all(super::spans::spans(record, &index));
        };
        Ok(Exporting::follow(rx, on_record, counts, export))
    }
}

#[cfg(feature = "otlp-grpc")]
fn grpc_exporter(settings: &TraceSettings) -> anyhow::Result<SpanExporter> {
    Ok(SpanExporter::builder()
        .with_tonic()
        .with_endpoint(settings.endpoint.clone())
        .with_timeout(settings.timeout)
        .build()?)
}

#[cfg(not(feature = "otlp-grpc"))]
fn grpc_exporter(_settings: &TraceSettings) -> anyhow::Result<SpanExporter> {
    anyhow::bail!(
        "OTLP protocol `grpc` needs a spillway built with the `otlp-grpc` feature; use `http/protobuf`"
    )
}

/// The span exporter as a [`BatchExport`].
#[derive(Debug)]
struct Spans(SpanExporter);

impl BatchExport for Spans {
    type Item = SpanData;

    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        self.0.export(batch)
    }
}
