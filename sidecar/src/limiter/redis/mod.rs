//! Exact shared counters in Redis, with an explicit policy while Redis is unreachable.
//!
//! Input: the app, its demands (quota + tokens to reserve), the wall-clock time (for the
//! calendar window keys) and a [`RedisConfig`]. Output: an admission with header values and
//! what its true-up needs, a [`Refusal`], or [`Unreachable`] — then the caller applies
//! `onRedisUnavailable`.
//!
//! One round trip per admission: `admit.lua` checks every applicable limit and reserves in
//! all of them atomically, or in none. One per true-up: `settle.lua`, sent from a spawned
//! task. Limits here are the whole limit (no share). Keys are
//! `{prefix}:{<app>}:<quota id>:tpm|rpm` (token buckets on the server's clock, expiring when
//! they would be full again) and `{prefix}:{<app>}:<quota id>:h|d|w|m:<window start, Unix s>`
//! (calendar counters, `EXPIREAT` the window's end plus [`CALENDAR_GRACE_SECS`]); the braces
//! make all keys of one app one Redis Cluster hash slot.
//!
//! Availability: a call that fails or takes longer than `timeout_ms` marks Redis down; while
//! down no request touches Redis (no reconnect storm) and one supervisor task probes it with
//! `PING` at a backoff from [`MIN_BACKOFF`] to [`MAX_BACKOFF`], reconnecting through the
//! connection manager, and marks it up again on the first answer. The task ends with the
//! store.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Weak};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Script, ScriptInvocation};
use spillway_crds::billing::TokenWeights;
use spillway_crds::snapshot::{QuotaPeriod, RedisConfig, RedisUnavailablePolicy};
use tokio::sync::mpsc;

use super::LimiterError;
use super::local::Demand;
use super::outcome::{HeaderTracker, LimitKind, RateHeaders, Refusal, Used};
use crate::calendar::{Window, system_time, window};

/// Shortest wait between two probes of an unreachable Redis.
pub const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// Longest wait between two probes of an unreachable Redis.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Calendar keys outlive their window by this much, so late true-ups still land.
pub const CALENDAR_GRACE_SECS: i64 = 3_600;

const MINUTE_MS: u64 = 60_000;
/// Largest integer Lua (doubles) holds exactly.
const LUA_MAX: u64 = 1 << 53;

static ADMIT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("admit.lua")));
static SETTLE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("settle.lua")));

/// Redis could not answer in time; the caller applies the unavailability policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unreachable;

/// A connection to the Redis that holds the counters, and its health.
pub(super) struct RedisStore {
    config: RedisConfig,
    /// `None` when the settings could not be used: Redis then stays unreachable.
    conn: Option<ConnectionManager>,
    up: AtomicBool,
    wake: mpsc::Sender<()>,
    timeout: Duration,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the connection manager: its client would print the URL.
        f.debug_struct("RedisStore")
            .field("config", &self.config)
            .field("up", &self.up.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// One limit of one admission.
#[derive(Debug)]
struct Limit {
    name: Arc<str>,
    kind: Kind,
    key: String,
    capacity: u64,
    amount: u64,
    /// What the true-up counts for this limit.
    measure: Measure,
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Tokens,
    Requests,
    Calendar(QuotaPeriod, Window),
    /// A money budget's window; amounts in nanos.
    Budget(QuotaPeriod, Window),
}

/// How a call's real use is measured for one limit.
#[derive(Clone, Debug)]
enum Measure {
    /// Requests: the reservation is the use.
    Requests,
    /// Tokens, each type times its weight in the quota.
    Tokens(TokenWeights),
    /// Nanos of metered cost in this currency.
    Spend(String),
}

impl Measure {
    fn of(&self, used: &Used<'_>) -> Option<u64> {
        match self {
            Self::Requests => None,
            Self::Tokens(weights) => Some(weights.apply(used.tokens.iter().copied())),
            Self::Spend(currency) => Some(used.spend_in(currency)),
        }
    }
}

/// What the true-up of an admission needs: its token limits and what each reserved.
#[derive(Debug)]
pub(super) struct RedisSettle {
    limits: Vec<Limit>,
}

impl RedisStore {
    /// Creates the store and its supervisor, which connects in the background; until it has,
    /// Redis counts as unreachable.
    ///
    /// # Errors
    /// An unusable URL, or no tokio runtime to run the supervisor on.
    pub fn start(config: &RedisConfig) -> Result<Arc<Self>, LimiterError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| LimiterError::NoRuntime)?;
        let client = redis::Client::open(config.url.expose())
            .map_err(|e| LimiterError::RedisUrl(e.to_string()))?;
        let timeout = Duration::from_millis(config.timeout_ms.max(1));
        let manager_config = ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(Some(timeout.max(Duration::from_secs(1))))
            .set_response_timeout(Some(timeout));
        let _guard = runtime.enter();
        let conn = ConnectionManager::new_lazy_with_config(client, manager_config)
            .map_err(|e| LimiterError::RedisUrl(e.to_string()))?;
        let (wake, rx) = mpsc::channel(1);
        let store = Arc::new(Self {
            config: config.clone(),
            conn: Some(conn),
            up: AtomicBool::new(false),
            wake,
            timeout,
        });
        runtime.spawn(supervise(Arc::downgrade(&store), rx));
        let _ = store.wake.try_send(());
        Ok(store)
    }

