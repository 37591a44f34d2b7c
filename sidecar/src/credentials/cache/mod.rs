//! The token cache of one backend credential.
//!
//! Input: a [`TokenSource`] and a [`Clock`]. Output: [`TokenCache::token`], a valid access
//! token or a [`CredentialError`]. Policy:
//! - a token is refreshed ahead of expiry ([`refresh_delay`]: at 2/3 of its lifetime or 5 min
//!   before expiry, whichever comes first, never before half its lifetime, minus up to 10 %
//!   jitter so replicas do not refresh together); the refresh runs in the background while
//!   callers keep using the cached token;
//! - one fetch at a time (single flight): callers without a valid token wait for the fetch in
//!   progress instead of starting their own;
//! - when a refresh fails the cached token is used until it expires; fetches are retried after
//!   a backoff (250 ms doubling to 5 s), and in between callers without a valid token fail at
//!   once with [`CredentialError::NoValidToken`] carrying the last error.
//!
//! A token counts as expired a little early (a twentieth of its lifetime, at most 10 s) so it
//! does not expire on the way to the backend.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{AccessToken, CredentialError, IssuedToken, TokenSource};
use crate::clock::Clock;

/// First retry delay after a failed fetch; doubles per consecutive failure.
pub const BACKOFF_START: Duration = Duration::from_millis(250);
/// Longest retry delay after failed fetches.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Longest lifetime believed; a longer `expires_in` is treated as this.
pub const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// The cache of one credential. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct TokenCache {
    inner: Arc<Inner>,
}

struct Inner {
    source: Arc<dyn TokenSource>,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    /// Held while a fetch runs: the single flight.
    fetching: tokio::sync::Mutex<()>,
    /// A background refresh is scheduled or running.
    refreshing: AtomicBool,
    fetches: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    cached: Option<Cached>,
    last_error: Option<CredentialError>,
    retry_at: Option<Instant>,
    failures: u32,
}

#[derive(Debug)]
struct Cached {
    token: AccessToken,
    refresh_at: Instant,
    usable_until: Instant,
}

/// What a caller does with the cache as it is.
#[derive(Debug)]
enum Decision {
    Use(AccessToken),
    UseAndRefresh(AccessToken),
    Fetch,
    Fail(CredentialError),
}

/// When to refresh a token of `lifetime`, from its issue: the earlier of 2/3 of the lifetime
/// and 5 min before expiry, but not before half the lifetime; minus `jitter` (0–1) times a
/// tenth of the lifetime.
pub fn refresh_delay(lifetime: Duration, jitter: f64) -> Duration {
    let lifetime = lifetime.min(MAX_LIFETIME);
    let jitter = if jitter.is_finite() { jitter } else { 0.0 };
    let two_thirds = lifetime.mul_f64(2.0 / 3.0);
    let ahead = two_thirds
        .min(lifetime.saturating_sub(Duration::from_secs(300)))
        .max(lifetime / 2);
    ahead.saturating_sub((lifetime / 10).mul_f64(jitter.clamp(0.0, 1.0)))
}

fn expiry_margin(lifetime: Duration) -> Duration {
    (lifetime / 20).min(Duration::from_secs(10))
}

fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    BACKOFF_START
        .saturating_mul(1 << doublings)
        .min(BACKOFF_MAX)
}

impl TokenCache {
    /// An empty cache over `source`; the first [`token`](Self::token) call fetches.
    pub fn new(source: Arc<dyn TokenSource>, clock: Arc<dyn Clock>) -> Self {
        Self {
            inner: Arc::new(Inner {
                source,
                clock,
                state: Mutex::new(State::default()),
                fetching: tokio::sync::Mutex::new(()),
                refreshing: AtomicBool::new(false),
                fetches: AtomicU64::new(0),
            }),
        }
    }

