//! The end of the demo: tables per backend and per app, the checks that the story really
//! happened, and where to look next.
//!
//! Input: [`Findings`] — the clients' merged report, the breakers as watched, tokens per app
//! as the gateway counted them and as the simulators' ledger billed them (joined to apps by
//! the request ids the clients sent), and the statuses each backend answered. Output: text
//! and [`Check`]s; pure.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use super::monitor::BreakerStats;
use super::scenario::{BURST_ERRORS, PAYGO_WE, PTU};
use super::view::{failures, spilled};
use crate::loadtest::Report;
use crate::loadtest::render::{duration, thousands};
use crate::simulate::LedgerEntry;
use crate::usage::Usage;
use crate::usage::totals::TotalsView;

/// What the demo observed.
#[derive(Clone, Debug, Default)]
pub struct Findings {
    /// How long the traffic ran.
    pub elapsed: Duration,
    /// The clients' merged report.
    pub report: Report,
    /// Breakers, in pool order.
    pub breakers: Vec<BreakerStats>,
    /// Tokens per app, as the gateway counted them.
    pub gateway: BTreeMap<String, Usage>,
    /// Usage records the gateway's totals missed (should be 0).
    pub gateway_lost: u64,
    /// Tokens per app, as the backends billed them.
    pub ledger: BTreeMap<String, Usage>,
    /// Statuses each backend answered the gateway with.
    pub backend_statuses: BTreeMap<String, BTreeMap<u16, u64>>,
    /// The midway 5xx burst was injected.
    pub burst_injected: bool,
    /// Ctrl-C ended the run early.
    pub interrupted: bool,
}

/// One verified claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// Held (`✓`), failed (`✗`), or `None` when it could not be judged (`·`).
    pub held: Option<bool>,
    /// The claim, with its numbers.
    pub text: String,
}

/// Tokens per app from the gateway's totals.
pub fn gateway_tokens(view: &TotalsView) -> BTreeMap<String, Usage> {
    let mut out: BTreeMap<String, Usage> = BTreeMap::new();
    for row in &view.rows {
        let usage = out.entry(row.app_id.clone()).or_default();
        usage.prompt_tokens += row.totals.prompt_tokens;
        usage.completion_tokens += row.totals.completion_tokens;
    }
    out
}

/// Tokens per app from ledger entries, the app found by request id (`unknown` otherwise),
/// and the statuses per backend.
pub fn ledger_tokens(
    entries: &[LedgerEntry],
    apps: &HashMap<String, String>,
) -> (
    BTreeMap<String, Usage>,
    BTreeMap<String, BTreeMap<u16, u64>>,
) {
    let mut tokens: BTreeMap<String, Usage> = BTreeMap::new();
    let mut statuses: BTreeMap<String, BTreeMap<u16, u64>> = BTreeMap::new();
    for entry in entries {
        let app = apps
            .get(&entry.request_id)
            .map_or("unknown", String::as_str);
        let usage = tokens.entry(app.to_owned()).or_default();
        usage.prompt_tokens += entry.prompt_tokens;
        usage.completion_tokens += entry.completion_tokens;
        *statuses
            .entry(entry.backend.clone())
            .or_default()
            .entry(entry.status)
            .or_default() += 1;
    }
    (tokens, statuses)
}

impl Findings {
    fn answered(&self, backend: &str, status: impl Fn(u16) -> bool) -> u64 {
        self.backend_statuses.get(backend).map_or(0, |m| {
            m.iter().filter(|(s, _)| status(**s)).map(|(_, n)| n).sum()
        })
    }

    fn breaker(&self, name: &str) -> Option<&BreakerStats> {
        self.breakers.iter().find(|b| b.name == name)
    }

    /// A claim about the story: not judged when Ctrl-C cut the run short before it held.
    fn judged(&self, held: bool) -> Option<bool> {
        (held || !self.interrupted).then_some(held)
    }

    /// Whether any request succeeded (the demo fails without that).
    pub fn traffic_ran(&self) -> bool {
        self.report.ok() > 0
    }

    /// The claims of the story, checked.
    pub fn checks(&self) -> Vec<Check> {
        let r = &self.report;
        let spilled = spilled(r, &self.breakers);
        let ptu_429 = self.answered(PTU, |s| s == 429);
        let to_clients_429 = r.by_status.get(&429).copied().unwrap_or(0);
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
            if to_clients_429 == 0 {
                check(
                    Some(true),
                    format!(
                        "no 429 reached a client ({PTU}'s {ptu_429} × 429 stayed inside the gateway)"
                    ),
                )
            } else {
                check(
                    Some(false),
                    format!("{to_clients_429} × 429 reached clients"),
                )
            },
            self.trip_check(),
            self.burst_check(),
            self.tokens_check(),
        ]
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