    /// A store for settings that cannot be used: always unreachable, so the policy applies.
    pub fn unusable(config: &RedisConfig) -> Arc<Self> {
        let (wake, _) = mpsc::channel(1);
        Arc::new(Self {
            config: config.clone(),
            conn: None,
            up: AtomicBool::new(false),
            wake,
            timeout: Duration::from_millis(config.timeout_ms.max(1)),
        })
    }

    /// The configuration the store was started with.
    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// What to do while Redis is unreachable.
    pub fn policy(&self) -> RedisUnavailablePolicy {
        self.config.on_unavailable
    }

    /// Whether the last call (or probe) reached Redis.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    fn mark_down(&self, why: &dyn fmt::Display) {
        if self.up.swap(false, Ordering::AcqRel) {
            tracing::warn!(error = %why, "Redis is unreachable; applying onRedisUnavailable: {:?}", self.policy());
        }
        let _ = self.wake.try_send(());
    }

    /// Admits `demands` of `app` in one script call.
    pub async fn admit(
        &self,
        app: &str,
        demands: &[Demand<'_>],
        wall_ms: i64,
    ) -> Result<Result<(RateHeaders, RedisSettle), Refusal>, Unreachable> {
        if !self.is_up() {
            return Err(Unreachable);
        }
        let limits = limits(&self.config.key_prefix, app, demands, wall_ms);
        let mut invocation = ADMIT.prepare_invoke();
        for limit in &limits {
            push(&mut invocation, limit);
        }
        let reply: Vec<i64> = self.call(&invocation).await?;
        match reply.as_slice() {
            [0, left @ ..] if left.len() == limits.len() => {
                let headers = headers(&limits, left, wall_ms);
                let settle = limits
                    .into_iter()
                    .filter(|l| !matches!(l.kind, Kind::Requests))
                    .collect();
                Ok(Ok((headers, RedisSettle { limits: settle })))
            }
            [1, index, wait_ms] => {
                let limit = nth(&limits, *index).ok_or_else(|| self.unexpected(&reply))?;
                Ok(Err(Refusal::RateLimited {
                    quota: limit.name.to_string(),
                    kind: match limit.kind {
                        Kind::Requests => LimitKind::Requests,
                        _ => LimitKind::Tokens,
                    },
                    retry_after: Duration::from_millis(u64::try_from(*wait_ms).unwrap_or(0)),
                }))
            }
            [2, index] => match nth(&limits, *index) {
                Some(Limit {
                    name,
                    kind: Kind::Calendar(period, window),
                    ..
                }) => Ok(Err(Refusal::QuotaExhausted {
                    quota: name.to_string(),
                    period: *period,
                    resets_at: system_time(window.end_ms),
                })),
                Some(Limit {
                    name,
                    kind: Kind::Budget(period, window),
                    measure: Measure::Spend(currency),
                    ..
                }) => Ok(Err(Refusal::BudgetExhausted {
                    quota: name.to_string(),
                    period: *period,
                    currency: currency.clone(),
                    resets_at: system_time(window.end_ms),
                })),
                _ => Err(self.unexpected(&reply)),
            },
            _ => Err(self.unexpected(&reply)),
        }
    }

    /// Sends the true-up of an admission from a spawned task (no-op when nothing changes,
    /// outside a runtime, or while Redis is down: the reservation then stays charged).
    pub fn settle(self: &Arc<Self>, pending: RedisSettle, used: &Used<'_>) {
        let mut invocation = SETTLE.prepare_invoke();
        let mut any = false;
        for limit in &pending.limits {
            let Some(actual) = limit.measure.of(used) else {
                continue;
            };
            let diff = i128::from(actual.min(LUA_MAX)) - i128::from(limit.amount.min(LUA_MAX));
            any |= diff != 0;
            push_diff(&mut invocation, limit, diff);
        }
        if !any || !self.is_up() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let store = Arc::clone(self);
        runtime.spawn(async move {
            let _: Result<i64, Unreachable> = store.call(&invocation).await;
        });
    }

    async fn call<T: redis::FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, Unreachable> {
        let Some(mut conn) = self.conn.clone() else {
            return Err(Unreachable);
        };
        self.answered(invocation.invoke_async(&mut conn)).await
    }

    /// The answer of `request` within the store's timeout; an error or silence marks Redis
    /// down.
    async fn answered<T>(
        &self,
        request: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, Unreachable> {
        match tokio::time::timeout(self.timeout, request).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => {
                self.mark_down(&error);
                Err(Unreachable)
            }
            Err(_) => {
                self.mark_down(&format_args!("no answer within {:?}", self.timeout));
                Err(Unreachable)
            }
        }
    }

    /// Sends one command within the store's timeout.
    async fn command<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, Unreachable> {
        if !self.is_up() {
            return Err(Unreachable);
        }
        let Some(mut conn) = self.conn.clone() else {
            return Err(Unreachable);
        };
        self.answered(cmd.query_async(&mut conn)).await
    }

    /// The full key of `key` in the small key-value space beside the counters.
    fn kv_key(&self, key: &str) -> String {
        format!("{}:kv:{key}", self.config.key_prefix)
    }

    /// The value of `key`, if set.
    pub async fn kv_get(&self, key: &str) -> Result<Option<String>, Unreachable> {
        self.command(redis::cmd("GET").arg(self.kv_key(key))).await
    }

    /// Sets `key` for `ttl`; with `only_new`, only when it is not set yet. True when set.
    pub async fn kv_set(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
        only_new: bool,
    ) -> Result<bool, Unreachable> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.kv_key(key))
            .arg(value)
            .arg("PX")
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1));
        if only_new {
            cmd.arg("NX");
        }
        let reply: Option<String> = self.command(&cmd).await?;
        Ok(reply.is_some())
    }

    /// Removes `key`.
    pub async fn kv_del(&self, key: &str) -> Result<(), Unreachable> {
        let _: i64 = self
            .command(redis::cmd("DEL").arg(self.kv_key(key)))
            .await?;
        Ok(())
    }

    fn unexpected(&self, reply: &[i64]) -> Unreachable {
        self.mark_down(&format_args!("unexpected script reply {reply:?}"));
        Unreachable
    }

    /// One `PING` (reconnecting first if needed) and a script load; true when Redis answered.
    async fn probe(&self) -> bool {
        let Some(mut conn) = self.conn.clone() else {
            return false;
        };
        let wait = self.timeout.max(Duration::from_millis(500));
        let ping = redis::cmd("PING");
        match tokio::time::timeout(wait, ping.query_async::<String>(&mut conn)).await {
            Ok(Ok(_)) => {
                // Saves the NOSCRIPT round trip on the first calls after a restart.
                let _ = tokio::time::timeout(wait, ADMIT.load_async(&mut conn)).await;
                let _ = tokio::time::timeout(wait, SETTLE.load_async(&mut conn)).await;
                true
            }
            Ok(Err(error)) => {
                tracing::debug!(%error, "Redis probe failed");
                false
            }
            Err(_) => false,
        }
    }
}

