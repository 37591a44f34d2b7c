//! The end of the demo: tables per backend and per app, the checks that the story really
//! happened ([`checks`](super::checks)), and where to look next.
//!
//! Input: [`Findings`] — the clients' merged report and their refusals per app (own quota
//! or backend), the probe that read a quota 429's `Retry-After`, the breakers as watched,
//! tokens per app as the gateway counted them and as the simulators' ledger billed them
//! (joined to apps by the request ids the clients sent), and the statuses each backend
//! answered. Output: text; pure.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use super::clients::{Refusals, other_failures};
use super::monitor::BreakerStats;
use super::probe::ProbeAnswer;
use super::view::{failures, spilled};
use crate::loadtest::Report;
use crate::loadtest::render::{duration, thousands};
use crate::simulate::LedgerEntry;
use spillway_sidecar::cost::{CostKind, Picos};
use spillway_sidecar::usage::Usage;
use spillway_sidecar::usage::totals::TotalsView;

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
    /// Spend per app as the gateway priced it: per (currency, kind), the exact sum.
    pub spend: BTreeMap<String, BTreeMap<(String, CostKind), Picos>>,
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
    /// Each app's quota, for people (`16,000 tokens/min`).
    pub quotas: BTreeMap<String, String>,
    /// Per app: calls refused by its own quota, and backends' 429s that reached it.
    pub refusals: BTreeMap<String, Refusals>,
    /// Ledger entries of calls a quota refused (must be 0: refused calls reach no backend).
    pub refused_reached_backend: u64,
    /// A quota 429 whose `Retry-After` a probe read.
    pub quota_probe: Option<ProbeAnswer>,
    /// Probes sent.
    pub probes: u64,
}

/// Tokens per app from the gateway's totals.
pub fn gateway_tokens(view: &TotalsView) -> BTreeMap<String, Usage> {
    let mut out: BTreeMap<String, Usage> = BTreeMap::new();
    for row in &view.rows {
        let usage = out.entry(row.app_id.clone()).or_default();
        usage.prompt_tokens += row.totals.prompt_tokens;
        usage.completion_tokens += row.totals.completion_tokens;
        usage.cached_tokens += row.totals.cached_tokens;
        usage.reasoning_tokens += row.totals.reasoning_tokens;
    }
    out
}

/// Spend per app from the gateway's totals: per currency and kind (metered, or the
/// price-weighted use of provisioned backends), exact.
pub fn gateway_spend(view: &TotalsView) -> BTreeMap<String, BTreeMap<(String, CostKind), Picos>> {
    let mut out: BTreeMap<String, BTreeMap<(String, CostKind), Picos>> = BTreeMap::new();
    for row in &view.rows {
        if let Some(cost) = &row.totals.cost {
            *out.entry(row.app_id.clone())
                .or_default()
                .entry((cost.currency.clone(), cost.kind))
                .or_default() += cost.amount;
        }
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
        usage.cached_tokens += entry.cached_tokens;
        usage.reasoning_tokens += entry.reasoning_tokens;
        *statuses
            .entry(entry.backend.clone())
            .or_default()
            .entry(entry.status)
            .or_default() += 1;
    }
    (tokens, statuses)
}

impl Findings {
    pub(super) fn answered(&self, backend: &str, status: impl Fn(u16) -> bool) -> u64 {
        self.backend_statuses.get(backend).map_or(0, |m| {
            m.iter().filter(|(s, _)| status(**s)).map(|(_, n)| n).sum()
        })
    }

    pub(super) fn breaker(&self, name: &str) -> Option<&BreakerStats> {
        self.breakers.iter().find(|b| b.name == name)
    }

