//! Counters kept in this process: per app, per quota, sharded, with idle eviction.
//!
//! Input: the app, the quotas applying to its call with the tokens to reserve for each, the
//! injected time (monotonic for buckets, Unix ms for calendar windows) and the [`Plan`] for
//! limits. Output: an admission with header values, or a [`Refusal`]. All state of one app
//! sits in one entry of one shard, so an admission checks every applicable limit and then
//! reserves in all of them under a single short lock — all or nothing, never held across an
//! `.await`.
//!
//! Limits are this sidecar's share (`limit × share`, at least 1). An entry is evicted when it
//! holds nothing a fresh one would not: no reservation in flight, every bucket full again and
//! no calendar window with usage still running. Each shard sweeps itself every
//! [`SWEEP_INTERVAL`] on the admission path (cost: one pass over the shard), so memory follows
//! the apps active within their windows with no background task.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::bucket::TokenBucket;
use super::outcome::Used;
use super::outcome::{HeaderTracker, LimitKind, RateHeaders, Refusal, Verdict};
use super::plan::{Plan, Quota, Scale, period_index};
use crate::calendar::{QuotaPeriod, WindowCounter, window};

/// How often a shard drops its idle entries.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(10);

const SHARDS: usize = 32;

/// The time of one operation.
#[derive(Clone, Copy, Debug)]
pub(super) struct Now {
    /// Monotonic, for buckets.
    pub instant: Instant,
    /// Unix milliseconds, for calendar windows.
    pub wall_ms: i64,
}

/// Tokens (and money) to reserve under one quota.
#[derive(Clone, Debug)]
pub(super) struct Demand<'a> {
    pub quota: &'a Quota,
    pub tokens: u64,
    /// Nanos to reserve in each of the quota's budgets, in their order.
    pub spend: Vec<u64>,
}

/// What one admission reserved under one quota, for the true-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Charge {
    /// The quota's key.
    pub key: u32,
    /// Tokens reserved.
    pub tokens: u64,
    /// Nanos reserved in each budget.
    pub spend: Vec<u64>,
}

/// Tokens left in one token window of one app's quota (see [`LocalStore::visit_levels`]).
#[derive(Clone, Copy, Debug)]
pub(super) struct WindowLevel<'a> {
    pub app: &'a str,
    pub quota: &'a Quota,
    /// The calendar period; `None` for the per-minute bucket.
    pub period: Option<QuotaPeriod>,
    pub remaining: u64,
    /// The currency of a money budget (`remaining` is then nanos).
    pub currency: Option<&'a str>,
}

/// Sizes of the local state, for metrics and the memory test.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LocalStats {
    /// Apps with state.
    pub apps: usize,
    /// Approximate bytes held by that state (tables, keys, counters).
    pub approx_bytes: usize,
}

#[derive(Debug)]
pub(super) struct LocalStore {
    shards: Box<[Mutex<Shard>]>,
    hasher: std::hash::RandomState,
}

#[derive(Debug, Default)]
struct Shard {
    apps: HashMap<Arc<str>, AppState>,
    next_sweep: Option<Instant>,
}

#[derive(Debug, Default)]
struct AppState {
    /// Reservations not yet settled or dropped; an entry with some is never evicted.
    in_flight: u32,
    quotas: Vec<QuotaState>,
}

#[derive(Debug)]
struct QuotaState {
    key: u32,
    tokens: TokenBucket,
    requests: TokenBucket,
    windows: [WindowCounter; 4],
    /// Nanos spent per budget, in the quota's budget order (empty without budgets).
    spend: Vec<WindowCounter>,
}

impl QuotaState {
    fn new(key: u32, now: Instant) -> Self {
        Self {
            key,
            tokens: TokenBucket::full(now),
            requests: TokenBucket::full(now),
            windows: [WindowCounter::default(); 4],
            spend: Vec::new(),
        }
    }

    /// The spend counter of budget `index`.
    fn spend(&mut self, index: usize) -> &mut WindowCounter {
        if self.spend.len() <= index {
            self.spend.resize(index + 1, WindowCounter::default());
        }
        &mut self.spend[index]
    }

    /// Whether the state differs from a fresh one at `now`.
    fn is_live(&mut self, now: Now, plan: &Plan) -> bool {
        let Some(quota) = plan.by_key(self.key) else {
            return false;
        };
        let tokens = quota
            .tokens(Scale::Share)
            .is_some_and(|limit| !self.tokens.is_full(now.instant, limit));
        let requests = quota
            .requests(Scale::Share)
            .is_some_and(|limit| !self.requests.is_full(now.instant, limit));
        tokens
            || requests
            || self.windows.iter().any(|w| w.is_live(now.wall_ms))
            || self.spend.iter().any(|w| w.is_live(now.wall_ms))
    }
}

impl AppState {
    fn slot(&mut self, key: u32, now: Instant) -> &mut QuotaState {
        let index = match self.quotas.iter().position(|q| q.key == key) {
            Some(index) => index,
            None => {
                // Most apps have one quota: no spare capacity (a Vec would reserve four).
                self.quotas.reserve_exact(1);
                self.quotas.push(QuotaState::new(key, now));
                self.quotas.len() - 1
            }
        };
        &mut self.quotas[index]
    }
}

