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

use opentelemetry_otlp::SpanExporter;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter as _};
use tokio::sync::broadcast;

use super::export_config::TraceSettings;
use super::exporter::otlp_exporter;
use super::pipeline::{self, BatchExport, Counts, Exporting};
use super::semconv;
use super::{Telemetry, resource};
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
        let mut exporter = otlp_exporter!(SpanExporter, settings, runtime)?;
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

/// The span exporter as a [`BatchExport`].
#[derive(Debug)]
struct Spans(SpanExporter);

impl BatchExport for Spans {
    type Item = SpanData;

    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        self.0.export(batch)
    }
}
