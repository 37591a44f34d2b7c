//! The fixed cost of provisioned (PTU) backends, shared out hour by hour between the apps
//! they served.
//!
//! The formula, for one backend and one UTC hour `h`:
//!
//! - `C(h)`: the backend's cost of the hour — `amount` for a price per hour; for a price per
//!   month, `amount / hours in that month` — times the fraction of the hour this gateway ran
//!   (a gateway started at 10:45 accounts for a quarter of 10:00–11:00), rounded down to a
//!   millionth.
//! - `w(a)`: the price-weighted tokens app `a` used there in `h`: each token type times the
//!   backend's rate for it (a backend without rates weighs every token the same).
//! - `share(a) = C(h) × w(a) / Σ w`, in millionths, rounded so the shares add up to `C(h)`
//!   exactly (largest remainder; ties go to the first key in order).
//! - `unallocated = C(h)` when no app used the backend in `h`, else 0.
//!
//! Input: weights per call ([`ProvisionedLedger::add`]), the provisioned backends of the
//! current configuration ([`ProvisionedLedger::configure`]) and the time. Output: an
//! [`HourAllocation`] per backend for each hour that has ended. Pure: the caller supplies
//! the time.

use std::collections::BTreeMap;

use spillway_crds::billing::{CostPeriod, ProvisionedCost};
use spillway_crds::v1alpha1::QuotaPeriod;

use super::Picos;
use crate::calendar;

const HOUR_MS: i64 = 3_600_000;

/// A provisioned backend: `(pool, backend)`.
pub type BackendKey = (String, String);

/// Who a share is charged to: app, requested model, namespace.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShareKey {
    /// The app.
    pub app: String,
    /// The model or deployment the app asked for.
    pub model: String,
    /// The app's namespace, when known.
    pub namespace: Option<String>,
}

/// One provisioned backend as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProvisionedBackend {
    /// The pricing's currency.
    pub currency: String,
    /// Its fixed cost.
    pub cost: ProvisionedCost,
}

/// The shares of one backend's cost for one hour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HourAllocation {
    /// The backend.
    pub backend: BackendKey,
    /// The currency.
    pub currency: String,
    /// Start of the hour, Unix milliseconds.
    pub hour_start_ms: i64,
    /// `C(h)` in millionths.
    pub cost_micros: u64,
    /// Each app's share, in millionths; they add up to `cost_micros` unless nobody used the
    /// backend.
    pub shares: Vec<(ShareKey, u64)>,
    /// What no app used, in millionths.
    pub unallocated_micros: u64,
}

#[derive(Clone, Debug)]
struct OpenHour {
    start_ms: i64,
    /// Where this gateway's view of the hour starts (start-up or configuration time).
    from_ms: i64,
    config: ProvisionedBackend,
    weights: BTreeMap<ShareKey, Picos>,
}

/// The open hour of every provisioned backend.
#[derive(Clone, Debug, Default)]
pub struct ProvisionedLedger {
    open: BTreeMap<BackendKey, OpenHour>,
}

impl ProvisionedLedger {
    /// Makes the ledger follow `backends` from `now_ms`: a new one opens its hour now, one
    /// that is gone closes its hour now (its part of the hour so far is shared out); the price
    /// in force when an hour closes applies to the whole hour.
    pub fn configure(
        &mut self,
        backends: impl IntoIterator<Item = (BackendKey, ProvisionedBackend)>,
        now_ms: i64,
    ) -> Vec<HourAllocation> {
        let mut closed = self.close_due(now_ms);
        let wanted: BTreeMap<_, _> = backends.into_iter().collect();
        let gone: Vec<BackendKey> = self
            .open
            .keys()
            .filter(|key| !wanted.contains_key(*key))
            .cloned()
            .collect();
        for key in gone {
            if let Some(hour) = self.open.remove(&key) {
                closed.push(allocate(key, hour, now_ms));
            }
        }
        for (key, config) in wanted {
            match self.open.get_mut(&key) {
                Some(hour) => hour.config = config,
                None => {
                    let hour = OpenHour {
                        start_ms: hour_start(now_ms),
                        from_ms: now_ms,
                        config,
                        weights: BTreeMap::new(),
                    };
                    self.open.insert(key, hour);
                }
            }
        }
        closed
    }