    /// Whether any request succeeded (the demo fails without that).
    pub fn traffic_ran(&self) -> bool {
        self.report.ok() > 0
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
    out.push('\n');
    spend_table(&mut out, f);
    let _ = writeln!(
        out,
        "\nspillover: {} requests served by pay-as-you-go ({} spilled inside the same request)\n",
        spilled(&f.report, &f.breakers),
        f.report.retried
    );
    for c in f.checks() {
        let _ = writeln!(out, "{} {}", c.mark(), c.text);
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
        "{:<18} {:<12} {:>5} {:>5} {:>5} {:>5} {:<8} {:>8} {:>8}  {:<24} COMPLETION gateway/ledger",
        "APP", "QUOTA", "SENT", "OK", "429", "403", "OTHER", "P50", "P99", "PROMPT gateway/ledger",
    );
    for (name, app) in &f.report.by_app {
        let gw = f.gateway.get(name).copied().unwrap_or_default();
        let ledger = f.ledger.get(name).copied().unwrap_or_default();
        let refused = f.refusals.get(name).copied().unwrap_or_default();
        let pair = |a: u64, b: u64| {
            let same = if a == b { "✓" } else { "✗" };
            format!("{} / {} {same}", thousands(a), thousands(b))
        };
        let _ = writeln!(
            out,
            "{:<18} {:<12} {:>5} {:>5} {:>5} {:>5} {:<8} {:>8} {:>8}  {:<24} {}",
            name,
            f.quotas.get(name).map_or("-", String::as_str),
            app.sent,
            app.ok,
            refused.quota_429,
            refused.quota_403,
            failures(&other_failures(&app.failures, refused)),
            duration(app.latency.quantile(0.5)),
            duration(app.latency.quantile(0.99)),
            pair(gw.prompt_tokens, ledger.prompt_tokens),
            pair(gw.completion_tokens, ledger.completion_tokens),
        );
    }
    let _ = writeln!(
        out,
        "(429 and 403: refused by the app's own quota at the gateway; OTHER: any other failure)"
    );
}

/// Cached input and spend per app: what the bill will say.
fn spend_table(out: &mut String, f: &Findings) {
    let _ = writeln!(
        out,
        "{:<18} {:<26} {:<16} PTU USE (at list price)",
        "APP", "CACHED INPUT gateway/ledger", "METERED"
    );
    for name in f.report.by_app.keys() {
        let gw = f.gateway.get(name).copied().unwrap_or_default();
        let ledger = f.ledger.get(name).copied().unwrap_or_default();
        let same = if gw.cached_tokens == ledger.cached_tokens {
            "✓"
        } else {
            "✗"
        };
        let cached = format!(
            "{} / {} {same}",
            thousands(gw.cached_tokens),
            thousands(ledger.cached_tokens)
        );
        let money = |kind: CostKind| {
            let sums: Vec<String> = f
                .spend
                .get(name)
                .into_iter()
                .flatten()
                .filter(|((_, k), _)| *k == kind)
                .map(|((currency, _), amount)| format!("{currency} {amount}"))
                .collect();
            if sums.is_empty() {
                "-".to_owned()
            } else {
                sums.join(", ")
            }
        };
        let _ = writeln!(
            out,
            "{:<18} {:<26} {:<16} {}",
            name,
            cached,
            money(CostKind::Metered),
            money(CostKind::Provisioned)
        );
    }
    let _ = writeln!(
        out,
        "(METERED: pay-as-you-go calls at the pool's rates, exact; PTU USE: what the PTU calls \
         would cost at those rates, the weight that shares the PTU's hourly cost — \
         spillway_cost_total{{spillway_cost_kind=\"provisioned\"}} once each hour ends)"
    );
}

fn where_next(out: &mut String, manifest: &Path) {
    let _ = writeln!(
        out,
        "\nWhere to look next
  manifests this run used:  {}
  the same on fixed ports:  examples/demo/ (gateway.yaml, simulate.yaml)
  run the pieces yourself:  spillway simulate --config examples/demo/simulate.yaml
                            spillway run --config examples/demo/gateway.yaml
                            spillway loadtest --url http://127.0.0.1:8080 --apps chat-web --api-key sk-demo-chat-web
                            (one per app, each with its own key sk-demo-<app>: examples/demo/README.md)
  admin endpoints:          http://127.0.0.1:9901/admin/config (breakers)  /admin/usage (tokens per app)
                            /metrics (spillway_quota_remaining_tokens: tokens left per app and window)  /readyz",
        manifest.display()
    );
}

#[cfg(test)]
mod tests;
