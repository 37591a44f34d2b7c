//! Telemetry settings: the `spillway run` flags and the standard OpenTelemetry environment
//! variables, resolved into one [`TelemetrySettings`].
//!
//! Precedence (highest first): flags, `OTEL_EXPORTER_OTLP_METRICS_*`, `OTEL_EXPORTER_OTLP_*`,
//! defaults. OTLP export is on when an endpoint is given (flag or either endpoint variable)
//! or `OTEL_METRICS_EXPORTER=otlp`; it is off with `OTEL_METRICS_EXPORTER=none` or
//! `OTEL_SDK_DISABLED=true` unless the flag is given. `/metrics` on the admin port always
//! works. Headers (`OTEL_EXPORTER_OTLP_[METRICS_]HEADERS`) and the resource
//! (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`) are read by the OpenTelemetry crates.
//! `OTEL_SEMCONV_STABILITY_OPT_IN` chooses the names of the GenAI metrics
//! ([`GenAiConventions`]).

use std::time::Duration;

/// Telemetry flags of `spillway run`.
#[derive(Clone, Debug, clap::Args)]
pub struct TelemetryArgs {
    /// OTLP endpoint for metrics, a base URL as in OTEL_EXPORTER_OTLP_ENDPOINT (`/v1/metrics`
    /// is appended for HTTP unless the path already ends with it). Default: the
    /// OTEL_EXPORTER_OTLP_METRICS_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT variables; without
    /// any, metrics are only served on the admin port's /metrics.
    #[arg(long)]
    pub otlp_endpoint: Option<String>,
    /// OTLP protocol: `http/protobuf` or `grpc`. Default: OTEL_EXPORTER_OTLP_METRICS_PROTOCOL,
    /// OTEL_EXPORTER_OTLP_PROTOCOL, else `http/protobuf`.
    #[arg(long)]
    pub otlp_protocol: Option<String>,
    /// Time between OTLP exports (e.g. `30s`). Default: OTEL_METRIC_EXPORT_INTERVAL
    /// (milliseconds), else 60s.
    #[arg(long, value_parser = parse_duration)]
    pub otlp_export_interval: Option<Duration>,
    /// Distinct appIds that get their own metric label; later ones are counted as `other`.
    #[arg(long, default_value_t = 1000, env = "SPILLWAY_METRICS_MAX_APPS")]
    pub metrics_max_apps: usize,
    /// Series per instrument before the OpenTelemetry SDK folds new ones into one overflow
    /// series (`otel_metric_overflow="true"`).
    #[arg(long, default_value_t = 20_000, env = "SPILLWAY_METRICS_MAX_SERIES")]
    pub metrics_max_series: usize,
}

impl Default for TelemetryArgs {
    /// No flags given: everything from the `OTEL_*` variables, 1000 apps, 20 000 series.
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            otlp_protocol: None,
            otlp_export_interval: None,
            metrics_max_apps: 1000,
            metrics_max_series: 20_000,
        }
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    spillway_crds::duration::parse(text)
}

/// The OTLP transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// OTLP/HTTP with protobuf bodies.
    HttpProtobuf,
    /// OTLP/gRPC (only when built with the `otlp-grpc` feature).
    Grpc,
}

/// Where and how OTLP metrics are exported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtlpSettings {
    /// The full URL metrics are sent to (HTTP: including `/v1/metrics`).
    pub endpoint: String,
    /// Transport.
    pub protocol: OtlpProtocol,
    /// Time between exports.
    pub interval: Duration,
    /// Time one export (with its retries) may take.
    pub timeout: Duration,
}

/// Which version of the GenAI semantic conventions names the client-side `gen_ai.*` metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GenAiConventions {
    /// The names up to semantic conventions v1.41 (`gen_ai.client.token.usage` with
    /// `gen_ai.token.type`, `gen_ai.client.operation.duration`): the default.
    #[default]
    Legacy,
    /// The latest, still experimental names (`gen_ai.client.inference.usage.*` counters by
    /// `gen_ai.token.modality`, `gen_ai.client.inference.operation.*` histograms,
    /// `gen_ai.client.inference.duration`, `gen_ai.client.embeddings.*`), chosen with
    /// `OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental`.
    LatestExperimental,
}

impl GenAiConventions {
    /// The opt-in value that selects [`LatestExperimental`](Self::LatestExperimental).
    pub const OPT_IN: &str = "gen_ai_latest_experimental";

