//! Admission decisions and the permit an admitted attempt reports through.
//!
//! Input: a [`Breaker`] deciding at `admit` time. Output: an [`Admission`]; when admitted, a
//! [`Permit`] that carries the outcome back with [`Permit::record`]. A probe permit dropped
//! without a report (the request was cancelled, the task panicked, the proxy forgot) frees
//! the half-open probe slot in its `Drop`, so a lost probe never wedges the breaker; the
//! cancelled probe counts neither as success nor as failure.

use std::sync::Arc;
use std::time::Instant;

use super::{Breaker, Outcome, Transition};

/// Whether an attempt may go to the backend.
#[derive(Debug)]
pub enum Admission {
    /// Go ahead and report the outcome through the permit.
    Admitted(Permit),
    /// Open: no traffic until `until`.
    Open {
        /// When the breaker becomes half-open.
        until: Instant,
    },
    /// Half-open and the one probe is in flight.
    ProbeInFlight,
}

impl Admission {
    /// The permit, if admitted.
    pub fn into_permit(self) -> Option<Permit> {
        match self {
            Self::Admitted(permit) => Some(permit),
            Self::Open { .. } | Self::ProbeInFlight => None,
        }
    }
}

/// A ticket for one admitted attempt; report its outcome with [`Permit::record`].
///
/// Holds an `Arc` of the breaker, so it is `'static` and can move into a response body.
#[must_use = "report the attempt's outcome with Permit::record"]
#[derive(Debug)]
pub struct Permit {
    breaker: Arc<Breaker>,
    /// The probe id while this permit holds the half-open probe slot.
    probe: Option<u64>,
}

impl Permit {
    pub(super) fn new(breaker: Arc<Breaker>, probe: Option<u64>) -> Self {
        Self { breaker, probe }
    }

    /// Whether this attempt is the half-open probe.
    pub fn is_probe(&self) -> bool {
        self.probe.is_some()
    }

    /// The breaker that admitted the attempt.
    pub fn breaker(&self) -> &Arc<Breaker> {
        &self.breaker
    }

    /// Reports the attempt's outcome at `now`; returns the state change it caused, if any.
    pub fn record(mut self, now: Instant, outcome: &Outcome) -> Option<Transition> {
        let probe = self.probe.take();
        self.breaker.record(now, outcome, probe)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(id) = self.probe.take() {
            self.breaker.cancel_probe(id);
        }
    }
}
