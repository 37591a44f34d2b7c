//! Choosing the backend for one attempt.
//!
//! Input: a pool, the monotonic now, the backend indices already tried in this client
//! request and a random source. Output: a [`Pick`] — the backend with an [`Attempt`] that
//! holds its breaker permit, or the time until a backend can take traffic again.
//!
//! Order: priority groups ascending; in the lowest group with a backend whose breaker admits,
//! a weighted random choice among the admitting ones. Backends already tried are skipped
//! while an untried admitting one exists in any group (so a retry spills to priority 2 rather
//! than hitting the same priority-1 backend); when every admitting backend was tried, the
//! same order applies to tried ones (a single-backend pool can retry). A half-open backend is
//! eligible only while its probe slot is free, so it receives just the probe. No allocation.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use spillway_crds::snapshot::BackendConfig;

use super::{BackendRuntime, PoolRoutes};
use crate::breaker::{Admission, Outcome, Permit, Transition};

/// The wait suggested when nothing admits and no breaker has a known reopening time (every
/// unavailable backend is half-open with its probe in flight, or the pool is empty): 1 s.
pub const PROBE_BUSY_RETRY: Duration = Duration::from_secs(1);

/// A stable 64-bit hash of `text` (FNV-1a, then a finaliser that spreads the bits), the
/// same in every replica and version: affinity keys and backend names are hashed with it.
pub fn stable_hash(text: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in text {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(hash)
}

fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Weighted rendezvous (highest random weight) score of `backend` for `key`:
/// `-weight / ln(u)` with `u` in (0, 1) drawn from the pair's hash, so each backend wins a
/// share of keys proportional to its weight.
#[allow(clippy::cast_precision_loss)]
fn rendezvous_score(key: u64, backend: &str, weight: u64) -> f64 {
    let hash = mix(key ^ stable_hash(backend.as_bytes()));
    let unit = ((hash >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -(weight as f64) / unit.ln()
}

/// The result of [`PoolRoutes::pick`].
#[derive(Debug)]
pub enum Pick<'a> {
    /// Send the attempt to this backend and report through `attempt`.
    Backend {
        /// Position of the backend in the pool's config (what goes into `tried`).
        index: usize,
        /// The backend's config.
        backend: &'a BackendConfig,
        /// The breaker permit and in-flight accounting of this attempt.
        attempt: Attempt,
    },
    /// No backend admits now; the earliest reopening is `retry_after` away (at least 1 ms).
    /// Render it with `crate::protocol::headers`.
    Unavailable {
        /// Time until the earliest breaker reopens.
        retry_after: Duration,
    },
}

/// One attempt at one backend: holds the breaker permit and counts as in flight until
/// dropped. Owned and `'static`, so it can move into a streaming response body.
#[derive(Debug)]
pub struct Attempt {
    runtime: Arc<BackendRuntime>,
    /// `None` once the outcome was recorded.
    permit: Option<Permit>,
}

impl Attempt {
    fn new(runtime: &Arc<BackendRuntime>, permit: Permit) -> Self {
        runtime.in_flight.fetch_add(1, Ordering::Relaxed);
        runtime.requests.fetch_add(1, Ordering::Relaxed);
        Self {
            runtime: Arc::clone(runtime),
            permit: Some(permit),
        }
    }

    /// Whether this attempt is its backend's half-open probe.
    pub fn is_probe(&self) -> bool {
        self.permit.as_ref().is_some_and(Permit::is_probe)
    }

    /// The backend's runtime state.
    pub fn runtime(&self) -> &Arc<BackendRuntime> {
        &self.runtime
    }

    /// Reports the outcome to the breaker (only the first call counts; later calls return
    /// `None`). Record as soon as the outcome is known (response headers, connect error,
    /// timeout), while the attempt may stay alive for the body. Dropping an attempt without
    /// recording releases a probe slot without judging the backend.
    pub fn record(&mut self, now: Instant, outcome: &Outcome) -> Option<Transition> {
        let permit = self.permit.take()?;
        if permit.breaker().is_failure(outcome) {
            self.runtime.failures.fetch_add(1, Ordering::Relaxed);
        }
        permit.record(now, outcome)
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        self.runtime.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl PoolRoutes {
    /// Whether any backend's breaker admits at `now` (tried or not).
    pub fn any_admits(&self, now: Instant) -> bool {
        self.runtimes.iter().any(|r| r.breaker.can_admit(now))
    }

    /// Picks the backend for the next attempt at `now`, never one of `tried` (indices from
    /// earlier [`Pick::Backend`]s of the same client request): one call reaches each backend
    /// at most once, so one request that every backend fails (a "poison" request) counts once
    /// per breaker, and its retries are never spent on the backend that just failed it.
    pub fn pick(&self, now: Instant, tried: &[usize], rng: &mut fastrand::Rng) -> Pick<'_> {
        self.pick_keyed(now, tried, rng, None)
    }

    /// [`PoolRoutes::pick`], with prompt-cache affinity when `key` is given: within the
    /// group, the backend with the highest weighted rendezvous score for `key` among those
    /// that admit (the same one for every call with that key while it admits; when it does
    /// not, the key's next-best, so only its own keys move), else by weight.
    pub fn pick_keyed(
        &self,
        now: Instant,
        tried: &[usize],
        rng: &mut fastrand::Rng,
        key: Option<u64>,
    ) -> Pick<'_> {
        for group in &self.groups {
            if let Some(key) = key
                && let Some(pick) = self.pick_by_key(group, now, tried, key)
            {
                return pick;
            }
            if let Some(pick) = self.pick_in_group(group, now, tried, rng) {
                return pick;
            }
        }
        Pick::Unavailable {
            retry_after: self.retry_after(now),
        }
    }

    /// The backend at `index` alone, when its breaker admits at `now` (a call that must reach
    /// one backend: the one holding a stored response); else when it reopens.
    pub fn pick_only(&self, index: usize, now: Instant) -> Pick<'_> {
        let (Some(runtime), Some(backend)) =
            (self.runtimes.get(index), self.config.backends.get(index))
        else {
            return Pick::Unavailable {
                retry_after: PROBE_BUSY_RETRY,
            };
        };
        match runtime.breaker.admit(now) {
            Admission::Admitted(permit) => Pick::Backend {
                index,
                backend,
                attempt: Attempt::new(runtime, permit),
            },
            _ => Pick::Unavailable {
                retry_after: runtime
                    .breaker
                    .reopens_at(now)
                    .map_or(PROBE_BUSY_RETRY, |at| {
                        at.saturating_duration_since(now)
                            .max(Duration::from_millis(1))
                    }),
            },
        }
    }

    /// The admitting, untried backend of `group` with the highest weighted rendezvous score
    /// for `key`, admitted; `None` when none admits (or its breaker refused just now).
    fn pick_by_key(
        &self,
        group: &Range<usize>,
        now: Instant,
        tried: &[usize],
        key: u64,
    ) -> Option<Pick<'_>> {
        let members = self.order.get(group.clone())?;
        let index = members
            .iter()
            .copied()
            .filter(|&i| !tried.contains(&i) && self.runtimes[i].breaker.can_admit(now))
            .max_by(|&a, &b| {
                let score =
                    |i: usize| rendezvous_score(key, &self.config.backends[i].name, self.weight(i));
                score(a).total_cmp(&score(b))
            })?;
        match self.runtimes[index].breaker.admit(now) {
            Admission::Admitted(permit) => Some(Pick::Backend {
                index,
                backend: &self.config.backends[index],
                attempt: Attempt::new(&self.runtimes[index], permit),
            }),
            _ => None,
        }
    }

    /// Position of the backend named `name` in the pool's config.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.config.backends.iter().position(|b| b.name == name)
    }

    /// Weighted choice among the group's admitting backends, or `None` when none admits.
    /// Re-draws when a breaker refuses between the check and the admission (another request
    /// took the probe or tripped it); bounded by the group size.
    fn pick_in_group(
        &self,
        group: &Range<usize>,
        now: Instant,
        tried: &[usize],
        rng: &mut fastrand::Rng,
    ) -> Option<Pick<'_>> {
        let members = self.order.get(group.clone())?;
        let eligible =
            |index: usize| !tried.contains(&index) && self.runtimes[index].breaker.can_admit(now);
        for _ in 0..=members.len() {
            let total: u64 = members
                .iter()
                .filter(|&&index| eligible(index))
                .map(|&index| self.weight(index))
                .sum();
            if total == 0 {
                return None;
            }
            let mut target = rng.u64(0..total);
            let chosen = members.iter().copied().filter(|&i| eligible(i)).find(|&i| {
                let weight = self.weight(i);
                let hit = target < weight;
                target = target.saturating_sub(weight);
                hit
            });
            let Some(index) = chosen else { continue };
            let runtime = &self.runtimes[index];
            if let Admission::Admitted(permit) = runtime.breaker.admit(now) {
                return Some(Pick::Backend {
                    index,
                    backend: &self.config.backends[index],
                    attempt: Attempt::new(runtime, permit),
                });
            }
        }
        None
    }

    fn weight(&self, index: usize) -> u64 {
        u64::from(self.config.backends[index].weight.max(1))
    }

    /// Time until the earliest breaker of the pool reopens, at least 1 ms.
    fn retry_after(&self, now: Instant) -> Duration {
        self.runtimes
            .iter()
            .filter_map(|runtime| runtime.breaker.reopens_at(now))
            .min()
            .map_or(PROBE_BUSY_RETRY, |at| {
                at.saturating_duration_since(now)
                    .max(Duration::from_millis(1))
            })
    }
}
