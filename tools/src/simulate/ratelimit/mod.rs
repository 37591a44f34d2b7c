//! Azure-like rate limits: tokens per minute and requests per minute over a sliding 60 s
//! window, and the headers that describe them.
//!
//! Input: the current instant (injected, so the window is tested without sleeping) and the
//! cost of a request (prompt tokens + `max_tokens`, or the default completion length).
//! Output: a [`Decision`] — admitted with the remaining quota, or limited with the exact wait
//! until the request would fit — and [`write_headers`] for `x-ratelimit-*`, `retry-after` and
//! `retry-after-ms`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderName, HeaderValue};
use spillway_sidecar::protocol::headers::{reset_duration, retry_after_ms, retry_after_secs};

/// Length of the sliding window.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Admissions closer together than this share one slot (bounds memory at high rates).
const SLOT_GRANULARITY: Duration = Duration::from_millis(1);

/// Configured limits; `None` means unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// Tokens per minute.
    pub tpm: Option<u64>,
    /// Requests per minute.
    pub rpm: Option<u64>,
}

/// The state of the window as reported to a client.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Quota {
    /// The limits in force.
    pub limits: Limits,
    /// Requests left in the window (after this request when admitted).
    pub remaining_requests: u64,
    /// Tokens left in the window (after this request when admitted).
    pub remaining_tokens: u64,
    /// Admitted: time until the window is empty. Limited: time until the request count fits.
    pub reset_requests: Duration,
    /// Admitted: time until the window is empty. Limited: time until the token cost fits.
    pub reset_tokens: Duration,
}

/// Which limit a refused request ran into (the one that makes it wait longest).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exceeded {
    /// Tokens per minute.
    Tokens,
    /// Requests per minute.
    Requests,
}

/// The outcome of [`RateWindow::admit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Counted in the window.
    Admitted(Quota),
    /// Refused; not counted.
    Limited {
        /// Window state and per-dimension waits.
        quota: Quota,
        /// When to retry: the longer of the two waits.
        retry_after: Duration,
        /// The limit responsible for `retry_after`.
        exceeded: Exceeded,
    },
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    at: Instant,
    tokens: u64,
    requests: u64,
}

/// A sliding 60 s window of admitted requests and their token costs.
#[derive(Debug, Default)]
pub struct RateWindow {
    limits: Limits,
    slots: VecDeque<Slot>,
    tokens: u64,
    requests: u64,
}

impl RateWindow {
    /// An empty window with `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Changes the limits; requests already counted stay counted.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Admits a request costing `cost` tokens at `now`, or says how long it must wait.
    pub fn admit(&mut self, now: Instant, cost: u64) -> Decision {
        self.expire(now);
        let wait_requests = self.wait_for(now, self.limits.rpm, self.requests, 1, |s| s.requests);
        let wait_tokens = self.wait_for(now, self.limits.tpm, self.tokens, cost, |s| s.tokens);
        if wait_requests.is_zero() && wait_tokens.is_zero() {
            self.record(now, cost);
            return Decision::Admitted(self.quota(now));
        }
        let mut quota = self.quota(now);
        quota.reset_requests = wait_requests;
        quota.reset_tokens = wait_tokens;
        let (retry_after, exceeded) = if wait_tokens >= wait_requests {
            (wait_tokens, Exceeded::Tokens)
        } else {
            (wait_requests, Exceeded::Requests)
        };
        Decision::Limited {
            quota,
            retry_after,
            exceeded,
        }
    }

    /// The window state at `now` without admitting anything.
    pub fn peek(&mut self, now: Instant) -> Quota {
        self.expire(now);
        self.quota(now)
    }

    fn expire(&mut self, now: Instant) {
        while let Some(front) = self.slots.front() {
            if now.saturating_duration_since(front.at) < WINDOW {
                break;
            }
            self.tokens -= front.tokens;
            self.requests -= front.requests;
            self.slots.pop_front();
        }
    }

    fn record(&mut self, now: Instant, cost: u64) {
        self.tokens += cost;
        self.requests += 1;
        if let Some(back) = self.slots.back_mut()
            && now.saturating_duration_since(back.at) < SLOT_GRANULARITY
        {
            back.tokens += cost;
            back.requests += 1;
            return;
        }
        self.slots.push_back(Slot {
            at: now,
            tokens: cost,
            requests: 1,
        });
    }

    /// Time until `used + cost` fits under `limit` as old slots leave the window. A cost above
    /// the limit itself never fits; it is told to wait a whole window.
    fn wait_for(
        &self,
        now: Instant,
        limit: Option<u64>,
        used: u64,
        cost: u64,
        amount: impl Fn(&Slot) -> u64,
    ) -> Duration {
        let Some(limit) = limit else {
            return Duration::ZERO;
        };
        if used + cost <= limit {
            return Duration::ZERO;
        }
        if cost > limit {
            return WINDOW;
        }
        let need = used + cost - limit;
        let mut freed = 0;
        for slot in &self.slots {
            freed += amount(slot);
            if freed >= need {
                return (slot.at + WINDOW).saturating_duration_since(now);
            }
        }
        WINDOW
    }

    fn quota(&self, now: Instant) -> Quota {
        let empty_in = self.slots.back().map_or(Duration::ZERO, |s| {
            (s.at + WINDOW).saturating_duration_since(now)
        });
        Quota {
            limits: self.limits,
            remaining_requests: self
                .limits
                .rpm
                .map_or(0, |l| l.saturating_sub(self.requests)),
            remaining_tokens: self.limits.tpm.map_or(0, |l| l.saturating_sub(self.tokens)),
            reset_requests: empty_in,
            reset_tokens: empty_in,
        }
    }
}

/// Writes `x-ratelimit-limit-*`, `x-ratelimit-remaining-*` and `x-ratelimit-reset-*` for
/// each configured limit, and `retry-after` / `retry-after-ms` when `retry_after` is given.
pub fn write_headers(headers: &mut HeaderMap, quota: &Quota, retry_after: Option<Duration>) {
    let mut put = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::try_from(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    };
    if let Some(rpm) = quota.limits.rpm {
        put("x-ratelimit-limit-requests", rpm.to_string());
        put(
            "x-ratelimit-remaining-requests",
            quota.remaining_requests.to_string(),
        );
        put(
            "x-ratelimit-reset-requests",
            reset_duration(quota.reset_requests),
        );
    }
    if let Some(tpm) = quota.limits.tpm {
        put("x-ratelimit-limit-tokens", tpm.to_string());
        put(
            "x-ratelimit-remaining-tokens",
            quota.remaining_tokens.to_string(),
        );
        put(
            "x-ratelimit-reset-tokens",
            reset_duration(quota.reset_tokens),
        );
    }
    if let Some(wait) = retry_after {
        put("retry-after", retry_after_secs(wait).to_string());
        put("retry-after-ms", retry_after_ms(wait).to_string());
    }
}

#[cfg(test)]
mod tests;
