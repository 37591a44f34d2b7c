//! The trace pipeline: finished requests' usage records become spans (see `spans`), queued
//! in a bounded queue and exported in batches over OTLP/HTTP protobuf by the SDK's
//! `opentelemetry-otlp` span exporter, through the same runtime-bound HTTP client as metrics.
//!
//! Input: the [`UsageSink`](crate::usage::UsageSink) records (the request path only
//! generated ids and timestamps) and [`TraceSettings`]. Output: OTLP trace exports and the
//! `spillway.telemetry.spans` counter (`success`, `failure`, `dropped`). A slow or silent
//! collector never slows requests: the exporter works on one batch at a time, each bounded by
//! the timeout, and spans that find the queue full are dropped and counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use opentelemetry::KeyValue;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{SpanData, SpanExporter as _};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::mpsc;

use super::otlp::TokioHttpClient;
use super::semconv::{self, attr};
use super::trace_config::TraceSettings;
use super::{Telemetry, resource};
use crate::proxy::upstream;
use crate::usage::UsageRecord;

/// Counts of spans by how they ended.
#[derive(Debug, Default)]
struct SpanStats {
    exported: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

/// The span side of a [`Telemetry`]: turns usage records into spans and queues them.
#[derive(Debug)]
pub struct Traces {
    telemetry: Telemetry,
    queue: mpsc::Sender<SpanData>,
    stats: Arc<SpanStats>,
}

impl Telemetry {
    /// Starts exporting spans as `settings` say; the exporter runs as a task on the current
    /// Tokio runtime. Feed the returned [`Traces`] with [`Traces::follow`].
    ///
    /// # Errors
    /// Not inside a Tokio runtime, or the exporter cannot be built from `settings`.
    pub fn start_traces(&self, settings: &TraceSettings) -> anyhow::Result<Traces> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| anyhow::anyhow!("traces must start inside the Tokio runtime"))?;
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(TokioHttpClient {
                runtime: runtime.clone(),
                client: upstream::client(),
                timeout: settings.timeout,
            })
            .with_endpoint(settings.endpoint.clone())
            .with_timeout(settings.timeout)
            .build()?;
        exporter.set_resource(&resource());
        let (queue, rx) = mpsc::channel(settings.max_queue);
        let stats = Arc::new(SpanStats::default());
        runtime.spawn(export(exporter, rx, settings.max_batch, Arc::clone(&stats)));
        register(self, &stats);
        tracing::info!(endpoint = %settings.endpoint, "exporting traces over OTLP/HTTP");
        Ok(Traces {
            telemetry: self.clone(),
            queue,
            stats,
        })
    }
}

impl Traces {
    /// Queues the spans of `record` (none when it is not sampled); drops them all, counted,
    /// when the queue has no room for every one.
    pub fn record(&self, record: &UsageRecord) {
        if !record.trace.is_some_and(|t| t.sampled) {
            return;
        }
        let index = self.telemetry.inner.current_index();
        let spans = super::spans::spans(record, &index);
        match self.queue.try_reserve_many(spans.len()) {
            Ok(permits) => {
                for (permit, span) in permits.zip(spans) {
                    permit.send(span);
                }
            }
            Err(_) => {
                self.stats
                    .dropped
                    .fetch_add(count(spans.len()), Ordering::Relaxed);
            }
        }
    }

    /// Records every record of `rx` until the sink closes; the spans of records missed
    /// because this consumer fell behind are counted as dropped (one per record at least).
    pub async fn follow(self, mut rx: broadcast::Receiver<Arc<UsageRecord>>) {
        loop {
            match rx.recv().await {
                Ok(record) => self.record(&record),
                Err(RecvError::Lagged(n)) => {
                    self.stats.dropped.fetch_add(n, Ordering::Relaxed);
                    tracing::warn!(lost = n, "traces fell behind; usage records lost");
                }
                Err(RecvError::Closed) => return,
            }
        }
    }
}

/// Exports queued spans in batches of at most `max_batch` until the queue closes.
async fn export(
    exporter: opentelemetry_otlp::SpanExporter,
    mut rx: mpsc::Receiver<SpanData>,
    max_batch: usize,
    stats: Arc<SpanStats>,
) {
    let mut batch = Vec::with_capacity(max_batch);
    while rx.recv_many(&mut batch, max_batch).await > 0 {
        let n = count(batch.len());
        let spans = std::mem::replace(&mut batch, Vec::with_capacity(max_batch));
        match exporter.export(spans).await {
            Ok(()) => stats.exported.fetch_add(n, Ordering::Relaxed),
            Err(error) => {
                tracing::debug!(%error, "OTLP trace export failed");
                stats.failed.fetch_add(n, Ordering::Relaxed)
            }
        };
    }
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Registers `spillway.telemetry.spans` on the metrics pipeline.
fn register(telemetry: &Telemetry, stats: &Arc<SpanStats>) {
    let stats = Arc::downgrade(stats);
    telemetry
        .inner
        .provider
        .meter("spillway")
        .u64_observable_counter(semconv::SPANS)
        .with_unit("{span}")
        .with_description("Spans by result (`success`, `failure`, `dropped`).")
        .with_callback(move |observer| {
            let Some(stats) = stats.upgrade() else { return };
            for (result, count) in [
                ("success", &stats.exported),
                ("failure", &stats.failed),
                ("dropped", &stats.dropped),
            ] {
                observer.observe(
                    count.load(Ordering::Relaxed),
                    &[KeyValue::new(attr::EXPORT_RESULT, result)],
                );
            }
        })
        .build();
}