    /// A valid token: the cached one (starting a background refresh when due), or a freshly
    /// fetched one when none is valid.
    ///
    /// # Errors
    /// [`CredentialError::NoValidToken`] when no valid token is cached and fetching failed now
    /// or recently (within the backoff).
    pub async fn token(&self) -> Result<AccessToken, CredentialError> {
        match self.inner.decide() {
            Decision::Use(token) => Ok(token),
            Decision::UseAndRefresh(token) => {
                self.spawn_refresh();
                Ok(token)
            }
            Decision::Fail(error) => Err(error),
            Decision::Fetch => {
                let _flight = self.inner.fetching.lock().await;
                // Another caller may have fetched (or failed) while this one waited.
                match self.inner.decide() {
                    Decision::Use(token) | Decision::UseAndRefresh(token) => Ok(token),
                    Decision::Fail(error) => Err(error),
                    Decision::Fetch => self
                        .inner
                        .fetch_and_store()
                        .await
                        .map_err(|e| CredentialError::NoValidToken(Box::new(e))),
                }
            }
        }
    }

    /// How many fetches were started (for tests and diagnostics).
    pub fn fetches(&self) -> u64 {
        self.inner.fetches.load(Ordering::Relaxed)
    }

    /// The last fetch error, while no fetch has succeeded since.
    pub fn last_error(&self) -> Option<CredentialError> {
        self.inner.lock().last_error.clone()
    }

    fn spawn_refresh(&self) {
        if self
            .inner
            .refreshing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        let inner = Arc::clone(&self.inner);
        tokio::spawn(async move {
            {
                let _flight = inner.fetching.lock().await;
                if matches!(inner.decide(), Decision::UseAndRefresh(_) | Decision::Fetch) {
                    // Failures are recorded in the state and logged; callers keep the token.
                    let _ = inner.fetch_and_store().await;
                }
            }
            inner.refreshing.store(false, Ordering::Release);
        });
    }
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("source", &self.source)
            .field("fetches", &self.fetches.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn decide(&self) -> Decision {
        let now = self.clock.now();
        let state = self.lock();
        let backing_off = state.retry_at.is_some_and(|at| now < at);
        match &state.cached {
            Some(cached) if now < cached.refresh_at => Decision::Use(cached.token.clone()),
            Some(cached) if now < cached.usable_until => {
                if backing_off {
                    Decision::Use(cached.token.clone())
                } else {
                    Decision::UseAndRefresh(cached.token.clone())
                }
            }
            _ => match (&state.last_error, backing_off) {
                (Some(error), true) => {
                    Decision::Fail(CredentialError::NoValidToken(Box::new(error.clone())))
                }
                _ => Decision::Fetch,
            },
        }
    }

    async fn fetch_and_store(&self) -> Result<AccessToken, CredentialError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let result = self.source.fetch().await;
        let now = self.clock.now();
        let mut state = self.lock();
        match result {
            Ok(IssuedToken { token, lifetime }) => {
                let lifetime = lifetime.min(MAX_LIFETIME);
                let refresh_at = now + refresh_delay(lifetime, fastrand::f64());
                let usable_until = now + lifetime.saturating_sub(expiry_margin(lifetime));
                state.cached = Some(Cached {
                    token: token.clone(),
                    refresh_at: refresh_at.min(usable_until),
                    usable_until,
                });
                state.last_error = None;
                state.retry_at = None;
                state.failures = 0;
                tracing::debug!(lifetime_s = lifetime.as_secs(), "Entra ID token obtained");
                Ok(token)
            }
            Err(error) => {
                state.failures = state.failures.saturating_add(1);
                let delay = backoff(state.failures);
                state.retry_at = Some(now + delay);
                state.last_error = Some(error.clone());
                let cached_for = state
                    .cached
                    .as_ref()
                    .map(|c| c.usable_until.saturating_duration_since(now));
                tracing::warn!(
                    %error,
                    retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    cached_token_valid_ms = cached_for
                        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                        .unwrap_or(0),
                    "Entra ID token fetch failed"
                );
                Err(error)
            }
        }
    }
}

#[cfg(test)]
mod tests;
