//! Export settings of the queued signals — traces and logs — from the `spillway run` flags
//! and the standard OpenTelemetry environment variables.
//!
//! Per signal (`TRACES` or `LOGS`), most specific first:
//! - endpoint: `OTEL_EXPORTER_OTLP_{SIGNAL}_ENDPOINT` (a full URL, used as is), else the base
//!   endpoint (`--otlp-endpoint`, then `OTEL_EXPORTER_OTLP_ENDPOINT`) with `/v1/traces` or
//!   `/v1/logs` appended for HTTP (as is for gRPC), else `OTEL_{SIGNAL}_EXPORTER=otlp` alone
//!   means the local collector's default port; without any, the signal is off.
//! - protocol: `OTEL_EXPORTER_OTLP_{SIGNAL}_PROTOCOL`, `--otlp-protocol`,
//!   `OTEL_EXPORTER_OTLP_PROTOCOL`, else `http/protobuf` (`grpc` with the `otlp-grpc` feature).
//! - timeout: `OTEL_EXPORTER_OTLP_{SIGNAL}_TIMEOUT`, `OTEL_EXPORTER_OTLP_TIMEOUT` (ms), 10 s.
//! - queue and batch: `OTEL_BSP_MAX_QUEUE_SIZE` / `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` (spans),
//!   `OTEL_BLRP_MAX_QUEUE_SIZE` / `OTEL_BLRP_MAX_EXPORT_BATCH_SIZE` (log records); 2048 / 512;
//!   `OTEL_BSP_SCHEDULE_DELAY` / `OTEL_BLRP_SCHEDULE_DELAY` (ms): how long a batch may wait to
//!   fill; 5000 / 1000, as the OpenTelemetry specification says.
//!
//! `OTEL_{SIGNAL}_EXPORTER=none` or `OTEL_SDK_DISABLED=true` turns the signal off.
//! Input: [`TelemetryArgs`] and a variable lookup. Output: `Option<ExportSettings>`.

use std::time::Duration;

use super::{OtlpProtocol, TelemetryArgs};

/// The largest queue or batch accepted, in items.
const MAX_SIZE: u64 = 1 << 20;

/// A signal exported from a bounded queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// Spans.
    Traces,
    /// Log records (one per request).
    Logs,
}

impl Signal {
    /// `TRACES` / `LOGS`, as in the variable names.
    fn upper(self) -> &'static str {
        match self {
            Self::Traces => "TRACES",
            Self::Logs => "LOGS",
        }
    }

    /// `traces` / `logs`, as in the OTLP/HTTP paths.
    pub fn lower(self) -> &'static str {
        match self {
            Self::Traces => "traces",
            Self::Logs => "logs",
        }
    }

    /// The batch processor's variable prefix.
    fn batch_prefix(self) -> &'static str {
        match self {
            Self::Traces => "OTEL_BSP",
            Self::Logs => "OTEL_BLRP",
        }
    }

    /// The specification's default `*_SCHEDULE_DELAY`, in milliseconds.
    fn default_schedule_delay_ms(self) -> u64 {
        match self {
            Self::Traces => 5_000,
            Self::Logs => 1_000,
        }
    }
}

/// Where and how one signal is exported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportSettings {
    /// The full URL (HTTP: including `/v1/traces` or `/v1/logs`; gRPC: the collector).
    pub endpoint: String,
    /// Transport.
    pub protocol: OtlpProtocol,
    /// Time one export may take.
    pub timeout: Duration,
    /// Items waiting for export before new ones are dropped (and counted).
    pub max_queue: usize,
    /// Items per export request at most.
    pub max_batch: usize,
    /// Longest an item waits for its batch to fill before the batch is sent anyway.
    pub schedule_delay: Duration,
}

/// Span export settings.
pub type TraceSettings = ExportSettings;
/// Log record export settings.
pub type LogSettings = ExportSettings;

