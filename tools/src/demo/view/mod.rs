//! The demo's live view: a full screen redrawn about twice a second on a terminal, or a
//! compact status line every few seconds (`--no-tui`, or stdout not a terminal).
//!
//! Input: a [`Frame`] — what the clients saw (the merged load [`Report`] and who refused
//! their calls), what the gateway counted (tokens per app) and what its limiter holds
//! (tokens left per app), the breakers and recent events. Output: strings; pure.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use super::clients::{self, Refusals, other_failures};
use super::monitor::{BreakerStats, Event, StateView};
use crate::loadtest::Report;
use crate::loadtest::render::{duration, thousands};
use spillway_sidecar::usage::Usage;

/// ANSI: clear the screen and move home.
pub const CLEAR: &str = "\x1b[2J\x1b[H";
/// Events shown at the bottom of the screen.
const EVENTS_SHOWN: usize = 8;

/// Everything the live view shows at one moment.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    /// Time since the traffic started.
    pub elapsed: Duration,
    /// The run's `--duration`.
    pub duration: Duration,
    /// The PTU's TPM limit.
    pub ptu_tpm: u64,
    /// Gateway data path.
    pub url: &'a str,
    /// Gateway admin port.
    pub admin: &'a str,
    /// The manifest the gateway runs on.
    pub manifest: &'a Path,
    /// Breakers, in pool order.
    pub breakers: &'a [BreakerStats],
    /// Requests per second per backend, over the last second.
    pub rates: &'a BTreeMap<String, f64>,
    /// What the clients saw.
    pub report: &'a Report,
    /// Tokens per app as the gateway counted them.
    pub tokens: &'a BTreeMap<String, Usage>,
    /// Each app's quota, for people.
    pub quotas: &'a BTreeMap<String, String>,
    /// Tokens left per app in its tightest quota window, as the limiter holds them.
    pub quota_left: &'a BTreeMap<String, u64>,
    /// Per app: calls refused by its own quota, backends' 429s that reached it.
    pub refusals: &'a BTreeMap<String, Refusals>,
    /// Events so far.
    pub events: &'a [Event],
}

/// Successful responses served by a backend of priority 2 or more.
pub fn spilled(report: &Report, breakers: &[BreakerStats]) -> u64 {
    breakers
        .iter()
        .filter(|b| b.priority > 1)
        .filter_map(|b| report.by_backend.get(&b.name))
        .map(|c| c.ok)
        .sum()
}

/// A breaker state in a few characters.
pub fn state(state: StateView) -> String {
    match state {
        StateView::Closed => "closed".to_owned(),
        StateView::HalfOpen => "half-open".to_owned(),
        StateView::Open(left) => format!("OPEN {:.1}s", left.as_secs_f64()),
    }
}

/// A failure map as `429×3 timeout×1`, or `-`.
pub fn failures(map: &BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "-".to_owned();
    }
    let parts: Vec<String> = map.iter().map(|(k, n)| format!("{k}×{n}")).collect();
    parts.join(" ")
}

/// The full screen (without the clear sequence).
pub fn screen(f: &Frame<'_>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Spillway demo  {:.1}s / {:.0}s   gateway {}   admin {}/admin/usage",
        f.elapsed.as_secs_f64(),
        f.duration.as_secs_f64(),
        f.url,
        f.admin
    );
    let _ = writeln!(
        out,
        "ptu-eastus holds {} tokens per minute (the demo's PTU minute passes in 6 s)\nmanifests: {}\n",
        thousands(f.ptu_tpm),
        f.manifest.display()
    );
    backend_table(&mut out, f);
    let refused = clients::sum(f.refusals);
    let _ = writeln!(
        out,
        "\nspillover: {} requests served by pay-as-you-go · {} retried inside the request · backend 429s to clients: {}\n",
        spilled(f.report, f.breakers),
        f.report.retried,
        refused.backend_429
    );
    app_table(&mut out, f);
    let _ = writeln!(out, "\nlatest events");
    let skip = f.events.len().saturating_sub(EVENTS_SHOWN);
    for event in &f.events[skip..] {
        let _ = writeln!(out, "  {:>6.1}s  {}", event.at.as_secs_f64(), event.text);
    }
    out
}

fn backend_table(out: &mut String, f: &Frame<'_>) {
    let _ = writeln!(
        out,
        "{:<21} {:>4}  {:<10} {:>6} {:>7} {:>8} {:>6} {:>6} {:>9}",
        "BACKEND",
        "PRIO",
        "BREAKER",
        "REQ/S",
        "SERVED",
        "ATTEMPTS",
        "FAILED",
        "OPENED",
        "RE-CLOSED"
    );
    for b in f.breakers {
        let served = f.report.by_backend.get(&b.name).map_or(0, |c| c.ok);
        let rate = f.rates.get(&b.name).copied().unwrap_or(0.0);
        let _ = writeln!(
            out,
            "{:<21} {:>4}  {:<10} {:>6.1} {:>7} {:>8} {:>6} {:>6} {:>9}",
            b.name,
            b.priority,
            state(b.state),
            rate,
            served,
            b.attempts,
            b.failures,
            b.opened,
            b.reclosed
        );
    }
}

fn app_table(out: &mut String, f: &Frame<'_>) {
    let _ = writeln!(
        out,
        "{:<18} {:<12} {:>9} {:>6} {:>6} {:>5} {:>5} {:<10} {:>10} {:>10} {:>9}",
        "APP", "QUOTA", "LEFT", "SENT", "OK", "429", "403", "OTHER", "PROMPT", "COMPLETION", "P50"
    );
    for (name, app) in &f.report.by_app {
        let usage = f.tokens.get(name).copied().unwrap_or_default();
        let refused = f.refusals.get(name).copied().unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<18} {:<12} {:>9} {:>6} {:>6} {:>5} {:>5} {:<10} {:>10} {:>10} {:>9}",
            name,
            f.quotas.get(name).map_or("-", String::as_str),
            f.quota_left
                .get(name)
                .map_or_else(|| "-".to_owned(), |n| thousands(*n)),
            app.sent,
            app.ok,
            refused.quota_429,
            refused.quota_403,
            failures(&other_failures(&app.failures, refused)),
            thousands(usage.prompt_tokens),
            thousands(usage.completion_tokens),
            duration(app.latency.quantile(0.5)),
        );
    }
    let _ = writeln!(
        out,
        "(LEFT: tokens left in the app's tightest quota window; 429 / 403: refused by its own quota)"
    );
}

/// The `--no-tui` status line.
pub fn status_line(f: &Frame<'_>) -> String {
    let states: Vec<String> = f
        .breakers
        .iter()
        .map(|b| format!("{} {}", b.name, state(b.state)))
        .collect();
    let refused = clients::sum(f.refusals);
    format!(
        "[{:>5.1}s] {} | sent {} ok {} | spilled {} | quota 429 {} 403 {} | p50 {} p99 {}",
        f.elapsed.as_secs_f64(),
        states.join(" · "),
        f.report.sent,
        f.report.ok(),
        spilled(f.report, f.breakers),
        refused.quota_429,
        refused.quota_403,
        duration(f.report.latency.quantile(0.5)),
        duration(f.report.latency.quantile(0.99)),
    )
}

/// One event as a line of its own.
pub fn event_line(event: &Event) -> String {
    format!("[{:>5.1}s] {}", event.at.as_secs_f64(), event.text)
}

#[cfg(test)]
mod tests;
