//! Prometheus text exposition (format 0.0.4) of the SDK's aggregated metrics, for the admin
//! port's `/metrics`.
//!
//! Input: [`ResourceMetrics`] collected from the meter provider's pull reader (cumulative
//! temporality, the same instruments and aggregation the OTLP exporter sends). Output: one
//! text document. Names follow the OpenTelemetry ↔ Prometheus compatibility rules:
//! characters other than `[a-zA-Z0-9_:]` become `_`, unit `s` adds `_seconds` (`By`
//! `_bytes`, `1` `_ratio`), `{…}` annotations add nothing, monotonic sums are counters with
//! `_total`; histograms give `_bucket{le}` (cumulative, ending in `+Inf`), `_sum` and
//! `_count`. Resource attributes appear once, on `target_info`. A family is written only
//! when it has samples.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::data::{
    AggregatedMetrics, Gauge, Histogram, Metric, MetricData, ResourceMetrics, Sum,
};

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders `metrics` as Prometheus text.
pub fn render(metrics: &ResourceMetrics) -> String {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for scope in metrics.scope_metrics() {
        for metric in scope.metrics() {
            add_metric(&mut families, metric);
        }
    }
    let mut out = String::with_capacity(4096);
    write_target_info(&mut out, metrics.resource());
    for (name, family) in &families {
        if family.samples.is_empty() {
            continue;
        }
        let _ = writeln!(out, "# HELP {name} {}", escape_help(&family.help));
        let _ = writeln!(out, "# TYPE {name} {}", family.kind);
        out.push_str(&family.samples);
    }
    out
}

/// One metric family: its type, help and rendered sample lines.
struct Family {
    kind: &'static str,
    help: String,
    samples: String,
}

fn add_metric(families: &mut BTreeMap<String, Family>, metric: &Metric) {
    let base = metric_name(metric.name(), metric.unit());
    match metric.data() {
        AggregatedMetrics::F64(data) => add_data(families, metric, &base, data, |v| v),
        #[allow(clippy::cast_precision_loss)]
        AggregatedMetrics::U64(data) => add_data(families, metric, &base, data, |v| v as f64),
        #[allow(clippy::cast_precision_loss)]
        AggregatedMetrics::I64(data) => add_data(families, metric, &base, data, |v| v as f64),
    }
}

fn add_data<T: Copy>(
    families: &mut BTreeMap<String, Family>,
    metric: &Metric,
    base: &str,
    data: &MetricData<T>,
    to_f64: impl Fn(T) -> f64,
) {
    let (name, kind) = match data {
        MetricData::Sum(sum) if sum.is_monotonic() => (format!("{base}_total"), "counter"),
        MetricData::Sum(_) | MetricData::Gauge(_) => (base.to_owned(), "gauge"),
        MetricData::Histogram(_) => (base.to_owned(), "histogram"),
        // Never configured; not representable in the classic text format.
        MetricData::ExponentialHistogram(_) => return,
    };
    let family = families.entry(name.clone()).or_insert_with(|| Family {
        kind,
        help: metric.description().to_owned(),
        samples: String::new(),
    });
    if family.kind != kind {
        tracing::warn!(metric = %name, "two instruments map to one Prometheus name; one is skipped");
        return;
    }
    match data {
        MetricData::Sum(sum) => write_sum(&mut family.samples, &name, sum, to_f64),
        MetricData::Gauge(gauge) => write_gauge(&mut family.samples, &name, gauge, to_f64),
        MetricData::Histogram(h) => write_histogram(&mut family.samples, &name, h, to_f64),
        MetricData::ExponentialHistogram(_) => {}
    }
}

fn write_sum<T: Copy>(out: &mut String, name: &str, sum: &Sum<T>, to_f64: impl Fn(T) -> f64) {
    for point in sum.data_points() {
        write_sample(out, name, point.attributes(), None, to_f64(point.value()));
    }
}

fn write_gauge<T: Copy>(out: &mut String, name: &str, gauge: &Gauge<T>, to_f64: impl Fn(T) -> f64) {
    for point in gauge.data_points() {
        write_sample(out, name, point.attributes(), None, to_f64(point.value()));
    }
}

fn write_histogram<T: Copy>(
    out: &mut String,
    name: &str,
    histogram: &Histogram<T>,
    to_f64: impl Fn(T) -> f64,
) {
    let bucket = format!("{name}_bucket");
    for point in histogram.data_points() {
        let mut cumulative = 0u64;
        for (bound, count) in point.bounds().zip(point.bucket_counts()) {
            cumulative += count;
            let le = format_value(bound);
            write_sample(
                out,
                &bucket,
                point.attributes(),
                Some(&le),
                as_f64(cumulative),
            );
        }
        write_sample(
            out,
            &bucket,
            point.attributes(),
            Some("+Inf"),
            as_f64(point.count()),
        );
        let sum = to_f64(point.sum());
        write_sample(out, &format!("{name}_sum"), point.attributes(), None, sum);
        let count = as_f64(point.count());
        write_sample(
            out,
            &format!("{name}_count"),
            point.attributes(),
            None,
            count,
        );
    }
}

#[allow(clippy::cast_precision_loss)]
fn as_f64(value: u64) -> f64 {
    value as f64
}

fn write_sample<'a>(
    out: &mut String,
    name: &str,
    attributes: impl Iterator<Item = &'a KeyValue>,
    le: Option<&str>,
    value: f64,
) {
    out.push_str(name);
    let mut labels: BTreeMap<String, String> = BTreeMap::new();
    for kv in attributes {
        let key = label_name(kv.key.as_str());
        // Two keys that sanitize alike are joined with `;`, as the compatibility spec says.
        labels
            .entry(key)
            .and_modify(|v| {
                v.push(';');
                v.push_str(&kv.value.to_string());
            })
            .or_insert_with(|| kv.value.to_string());
    }
    if let Some(le) = le {
        labels.insert("le".to_owned(), le.to_owned());
    }
    if !labels.is_empty() {
        out.push('{');
        for (i, (key, value)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{key}=\"{}\"", escape_label_value(value));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {}", format_value(value));
}

fn write_target_info(out: &mut String, resource: &Resource) {
    if resource.is_empty() {
        return;
    }
    let attributes: Vec<KeyValue> = resource
        .iter()
        .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
        .collect();
    out.push_str("# HELP target_info Target metadata\n# TYPE target_info gauge\n");
    write_sample(out, "target_info", attributes.iter(), None, 1.0);
}

/// The Prometheus name of an instrument: sanitized, with the unit suffix.
pub fn metric_name(name: &str, unit: &str) -> String {
    let mut out = sanitize(name, true);
    let suffix = match unit {
        "s" => "seconds",
        "ms" => "milliseconds",
        "By" => "bytes",
        "1" => "ratio",
        _ => "",
    };
    if !suffix.is_empty() && !out.ends_with(suffix) {
        out.push('_');
        out.push_str(suffix);
    }
    out
}

/// The Prometheus name of an attribute key.
pub fn label_name(key: &str) -> String {
    sanitize(key, false)
}

fn sanitize(text: &str, allow_colon: bool) -> String {
    let mut out: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || (allow_colon && c == ':') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_label_value(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value == f64::INFINITY {
        "+Inf".to_owned()
    } else if value == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests;
