//! The claims of the demo's story, checked against what was observed: traffic ran, it
//! spilled over, no backend's 429 reached a client, an app was held to its own per-minute
//! quota (429 with `Retry-After`) and another used up its daily one (403), a breaker tripped
//! and re-closed, errors tripped a breaker too, and the gateway's token counts equal the
//! backends' ledger.
//!
//! Input: [`Findings`]. Output: [`Check`]s — held, failed, or not judged (a Ctrl-C that came
//! before a claim could hold, a burst that never ran); pure.

use std::collections::BTreeSet;

use super::clients::{self, Refusals};
use super::scenario::{BURST_ERRORS, PAYGO_WE, PTU};
use super::summary::Findings;
use super::view::spilled;
use crate::loadtest::render::thousands;
use spillway_sidecar::usage::Usage;

/// One verified claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// Held (`✓`), failed (`✗`), or `None` when it could not be judged (`·`).
    pub held: Option<bool>,
    /// The claim, with its numbers.
    pub text: String,
}

fn check(held: Option<bool>, text: String) -> Check {
    Check { held, text }
}

impl Check {
    /// `✓`, `✗` or `·`.
    pub fn mark(&self) -> &'static str {
        match self.held {
            Some(true) => "✓",
            Some(false) => "✗",
            None => "·",
        }
    }
}

impl Findings {
    /// A claim about the story: not judged when Ctrl-C cut the run short before it held.
    fn judged(&self, held: bool) -> Option<bool> {
        (held || !self.interrupted).then_some(held)
    }

    /// Refusals summed over every app.
    fn refused(&self) -> Refusals {
        clients::sum(&self.refusals)
    }

    /// The claims of the story, checked.
    pub fn checks(&self) -> Vec<Check> {
        let r = &self.report;
        let spilled = spilled(r, &self.breakers);
        vec![
            check(
                Some(self.traffic_ran()),
                format!(
                    "traffic ran: {} requests from {} apps, {} answered 2xx",
                    r.sent,
                    r.by_app.len(),
                    r.ok()
                ),
            ),
            check(
                self.judged(spilled > 0),
                format!(
                    "spillover happened: {spilled} requests served by pay-as-you-go while {PTU} was throttled ({} spilled inside the same request)",
                    r.retried
                ),
            ),
            self.backend_429_check(),
            self.rate_limited_check(),
            self.exhausted_check(),
            self.trip_check(),
            self.burst_check(),
            self.tokens_check(),
        ]
    }

    fn backend_429_check(&self) -> Check {
        let refused = self.refused();
        if refused.backend_429 > 0 {
            return check(
                Some(false),
                format!("{} × backend 429 reached clients", refused.backend_429),
            );
        }
        check(
            Some(true),
            format!(
                "no backend 429 reached a client: {PTU}'s {} × 429 stayed inside the gateway (the {} × 429 clients got came from their own quotas)",
                self.answered(PTU, |s| s == 429),
                refused.quota_429
            ),
        )
    }

    /// Apps whose calls were refused `count` times (by `pick`), as `app (n × what)`.
    fn apps_refused(&self, pick: impl Fn(&Refusals) -> u64, what: &str) -> Vec<String> {
        self.refusals
            .iter()
            .filter(|(_, r)| pick(r) > 0)
            .map(|(app, r)| {
                let quota = self.quotas.get(app).map_or("", String::as_str);
                format!("{app} ({} × {what}, quota {quota})", pick(r))
            })
            .collect()
    }

