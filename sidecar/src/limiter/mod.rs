//! Token quotas: admit a call against every quota that applies to its app, reserve its
//! tokens, and true up with the real usage.
//!
//! Input: the snapshot's quotas and rate-limiting settings ([`Limiter::apply`]), then per call
//! an [`AdmitRequest`]. Output: a [`Reservation`] (with `x-ratelimit-*` values) to settle
//! when the call's usage is known, or a [`Refusal`]: 429 with an exact wait for a per-minute
//! limit, 403 naming the calendar quota and when it resets, 503 when Redis is unreachable
//! under `FailClosed`.
//!
//! Applicable quotas are the app's own that cover the pool and model, else the default
//! quotas (no `appId`) that cover them, each app getting its own budget of that size. A call
//! reserves its prompt estimate plus its completion limit (or the quota's `defaultMaxTokens`)
//! and one request in every applicable limit, all or nothing.
//!
//! - [`bucket`]: the token bucket (per-minute limits), pure, injected `Instant`.
//! - [`calendar`] (the crate's): UTC calendar windows (hour, day, week from Monday, month).
//! - `estimate`: a cheap prompt-token estimate from the raw body, for the reservation.
//! - `plan`: the quotas of one snapshot, with keys stable across reloads.
//! - `local`: per-app counters in this process (`Local` mode: this sidecar's `share` of
//!   each limit), sharded, with idle eviction.
//! - `redis`: exact shared counters in Redis via atomic Lua scripts, health and reconnects.
//! - `outcome`, `reservation`: the public results.
//! - `levels`: the limiter as telemetry's [`QuotaSource`](crate::telemetry::QuotaSource)
//!   (tokens left per app, quota and window).
//!
//! Time comes from the injected [`Clock`]: `now()` for buckets, `wall()` for calendar
//! windows (Redis buckets use the Redis server's clock).

pub mod bucket;
pub use crate::calendar;
mod estimate;
mod levels;
mod local;
mod outcome;
mod plan;
mod redis;
mod reservation;

use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::{ArcSwap, ArcSwapOption};
use spillway_crds::Snapshot;
use spillway_crds::snapshot::{RateLimitMode, RedisUnavailablePolicy};

use crate::clock::Clock;
use local::{Charge, Demand, LocalStore, Now};
use plan::{Plan, Scale};
use redis::RedisStore;

pub use estimate::{
    BYTES_PER_TOKEN, DEFAULT_OUTPUT_LIMIT, TOKENS_PER_INLINE_IMAGE, estimate_prompt_tokens,
    image_output_tokens, output_limit,
};
pub use local::{LocalStats, SWEEP_INTERVAL};
pub use outcome::{AdmitRequest, LimitKind, QuotaPeriod, RateHeaders, Refusal, Used};
pub use reservation::Reservation;

/// Keys beside the counters, in the same Redis (see [`Limiter::shared_kv`]).
#[derive(Clone, Debug)]
pub struct SharedKv(Arc<RedisStore>);

/// Redis did not answer (or is marked down).
pub use redis::Unreachable;

impl SharedKv {
    /// The value of `key`, if set.
    ///
    /// # Errors
    /// [`Unreachable`].
    pub async fn get(&self, key: &str) -> Result<Option<String>, Unreachable> {
        self.0.kv_get(key).await
    }

    /// Sets `key` to `value` for `ttl`; with `only_new`, only if unset. True when set.
    ///
    /// # Errors
    /// [`Unreachable`].
    pub async fn set(
        &self,
        key: &str,
        value: &str,
        ttl: std::time::Duration,
        only_new: bool,
    ) -> Result<bool, Unreachable> {
        self.0.kv_set(key, value, ttl, only_new).await
    }

    /// Removes `key`.
    ///
    /// # Errors
    /// [`Unreachable`].
    pub async fn remove(&self, key: &str) -> Result<(), Unreachable> {
        self.0.kv_del(key).await
    }
}

/// Why a configuration could not be fully applied. The quotas are applied anyway; Redis
/// then counts as unreachable and `onRedisUnavailable` decides.
#[derive(Debug, thiserror::Error)]
pub enum LimiterError {
    /// The Redis URL was rejected by the client.
    #[error("the Redis URL cannot be used ({0}); check rateLimiting.redis.url")]
    RedisUrl(String),
    /// Redis mode was applied outside a tokio runtime.
    #[error("Redis mode needs a tokio runtime to run its connection supervisor")]
    NoRuntime,
}

/// The limiter of one gateway: shared by every request through an `Arc`.
#[derive(Debug)]
pub struct Limiter {
    core: Arc<Core>,
}

pub(crate) struct Core {
    clock: Arc<dyn Clock>,
    plan: ArcSwap<Plan>,
    local: LocalStore,
    redis: ArcSwapOption<RedisStore>,
    /// Serialises [`Limiter::apply`] so two reloads never interleave.
    applying: Mutex<()>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("plan", &self.plan)
            .field("redis", &self.redis)
            .finish_non_exhaustive()
    }
}