/// Probes Redis each time it is marked down until it answers; ends with the store.
async fn supervise(weak: Weak<RedisStore>, mut wake: mpsc::Receiver<()>) {
    while wake.recv().await.is_some() {
        let mut delay = MIN_BACKOFF;
        loop {
            let Some(store) = weak.upgrade() else {
                return;
            };
            if store.is_up() {
                break;
            }
            if store.probe().await {
                store.up.store(true, Ordering::Release);
                tracing::info!("Redis is reachable; shared quota counters are in use");
                break;
            }
            drop(store);
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_BACKOFF);
        }
    }
}

fn limits(prefix: &str, app: &str, demands: &[Demand<'_>], wall_ms: i64) -> Vec<Limit> {
    use super::plan::Scale::Whole;
    let mut limits = Vec::with_capacity(demands.len() * 2);
    for demand in demands {
        let quota = demand.quota;
        let base = format!("{prefix}:{{{app}}}:{}", quota.id);
        let tokens = Measure::Tokens(quota.weights().clone());
        let mut add = |kind, key: String, capacity: u64, amount: u64, measure: &Measure| {
            limits.push(Limit {
                name: Arc::clone(&quota.name),
                kind,
                key,
                capacity: capacity.min(LUA_MAX),
                amount: amount.min(LUA_MAX),
                measure: measure.clone(),
            });
        };
        if let Some(limit) = quota.tokens(Whole) {
            let key = format!("{base}:tpm");
            add(Kind::Tokens, key, limit.capacity(), demand.tokens, &tokens);
        }
        if let Some(limit) = quota.requests(Whole) {
            let key = format!("{base}:rpm");
            add(Kind::Requests, key, limit.capacity(), 1, &Measure::Requests);
        }
        for (period, capacity) in quota.calendar(Whole) {
            let window = window(period, wall_ms);
            let key = format!(
                "{base}:{}:{}",
                code(period),
                window.start_ms.div_euclid(1000)
            );
            add(
                Kind::Calendar(period, window),
                key,
                capacity,
                demand.tokens,
                &tokens,
            );
        }
        for (index, (budget, capacity)) in quota.budgets(Whole).enumerate() {
            let window = window(budget.period, wall_ms);
            let key = format!(
                "{base}:${}:{}:{}",
                budget.currency,
                code(budget.period),
                window.start_ms.div_euclid(1000)
            );
            let amount = demand.spend.get(index).copied().unwrap_or(0);
            let spend = Measure::Spend(budget.currency.clone());
            add(
                Kind::Budget(budget.period, window),
                key,
                capacity,
                amount,
                &spend,
            );
        }
    }
    limits
}

/// The letter of a calendar period in counter keys.
fn code(period: QuotaPeriod) -> char {
    match period {
        QuotaPeriod::Hourly => 'h',
        QuotaPeriod::Daily => 'd',
        QuotaPeriod::Weekly => 'w',
        QuotaPeriod::Monthly => 'm',
    }
}

/// Adds one limit's key and its four arguments.
fn push(invocation: &mut ScriptInvocation<'_>, limit: &Limit) {
    let (code, extra) = match limit.kind {
        Kind::Tokens | Kind::Requests => ("b", MINUTE_MS as i64),
        Kind::Calendar(_, window) => ("c", window.end_ms.div_euclid(1000) + CALENDAR_GRACE_SECS),
        Kind::Budget(_, window) => ("m", window.end_ms.div_euclid(1000) + CALENDAR_GRACE_SECS),
    };
    invocation
        .key(&limit.key)
        .arg(code)
        .arg(limit.capacity)
        .arg(limit.amount)
        .arg(extra);
}

fn push_diff(invocation: &mut ScriptInvocation<'_>, limit: &Limit, diff: i128) {
    let (code, extra) = match limit.kind {
        Kind::Calendar(..) | Kind::Budget(..) => ("c", 0),
        _ => ("b", MINUTE_MS as i64),
    };
    invocation
        .key(&limit.key)
        .arg(code)
        .arg(limit.capacity)
        .arg(i64::try_from(diff).unwrap_or(0))
        .arg(extra);
}

/// Limit `index` (1-based, as Lua counts).
fn nth(limits: &[Limit], index: i64) -> Option<&Limit> {
    usize::try_from(index)
        .ok()
        .and_then(|i| i.checked_sub(1))
        .and_then(|i| limits.get(i))
}

fn headers(limits: &[Limit], left: &[i64], wall_ms: i64) -> RateHeaders {
    let mut tracker = HeaderTracker::default();
    for (limit, &left) in limits.iter().zip(left) {
        let used = i128::from(limit.capacity) - i128::from(left);
        // Refilled linearly over a minute: (used / capacity) of it.
        let refill_ms = (used.max(0) * i128::from(MINUTE_MS)) / i128::from(limit.capacity.max(1));
        let refill = Duration::from_millis(u64::try_from(refill_ms).unwrap_or(u64::MAX));
        match limit.kind {
            Kind::Tokens => tracker.per_minute(LimitKind::Tokens, limit.capacity, left, refill),
            Kind::Requests => {
                tracker.per_minute(LimitKind::Requests, limit.capacity, left, refill);
            }
            Kind::Calendar(_, window) => {
                let reset = u64::try_from(window.end_ms - wall_ms).unwrap_or(0);
                tracker.tokens(limit.capacity, left, Duration::from_millis(reset));
            }
            // Money is not told in the token headers.
            Kind::Budget(..) => {}
        }
    }
    tracker.finish()
}