    fn rate_limited_check(&self) -> Check {
        let apps = self.apps_refused(|r| r.quota_429, "429");
        if apps.is_empty() {
            return check(
                self.judged(false),
                "no app was limited by its own quota (429)".to_owned(),
            );
        }
        if self.refused_reached_backend > 0 {
            return check(
                Some(false),
                format!(
                    "{} calls refused by a quota still reached a backend",
                    self.refused_reached_backend
                ),
            );
        }
        let Some(probe) = &self.quota_probe else {
            return check(
                self.judged(false),
                format!(
                    "{} got 429 from the gateway, but none of {} probes saw a 429 with Retry-After",
                    apps.join(", "),
                    self.probes
                ),
            );
        };
        check(
            Some(true),
            format!(
                "an app was limited by its own quota (429 with Retry-After): {}, none sent to a backend; a probe as {} got Retry-After: {}, retry-after-ms: {} — \"{}\"",
                apps.join(", "),
                probe.app,
                probe.retry_after_s.unwrap_or_default(),
                probe
                    .retry_after_ms
                    .map_or_else(|| "-".to_owned(), |ms| ms.to_string()),
                probe.message.as_deref().unwrap_or("-"),
            ),
        )
    }

    fn exhausted_check(&self) -> Check {
        let apps = self.apps_refused(|r| r.quota_403, "403");
        if apps.is_empty() {
            return check(
                self.judged(false),
                "no app used up its daily quota (403)".to_owned(),
            );
        }
        check(
            Some(true),
            format!(
                "an app used up its daily quota (403 until midnight UTC): {}",
                apps.join(", ")
            ),
        )
    }

    fn trip_check(&self) -> Check {
        let Some(b) = self
            .breakers
            .iter()
            .find(|b| b.opened > 0 && b.reclosed > 0)
        else {
            let opened: Vec<String> = self
                .breakers
                .iter()
                .map(|b| format!("{} opened {}×, re-closed {}×", b.name, b.opened, b.reclosed))
                .collect();
            return check(
                self.judged(false),
                format!(
                    "no breaker both tripped and re-closed ({}); the PTU's window frees up about 6 s after it fills, so runs under ~10 s end too early",
                    opened.join(", ")
                ),
            );
        };
        check(
            Some(true),
            format!(
                "breaker tripped and re-closed: {} opened {}×, re-closed {}× ({} failed probes while its window was still full)",
                b.name, b.opened, b.reclosed, b.failed_probes
            ),
        )
    }

    fn burst_check(&self) -> Check {
        let errors = self.answered(PAYGO_WE, |s| s >= 500);
        let opened = self.breaker(PAYGO_WE).map_or(0, |b| b.opened);
        match (self.burst_injected, opened > 0) {
            (false, _) => check(
                None,
                "5xx burst skipped: the run ended before its midpoint".to_owned(),
            ),
            (true, true) => check(
                Some(true),
                format!(
                    "errors trip breakers too: {PAYGO_WE} answered {errors} × 5xx and its breaker opened {opened}×"
                ),
            ),
            (true, false) => check(
                None,
                format!(
                    "the 5xx burst reached {PAYGO_WE} {errors} of {BURST_ERRORS} times, too few to trip it (traffic stayed on {PTU})"
                ),
            ),
        }
    }

    /// Tokens per app, gateway against ledger. Calls a quota refused count zero tokens on the
    /// gateway's side and never reach the ledger, so only admitted calls add up.
    fn tokens_check(&self) -> Check {
        let apps: BTreeSet<&String> = self.gateway.keys().chain(self.ledger.keys()).collect();
        let tokens = |map: &std::collections::BTreeMap<String, Usage>, app: &str| {
            map.get(app).copied().unwrap_or_default()
        };
        let differ: Vec<&str> = apps
            .into_iter()
            .filter(|app| tokens(&self.gateway, app) != tokens(&self.ledger, app))
            .map(String::as_str)
            .collect();
        let total: u64 = self.ledger.values().map(Usage::total).sum();
        let refused = self.refused();
        if differ.is_empty() && self.gateway_lost == 0 {
            check(
                Some(true),
                format!(
                    "gateway token counts equal the backends' ledger for all {} apps ({} tokens of admitted calls; the {} calls refused by quotas billed nothing)",
                    self.gateway.len(),
                    thousands(total),
                    refused.quota_429 + refused.quota_403
                ),
            )
        } else {
            check(
                Some(false),
                format!(
                    "gateway token counts differ from the ledger for {} (records lost: {})",
                    differ.join(", "),
                    self.gateway_lost
                ),
            )
        }
    }
}
