//! Trace export settings, from the `spillway run` flags and the standard OpenTelemetry
//! environment variables.
//!
//! Traces go over OTLP/HTTP protobuf to the same collector as metrics:
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (a full URL) or else the base endpoint
//! (`--otlp-endpoint`, then `OTEL_EXPORTER_OTLP_ENDPOINT`) with `/v1/traces` appended.
//! `OTEL_TRACES_EXPORTER=none` or `OTEL_SDK_DISABLED=true` turns them off (even with the
//! flag, which stays the metrics endpoint). When the shared protocol is gRPC and no
//! traces-specific endpoint is set, traces are off: that endpoint does not speak OTLP/HTTP.
//! The queue and batch sizes read `OTEL_BSP_MAX_QUEUE_SIZE` and
//! `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`; the timeout `OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT`.

use std::time::Duration;

use super::TelemetryArgs;

/// The largest queue or batch accepted, in spans.
const MAX_SIZE: u64 = 1 << 20;

/// Where and how spans are exported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceSettings {
    /// The full URL spans are posted to (including `/v1/traces`).
    pub endpoint: String,
    /// Time one export may take.
    pub timeout: Duration,
    /// Spans waiting for export before new ones are dropped (and counted).
    pub max_queue: usize,
    /// Spans per export request at most.
    pub max_batch: usize,
}

impl TraceSettings {
    /// Resolves `args` against the process environment; `None` when traces are off.
    ///
    /// # Errors
    /// An unsupported traces protocol or an unparsable number.
    pub fn from_env(args: &TelemetryArgs) -> Result<Option<Self>, String> {
        Self::resolve(args, |name| std::env::var(name).ok())
    }

    /// Resolves `args` against the variables `env` returns; `None` when traces are off.
    ///
    /// # Errors
    /// An unsupported traces protocol or an unparsable number.
    pub fn resolve(
        args: &TelemetryArgs,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, String> {
        let var = |name: &str| {
            env(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let off = var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || var("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"));
        if off {
            return Ok(None);
        }
        if let Some(protocol) = var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            && protocol != "http/protobuf"
        {
            return Err(format!(
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL={protocol} is not supported; traces are exported over `http/protobuf`"
            ));
        }
        let shared_grpc = args
            .otlp_protocol
            .clone()
            .or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .is_some_and(|p| p.trim() == "grpc");
        let endpoint = if let Some(full) = var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            full
        } else if shared_grpc {
            return Ok(None);
        } else if let Some(base) = args
            .otlp_endpoint
            .clone()
            .or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT"))
        {
            traces_url(&base)
        } else if var("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("otlp")) {
            "http://localhost:4318/v1/traces".to_owned()
        } else {
            return Ok(None);
        };
        let number = |name: &str, default: u64| -> Result<u64, String> {
            var(name).map_or(Ok(default), |v| {
                v.parse()
                    .map_err(|_| format!("{name}={v} is not a whole number"))
            })
        };
        let timeout_ms = match var("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT") {
            Some(_) => number("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", 10_000)?,
            None => number("OTEL_EXPORTER_OTLP_TIMEOUT", 10_000)?,
        };
        // Bounded: the queue and a batch's buffer are allocated from these.
        let size = |n: u64| usize::try_from(n.clamp(1, MAX_SIZE)).unwrap_or(1);
        Ok(Some(Self {
            endpoint,
            timeout: Duration::from_millis(timeout_ms.max(10)),
            max_queue: size(number("OTEL_BSP_MAX_QUEUE_SIZE", 2048)?),
            max_batch: size(number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)?),
        }))
    }
}

/// A base endpoint made into the traces URL.
fn traces_url(base: &str) -> String {
    let base = base.trim().trim_end_matches('/');
    let base = base.strip_suffix("/v1/metrics").unwrap_or(base);
    if base.ends_with("/v1/traces") {
        base.to_owned()
    } else {
        format!("{base}/v1/traces")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn args(endpoint: Option<&str>, protocol: Option<&str>) -> TelemetryArgs {
        TelemetryArgs {
            otlp_endpoint: endpoint.map(str::to_owned),
            otlp_protocol: protocol.map(str::to_owned),
            otlp_export_interval: None,
            metrics_max_apps: 1000,
            metrics_max_series: 20_000,
        }
    }

    fn resolve(args: &TelemetryArgs, env: &[(&str, &str)]) -> Option<TraceSettings> {
        TraceSettings::resolve(args, |name| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
        .unwrap()
    }

    #[test]
    fn endpoints_follow_the_otlp_variables() {
        let none = args(None, None);
        assert_eq!(resolve(&none, &[]), None);
        let flag = resolve(&args(Some("http://c:4318/"), None), &[]).unwrap();
        assert_eq!(flag.endpoint, "http://c:4318/v1/traces");
        assert_eq!((flag.max_queue, flag.max_batch), (2048, 512));
        assert_eq!(flag.timeout, Duration::from_secs(10));
        let generic = resolve(&none, &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://g:4318")]);
        assert_eq!(generic.unwrap().endpoint, "http://g:4318/v1/traces");
        let specific = resolve(
            &args(Some("http://c:4318"), None),
            &[
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:9/x"),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "250"),
                ("OTEL_BSP_MAX_QUEUE_SIZE", "7"),
            ],
        )
        .unwrap();
        assert_eq!(specific.endpoint, "http://t:9/x");
        assert_eq!(specific.timeout, Duration::from_millis(250));
        assert_eq!(specific.max_queue, 7);
        let huge = resolve(
            &none,
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://g"),
                ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "18446744073709551615"),
            ],
        );
        assert_eq!(huge.unwrap().max_batch, 1 << 20);
        let default = resolve(&none, &[("OTEL_TRACES_EXPORTER", "otlp")]).unwrap();
        assert_eq!(default.endpoint, "http://localhost:4318/v1/traces");
    }

    #[test]
    fn none_and_grpc_turn_traces_off() {
        let flag = args(Some("http://c:4318"), None);
        assert_eq!(resolve(&flag, &[("OTEL_TRACES_EXPORTER", "none")]), None);
        assert_eq!(resolve(&flag, &[("OTEL_SDK_DISABLED", "true")]), None);
        assert_eq!(
            resolve(&args(Some("http://c:4317"), Some("grpc")), &[]),
            None
        );
        let bad = TraceSettings::resolve(&flag, |n| {
            (n == "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").then(|| "grpc".to_owned())
        });
        assert!(bad.is_err());
        let bad = TraceSettings::resolve(&flag, |n| {
            (n == "OTEL_BSP_MAX_QUEUE_SIZE").then(|| "lots".to_owned())
        });
        assert!(bad.is_err());
    }
}
