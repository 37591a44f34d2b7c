//! Observable instruments, read each time metrics are collected (by the OTLP reader or a
//! `/metrics` scrape), never on the request path:
//!
//! - `spillway.breaker.state` — per pool and backend, 1 for the current state and 0 for the
//!   other two, from the applied routes' breakers;
//! - `spillway.config.version` — the applied snapshot version;
//! - `spillway.quota.limit_tokens` — the configured token limits per quota window, from the
//!   snapshot's quotas;
//! - `spillway.quota.remaining_tokens` — what the limiter reports through its
//!   [`QuotaSource`];
//! - `spillway.telemetry.records_lost` and `spillway.telemetry.exports` — telemetry's own
//!   health;
//! - `spillway.audit.records` — audit records written, dropped (queue full or no writer)
//!   and failed.

use std::sync::atomic::Ordering;
use std::sync::{PoisonError, Weak};
use std::time::Instant;

use opentelemetry::KeyValue;
use opentelemetry::metrics::Meter;
use spillway_crds::snapshot::{QuotaConfig, QuotaPeriod};

use super::Inner;
use super::semconv::{self, attr};

/// One quota window of one app, as the limiter sees it now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaLevel {
    /// The app (`spillway.app_id`; apps beyond the label maximum are not reported).
    pub app_id: String,
    /// The `TokenQuota` name.
    pub quota: String,
    /// `minute`, `hour`, `day`, `week` or `month`.
    pub window: &'static str,
    /// Tokens left in the current window; for a money budget, nanos (billionths of its
    /// currency) left.
    pub remaining_tokens: u64,
    /// The currency of a money budget's level; `None` for a token window.
    pub currency: Option<String>,
}

/// Where quota levels come from: implemented by the limiter, installed with
/// [`Telemetry::set_quota_source`](super::Telemetry::set_quota_source).
pub trait QuotaSource: Send + Sync + std::fmt::Debug {
    /// Appends the current level of every quota window the limiter tracks.
    fn quota_levels(&self, out: &mut Vec<QuotaLevel>);
}

/// The window name of a calendar period.
pub fn window_name(period: QuotaPeriod) -> &'static str {
    match period {
        QuotaPeriod::Hourly => "hour",
        QuotaPeriod::Daily => "day",
        QuotaPeriod::Weekly => "week",
        QuotaPeriod::Monthly => "month",
    }
}

/// Registers every observable instrument; callbacks hold `telemetry` weakly.
pub fn register(meter: &Meter, telemetry: Weak<Inner>) {
    let t = telemetry.clone();
    meter
        .u64_observable_gauge(semconv::BREAKER_STATE)
        .with_description("1 for the backend's current circuit-breaker state, 0 for the others.")
        .with_callback(move |observer| {
            let Some(inner) = t.upgrade() else { return };
            inner
                .gateway
                .breakers(Instant::now(), &mut |pool, backend, current| {
                    for state in ["closed", "open", "half_open"] {
                        let attributes = [
                            KeyValue::new(attr::POOL, pool.to_owned()),
                            KeyValue::new(attr::BACKEND, backend.to_owned()),
                            KeyValue::new(attr::BREAKER_STATE, state),
                        ];
                        observer.observe(u64::from(state == current.as_str()), &attributes);
                    }
                });
        })
        .build();
    let t = telemetry.clone();
    meter
        .u64_observable_gauge(semconv::CONFIG_VERSION)
        .with_description("The configuration snapshot version applied.")
        .with_callback(move |observer| {
            let Some(inner) = t.upgrade() else { return };
            if let Some(snapshot) = inner.gateway.snapshot() {
                observer.observe(snapshot.version, &[]);
            }
        })
        .build();
    register_quotas(meter, telemetry.clone());
    register_budgets(meter, telemetry.clone());
    register_provisioned(meter, telemetry.clone());
    register_health(meter, telemetry);
}

fn register_quotas(meter: &Meter, telemetry: Weak<Inner>) {
    let t = telemetry.clone();
    meter
        .u64_observable_gauge(semconv::QUOTA_LIMIT)
        .with_unit("{token}")
        .with_description("Configured token limit per quota window (`*` = the default quota).")
        .with_callback(move |observer| {
            let Some(inner) = t.upgrade() else { return };
            let Some(snapshot) = inner.gateway.snapshot() else {
                return;
            };
            for quota in &snapshot.quotas {
                for (window, tokens) in limits(quota) {
                    let app = quota.app_id.as_deref().unwrap_or("*");
                    let attributes = [
                        KeyValue::new(attr::APP_ID, inner.apps.label(app)),
                        KeyValue::new(attr::QUOTA, quota.name.clone()),
                        KeyValue::new(attr::QUOTA_WINDOW, window),
                    ];
                    observer.observe(tokens, &attributes);
                }
            }
        })
        .build();
    meter
        .u64_observable_gauge(semconv::QUOTA_REMAINING)
        .with_unit("{token}")
        .with_description("Tokens left in the current quota window, as the limiter sees it.")
        .with_callback(move |observer| {
            let Some(inner) = telemetry.upgrade() else {
                return;
            };
            for level in admitted_levels(&inner) {
                if level.currency.is_some() {
                    continue;
                }
                let attributes = [
                    KeyValue::new(attr::APP_ID, level.app_id),
                    KeyValue::new(attr::QUOTA, level.quota),
                    KeyValue::new(attr::QUOTA_WINDOW, level.window),
                ];
                observer.observe(level.remaining_tokens, &attributes);
            }
        })
        .build();
}