impl Shard {
    fn sweep_if_due(&mut self, now: Now, plan: &Plan) {
        match self.next_sweep {
            Some(due) if now.instant < due => return,
            Some(_) => {
                self.sweep(now, plan);
            }
            None => {}
        }
        self.next_sweep = Some(now.instant + SWEEP_INTERVAL);
    }

    fn sweep(&mut self, now: Now, plan: &Plan) -> usize {
        let before = self.apps.len();
        self.apps.retain(|_, app| {
            if app.in_flight > 0 {
                return true;
            }
            app.quotas.retain_mut(|q| q.is_live(now, plan));
            !app.quotas.is_empty()
        });
        if self.apps.capacity() > 64 && self.apps.len() * 4 < self.apps.capacity() {
            self.apps.shrink_to(self.apps.len() * 2);
        }
        before - self.apps.len()
    }
}

impl LocalStore {
    pub fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: std::hash::RandomState::new(),
        }
    }

    fn shard(&self, app: &str) -> MutexGuard<'_, Shard> {
        let index = usize::try_from(self.hasher.hash_one(app) % SHARDS as u64).unwrap_or(0);
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Checks every demand and reserves all of them, or none.
    pub fn admit(
        &self,
        app: &str,
        demands: &[Demand<'_>],
        now: Now,
        plan: &Plan,
    ) -> Result<(Arc<str>, RateHeaders), Refusal> {
        let mut shard = self.shard(app);
        shard.sweep_if_due(now, plan);
        let key = match shard.apps.get_key_value(app) {
            Some((key, _)) => Arc::clone(key),
            None => {
                let key: Arc<str> = Arc::from(app);
                shard.apps.insert(Arc::clone(&key), AppState::default());
                key
            }
        };
        let Some(state) = shard.apps.get_mut(app) else {
            return Err(Refusal::Unavailable);
        };
        let mut verdict = Verdict::default();
        for demand in demands {
            check(
                state.slot(demand.quota.key, now.instant),
                demand,
                now,
                &mut verdict,
            );
        }
        if let Some(refusal) = verdict.into_refusal() {
            return Err(refusal);
        }
        let mut headers = HeaderTracker::default();
        for demand in demands {
            let slot = state.slot(demand.quota.key, now.instant);
            reserve(slot, demand, now, &mut headers);
        }
        state.in_flight = state.in_flight.saturating_add(1);
        Ok((key, headers.finish()))
    }

    /// Trues up a reservation: `charges` are what each quota reserved, `used` what the call
    /// really used, `admitted_ms` when it was admitted (its calendar windows).
    pub fn settle(
        &self,
        app: &str,
        charges: &[Charge],
        used: &Used<'_>,
        admitted_ms: i64,
        now: Instant,
        plan: &Plan,
    ) {
        let mut shard = self.shard(app);
        let Some(state) = shard.apps.get_mut(app) else {
            return;
        };
        state.in_flight = state.in_flight.saturating_sub(1);
        for charge in charges {
            let (Some(quota), Some(slot)) = (
                plan.by_key(charge.key),
                state.quotas.iter_mut().find(|q| q.key == charge.key),
            ) else {
                continue;
            };
            for (index, (budget, _)) in quota.budgets(Scale::Share).enumerate() {
                let reserved = charge.spend.get(index).copied().unwrap_or(0);
                let actual = used.spend_in(&budget.currency);
                slot.spend(index).adjust(
                    window(budget.period, admitted_ms),
                    reserved.saturating_sub(actual),
                    actual.saturating_sub(reserved),
                );
            }
            let actual = quota.weighted(&used.tokens);
            let reserved = charge.tokens;
            let refund = reserved.saturating_sub(actual);
            let extra = actual.saturating_sub(reserved);
            if let Some(limit) = quota.tokens(Scale::Share) {
                slot.tokens.give_back(now, limit, refund);
                slot.tokens.take(now, limit, extra);
            }
            for (period, _) in quota.calendar(Scale::Share) {
                slot.windows[period_index(period)].adjust(
                    window(period, admitted_ms),
                    refund,
                    extra,
                );
            }
        }
    }

    /// Ends a reservation without a true-up: what was reserved stays charged.
    pub fn release(&self, app: &str) {
        if let Some(state) = self.shard(app).apps.get_mut(app) {
            state.in_flight = state.in_flight.saturating_sub(1);
        }
    }

    /// Drops every idle entry now; returns how many went.
    pub fn evict_idle(&self, now: Now, plan: &Plan) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
                shard.next_sweep = Some(now.instant + SWEEP_INTERVAL);
                shard.sweep(now, plan)
            })
            .sum()
    }

    /// Visits the tokens left in every token window (per-minute bucket, calendar windows) of
    /// every app with state, at this sidecar's share of each limit; one shard locked at a
    /// time, for metrics.
    pub fn visit_levels(&self, now: Now, plan: &Plan, mut visit: impl FnMut(WindowLevel<'_>)) {
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            for (app, state) in &mut shard.apps {
                for slot in &mut state.quotas {
                    let Some(quota) = plan.by_key(slot.key) else {
                        continue;
                    };
                    if let Some(limit) = quota.tokens(Scale::Share) {
                        let left = slot.tokens.available(now.instant, limit);
                        visit(WindowLevel {
                            app,
                            quota,
                            period: None,
                            remaining: u64::try_from(left).unwrap_or(0),
                            currency: None,
                        });
                    }
                    for (period, capacity) in quota.calendar(Scale::Share) {
                        let used =
                            slot.windows[period_index(period)].used(window(period, now.wall_ms));
                        visit(WindowLevel {
                            app,
                            quota,
                            period: Some(period),
                            remaining: capacity.saturating_sub(used),
                            currency: None,
                        });
                    }
                    for (index, (budget, capacity)) in quota.budgets(Scale::Share).enumerate() {
                        let period = budget.period;
                        let used = slot.spend(index).used(window(period, now.wall_ms));
                        visit(WindowLevel {
                            app,
                            quota,
                            period: Some(period),
                            remaining: capacity.saturating_sub(used),
                            currency: Some(&budget.currency),
                        });
                    }
                }
            }
        }
    }

    /// Tokens left in the first per-minute token limit of `app` (tests).
    #[cfg(test)]
    pub fn tokens_left(&self, app: &str, now: Instant, plan: &Plan) -> Option<i64> {
        let mut shard = self.shard(app);
        let state = shard.apps.get_mut(app)?;
        state.quotas.iter_mut().find_map(|slot| {
            let limit = plan.by_key(slot.key)?.tokens(Scale::Share)?;
            Some(slot.tokens.available(now, limit))
        })
    }

    pub fn stats(&self) -> LocalStats {
        let entry = std::mem::size_of::<(Arc<str>, AppState)>() + 1;
        let mut stats = LocalStats::default();
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            stats.apps += shard.apps.len();
            stats.approx_bytes += shard.apps.capacity() * entry;
            for (key, app) in &shard.apps {
                // Arc header (two counts) + the text; the quota vector's buffer.
                stats.approx_bytes += 16 + key.len();
                stats.approx_bytes += app.quotas.capacity() * std::mem::size_of::<QuotaState>();
            }
        }
        stats
    }
}

