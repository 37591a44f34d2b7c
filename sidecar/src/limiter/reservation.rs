//! An admitted call's hold on its quotas, trued up when the real usage is known.
//!
//! Input: what an admission reserved (per quota) and where (local counters or Redis).
//! Output: header values now, and a true-up later with [`Reservation::settle`]: the unused
//! part of the reservation is returned, an overshoot is charged (a token bucket may go into
//! debt). Dropping a reservation without settling keeps the reservation charged as if the call
//! had used exactly what was reserved — never a leak, never a free call — and releases its
//! hold on the app's local state so the state can be evicted later.

use std::sync::Arc;

use super::Core;
use super::local::Charge;
use super::outcome::{RateHeaders, Used};
use super::redis::{RedisSettle, RedisStore};

/// An admitted call. Owned and `'static`: it can move into the response body.
#[derive(Debug)]
#[must_use = "settle the reservation with the real usage"]
pub struct Reservation {
    headers: RateHeaders,
    pending: Option<Pending>,
}

#[derive(Debug)]
enum Pending {
    Local {
        core: Arc<Core>,
        app: Arc<str>,
        /// What each quota reserved.
        charges: Vec<Charge>,
        admitted_ms: i64,
    },
    Redis {
        store: Arc<RedisStore>,
        settle: RedisSettle,
    },
}

impl Reservation {
    /// A call no quota applies to (or admitted by `FailOpen`): nothing to settle.
    pub(super) fn unlimited() -> Self {
        Self {
            headers: RateHeaders::default(),
            pending: None,
        }
    }

    pub(super) fn local(
        core: Arc<Core>,
        app: Arc<str>,
        charges: Vec<Charge>,
        admitted_ms: i64,
        headers: RateHeaders,
    ) -> Self {
        Self {
            headers,
            pending: Some(Pending::Local {
                core,
                app,
                charges,
                admitted_ms,
            }),
        }
    }

    pub(super) fn redis(store: Arc<RedisStore>, settle: RedisSettle, headers: RateHeaders) -> Self {
        Self {
            headers,
            pending: Some(Pending::Redis { store, settle }),
        }
    }

    /// `x-ratelimit-*` values after this reservation (empty when no quota applied).
    pub fn headers(&self) -> &RateHeaders {
        &self.headers
    }

    /// Whether any quota holds tokens for this call.
    pub fn is_limited(&self) -> bool {
        self.pending.is_some()
    }

    /// Trues up with what the call really used: each quota's weighted tokens and each
    /// budget's cost. Returns what was reserved but not used, charges what was used beyond
    /// it. Local state is updated before this returns; the Redis update is sent from a
    /// spawned task (one round trip).
    pub fn settle(mut self, used: &Used<'_>) {
        match self.pending.take() {
            Some(Pending::Local {
                core,
                app,
                charges,
                admitted_ms,
            }) => {
                let plan = core.plan.load();
                let now = core.clock.now();
                core.local
                    .settle(&app, &charges, used, admitted_ms, now, &plan);
            }
            Some(Pending::Redis { store, settle }) => store.settle(settle, used),
            None => {}
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(Pending::Local { core, app, .. }) = self.pending.take() {
            core.local.release(&app);
        }
    }
}
