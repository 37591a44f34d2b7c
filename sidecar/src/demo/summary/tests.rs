use super::*;
use crate::demo::monitor::{BreakerWatch, Poll, StateView};
use crate::loadtest::{Ending, RequestResult};
use crate::usage::totals::{Totals, TotalsRow};

fn usage(prompt: u64, completion: u64) -> Usage {
    Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
    }
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

fn findings() -> Findings {
    let mut report = Report::default();
    for (seq, backend, attempts) in [(0, PTU, 1), (1, PAYGO_WE, 2)] {
        report.add(&RequestResult {
            seq,
            request_id: format!("r{seq}"),
            app: "chat-web".to_owned(),
            stream: false,
            ending: Ending::Status(200),
            body_error: None,
            latency: Duration::from_millis(50),
            time_to_first_token: None,
            backend: Some(backend.to_owned()),
            attempts: Some(attempts),
            usage: None,
        });
    }
    let apps = HashMap::from([
        ("r0".to_owned(), "chat-web".to_owned()),
        ("r1".to_owned(), "chat-web".to_owned()),
    ]);
    let ledger = [
        entry("r0", PTU, 200, 100),
        entry("r1", PTU, 429, 0),
        entry("r1", PAYGO_WE, 200, 40),
        entry("r9", PAYGO_WE, 503, 0),
    ];
    let (ledger, backend_statuses) = ledger_tokens(&ledger, &apps);
    Findings {
        elapsed: Duration::from_secs(12),
        report,
        breakers: breakers(),
        gateway: BTreeMap::from([("chat-web".to_owned(), usage(140, 70))]),
        gateway_lost: 0,
        ledger,
        backend_statuses,
        burst_injected: true,
        interrupted: false,
    }
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
            estimated_requests: 0,
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
    let held: Vec<_> = checks.iter().map(|c| c.held).collect();
    assert_eq!(held, vec![Some(true); 6], "{checks:#?}");
    assert!(checks[1].text.starts_with("spillover happened: 1 requests"));
    assert!(checks[2].text.contains("1 × 429 stayed inside"));
    assert!(checks[3].text.starts_with(
        "breaker tripped and re-closed: ptu-eastus opened 1×, re-closed 1× (1 failed probes"
    ));
    assert!(
        checks[4]
            .text
            .contains("answered 1 × 5xx and its breaker opened 1×")
    );
    assert!(checks[5].text.starts_with(
        "gateway token counts equal the backends' ledger for all 1 apps (210 tokens)"
    ));
}

#[test]
fn failed_claims_say_what_went_wrong() {
    let mut f = findings();
    f.report.by_status.insert(429, 2);
    f.breakers.retain(|b| b.name != PTU);
    f.burst_injected = false;
    let checks = f.checks();
    assert_eq!(checks[2].held, Some(false));
    assert_eq!(checks[2].text, "2 × 429 reached clients");
    assert_eq!(checks[3].held, Some(false), "{:?}", checks[3]);
    assert_eq!(checks[4].held, None, "not judged without the burst");
    assert_eq!(checks[5].held, Some(false));
    assert!(
        checks[5]
            .text
            .contains("differ from the ledger for unknown"),
        "{}",
        checks[5].text
    );
    f.interrupted = true;
    assert_eq!(f.checks()[3].held, None, "Ctrl-C came before the re-close");
    f.report = Report::default();
    assert!(!f.traffic_ran());
    assert_eq!(f.checks()[0].held, Some(false));
}

#[test]
fn the_summary_has_tables_checks_and_where_to_look_next() {
    let mut f = findings();
    f.ledger.remove("unknown");
    let text = render(&f, Path::new("/tmp/x/gateway.yaml"));
    let chat = text
        .lines()
        .find(|l| l.starts_with("chat-web"))
        .expect("an app row");
    assert!(
        chat.contains("140 / 140 ✓") && chat.contains("70 / 70 ✓"),
        "{chat}"
    );
    let ptu = text
        .lines()
        .find(|l| l.starts_with(PTU))
        .expect("a backend row");
    let cells: Vec<&str> = ptu.split_whitespace().collect();
    assert_eq!(
        cells,
        [PTU, "1", "1", "0", "1", "0", "1", "1", "1"],
        "{ptu}"
    );
    assert!(text.contains("✓ spillover happened"));
    assert!(text.contains("manifests this run used:  /tmp/x/gateway.yaml"));
    assert!(text.contains("spillway run --config examples/demo/gateway.yaml"));
}