    fn tokens_check(&self) -> Check {
        let apps: BTreeSet<&String> = self.gateway.keys().chain(self.ledger.keys()).collect();
        let differ: Vec<&str> = apps
            .into_iter()
            .filter(|app| self.gateway.get(*app) != self.ledger.get(*app))
            .map(String::as_str)
            .collect();
        let total: u64 = self.ledger.values().map(Usage::total).sum();
        if differ.is_empty() && self.gateway_lost == 0 {
            check(
                Some(true),
                format!(
                    "gateway token counts equal the backends' ledger for all {} apps ({} tokens)",
                    self.gateway.len(),
                    thousands(total)
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

fn check(held: Option<bool>, text: String) -> Check {
    Check { held, text }
}

/// `✓`, `✗` or `·`.
pub fn mark(check: &Check) -> &'static str {
    match check.held {
        Some(true) => "✓",
        Some(false) => "✗",
        None => "·",
    }
}

/// The summary: tables, checks and where to look next.
pub fn render(f: &Findings, manifest: &Path) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n=== Spillway demo summary: {:.1}s{} ===\n",
        f.elapsed.as_secs_f64(),
        if f.interrupted {
            ", stopped by Ctrl-C"
        } else {
            ""
        }
    );
    backend_table(&mut out, f);
    out.push('\n');
    app_table(&mut out, f);
    let _ = writeln!(
        out,
        "\nspillover: {} requests served by pay-as-you-go ({} spilled inside the same request)\n",
        spilled(&f.report, &f.breakers),
        f.report.retried
    );
    for c in f.checks() {
        let _ = writeln!(out, "{} {}", mark(&c), c.text);
    }
    where_next(&mut out, manifest);
    out
}

fn backend_table(out: &mut String, f: &Findings) {
    let _ = writeln!(
        out,
        "{:<21} {:>4} {:>7} {:>8} {:>6} {:>5} {:>6} {:>13} {:>9}",
        "BACKEND",
        "PRIO",
        "SERVED",
        "ATTEMPTS",
        "429s",
        "5xx",
        "OPENED",
        "FAILED PROBES",
        "RE-CLOSED"
    );
    for b in &f.breakers {
        let _ = writeln!(
            out,
            "{:<21} {:>4} {:>7} {:>8} {:>6} {:>5} {:>6} {:>13} {:>9}",
            b.name,
            b.priority,
            f.report.by_backend.get(&b.name).map_or(0, |c| c.ok),
            b.attempts,
            f.answered(&b.name, |s| s == 429),
            f.answered(&b.name, |s| s >= 500),
            b.opened,
            b.failed_probes,
            b.reclosed
        );
    }
}

fn app_table(out: &mut String, f: &Findings) {
    let _ = writeln!(
        out,
        "{:<18} {:>5} {:>5} {:<10} {:>8} {:>8}  {:<24} COMPLETION gateway/ledger",
        "APP", "SENT", "OK", "ERRORS", "P50", "P99", "PROMPT gateway/ledger",
    );
    for (name, app) in &f.report.by_app {
        let gw = f.gateway.get(name).copied().unwrap_or_default();
        let ledger = f.ledger.get(name).copied().unwrap_or_default();
        let pair = |a: u64, b: u64| {
            let same = if a == b { "✓" } else { "✗" };
            format!("{} / {} {same}", thousands(a), thousands(b))
        };
        let _ = writeln!(
            out,
            "{:<18} {:>5} {:>5} {:<10} {:>8} {:>8}  {:<24} {}",
            name,
            app.sent,
            app.ok,
            failures(&app.failures),
            duration(app.latency.quantile(0.5)),
            duration(app.latency.quantile(0.99)),
            pair(gw.prompt_tokens, ledger.prompt_tokens),
            pair(gw.completion_tokens, ledger.completion_tokens),
        );
    }
}

fn where_next(out: &mut String, manifest: &Path) {
    let _ = writeln!(
        out,
        "\nWhere to look next
  manifests this run used:  {}
  the same on fixed ports:  examples/demo/ (gateway.yaml, simulate.yaml)
  run the pieces yourself:  spillway simulate --config examples/demo/simulate.yaml
                            spillway run --config examples/demo/gateway.yaml
                            spillway loadtest --url http://127.0.0.1:8080 --apps chat-web,batch-summarizer,support-bot --rate 24 --duration 60s
  admin endpoints:          http://127.0.0.1:9901/admin/config (breakers)  /admin/usage (tokens per app)  /readyz",
        manifest.display()
    );
}

#[cfg(test)]
mod tests;
