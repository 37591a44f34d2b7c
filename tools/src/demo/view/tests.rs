use super::*;
use crate::demo::clients::Refusals;
use crate::demo::monitor::{BreakerWatch, Poll};
use crate::loadtest::{Ending, RequestResult};

fn watch() -> BreakerWatch {
    let mut watch = BreakerWatch::new();
    let polls = [
        ("ptu-eastus", 1, StateView::Closed, 0),
        ("paygo-westeurope", 2, StateView::Closed, 0),
        (
            "ptu-eastus",
            1,
            StateView::Open(Duration::from_millis(600)),
            1,
        ),
    ];
    for (i, (name, priority, state, trips)) in polls.into_iter().enumerate() {
        let poll = Poll {
            name,
            priority,
            state,
            trips,
            attempts: 10,
            failures: trips,
        };
        watch.observe(poll, Duration::from_secs(i as u64));
    }
    watch
}

fn report() -> Report {
    let mut report = Report::default();
    let results = [
        ("chat-web", "ptu-eastus", 200, 1),
        ("chat-web", "paygo-westeurope", 200, 2),
        ("support-bot", "paygo-westeurope", 200, 1),
        ("support-bot", "paygo-westeurope", 503, 3),
    ];
    for (seq, (app, backend, status, attempts)) in results.into_iter().enumerate() {
        report.add(&RequestResult {
            seq: seq as u64,
            request_id: format!("r{seq}"),
            app: app.to_owned(),
            stream: false,
            ending: Ending::Status(status),
            body_error: None,
            latency: Duration::from_millis(100),
            time_to_first_token: None,
            backend: Some(backend.to_owned()),
            attempts: Some(attempts),
            usage: None,
        });
    }
    report
}

/// What the frame shows besides the report: tokens, rates, quotas and refusals.
struct Extras {
    tokens: BTreeMap<String, Usage>,
    rates: BTreeMap<String, f64>,
    quotas: BTreeMap<String, String>,
    quota_left: BTreeMap<String, u64>,
    refusals: BTreeMap<String, Refusals>,
}

fn extras() -> Extras {
    Extras {
        tokens: BTreeMap::from([("chat-web".to_owned(), Usage::totals(1234, 56))]),
        rates: BTreeMap::from([("ptu-eastus".to_owned(), 3.5)]),
        quotas: BTreeMap::from([
            ("chat-web".to_owned(), "156,000/min".to_owned()),
            ("support-bot".to_owned(), "9,000/day".to_owned()),
        ]),
        quota_left: BTreeMap::from([("chat-web".to_owned(), 151_234)]),
        refusals: BTreeMap::from([(
            "support-bot".to_owned(),
            Refusals {
                quota_403: 1,
                ..Refusals::default()
            },
        )]),
    }
}

fn frame<'a>(watch: &'a BreakerWatch, report: &'a Report, x: &'a Extras) -> Frame<'a> {
    Frame {
        elapsed: Duration::from_millis(12_340),
        duration: Duration::from_secs(30),
        ptu_tpm: 18_000,
        url: "http://127.0.0.1:1",
        admin: "http://127.0.0.1:2",
        manifest: Path::new("/tmp/demo/gateway.yaml"),
        breakers: watch.backends(),
        rates: &x.rates,
        report,
        tokens: &x.tokens,
        quotas: &x.quotas,
        quota_left: &x.quota_left,
        refusals: &x.refusals,
        events: watch.events(),
    }
}

#[test]
fn spillover_counts_successes_of_priority_two_and_up() {
    assert_eq!(spilled(&report(), watch().backends()), 2);
}

#[test]
fn the_screen_shows_backends_apps_quotas_and_events() {
    let (watch, report, x) = (watch(), report(), extras());
    let screen = screen(&frame(&watch, &report, &x));
    let lines: Vec<&str> = screen.lines().collect();
    let ptu = lines
        .iter()
        .find(|l| l.split_whitespace().take(2).eq(["ptu-eastus", "1"]))
        .expect("a PTU row");
    assert!(ptu.contains("OPEN 0.6s") && ptu.contains("3.5"), "{ptu}");
    let cells = |app: &str| -> Vec<&str> {
        lines
            .iter()
            .find(|l| l.starts_with(app))
            .unwrap_or_else(|| panic!("no row for {app}:\n{screen}"))
            .split_whitespace()
            .collect()
    };
    // APP QUOTA LEFT SENT OK 429 403 OTHER PROMPT COMPLETION P50
    assert_eq!(
        cells("chat-web")[..10],
        [
            "chat-web",
            "156,000/min",
            "151,234",
            "2",
            "2",
            "0",
            "0",
            "-",
            "1,234",
            "56"
        ]
    );
    // support-bot's 503 is another failure; the 403 column counts its quota refusals.
    assert_eq!(
        cells("support-bot")[..8],
        ["support-bot", "9,000/day", "-", "2", "1", "0", "1", "503×1"]
    );
    assert!(screen.contains("spillover: 2 requests served by pay-as-you-go · 2 retried"));
    assert!(screen.contains("backend 429s to clients: 0"));
    assert!(screen.contains("ptu-eastus breaker OPEN"), "{screen}");
    assert!(screen.contains("18,000 tokens per minute"));
}

#[test]
fn the_status_line_is_one_compact_line() {
    let (watch, report, x) = (watch(), report(), extras());
    let line = status_line(&frame(&watch, &report, &x));
    assert_eq!(line.lines().count(), 1);
    assert!(
        line.starts_with(
            "[ 12.3s] ptu-eastus OPEN 0.6s · paygo-westeurope closed | sent 4 ok 3 | spilled 2 | quota 429 0 403 1 |"
        ),
        "{line}"
    );
}
