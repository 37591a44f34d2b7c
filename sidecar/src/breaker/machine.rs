//! The breaker state machine of one backend.
//!
//! Input: `admit(now)` before each attempt and `record(now, outcome)` (through a [`Permit`])
//! after it. Output: admissions, the state and the transitions. Time is always passed in.
//!
//! Concurrency: the state lives behind a `std::sync::Mutex` held for a few instructions and
//! never across an `.await` (nothing here is async). While closed, `admit`, `state` and
//! `can_admit` read an atomic flag and take no lock; only `record` locks on the closed path.
//!
//! Outcomes of attempts admitted earlier (still in flight when the state changed) are
//! handled so: while open, a failure carrying a longer retry-after extends the open time;
//! while half-open (or open past its time), only the probe's outcome counts.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use spillway_crds::snapshot::BreakerConfig;

use super::permit::{Admission, Permit};
use super::rule;
use super::window::Window;
use super::{BreakerState, Outcome, Transition};

/// A circuit breaker for one backend. `Send + Sync`; share it through an `Arc`.
#[derive(Debug)]
pub struct Breaker {
    config: BreakerConfig,
    /// Mirrors `matches!(state, State::Closed)`; written under the lock.
    closed: AtomicBool,
    trips: AtomicU64,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The first `now` recorded; window times are measured from it.
    origin: Option<Instant>,
    state: State,
    /// One per rule, same order as `config.rules`.
    windows: Vec<Window>,
    next_probe: u64,
    /// The outcome that opened the breaker last, and when.
    last_trip: Option<(Outcome, Instant)>,
}

#[derive(Clone, Copy, Debug)]
enum State {
    Closed,
    Open {
        until: Instant,
    },
    HalfOpen {
        /// The id of the probe in flight, if any.
        probe: Option<u64>,
        /// Consecutive successful probes so far.
        successes: u32,
    },
}

impl Breaker {
    /// A closed breaker with `config`'s rules.
    pub fn new(config: &BreakerConfig) -> Self {
        let windows = config
            .rules
            .iter()
            .map(|rule| Window::new(Duration::from_millis(rule.interval_ms)))
            .collect();
        Self {
            config: config.clone(),
            closed: AtomicBool::new(true),
            trips: AtomicU64::new(0),
            inner: Mutex::new(Inner {
                origin: None,
                state: State::Closed,
                windows,
                next_probe: 0,
                last_trip: None,
            }),
        }
    }

    /// The rules this breaker runs.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// Asks to send an attempt at `now`. Closed: admitted. Open: refused until `until`.
    /// Open past its time, or half-open with no probe in flight: admitted as the probe
    /// (the breaker becomes half-open). Half-open with a probe in flight: refused.
    pub fn admit(self: &Arc<Self>, now: Instant) -> Admission {
        if self.closed.load(Ordering::Acquire) {
            return Admission::Admitted(Permit::new(Arc::clone(self), None));
        }
        let mut inner = self.lock();
        match inner.state {
            State::Closed => Admission::Admitted(Permit::new(Arc::clone(self), None)),
            State::Open { until } if now < until => Admission::Open { until },
            State::Open { .. } => {
                let id = inner.take_probe_id();
                inner.state = State::HalfOpen {
                    probe: Some(id),
                    successes: 0,
                };
                Admission::Admitted(Permit::new(Arc::clone(self), Some(id)))
            }
            State::HalfOpen {
                probe: None,
                successes,
            } => {
                let id = inner.take_probe_id();
                inner.state = State::HalfOpen {
                    probe: Some(id),
                    successes,
                };
                Admission::Admitted(Permit::new(Arc::clone(self), Some(id)))
            }
            State::HalfOpen { probe: Some(_), .. } => Admission::ProbeInFlight,
        }
    }

    /// Whether [`admit`](Self::admit) at `now` would admit, without taking a probe slot.
    pub fn can_admit(&self, now: Instant) -> bool {
        if self.closed.load(Ordering::Acquire) {
            return true;
        }
        match self.lock().state {
            State::Closed => true,
            State::Open { until } => now >= until,
            State::HalfOpen { probe, .. } => probe.is_none(),
        }
    }

