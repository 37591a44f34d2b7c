//! One way to build the OTLP exporter of every signal (metrics, traces, logs): OTLP/HTTP
//! protobuf through [`TokioHttpClient`], or gRPC when built with the `otlp-grpc` feature,
//! with the signal's endpoint and timeout.
//!
//! Input: a signal's settings (`protocol`, `endpoint`, `timeout`) and the Tokio runtime.
//! Output: the exporter, or why it cannot be built. The exporters' builders share no trait
//! for `build()`, hence one macro, [`otlp_exporter`], instead of three copies.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use tokio::runtime::Handle;

use crate::http_client;

/// Largest collector response read.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Builds the OTLP exporter `$exporter` (`MetricExporter`, `SpanExporter`, `LogExporter`) for
/// `$settings` on `$runtime`; evaluates to `anyhow::Result<$exporter>`.
macro_rules! otlp_exporter {
    ($exporter:ty, $settings:expr, $runtime:expr) => {{
        #[allow(unused_imports)]
        use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
        let settings = $settings;
        let runtime: tokio::runtime::Handle = $runtime;
        match settings.protocol {
            $crate::telemetry::config::OtlpProtocol::HttpProtobuf => <$exporter>::builder()
                .with_http()
                .with_http_client($crate::telemetry::exporter::TokioHttpClient {
                    runtime,
                    client: $crate::http_client::client(),
                    timeout: settings.timeout,
                })
                .with_endpoint(settings.endpoint.clone())
                .with_timeout(settings.timeout)
                .build()
                .map_err(anyhow::Error::from),
            $crate::telemetry::config::OtlpProtocol::Grpc => {
                $crate::telemetry::exporter::grpc_exporter!($exporter, settings, runtime)
            }
        }
    }};
}
pub(crate) use otlp_exporter;

/// The gRPC arm of [`otlp_exporter`]: tonic, its channel's worker spawned on `$runtime`.
#[cfg(feature = "otlp-grpc")]
macro_rules! grpc_exporter {
    ($exporter:ty, $settings:expr, $runtime:expr) => {{
        let _entered = $runtime.enter();
        <$exporter>::builder()
            .with_tonic()
            .with_endpoint($settings.endpoint.clone())
            .with_timeout($settings.timeout)
            .build()
            .map_err(anyhow::Error::from)
    }};
}

/// The gRPC arm of [`otlp_exporter`] in a build without `otlp-grpc`: a clear refusal.
#[cfg(not(feature = "otlp-grpc"))]
macro_rules! grpc_exporter {
    ($exporter:ty, $settings:expr, $runtime:expr) => {{
        let _ = (&$settings, &$runtime);
        Err::<$exporter, _>(anyhow::anyhow!(
            "OTLP protocol `grpc` needs a spillway built with the `otlp-grpc` feature; use `http/protobuf`"
        ))
    }};
}
pub(crate) use grpc_exporter;

/// An [`HttpClient`] for the exporter's thread: each request runs as a task on the Tokio
/// runtime and is abandoned after `timeout`.
#[derive(Debug)]
pub(crate) struct TokioHttpClient {
    pub(crate) runtime: Handle,
    pub(crate) client: http_client::HttpClient,
    pub(crate) timeout: Duration,
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
