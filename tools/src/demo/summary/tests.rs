//! The summary's tables and the story's checks ([`checks`](crate::demo::checks)), on one
//! fixture of findings.

use super::*;
use crate::demo::checks::Check;
use crate::demo::clients::ClientLog;
use crate::demo::monitor::{BreakerWatch, Poll, StateView};
use crate::demo::probe::ProbeAnswer;
use crate::demo::scenario::{PAYGO_WE, PTU};
use crate::loadtest::{Ending, RequestResult};
use spillway_sidecar::cost::{CostKind, Picos};
use spillway_sidecar::usage::totals::{Totals, TotalsRow};

fn usage(prompt: u64, completion: u64) -> Usage {
    Usage::totals(prompt, completion)
}

fn entry(request_id: &str, backend: &str, status: u16, prompt: u64) -> LedgerEntry {
    LedgerEntry {
        request_id: request_id.to_owned(),
        backend: backend.to_owned(),
        status,
        prompt_tokens: prompt,
        completion_tokens: prompt / 2,
        ..LedgerEntry::default()
    }
}

/// PTU opened, failed a probe and re-closed; paygo-westeurope opened on errors.
fn breakers() -> Vec<BreakerStats> {
    let mut watch = BreakerWatch::new();
    let open = StateView::Open(Duration::from_secs(1));
    let polls = [
        (PTU, 1, StateView::Closed, 0),
        (PAYGO_WE, 2, StateView::Closed, 0),
        (PTU, 1, open, 1),
        (PTU, 1, open, 2),
        (PAYGO_WE, 2, open, 1),
        (PTU, 1, StateView::Closed, 2),
    ];
    for (name, priority, state, trips) in polls {
        let poll = Poll {
            name,
            priority,
            state,
            trips,
            attempts: 0,
            failures: 0,
        };
        watch.observe(poll, Duration::ZERO);
    }
    watch.backends().to_vec()
}

fn result(seq: u64, app: &str, status: u16, backend: Option<&str>, attempts: u32) -> RequestResult {
    RequestResult {
        seq,
        request_id: format!("r{seq}"),
        app: app.to_owned(),
        stream: false,
        ending: Ending::Status(status),
        body_error: None,
        latency: Duration::from_millis(50),
        time_to_first_token: None,
        backend: backend.map(str::to_owned),
        attempts: Some(attempts),
        usage: None,
    }
}

/// chat-web: one call served by the PTU, one spilled over; batch: one refused by its quota
/// (429); bot: one refused by its daily quota (403).
fn findings() -> Findings {
    let mut report = Report::default();
    let mut log = ClientLog::default();
    for r in [
        result(0, "chat-web", 200, Some(PTU), 1),
        result(1, "chat-web", 200, Some(PAYGO_WE), 2),
        result(2, "batch", 429, None, 0),
        result(3, "bot", 403, None, 0),
    ] {
        report.add(&r);
        log.note(&r);
    }
    let ledger = [
        entry("r0", PTU, 200, 100),
        entry("r1", PTU, 429, 0),
        entry("r1", PAYGO_WE, 200, 40),
        entry("r9", PAYGO_WE, 503, 0),
    ];
    let (ledger, backend_statuses) = ledger_tokens(&ledger, &log.apps);
    Findings {
        elapsed: Duration::from_secs(12),
        report,
        breakers: breakers(),
        gateway: BTreeMap::from([
            ("chat-web".to_owned(), usage(140, 70)),
            ("batch".to_owned(), usage(0, 0)),
            ("bot".to_owned(), usage(0, 0)),
        ]),
        spend: BTreeMap::from([(
            "chat-web".to_owned(),
            BTreeMap::from([
                (("USD".to_owned(), CostKind::Metered), Picos(2_500_000_000)),
                (
                    ("USD".to_owned(), CostKind::Provisioned),
                    Picos(7_000_000_000),
                ),
            ]),
        )]),
        gateway_lost: 0,
        ledger,
        backend_statuses,
        burst_injected: true,
        interrupted: false,
        quotas: BTreeMap::from([
            ("chat-web".to_owned(), "156,000/min".to_owned()),
            ("batch".to_owned(), "16,000/min".to_owned()),
            ("bot".to_owned(), "9,000/day".to_owned()),
        ]),
        refusals: log.refusals,
        refused_reached_backend: 0,
        quota_probe: Some(ProbeAnswer {
            app: "batch".to_owned(),
            request_id: "demo-probe-batch-1".to_owned(),
            status: 429,
            retry_after_s: Some(3),
            retry_after_ms: Some(2071),
            attempts: Some(0),
            message: Some("quota `batch` allows no more tokens per minute right now".to_owned()),
        }),
        probes: 1,
    }
}

fn held(checks: &[Check]) -> Vec<Option<bool>> {
    checks.iter().map(|c| c.held).collect()
}

#[test]
fn the_ledger_is_joined_to_apps_by_request_id() {
    let f = findings();
    assert_eq!(
        f.ledger,
        BTreeMap::from([
            ("chat-web".to_owned(), usage(140, 70)),
            ("unknown".to_owned(), usage(0, 0)),
        ])
    );
    assert_eq!(
        f.backend_statuses[PTU],
        BTreeMap::from([(200, 1), (429, 1)])
    );
}

#[test]
fn gateway_rows_are_summed_per_app() {
    let row = |app: &str, backend: &str, prompt| TotalsRow {
        app_id: app.to_owned(),
        pool: "gpt-4o".to_owned(),
        backend: backend.to_owned(),
        model: "gpt-4o".to_owned(),
        totals: Totals {
            requests: 1,
            prompt_tokens: prompt,
            completion_tokens: 1,
            ..Totals::default()
        },
    };
    let view = TotalsView {
        rows: vec![row("a", "x", 5), row("a", "y", 7), row("b", "x", 1)],
        recent: Vec::new(),
        lost: 0,
    };
    let tokens = gateway_tokens(&view);
    assert_eq!(tokens["a"], usage(12, 2));
    assert_eq!(tokens["b"], usage(1, 1));
}