    /// The state at `now` (open past its time reads as half-open).
    pub fn state(&self, now: Instant) -> BreakerState {
        if self.closed.load(Ordering::Acquire) {
            return BreakerState::Closed;
        }
        match self.lock().state {
            State::Closed => BreakerState::Closed,
            State::Open { until } if now < until => BreakerState::Open { until },
            State::Open { .. } | State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// When an open breaker becomes half-open; `None` unless open at `now`.
    pub fn reopens_at(&self, now: Instant) -> Option<Instant> {
        match self.state(now) {
            BreakerState::Open { until } => Some(until),
            BreakerState::Closed | BreakerState::HalfOpen => None,
        }
    }

    /// The outcome that opened the breaker last, and when; `None` if it never opened.
    pub fn last_trip(&self) -> Option<(Outcome, Instant)> {
        if self.trips.load(Ordering::Relaxed) == 0 {
            return None;
        }
        self.lock().last_trip
    }

    /// How many times the breaker opened (from closed or from a failed probe).
    pub fn trips_total(&self) -> u64 {
        self.trips.load(Ordering::Relaxed)
    }

    /// Whether any rule counts `outcome` as a failure.
    pub fn is_failure(&self, outcome: &Outcome) -> bool {
        self.config
            .rules
            .iter()
            .any(|rule| rule::is_failure(rule, outcome))
    }

    /// Applies an outcome; `probe` is the id of the probe permit it came from, if any.
    pub(super) fn record(
        &self,
        now: Instant,
        outcome: &Outcome,
        probe: Option<u64>,
    ) -> Option<Transition> {
        let mut inner = self.lock();
        let transition = match inner.state {
            State::Closed => self.record_closed(&mut inner, now, outcome),
            State::Open { until } if now < until => {
                self.extend(&mut inner, now, until, outcome);
                None
            }
            State::HalfOpen {
                probe: Some(current),
                successes,
            } if probe == Some(current) => self.record_probe(&mut inner, now, successes, outcome),
            State::Open { .. } | State::HalfOpen { .. } => None,
        };
        self.closed
            .store(matches!(inner.state, State::Closed), Ordering::Release);
        transition
    }

    /// Frees the probe slot if probe `id` still holds it.
    pub(super) fn cancel_probe(&self, id: u64) {
        let mut inner = self.lock();
        if let State::HalfOpen {
            probe: Some(current),
            successes,
        } = inner.state
            && current == id
        {
            inner.state = State::HalfOpen {
                probe: None,
                successes,
            };
        }
    }

    fn record_closed(
        &self,
        inner: &mut Inner,
        now: Instant,
        outcome: &Outcome,
    ) -> Option<Transition> {
        let origin = *inner.origin.get_or_insert(now);
        let elapsed = now.saturating_duration_since(origin);
        // The tripped rule with the longest open duration, if any.
        let mut trip: Option<(usize, Duration)> = None;
        for (index, (rule, window)) in self.config.rules.iter().zip(&mut inner.windows).enumerate()
        {
            let failed = rule::is_failure(rule, outcome);
            let totals = window.add(elapsed, failed);
            if rule::tripped(rule.threshold, totals, failed) {
                let duration = rule::open_duration(rule, outcome, failed);
                if trip.is_none_or(|(_, longest)| duration > longest) {
                    trip = Some((index, duration));
                }
            }
        }
        let (index, duration) = trip?;
        Some(self.open(inner, (now, outcome), duration, index, BreakerState::Closed))
    }

    fn record_probe(
        &self,
        inner: &mut Inner,
        now: Instant,
        successes: u32,
        outcome: &Outcome,
    ) -> Option<Transition> {
        let failure = self
            .config
            .rules
            .iter()
            .enumerate()
            .filter(|(_, rule)| rule::is_failure(rule, outcome))
            .map(|(index, rule)| (index, rule::open_duration(rule, outcome, true)))
            .max_by_key(|(_, duration)| *duration);
        if let Some((index, duration)) = failure {
            let cause = (now, outcome);
            return Some(self.open(inner, cause, duration, index, BreakerState::HalfOpen));
        }
        let successes = successes.saturating_add(1);
        if successes < self.config.probe_successes.max(1) {
            inner.state = State::HalfOpen {
                probe: None,
                successes,
            };
            return None;
        }
        inner.state = State::Closed;
        inner.windows.iter_mut().for_each(Window::reset);
        Some(Transition {
            from: BreakerState::HalfOpen,
            to: BreakerState::Closed,
            rule: None,
        })
    }

    /// While open, a failure carrying a retry-after longer than the remaining time extends it.
    fn extend(&self, inner: &mut Inner, now: Instant, until: Instant, outcome: &Outcome) {
        let longest = self
            .config
            .rules
            .iter()
            .filter_map(|rule| rule::extension(rule, outcome))
            .max();
        if let Some(delay) = longest {
            let candidate = later(now, delay);
            if candidate > until {
                inner.state = State::Open { until: candidate };
            }
        }
    }

    fn open(
        &self,
        inner: &mut Inner,
        (now, outcome): (Instant, &Outcome),
        duration: Duration,
        rule: usize,
        from: BreakerState,
    ) -> Transition {
        let until = later(now, duration);
        inner.state = State::Open { until };
        inner.last_trip = Some((*outcome, now));
        self.trips.fetch_add(1, Ordering::Relaxed);
        Transition {
            from,
            to: BreakerState::Open { until },
            rule: self.config.rules.get(rule).map(|r| r.name.clone()),
        }
    }

    /// The lock; a panic elsewhere cannot leave the state half-written (every update is a
    /// single assignment), so a poisoned lock is used as is.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    fn take_probe_id(&mut self) -> u64 {
        self.next_probe = self.next_probe.wrapping_add(1);
        self.next_probe
    }
}

/// `now + delay`; delays are clamped to a year upstream, so the fallback never happens on a
/// real clock.
fn later(now: Instant, delay: Duration) -> Instant {
    now.checked_add(delay).unwrap_or(now)
}
