//! `spillway.cost`: money per app, pool, backend, model, currency and kind, exact.
//!
//! Input: each record's [`CallCost`](crate::cost::CallCost) (metered calls are counted at once;
//! calls served by a provisioned backend add their weight to the
//! [`ProvisionedLedger`]), the provisioned backends of the applied snapshot, and the time.
//! Output: additions to the `spillway.cost` counter in millionths of the currency. A metered
//! series carries its sub-millionth remainder to its next call, so the counter always equals
//! the exact sum rounded down; a provisioned backend's hour is added when it ends, shares
//! (`kind=provisioned`, per app) plus `kind=unallocated` equal the hour's cost exactly.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use opentelemetry::metrics::{Counter, Meter};
use opentelemetry::{KeyValue, StringValue};
use spillway_crds::Snapshot;

use super::semconv::{self, attr};
use crate::cost::provisioned::{HourAllocation, ProvisionedBackend, ProvisionedLedger, ShareKey};
use crate::cost::{CostKind, Picos};
use crate::usage::UsageRecord;

/// One `spillway.cost` series.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Series {
    app: Option<String>,
    pool: String,
    backend: String,
    model: Option<String>,
    namespace: Option<String>,
    currency: String,
    kind: CostKind,
}

impl Series {
    fn attributes(&self) -> Vec<KeyValue> {
        let mut out = vec![
            KeyValue::new(attr::POOL, self.pool.clone()),
            KeyValue::new(attr::BACKEND, self.backend.clone()),
            KeyValue::new(attr::COST_CURRENCY, self.currency.clone()),
            KeyValue::new(attr::COST_KIND, self.kind.as_str()),
        ];
        if let Some(app) = &self.app {
            out.push(KeyValue::new(attr::APP_ID, app.clone()));
        }
        if let Some(model) = &self.model {
            out.push(KeyValue::new(attr::REQUEST_MODEL, model.clone()));
        }
        if let Some(namespace) = &self.namespace {
            out.push(KeyValue::new(attr::K8S_NAMESPACE, namespace.clone()));
        }
        out
    }
}

#[derive(Debug, Default)]
struct State {
    /// Sub-millionth picos carried per metered series.
    remainders: HashMap<Series, u128>,
    ledger: ProvisionedLedger,
    /// The snapshot version the ledger follows.
    version: Option<u64>,
}

/// The cost counter and the state behind it.
#[derive(Debug)]
pub(super) struct Spend {
    counter: Counter<u64>,
    /// `spillway.provisioned.weight`: calls on provisioned backends at list price.
    weight: Counter<u64>,
    state: Mutex<State>,
}

impl Spend {
    /// The counter on `meter`.
    pub(super) fn new(meter: &Meter) -> Self {
        Self {
            counter: meter
                .u64_counter(semconv::COST)
                .with_unit("{micro_currency_unit}")
                .with_description(
                    "Money in millionths of spillway.cost.currency: metered calls, shares of provisioned backends' hourly cost (provisioned) and what no app used (unallocated).",
                )
                .build(),
            weight: meter
                .u64_counter(semconv::PROVISIONED_WEIGHT)
                .with_unit("{micro_currency_unit}")
                .with_description(
                    "Calls served by provisioned backends, priced at the backend's rates (millionths): each app's share of this, fleet-wide, is its share of the backend's hourly cost.",
                )
                .build(),
            state: Mutex::default(),
        }
    }

    /// Follows the provisioned backends of `snapshot` from `now_ms` and adds the hours that
    /// ended.
    pub(super) fn configure(&self, snapshot: Option<&Snapshot>, now_ms: i64) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let version = snapshot.map(|s| s.version);
        let closed = if state.version == version {
            state.ledger.close_due(now_ms)
        } else {
            state.version = version;
            state.ledger.configure(provisioned(snapshot), now_ms)
        };
        drop(state);
        self.add_hours(closed);
    }

    /// Counts `record`'s cost (`app` and `model` are its bounded labels) at `now_ms`.
    pub(super) fn record(
        &self,
        record: &UsageRecord,
        app: &StringValue,
        model: Option<&StringValue>,
        now_ms: i64,
    ) {
        let (Some(cost), Some(backend)) = (&record.cost, &record.backend) else {
            return;
        };
        let series = Series {
            app: Some(app.as_str().to_owned()),
            pool: record.pool.clone(),
            backend: backend.clone(),
            model: model.map(|m| m.as_str().to_owned()),
            namespace: record.namespace.clone(),
            currency: cost.currency.clone(),
            kind: cost.kind,
        };
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let carried = state.remainders.entry(series.clone()).or_default();
        let (micros, left) = Picos(cost.amount.0 + *carried).split_micros();
        *carried = left;
        match cost.kind {
            CostKind::Metered => {
                drop(state);
                if micros > 0 {
                    self.counter.add(micros, &series.attributes());
                }
            }
            CostKind::Provisioned | CostKind::Unallocated => {
                if micros > 0 {
                    let mut attributes = series.attributes();
                    attributes.retain(|kv| kv.key.as_str() != attr::COST_KIND);
                    self.weight.add(micros, &attributes);
                }
                let share = ShareKey {
                    app: app.as_str().to_owned(),
                    model: model.map_or_else(String::new, |m| m.as_str().to_owned()),
                    namespace: record.namespace.clone(),
                };
                let key = (record.pool.clone(), backend.clone());
                let closed = state.ledger.add(&key, share, cost.amount, now_ms);
                drop(state);
                self.add_hours(closed);
            }
        }
    }

    /// Adds the open hours' shares so far (shutdown).
    pub(super) fn close_all(&self, now_ms: i64) {
        let closed = self
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .ledger
            .close_all(now_ms);
        self.add_hours(closed);
    }

    fn add_hours(&self, hours: Vec<HourAllocation>) {
        for hour in hours {
            let (pool, backend) = hour.backend;
            let series = |kind, share: Option<ShareKey>| {
                let (app, model, namespace) = match share {
                    Some(s) => (
                        Some(s.app),
                        Some(s.model).filter(|m| !m.is_empty()),
                        s.namespace,
                    ),
                    None => (None, None, None),
                };
                Series {
                    app,
                    pool: pool.clone(),
                    backend: backend.clone(),
                    model,
                    namespace,
                    currency: hour.currency.clone(),
                    kind,
                }
            };
            for (share, micros) in hour.shares {
                if micros > 0 {
                    let s = series(CostKind::Provisioned, Some(share));
                    self.counter.add(micros, &s.attributes());
                }
            }
            if hour.unallocated_micros > 0 {
                let s = series(CostKind::Unallocated, None);
                self.counter.add(hour.unallocated_micros, &s.attributes());
            }
        }
    }
}

/// The provisioned backends of `snapshot`.
fn provisioned(snapshot: Option<&Snapshot>) -> Vec<((String, String), ProvisionedBackend)> {
    let Some(snapshot) = snapshot else {
        return Vec::new();
    };
    snapshot
        .pools
        .iter()
        .flat_map(|pool| {
            pool.backends.iter().filter_map(|backend| {
                let pricing = backend.pricing.as_ref()?;
                let cost = pricing.provisioned.clone()?;
                Some((
                    (pool.name.clone(), backend.name.clone()),
                    ProvisionedBackend {
                        currency: pricing.currency.clone(),
                        cost,
                    },
                ))
            })
        })
        .collect()
}
