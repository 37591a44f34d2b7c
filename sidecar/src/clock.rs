//! Time as the data plane sees it, injectable so state machines are tested without sleeping.

use std::time::{Instant, SystemTime};

/// A source of monotonic and wall-clock time.
pub trait Clock: Send + Sync + 'static {
    /// Monotonic now, for windows and timeouts.
    fn now(&self) -> Instant;
    /// Wall-clock now, for HTTP-date headers.
    fn wall(&self) -> SystemTime;
}

/// The real clocks.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
}