    /// Adds a call's weight, served at `at_ms`, and returns the hours that ended before it.
    /// A backend that is not (or no longer) provisioned is ignored.
    pub fn add(
        &mut self,
        backend: &BackendKey,
        share: ShareKey,
        weight: Picos,
        at_ms: i64,
    ) -> Vec<HourAllocation> {
        let closed = self.close_due(at_ms);
        if let Some(hour) = self.open.get_mut(backend) {
            *hour.weights.entry(share).or_default() += weight;
        }
        closed
    }

    /// Closes every hour that ended by `now_ms` and opens the next; an hour with no traffic
    /// in between is closed too (all unallocated), so idle capacity is never lost.
    pub fn close_due(&mut self, now_ms: i64) -> Vec<HourAllocation> {
        let mut closed = Vec::new();
        for (key, hour) in &mut self.open {
            while hour.start_ms + HOUR_MS <= now_ms {
                let end = hour.start_ms + HOUR_MS;
                let next = OpenHour {
                    start_ms: end,
                    from_ms: end,
                    config: hour.config.clone(),
                    weights: BTreeMap::new(),
                };
                let done = std::mem::replace(hour, next);
                closed.push(allocate(key.clone(), done, end));
            }
        }
        closed
    }

    /// Closes every open hour at `now_ms` (shutdown): each backend's part of the hour so far
    /// is shared out.
    pub fn close_all(&mut self, now_ms: i64) -> Vec<HourAllocation> {
        let mut closed = self.close_due(now_ms);
        for (key, hour) in std::mem::take(&mut self.open) {
            closed.push(allocate(key, hour, now_ms));
        }
        closed
    }
}

/// The cost of the whole hour containing `at_ms`, in millionths (rounded down).
pub fn hourly_micros(cost: &ProvisionedCost, at_ms: i64) -> u64 {
    let start = hour_start(at_ms);
    hour_cost(cost, start, start, start + HOUR_MS)
        .split_micros()
        .0
}

fn hour_start(ms: i64) -> i64 {
    ms.div_euclid(HOUR_MS) * HOUR_MS
}

/// `C(h)` for the part `[from_ms, to_ms)` of the hour starting at `start_ms`, in picos.
fn hour_cost(cost: &ProvisionedCost, start_ms: i64, from_ms: i64, to_ms: i64) -> Picos {
    let amount = Picos::from_micros(cost.amount).0;
    let whole_hour = match cost.per {
        CostPeriod::Hour => amount,
        CostPeriod::Month => {
            let month = calendar::window(QuotaPeriod::Monthly, start_ms);
            let hours = u128::try_from((month.end_ms - month.start_ms) / HOUR_MS).unwrap_or(1);
            amount / hours.max(1)
        }
    };
    let covered = u128::try_from((to_ms - from_ms).clamp(0, HOUR_MS)).unwrap_or(0);
    Picos(whole_hour * covered / HOUR_MS as u128)
}

fn allocate(backend: BackendKey, hour: OpenHour, to_ms: i64) -> HourAllocation {
    let cost = hour_cost(&hour.config.cost, hour.start_ms, hour.from_ms, to_ms);
    let (cost_micros, _) = cost.split_micros();
    let total: u128 = hour.weights.values().map(|w| w.0).sum();
    let (shares, unallocated_micros) = if total == 0 {
        (Vec::new(), cost_micros)
    } else {
        (share_out(cost_micros, &hour.weights, total), 0)
    };
    HourAllocation {
        backend,
        currency: hour.config.currency,
        hour_start_ms: hour.start_ms,
        cost_micros,
        shares,
        unallocated_micros,
    }
}

/// `cost × w / total` for each weight, by largest remainder so the shares sum to `cost`.
fn share_out(cost: u64, weights: &BTreeMap<ShareKey, Picos>, total: u128) -> Vec<(ShareKey, u64)> {
    let mut shares: Vec<(ShareKey, u64, u128)> = weights
        .iter()
        .map(|(key, weight)| {
            let exact = u128::from(cost) * weight.0;
            let floor = u64::try_from(exact / total).unwrap_or(u64::MAX);
            (key.clone(), floor, exact % total)
        })
        .collect();
    let given: u64 = shares.iter().map(|(_, floor, _)| floor).sum();
    let mut left = cost.saturating_sub(given);
    let mut order: Vec<usize> = (0..shares.len()).collect();
    order.sort_by(|&a, &b| shares[b].2.cmp(&shares[a].2).then(a.cmp(&b)));
    for index in order {
        if left == 0 {
            break;
        }
        shares[index].1 += 1;
        left -= 1;
    }
    shares
        .into_iter()
        .map(|(key, share, _)| (key, share))
        .collect()
}

#[cfg(test)]
mod tests;