impl Limiter {
    /// A limiter with no quotas (everything is admitted until [`apply`](Self::apply)).
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            core: Arc::new(Core {
                clock,
                plan: ArcSwap::from_pointee(Plan::default()),
                local: LocalStore::new(),
                redis: ArcSwapOption::empty(),
                applying: Mutex::new(()),
            }),
        }
    }

    /// The shared key-value space in the Redis that holds the counters, when the mode is
    /// Redis (for state all replicas must see, such as where a stored response lives).
    pub fn shared_kv(&self) -> Option<SharedKv> {
        self.core.redis.load_full().map(SharedKv)
    }

    /// Applies the quotas and rate-limiting settings of `snapshot`. Counters of quotas whose
    /// id is unchanged are kept (new limits apply to the usage so far); removed quotas are
    /// forgotten. The Redis connection is kept while its settings are unchanged. Call it
    /// inside the tokio runtime (Redis mode spawns its connection supervisor).
    ///
    /// # Errors
    /// The Redis settings cannot be used; the quotas are applied anyway and Redis counts as
    /// unreachable.
    pub fn apply(&self, snapshot: &Snapshot) -> Result<(), LimiterError> {
        let _serial = self
            .core
            .applying
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let plan = Plan::build(&snapshot.quotas, &self.core.plan.load());
        self.core.plan.store(Arc::new(plan));
        let settings = &snapshot.gateway.rate_limiting;
        let wanted = match (settings.mode, &settings.redis) {
            (RateLimitMode::Redis, Some(redis)) => Some(redis),
            _ => None,
        };
        let current = self.core.redis.load_full();
        match (wanted, current) {
            (None, _) => self.core.redis.store(None),
            (Some(wanted), Some(current)) if current.config() == wanted => {}
            (Some(wanted), _) => match RedisStore::start(wanted) {
                Ok(store) => self.core.redis.store(Some(store)),
                Err(error) => {
                    self.core.redis.store(Some(RedisStore::unusable(wanted)));
                    return Err(error);
                }
            },
        }
        Ok(())
    }

    /// Admits one call: reserves its tokens and one request in every applicable limit, or
    /// refuses. Calls no quota applies to are admitted without touching any counter.
    ///
    /// # Errors
    /// [`Refusal`]: 429 / 403 / 503, see its variants.
    pub async fn admit(&self, request: &AdmitRequest<'_>) -> Result<Reservation, Refusal> {
        let plan = self.core.plan.load_full();
        let quotas = plan.applicable(request.app_id, request.pool, request.model);
        if quotas.is_empty() {
            return Ok(Reservation::unlimited());
        }
        let demands: Vec<Demand<'_>> = quotas
            .into_iter()
            .map(|quota| Demand {
                quota,
                tokens: quota.reservation(
                    request.prompt_tokens_estimate,
                    request.max_completion_tokens,
                ),
                spend: quota.budget_reservations(
                    request.prompt_tokens_estimate,
                    request.max_completion_tokens,
                    request.spend_ceiling,
                ),
            })
            .collect();
        let scale = match self.core.redis.load().as_ref() {
            Some(_) => Scale::Whole,
            None => Scale::Share,
        };
        if let Some(refusal) = never_fits(&demands, scale) {
            return Err(refusal);
        }
        if let Some(store) = self.core.redis.load_full() {
            let wall_ms = calendar::unix_ms(self.core.clock.wall());
            match store.admit(request.app_id, &demands, wall_ms).await {
                Ok(Ok((headers, settle))) => return Ok(Reservation::redis(store, settle, headers)),
                Ok(Err(refusal)) => return Err(refusal),
                Err(redis::Unreachable) => match store.policy() {
                    RedisUnavailablePolicy::FailOpen => return Ok(Reservation::unlimited()),
                    RedisUnavailablePolicy::FailClosed => return Err(Refusal::Unavailable),
                    RedisUnavailablePolicy::LocalShare => {}
                },
            }
        }
        self.admit_local(request.app_id, &demands, &plan)
    }

    fn admit_local(
        &self,
        app: &str,
        demands: &[Demand<'_>],
        plan: &Plan,
    ) -> Result<Reservation, Refusal> {
        let now = self.now();
        let (app, headers) = self.core.local.admit(app, demands, now, plan)?;
        let charges = demands
            .iter()
            .map(|d| Charge {
                key: d.quota.key,
                tokens: d.tokens,
                spend: d.spend.clone(),
            })
            .collect();
        Ok(Reservation::local(
            Arc::clone(&self.core),
            app,
            charges,
            now.wall_ms,
            headers,
        ))
    }

    fn now(&self) -> Now {
        Now {
            instant: self.core.clock.now(),
            wall_ms: calendar::unix_ms(self.core.clock.wall()),
        }
    }

    /// Drops the local state of every idle app now (shards also do this on their own every
    /// [`SWEEP_INTERVAL`]); returns how many apps were dropped.
    pub fn evict_idle(&self) -> usize {
        self.core
            .local
            .evict_idle(self.now(), &self.core.plan.load())
    }

    /// Sizes of the local state.
    pub fn local_stats(&self) -> LocalStats {
        self.core.local.stats()
    }

    /// `None` in `Local` mode; in Redis mode whether Redis currently answers.
    pub fn redis_available(&self) -> Option<bool> {
        self.core.redis.load().as_ref().map(|store| store.is_up())
    }

    /// Tokens left in `app`'s first local per-minute token limit (tests).
    #[cfg(test)]
    fn tokens_left(&self, app: &str) -> Option<i64> {
        let now = self.core.clock.now();
        self.core
            .local
            .tokens_left(app, now, &self.core.plan.load())
    }

    /// Whether any quota is configured (when not, [`admit`](Self::admit) always admits).
    pub fn has_quotas(&self) -> bool {
        !self.core.plan.load().is_empty()
    }
}

/// The first demand larger than its quota's per-minute token limit at `scale`: no wait can
/// admit it, so it is refused at once rather than admitted into debt.
fn never_fits(demands: &[Demand<'_>], scale: Scale) -> Option<Refusal> {
    demands.iter().find_map(|demand| {
        let capacity = demand.quota.tokens(scale)?.capacity();
        (demand.tokens > capacity).then(|| Refusal::NeverFits {
            quota: demand.quota.name.to_string(),
            reserved: demand.tokens,
            capacity,
        })
    })
}

#[cfg(test)]
mod tests;