/// The limiter's current levels of the apps that have their own label (the others are not
/// reported), read when metrics are collected.
fn admitted_levels(inner: &Inner) -> Vec<QuotaLevel> {
    let source = inner
        .quota_source
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let Some(source) = source else {
        return Vec::new();
    };
    let mut levels = Vec::new();
    source.quota_levels(&mut levels);
    levels.retain(|level| inner.apps.is_admitted(&level.app_id));
    levels
}

/// `spillway.provisioned.cost_per_hour`: what the current hour of each provisioned backend
/// costs, from the applied configuration.
fn register_provisioned(meter: &Meter, telemetry: Weak<Inner>) {
    meter
        .u64_observable_gauge(semconv::PROVISIONED_COST_PER_HOUR)
        .with_unit("{micro_currency_unit}")
        .with_description(
            "The configured cost of the current hour of each provisioned (PTU) backend, in millionths of spillway.cost.currency.",
        )
        .with_callback(move |observer| {
            let Some(inner) = telemetry.upgrade() else {
                return;
            };
            let Some(snapshot) = inner.gateway.snapshot() else {
                return;
            };
            let now = crate::calendar::unix_ms(std::time::SystemTime::now());
            for pool in &snapshot.pools {
                for backend in &pool.backends {
                    let Some(pricing) = &backend.pricing else {
                        continue;
                    };
                    let Some(cost) = &pricing.provisioned else {
                        continue;
                    };
                    let attributes = [
                        KeyValue::new(attr::POOL, pool.name.clone()),
                        KeyValue::new(attr::BACKEND, backend.name.clone()),
                        KeyValue::new(attr::COST_CURRENCY, pricing.currency.clone()),
                    ];
                    observer.observe(
                        crate::cost::provisioned::hourly_micros(cost, now),
                        &attributes,
                    );
                }
            }
        })
        .build();
}

/// `spillway.budget.remaining`: money left in each budget's current window.
fn register_budgets(meter: &Meter, telemetry: Weak<Inner>) {
    meter
        .u64_observable_gauge(semconv::BUDGET_REMAINING)
        .with_unit("{micro_currency_unit}")
        .with_description(
            "Money left in the current window of each TokenQuota budget, in millionths of spillway.cost.currency, as the limiter sees it.",
        )
        .with_callback(move |observer| {
            let Some(inner) = telemetry.upgrade() else {
                return;
            };
            for level in admitted_levels(&inner) {
                let Some(currency) = level.currency else {
                    continue;
                };
                let attributes = [
                    KeyValue::new(attr::APP_ID, level.app_id),
                    KeyValue::new(attr::QUOTA, level.quota),
                    KeyValue::new(attr::QUOTA_WINDOW, level.window),
                    KeyValue::new(attr::COST_CURRENCY, currency),
                ];
                observer.observe(level.remaining_tokens / 1000, &attributes);
            }
        })
        .build();
}

/// Every token window of a quota: per minute, then the calendar ones.
fn limits(quota: &QuotaConfig) -> impl Iterator<Item = (&'static str, u64)> + '_ {
    quota
        .tokens_per_minute
        .map(|tokens| ("minute", tokens))
        .into_iter()
        .chain(
            quota
                .calendar
                .iter()
                .map(|c| (window_name(c.period), c.tokens)),
        )
}

fn register_health(meter: &Meter, telemetry: Weak<Inner>) {
    let t = telemetry.clone();
    let audit = telemetry.clone();
    meter
        .u64_observable_counter(semconv::RECORDS_LOST)
        .with_unit("{record}")
        .with_description("Usage records telemetry missed because it fell behind.")
        .with_callback(move |observer| {
            if let Some(inner) = t.upgrade() {
                observer.observe(inner.lost.load(Ordering::Relaxed), &[]);
            }
        })
        .build();
    meter
        .u64_observable_counter(semconv::EXPORTS)
        .with_unit("{export}")
        .with_description("OTLP metric exports by result (`success`, `failure`).")
        .with_callback(move |observer| {
            let Some(inner) = telemetry.upgrade() else {
                return;
            };
            let stats = &inner.exports;
            for (result, count) in [
                ("success", stats.succeeded.load(Ordering::Relaxed)),
                ("failure", stats.failed.load(Ordering::Relaxed)),
            ] {
                observer.observe(count, &[KeyValue::new(attr::EXPORT_RESULT, result)]);
            }
        })
        .build();
    meter
        .u64_observable_counter(semconv::AUDIT_RECORDS)
        .with_unit("{record}")
        .with_description(
            "Audit records by result: `written`, `dropped` (queue full or no --audit-log), `failed`.",
        )
        .with_callback(move |observer| {
            let Some(inner) = audit.upgrade() else {
                return;
            };
            let (written, dropped, failed) = inner.gateway.audit_counts();
            if written + dropped + failed == 0 {
                return;
            }
            for (result, count) in [("written", written), ("dropped", dropped), ("failed", failed)] {
                observer.observe(count, &[KeyValue::new(attr::EXPORT_RESULT, result)]);
            }
        })
        .build();
}
