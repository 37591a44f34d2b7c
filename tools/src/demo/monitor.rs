//! Watches the gateway's circuit breakers while the demo runs and turns what it sees into
//! counts and events: a breaker opening from closed, probes failing, a breaker closing again.
//!
//! Input: polls of each backend's breaker state and trip counter (every ~50 ms; an open
//! breaker stays open for at least a second in the demo, so no opening is missed, and the
//! trip counter is exact). Output: per-backend [`BreakerStats`] and a list of timed
//! [`Event`]s for the live view.

use std::time::{Duration, Instant};

use spillway_sidecar::breaker::BreakerState;
use spillway_sidecar::proxy::Gateway;

/// Something worth telling the viewer, at a time since the demo started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Time since the start.
    pub at: Duration,
    /// What happened.
    pub text: String,
}

/// A breaker state for display.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateView {
    /// Traffic flows.
    Closed,
    /// No traffic for this long still.
    Open(Duration),
    /// A probe decides.
    HalfOpen,
}

impl StateView {
    fn of(state: BreakerState, now: Instant) -> Self {
        match state {
            BreakerState::Closed => Self::Closed,
            BreakerState::Open { until } => Self::Open(until.saturating_duration_since(now)),
            BreakerState::HalfOpen => Self::HalfOpen,
        }
    }
}

/// What was seen of one backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BreakerStats {
    /// Backend name.
    pub name: String,
    /// Priority group.
    pub priority: u32,
    /// The state at the last poll.
    pub state: StateView,
    /// Openings from closed.
    pub opened: u64,
    /// Re-openings after a failed half-open probe.
    pub failed_probes: u64,
    /// Closings after half-open.
    pub reclosed: u64,
    /// Attempts the gateway sent to it.
    pub attempts: u64,
    /// Attempts a breaker rule counted as failures.
    pub failures: u64,
    trips: u64,
}

/// The breaker watcher; see the module docs.
#[derive(Debug, Default)]
pub struct BreakerWatch {
    backends: Vec<BreakerStats>,
    events: Vec<Event>,
}

/// One poll of one backend.
#[derive(Clone, Copy, Debug)]
pub struct Poll<'a> {
    /// Backend name.
    pub name: &'a str,
    /// Priority group.
    pub priority: u32,
    /// Breaker state now.
    pub state: StateView,
    /// The breaker's trip counter.
    pub trips: u64,
    /// Attempts so far.
    pub attempts: u64,
    /// Failures so far.
    pub failures: u64,
}

impl BreakerWatch {
    /// Nothing seen yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Polls every backend of the gateway's pool serving `model`.
    pub fn poll(&mut self, gateway: &Gateway, model: &str, at: Duration) {
        let applied = gateway.applied();
        let Some(pool) = applied.as_ref().as_ref().and_then(|a| a.routes.pool(model)) else {
            return;
        };
        let now = Instant::now();
        for (config, runtime) in pool.backends() {
            let breaker = runtime.breaker();
            self.observe(
                Poll {
                    name: &config.name,
                    priority: config.priority,
                    state: StateView::of(breaker.state(now), now),
                    trips: breaker.trips_total(),
                    attempts: runtime.requests(),
                    failures: runtime.failures(),
                },
                at,
            );
        }
    }

    /// Records one poll of one backend; see the module docs.
    pub fn observe(&mut self, poll: Poll<'_>, at: Duration) {
        let index = match self.backends.iter().position(|b| b.name == poll.name) {
            Some(index) => index,
            None => {
                self.backends.push(BreakerStats {
                    name: poll.name.to_owned(),
                    priority: poll.priority,
                    state: StateView::Closed,
                    opened: 0,
                    failed_probes: 0,
                    reclosed: 0,
                    attempts: 0,
                    failures: 0,
                    trips: 0,
                });
                self.backends.len() - 1
            }
        };
        let b = &mut self.backends[index];
        let new_trips = poll.trips.saturating_sub(b.trips);
        let mut said = Vec::new();
        if new_trips > 0 {
            // From closed, the first new trip is an opening; every other one is a failed probe.
            let from_closed = u64::from(b.state == StateView::Closed);
            b.opened += from_closed;
            b.failed_probes += new_trips - from_closed;
            if from_closed == 1 {
                said.push(format!("{} breaker OPEN — traffic moves on", b.name));
            }
        }
        // Closed now after being open (or after tripping since the last poll: a short open).
        if poll.state == StateView::Closed && (b.state != StateView::Closed || new_trips > 0) {
            b.reclosed += 1;
            said.push(format!("{} breaker CLOSED again — probe succeeded", b.name));
        }
        b.trips = poll.trips;
        b.state = poll.state;
        b.priority = poll.priority;
        b.attempts = poll.attempts;
        b.failures = poll.failures;
        self.events
            .extend(said.into_iter().map(|text| Event { at, text }));
    }

    /// Adds an event of the demo's own (an injected fault, say).
    pub fn note(&mut self, at: Duration, text: String) {
        self.events.push(Event { at, text });
    }

    /// The backends seen, in pool order.
    pub fn backends(&self) -> &[BreakerStats] {
        &self.backends
    }

    /// The backend named `name`.
    pub fn backend(&self, name: &str) -> Option<&BreakerStats> {
        self.backends.iter().find(|b| b.name == name)
    }

    /// Every event so far, oldest first.
    pub fn events(&self) -> &[Event] {
        &self.events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll(state: StateView, trips: u64) -> Poll<'static> {
        Poll {
            name: "ptu",
            priority: 1,
            state,
            trips,
            attempts: 0,
            failures: 0,
        }
    }

    #[test]
    fn counts_openings_failed_probes_and_recloses() {
        let mut watch = BreakerWatch::new();
        let open = StateView::Open(Duration::from_secs(1));
        let steps = [
            (StateView::Closed, 0),
            (open, 1),                // opened from closed
            (StateView::HalfOpen, 1), // open time over
            (open, 2),                // the probe failed
            (open, 4),                // two more failed probes between polls
            (StateView::Closed, 4),   // a probe succeeded
            (StateView::Closed, 4),   // stays closed: nothing new
            (open, 5),                // opened again
            (StateView::Closed, 5),   // closed again
            (StateView::Closed, 6),   // opened and closed between two polls
        ];
        for (i, (state, trips)) in steps.into_iter().enumerate() {
            watch.observe(poll(state, trips), Duration::from_secs(i as u64));
        }
        let ptu = watch.backend("ptu").expect("seen");
        assert_eq!(
            (ptu.opened, ptu.failed_probes, ptu.reclosed),
            (3, 3, 3),
            "{ptu:?}"
        );
        let events: Vec<_> = watch.events().iter().map(|e| e.at.as_secs()).collect();
        assert_eq!(events, vec![1, 5, 7, 8, 9, 9], "{:?}", watch.events());
        assert!(watch.events()[1].text.contains("CLOSED again"));
    }
}
