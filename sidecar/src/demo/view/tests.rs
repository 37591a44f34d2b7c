use super::*;
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

fn frame<'a>(
    watch: &'a BreakerWatch,
    report: &'a Report,
    tokens: &'a BTreeMap<String, Usage>,
    rates: &'a BTreeMap<String, f64>,
) -> Frame<'a> {
    Frame {
        elapsed: Duration::from_millis(12_340),
        duration: Duration::from_secs(30),
        ptu_tpm: 18_000,
        url: "http://127.0.0.1:1",
        admin: "http://127.0.0.1:2",
        manifest: Path::new("/tmp/demo/gateway.yaml"),
        breakers: watch.backends(),
        rates,
        report,
        tokens,
        events: watch.events(),
    }
}

#[test]
fn spillover_counts_successes_of_priority_two_and_up() {
    assert_eq!(spilled(&report(), watch().backends()), 2);
}

#[test]
fn the_screen_shows_backends_apps_and_events() {
    let (watch, report) = (watch(), report());
    let tokens = BTreeMap::from([(
        "chat-web".to_owned(),
        Usage {
            prompt_tokens: 1234,
            completion_tokens: 56,
        },
    )]);
    let rates = BTreeMap::from([("ptu-eastus".to_owned(), 3.5)]);
    let screen = screen(&frame(&watch, &report, &tokens, &rates));
    let lines: Vec<&str> = screen.lines().collect();
    let ptu = lines
        .iter()
        .find(|l| l.split_whitespace().take(2).eq(["ptu-eastus", "1"]))
        .expect("a PTU row");
    assert!(ptu.contains("OPEN 0.6s") && ptu.contains("3.5"), "{ptu}");
    let chat = lines
        .iter()
        .find(|l| l.starts_with("chat-web"))
        .expect("an app row");
    assert!(chat.contains("1,234") && chat.contains("56"), "{chat}");
    let bot = lines
        .iter()
        .find(|l| l.starts_with("support-bot"))
        .expect("an app row");
    assert!(bot.contains("503×1"), "{bot}");
    assert!(screen.contains("spillover: 2 requests served by pay-as-you-go · 2 retried"));
    assert!(screen.contains("ptu-eastus breaker OPEN"), "{screen}");
    assert!(screen.contains("18,000 tokens per minute"));
}

#[test]
fn the_status_line_is_one_compact_line() {
    let (watch, report) = (watch(), report());
    let empty = BTreeMap::new();
    let line = status_line(&frame(&watch, &report, &BTreeMap::new(), &empty));
    assert_eq!(line.lines().count(), 1);
    assert!(
        line.starts_with(
            "[ 12.3s] ptu-eastus OPEN 0.6s · paygo-westeurope closed | sent 4 ok 3 | spilled 2"
        ),
        "{line}"
    );
}
