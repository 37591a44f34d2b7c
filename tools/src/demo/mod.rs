//! `spillway demo`: the whole story on one machine, no cluster and no keys.
//!
//! Starts, in this process on 127.0.0.1, a small PTU backend (priority 1, a TPM limit whose
//! minute passes in 6 s) and two pay-as-you-go backends (priority 2), writes the manifests
//! (`AIBackendPool`, an `AIGateway` with the apps' API keys, a `TokenQuota` per app) to a
//! folder, runs the gateway on them exactly as `spillway run` does ([`run::start`]), and
//! sends bounded traffic from three apps (streaming and not, OpenAI and Azure shaped, each
//! with its own API key) with the load generator. The PTU fills up, its 429s trip its
//! breaker, traffic spills over to pay-as-you-go without a backend's 429 reaching a client,
//! and the breaker re-closes when the PTU's window frees up; a 5xx burst midway trips a
//! pay-as-you-go breaker too. Meanwhile the apps meet their quotas: `batch-summarizer` is
//! held to a tight per-minute quota (429 with `Retry-After`, from the gateway itself) and
//! `support-bot` uses up a small daily one (403); `chat-web`'s generous quota never bites.
//! A live view shows it; the summary checks each claim (including that the gateway's token
//! counts per app equal what the backends billed for the admitted calls) and says where to
//! look next.
//!
//! Modules: [`scenario`] (the story as data), `stack` (start/stop), [`monitor`] (breakers),
//! [`clients`] (refusals per app), [`probe`] and `quota_watch` (quota events, `Retry-After`),
//! `live` (the loop while traffic runs), [`view`] (live view), [`summary`] (tables) and
//! [`checks`] (the claims).
//!
//! [`run::start`]: spillway_sidecar::run::start

pub mod checks;
pub mod clients;
pub mod monitor;
pub mod probe;
pub mod scenario;
pub mod summary;
pub mod view;

mod live;
mod quota_watch;
mod stack;

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use anyhow::{bail, ensure};

use self::live::Live;
use self::quota_watch::{QuotaWatch, SharedLog};
use self::stack::Stack;
use self::summary::Findings;
use crate::loadtest::render::thousands;
use crate::loadtest::{Finished, LoadHandle, Plan, Report, RequestResult, ResultHook, start_load};

/// Options of `spillway demo`.
#[derive(Clone, Debug, clap::Args)]
pub struct DemoArgs {
    /// How long the apps send traffic.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Print events and a status line every few seconds instead of redrawing the screen.
    #[arg(long)]
    pub no_tui: bool,
    /// Requests per second from the three apps together (quotas and the PTU are sized for it).
    #[arg(long, default_value_t = scenario::DEFAULT_RATE)]
    pub rate: f64,
    /// Where to write the manifests (default: a new folder in the system temp folder; kept).
    #[arg(long)]
    pub manifests_dir: Option<PathBuf>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    spillway_crds::duration::parse(text)
}

/// Runs the demo; see the module docs.
///
/// # Errors
/// Invalid options, a part that cannot start, or no request that succeeded at all.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    ensure!(
        args.rate.is_finite() && args.rate > 0.0 && args.rate <= 1000.0,
        "--rate must be within 0 and 1000 requests per second"
    );
    ensure!(
        args.duration >= Duration::from_secs(1),
        "--duration must be at least 1s"
    );
    let dir = args.manifests_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("spillway-demo-{}", std::process::id()))
    });
    let stack = Stack::start(&dir, args.rate).await?;
    let tui = !args.no_tui && std::io::stdout().is_terminal();
    if !tui {
        intro(&stack, &args);
    }
    let log = SharedLog::default();
    let plans = scenario::plans(&stack.url, args.rate, args.duration);
    let handles = start_traffic(&plans, &log)?;
    let controls = handles.iter().map(LoadHandle::control).collect();
    let quotas = QuotaWatch::new(Arc::clone(&log), plans, quota_texts(args.rate));
    let ptu_tpm = scenario::ptu_tpm(args.rate);
    let mut live = Live::new(&stack, controls, quotas, args.duration, ptu_tpm, tui);
    let (finished, interrupted) = live.run(handles).await;
    let findings = collect(&stack, &live, &finished, &log, interrupted).await;
    print!("{}", summary::render(&findings, &stack.manifest));
    stack.shutdown().await;
    if !findings.traffic_ran() {
        bail!("no request succeeded: the demo's traffic could not run (see the errors above)");
    }
    Ok(())
}

/// Each app's quota at `rate`, for people.
fn quota_texts(rate: f64) -> BTreeMap<String, String> {
    scenario::apps()
        .iter()
        .map(|app| (app.name.to_owned(), app.quota_text(rate)))
        .collect()
}

fn intro(stack: &Stack, args: &DemoArgs) {
    let quotas: Vec<String> = scenario::apps()
        .iter()
        .map(|app| format!("{} {}", app.name, app.quota_text(args.rate)))
        .collect();
    println!(
        "Spillway demo: a PTU and two pay-as-you-go backends (simulated), the gateway, and traffic from chat-web, batch-summarizer and support-bot for {:.0}s at {} req/s
  gateway    {}   (admin: {}/admin/config, {}/admin/usage, {}/metrics)
  manifests  {}
  ptu-eastus holds {} tokens per minute, and its minute passes in 6 s; pay-as-you-go has no limit
  apps       each sends its own API key (sk-demo-<app>); token quotas: {} (real minutes)",
        args.duration.as_secs_f64(),
        args.rate,
        stack.url,
        stack.admin,
        stack.admin,
        stack.admin,
        stack.manifest.display(),
        thousands(scenario::ptu_tpm(args.rate)),
        quotas.join(", "),
    );
}

fn start_traffic(plans: &[Plan], log: &SharedLog) -> anyhow::Result<Vec<LoadHandle>> {
    let log = Arc::clone(log);
    let hook: ResultHook = Arc::new(move |result: &RequestResult| {
        log.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .note(result);
    });
    plans
        .iter()
        .map(|plan| Ok(start_load(plan.clone(), Some(Arc::clone(&hook)))?))
        .collect()
}

/// Waits (bounded) for the gateway to account for every request, then gathers the findings.
async fn collect(
    stack: &Stack,
    live: &Live<'_>,
    finished: &[Finished],
    log: &SharedLog,
    interrupted: bool,
) -> Findings {
    let mut report = Report::default();
    for run in finished {
        report.merge(&run.report);
    }
    // Requests refused before connecting never reached the gateway; probes did.
    let expected =
        report.sent - report.errors.get("connect").copied().unwrap_or(0) + live.quotas.probes;
    let mut view = stack.process.totals.view();
    for _ in 0..150 {
        let counted: u64 = view.rows.iter().map(|r| r.totals.requests).sum();
        if counted + view.lost >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        view = stack.process.totals.view();
    }
    let log = log.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let entries = stack.ledger();
    let (ledger, backend_statuses) = summary::ledger_tokens(&entries, &log.apps);
    let refused_reached_backend = entries
        .iter()
        .filter(|e| log.refused_ids.contains(&e.request_id))
        .count() as u64;
    Findings {
        elapsed: report.elapsed,
        report,
        breakers: live.watch.backends().to_vec(),
        gateway: summary::gateway_tokens(&view),
        spend: summary::gateway_spend(&view),
        gateway_lost: view.lost,
        ledger,
        backend_statuses,
        burst_injected: live.burst_injected,
        interrupted,
        quotas: live.quotas.quotas().clone(),
        refusals: log.refusals,
        refused_reached_backend,
        quota_probe: live.quotas.confirmed.clone(),
        probes: live.quotas.probes,
    }
}