    /// Reads the value of `OTEL_SEMCONV_STABILITY_OPT_IN`: a comma-separated list of opt-ins
    /// (blanks around each ignored, case ignored); [`OPT_IN`](Self::OPT_IN) among them
    /// selects the latest names. Other entries (`http`, `database`, …) concern other
    /// conventions and are ignored here.
    pub fn from_opt_in(value: Option<&str>) -> Self {
        let opted_in = value.is_some_and(|list| {
            list.split(',')
                .any(|entry| entry.trim().eq_ignore_ascii_case(Self::OPT_IN))
        });
        if opted_in {
            Self::LatestExperimental
        } else {
            Self::Legacy
        }
    }
}

/// Everything telemetry needs at start-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TelemetrySettings {
    /// OTLP export, when enabled.
    pub otlp: Option<OtlpSettings>,
    /// Distinct appIds with their own label.
    pub max_apps: usize,
    /// Series per instrument before overflow.
    pub max_series: usize,
    /// The names of the client-side GenAI metrics.
    pub genai: GenAiConventions,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            otlp: None,
            max_apps: 1000,
            max_series: 20_000,
            genai: GenAiConventions::default(),
        }
    }
}

impl TelemetrySettings {
    /// Resolves `args` against the process environment.
    ///
    /// # Errors
    /// An unsupported protocol or an unparsable interval/timeout variable.
    pub fn from_env(args: &TelemetryArgs) -> Result<Self, String> {
        Self::resolve(args, |name| std::env::var(name).ok())
    }

    /// Resolves `args` against the variables `env` returns.
    ///
    /// # Errors
    /// An unsupported protocol or an unparsable interval/timeout variable.
    pub fn resolve(
        args: &TelemetryArgs,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        Ok(Self {
            otlp: resolve_otlp(args, &var)?,
            max_apps: args.metrics_max_apps,
            max_series: args.metrics_max_series.max(1),
            genai: GenAiConventions::from_opt_in(var("OTEL_SEMCONV_STABILITY_OPT_IN").as_deref()),
        })
    }
}

fn resolve_otlp(
    args: &TelemetryArgs,
    var: &impl Fn(&str) -> Option<String>,
) -> Result<Option<OtlpSettings>, String> {
    let protocol = match args
        .otlp_protocol
        .clone()
        .or_else(|| var("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"))
        .or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .as_deref()
        .map(str::trim)
    {
        None | Some("http/protobuf") => OtlpProtocol::HttpProtobuf,
        Some("grpc") => OtlpProtocol::Grpc,
        Some(other) => {
            return Err(format!(
                "OTLP protocol `{other}` is not supported; use `http/protobuf` or `grpc`"
            ));
        }
    };
    let exporter = var("OTEL_METRICS_EXPORTER").map(|v| v.trim().to_ascii_lowercase());
    let disabled = var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
        || exporter.as_deref() == Some("none");
    let endpoint = if let Some(base) = &args.otlp_endpoint {
        base_endpoint(base, protocol)
    } else if disabled {
        return Ok(None);
    } else if let Some(full) = var("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") {
        full.trim().to_owned()
    } else if let Some(base) = var("OTEL_EXPORTER_OTLP_ENDPOINT") {
        base_endpoint(&base, protocol)
    } else if exporter.as_deref() == Some("otlp") {
        match protocol {
            OtlpProtocol::HttpProtobuf => "http://localhost:4318/v1/metrics".to_owned(),
            OtlpProtocol::Grpc => "http://localhost:4317".to_owned(),
        }
    } else {
        return Ok(None);
    };
    let interval = match args.otlp_export_interval {
        Some(interval) => interval,
        None => {
            millis_var(var, &["OTEL_METRIC_EXPORT_INTERVAL"])?.unwrap_or(Duration::from_secs(60))
        }
    };
    let timeout = millis_var(
        var,
        &[
            "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
        ],
    )?
    .unwrap_or(Duration::from_secs(10));
    Ok(Some(OtlpSettings {
        endpoint,
        protocol,
        interval: interval.max(Duration::from_millis(10)),
        timeout: timeout.max(Duration::from_millis(10)),
    }))
}

/// A base endpoint made into the metrics URL: HTTP appends `/v1/metrics`.
fn base_endpoint(base: &str, protocol: OtlpProtocol) -> String {
    let base = base.trim().trim_end_matches('/');
    match protocol {
        OtlpProtocol::HttpProtobuf if !base.ends_with("/v1/metrics") => {
            format!("{base}/v1/metrics")
        }
        _ => base.to_owned(),
    }
}

/// The first of `names` that is set, as milliseconds.
fn millis_var(
    var: &impl Fn(&str) -> Option<String>,
    names: &[&str],
) -> Result<Option<Duration>, String> {
    for name in names {
        if let Some(value) = var(name) {
            return value
                .trim()
                .parse::<u64>()
                .map(|ms| Some(Duration::from_millis(ms)))
                .map_err(|_| format!("{name}={value} is not a number of milliseconds"));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests;