#[test]
fn every_claim_of_the_story_is_checked() {
    let mut f = findings();
    f.ledger.remove("unknown");
    let checks = f.checks();
    assert_eq!(held(&checks), vec![Some(true); 8], "{checks:#?}");
    assert!(checks[1].text.starts_with("spillover happened: 1 requests"));
    assert_eq!(
        checks[2].text,
        "no backend 429 reached a client: ptu-eastus's 1 × 429 stayed inside the gateway (the 1 × 429 clients got came from their own quotas)"
    );
    assert_eq!(
        checks[3].text,
        "an app was limited by its own quota (429 with Retry-After): batch (1 × 429, quota 16,000/min), none sent to a backend; a probe as batch got Retry-After: 3, retry-after-ms: 2071 — \"quota `batch` allows no more tokens per minute right now\""
    );
    assert_eq!(
        checks[4].text,
        "an app used up its daily quota (403 until midnight UTC): bot (1 × 403, quota 9,000/day)"
    );
    assert!(checks[5].text.starts_with(
        "breaker tripped and re-closed: ptu-eastus opened 1×, re-closed 1× (1 failed probes"
    ));
    assert!(
        checks[6]
            .text
            .contains("answered 1 × 5xx and its breaker opened 1×")
    );
    assert!(checks[7].text.starts_with(
        "gateway token counts equal the backends' ledger for all 3 apps (210 tokens of admitted calls; the 2 calls refused by quotas billed nothing)"
    ));
}

#[test]
fn failed_claims_say_what_went_wrong() {
    let mut f = findings();
    f.refusals
        .entry("chat-web".to_owned())
        .or_default()
        .backend_429 = 2;
    f.breakers.retain(|b| b.name != PTU);
    f.burst_injected = false;
    f.ledger.insert("unknown".to_owned(), usage(5, 0));
    let checks = f.checks();
    assert_eq!(checks[2].held, Some(false));
    assert_eq!(checks[2].text, "2 × backend 429 reached clients");
    assert_eq!(checks[5].held, Some(false), "{:?}", checks[5]);
    assert_eq!(checks[6].held, None, "not judged without the burst");
    assert_eq!(checks[7].held, Some(false));
    assert!(
        checks[7]
            .text
            .contains("differ from the ledger for unknown"),
        "{}",
        checks[7].text
    );
    f.interrupted = true;
    assert_eq!(f.checks()[5].held, None, "Ctrl-C came before the re-close");
    f.report = Report::default();
    assert!(!f.traffic_ran());
    assert_eq!(f.checks()[0].held, Some(false));
}

#[test]
fn quota_claims_need_the_refusals_the_retry_after_and_no_refused_call_upstream() {
    let mut f = findings();
    f.refused_reached_backend = 1;
    assert_eq!(f.checks()[3].held, Some(false));
    assert_eq!(
        f.checks()[3].text,
        "1 calls refused by a quota still reached a backend"
    );
    f.refused_reached_backend = 0;
    f.quota_probe = None;
    assert_eq!(f.checks()[3].held, Some(false));
    assert!(
        f.checks()[3]
            .text
            .contains("none of 1 probes saw a 429 with Retry-After")
    );
    f.refusals.clear();
    let checks = f.checks();
    assert_eq!(held(&checks[3..5]), [Some(false), Some(false)]);
    assert_eq!(checks[3].text, "no app was limited by its own quota (429)");
    assert_eq!(checks[4].text, "no app used up its daily quota (403)");
    f.interrupted = true;
    assert_eq!(held(&f.checks()[3..5]), [None, None], "Ctrl-C came first");
}

#[test]
fn the_summary_has_tables_checks_and_where_to_look_next() {
    let mut f = findings();
    f.ledger.remove("unknown");
    let text = render(&f, Path::new("/tmp/x/gateway.yaml"));
    let row = |app: &str| -> Vec<String> {
        let line = text
            .lines()
            .find(|l| l.starts_with(app))
            .unwrap_or_else(|| panic!("no row for {app}:\n{text}"));
        line.split_whitespace().map(str::to_owned).collect()
    };
    let chat = row("chat-web");
    assert_eq!(
        chat[..7],
        ["chat-web", "156,000/min", "2", "2", "0", "0", "-"]
    );
    let chat = chat.join(" ");
    assert!(
        chat.contains("140 / 140 ✓") && chat.contains("70 / 70 ✓"),
        "{chat}"
    );
    assert_eq!(
        row("batch")[..7],
        ["batch", "16,000/min", "1", "0", "1", "0", "-"]
    );
    assert_eq!(
        row("bot")[..7],
        ["bot", "9,000/day", "1", "0", "0", "1", "-"]
    );
    let ptu = row(PTU);
    assert_eq!(ptu, [PTU, "1", "1", "0", "1", "0", "1", "1", "1"]);
    assert!(text.contains("✓ spillover happened"));
    assert!(text.contains("✓ an app was limited by its own quota (429 with Retry-After)"));
    assert!(text.contains("manifests this run used:  /tmp/x/gateway.yaml"));
    let spend = text
        .lines()
        .find(|l| l.starts_with("chat-web") && l.contains("USD"))
        .expect("a spend line for chat-web");
    assert!(
        spend.contains("USD 0.0025") && spend.contains("USD 0.007"),
        "{spend}"
    );
    assert!(text.contains("spillway run --config examples/demo/gateway.yaml"));
    assert!(text.contains("--apps chat-web --api-key sk-demo-chat-web"));
}