impl ExportSettings {
    /// Resolves `signal`'s settings from `args` and the process environment; `None` when
    /// it is off.
    ///
    /// # Errors
    /// An unsupported protocol or an unparsable number.
    pub fn from_env(signal: Signal, args: &TelemetryArgs) -> Result<Option<Self>, String> {
        Self::resolve(signal, args, |name| std::env::var(name).ok())
    }

    /// Resolves `signal`'s settings from `args` and the variables `env` returns; `None`
    /// when it is off.
    ///
    /// # Errors
    /// An unsupported protocol or an unparsable number.
    pub fn resolve(
        signal: Signal,
        args: &TelemetryArgs,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, String> {
        let var = |name: &str| {
            env(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let sig = signal.upper();
        let exporter = var(&format!("OTEL_{sig}_EXPORTER")).map(|v| v.to_ascii_lowercase());
        let off = var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || exporter.as_deref() == Some("none");
        if off {
            return Ok(None);
        }
        let protocol_var = format!("OTEL_EXPORTER_OTLP_{sig}_PROTOCOL");
        let protocol = match var(&protocol_var)
            .or_else(|| args.otlp_protocol.as_deref().map(|p| p.trim().to_owned()))
            .or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .as_deref()
        {
            None | Some("http/protobuf") => OtlpProtocol::HttpProtobuf,
            Some("grpc") => OtlpProtocol::Grpc,
            Some(other) => {
                return Err(format!(
                    "OTLP protocol `{other}` for {} is not supported; use `http/protobuf` or `grpc`",
                    signal.lower()
                ));
            }
        };
        let endpoint = if let Some(full) = var(&format!("OTEL_EXPORTER_OTLP_{sig}_ENDPOINT")) {
            full
        } else if let Some(base) = args
            .otlp_endpoint
            .clone()
            .or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT"))
        {
            signal_url(&base, signal, protocol)
        } else if exporter.as_deref() == Some("otlp") {
            match protocol {
                OtlpProtocol::HttpProtobuf => {
                    format!("http://localhost:4318/v1/{}", signal.lower())
                }
                OtlpProtocol::Grpc => "http://localhost:4317".to_owned(),
            }
        } else {
            return Ok(None);
        };
        let number = |name: &str, default: u64| -> Result<u64, String> {
            var(name).map_or(Ok(default), |v| {
                v.parse()
                    .map_err(|_| format!("{name}={v} is not a whole number"))
            })
        };
        let specific_timeout = format!("OTEL_EXPORTER_OTLP_{sig}_TIMEOUT");
        let timeout_ms = match var(&specific_timeout) {
            Some(_) => number(&specific_timeout, 10_000)?,
            None => number("OTEL_EXPORTER_OTLP_TIMEOUT", 10_000)?,
        };
        // Bounded: the queue and a batch's buffer are allocated from these.
        let size = |n: u64| usize::try_from(n.clamp(1, MAX_SIZE)).unwrap_or(1);
        let prefix = signal.batch_prefix();
        Ok(Some(Self {
            endpoint,
            protocol,
            timeout: Duration::from_millis(timeout_ms.max(10)),
            max_queue: size(number(&format!("{prefix}_MAX_QUEUE_SIZE"), 2048)?),
            max_batch: size(number(&format!("{prefix}_MAX_EXPORT_BATCH_SIZE"), 512)?),
            schedule_delay: Duration::from_millis(number(
                &format!("{prefix}_SCHEDULE_DELAY"),
                signal.default_schedule_delay_ms(),
            )?),
        }))
    }
}

/// A base endpoint made into the signal's URL: HTTP appends `/v1/{signal}` (replacing a
/// `/v1/metrics` a user gave for the metrics flag); gRPC uses the base as is.
fn signal_url(base: &str, signal: Signal, protocol: OtlpProtocol) -> String {
    let base = base.trim().trim_end_matches('/');
    if protocol == OtlpProtocol::Grpc {
        return base.to_owned();
    }
    let base = base.strip_suffix("/v1/metrics").unwrap_or(base);
    let path = format!("/v1/{}", signal.lower());
    if base.ends_with(&path) {
        base.to_owned()
    } else {
        format!("{base}{path}")
    }
}

#[cfg(test)]
mod tests;