fn check(slot: &mut QuotaState, demand: &Demand<'_>, now: Now, verdict: &mut Verdict) {
    let quota = demand.quota;
    if let Some(limit) = quota.tokens(Scale::Share) {
        let wait = slot.tokens.wait_for(now.instant, limit, demand.tokens);
        verdict.wait(&quota.name, LimitKind::Tokens, wait);
    }
    if let Some(limit) = quota.requests(Scale::Share) {
        let wait = slot.requests.wait_for(now.instant, limit, 1);
        verdict.wait(&quota.name, LimitKind::Requests, wait);
    }
    for (period, capacity) in quota.calendar(Scale::Share) {
        let window = window(period, now.wall_ms);
        if !slot.windows[period_index(period)].fits(window, capacity, demand.tokens) {
            verdict.exhausted(&quota.name, period, window.end_ms);
        }
    }
    for (index, (budget, capacity)) in quota.budgets(Scale::Share).enumerate() {
        let window = window(budget.period, now.wall_ms);
        let amount = demand.spend.get(index).copied().unwrap_or(0);
        if !slot.spend(index).fits_within(window, capacity, amount) {
            verdict.budget_exhausted(&quota.name, budget, window.end_ms);
        }
    }
}

fn reserve(slot: &mut QuotaState, demand: &Demand<'_>, now: Now, headers: &mut HeaderTracker) {
    let quota = demand.quota;
    if let Some(limit) = quota.tokens(Scale::Share) {
        slot.tokens.take(now.instant, limit, demand.tokens);
        let left = slot.tokens.available(now.instant, limit);
        let reset = slot.tokens.until_full(now.instant, limit);
        headers.per_minute(LimitKind::Tokens, limit.capacity(), left, reset);
    }
    if let Some(limit) = quota.requests(Scale::Share) {
        slot.requests.take(now.instant, limit, 1);
        let left = slot.requests.available(now.instant, limit);
        let reset = slot.requests.until_full(now.instant, limit);
        headers.per_minute(LimitKind::Requests, limit.capacity(), left, reset);
    }
    for (period, capacity) in quota.calendar(Scale::Share) {
        let window = window(period, now.wall_ms);
        let counter = &mut slot.windows[period_index(period)];
        counter.add(window, demand.tokens);
        let left = i64::try_from(capacity.saturating_sub(counter.used(window))).unwrap_or(i64::MAX);
        let reset_ms = u64::try_from(window.end_ms - now.wall_ms).unwrap_or(0);
        headers.tokens(capacity, left, Duration::from_millis(reset_ms));
    }
    for (index, (budget, _)) in quota.budgets(Scale::Share).enumerate() {
        let amount = demand.spend.get(index).copied().unwrap_or(0);
        slot.spend(index)
            .add(window(budget.period, now.wall_ms), amount);
    }
}
