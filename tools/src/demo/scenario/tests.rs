use std::sync::Mutex;

use super::*;
use crate::simulate::SimConfig;
use spillway_crds::snapshot::QuotaPeriod;
use spillway_sidecar::subscribe::file::{LocalSecrets, load_text};

fn example(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../examples/demo/{name}"))
}

fn example_urls() -> [String; 3] {
    EXAMPLE_PORTS.map(|port| format!("http://127.0.0.1:{port}"))
}

/// `examples/demo/gateway.yaml` is exactly what the demo writes, on the example ports at
/// the default rate. `SPILLWAY_BLESS=1` rewrites it.
#[test]
fn the_shipped_gateway_manifest_is_the_demos() {
    let urls = example_urls();
    let want = manifests([&urls[0], &urls[1], &urls[2]], DEFAULT_RATE);
    let path = example("gateway.yaml");
    if std::env::var_os("SPILLWAY_BLESS").is_some() {
        std::fs::write(&path, &want).expect("write the example");
    }
    let have = std::fs::read_to_string(&path).expect("examples/demo/gateway.yaml");
    assert_eq!(
        have, want,
        "run with SPILLWAY_BLESS=1 to update the example"
    );
}

/// `examples/demo/README.md` shows the demo's traffic as one `spillway loadtest` per app.
#[test]
fn the_shipped_readme_sends_each_apps_traffic_with_its_key() {
    let readme = std::fs::read_to_string(example("README.md")).expect("README.md");
    for app in apps() {
        let command = loadtest_command(&app, "http://127.0.0.1:8080", DEFAULT_RATE);
        assert!(readme.contains(&command), "README.md lacks:\n{command}");
    }
}

#[test]
fn the_shipped_simulator_config_is_the_demos_at_the_default_rate() {
    let text = std::fs::read_to_string(example("simulate.yaml")).expect("simulate.yaml");
    let config = SimConfig::from_yaml(&text).expect("valid simulator config");
    assert_eq!(
        config.backends,
        sim_backends(ptu_tpm(DEFAULT_RATE), EXAMPLE_PORTS)
    );
}

#[test]
fn the_manifests_compile_to_ptu_first_with_api_keys_and_a_quota_per_app() {
    let urls = example_urls();
    let snapshot = load_text(
        &manifests([&urls[0], &urls[1], &urls[2]], DEFAULT_RATE),
        &LocalSecrets::default(),
    )
    .expect("the demo's manifests compile");
    let identity = &snapshot.gateway.identity;
    assert_eq!(
        identity.trusted_header, None,
        "apps are known by their keys only"
    );
    let keys: Vec<_> = identity
        .api_keys
        .iter()
        .map(|k| (k.app_id.as_str(), k.sha256.clone()))
        .collect();
    let want: Vec<_> = apps()
        .iter()
        .map(|a| (a.name, sha256_hex(&api_key(a.name))))
        .collect();
    assert_eq!(keys, want);
    // sha256("sk-demo-chat-web"), as `printf %s sk-demo-chat-web | sha256sum` prints it.
    assert_eq!(
        sha256_hex("abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    let quotas: Vec<_> = snapshot
        .quotas
        .iter()
        .map(|q| {
            let daily = q
                .calendar
                .iter()
                .map(|c| (c.period, c.tokens))
                .collect::<Vec<_>>();
            (q.app_id.as_deref(), q.tokens_per_minute, daily)
        })
        .collect();
    assert_eq!(
        quotas,
        vec![
            (Some("chat-web"), Some(156_000), vec![]),
            (Some("batch-summarizer"), Some(16_000), vec![]),
            (Some("support-bot"), None, vec![(QuotaPeriod::Daily, 9_000)]),
        ]
    );
    let pool = &snapshot.pools[0];
    assert_eq!(pool.models, vec![MODEL.to_owned()]);
    let backends: Vec<_> = pool
        .backends
        .iter()
        .map(|b| (b.name.as_str(), b.priority))
        .collect();
    assert_eq!(backends, vec![(PTU, 1), (PAYGO_WE, 2), (PAYGO_SC, 2)]);
    let rules: Vec<_> = pool.backends[0]
        .breaker
        .rules
        .iter()
        .map(|r| (r.name.as_str(), r.max_retry_after_ms, r.trip_duration_ms))
        .collect();
    assert_eq!(
        rules,
        vec![("throttled", 1000, 1000), ("failing", 300_000, 3000)]
    );
}

/// The story at any rate: chat-web's quota never bites, batch-summarizer's bites within a
/// few seconds, support-bot's daily budget lasts about five, and the PTU cannot serve even
/// what the quotas let through — so it stays throttled and spills over all along.
#[test]
fn quotas_and_the_ptu_are_sized_for_the_rate() {
    for rate in [2.0, DEFAULT_RATE, 200.0] {
        let [chat, batch, bot] = apps();
        let per_minute = |a: &AppProfile| a.quota_tokens(rate) as f64 / 60.0;
        assert!(
            per_minute(&chat) > chat.cost_per_second(rate),
            "rate {rate}"
        );
        let batch_seconds =
            batch.quota_tokens(rate) as f64 / (batch.cost_per_second(rate) - per_minute(&batch));
        assert!(
            (3.0..10.0).contains(&batch_seconds),
            "rate {rate}: {batch_seconds}s"
        );
        let bot_seconds = bot.quota_tokens(rate) as f64 / bot.cost_per_second(rate);
        assert!(
            (4.0..10.0).contains(&bot_seconds),
            "rate {rate}: {bot_seconds}s"
        );
        let ptu_per_second = ptu_tpm(rate) as f64 * f64::from(PTU_TIME_SCALE) / 60.0;
        let admitted = admitted_per_second(rate);
        assert!(
            ptu_per_second < admitted && ptu_per_second > admitted / 3.0,
            "rate {rate}: the PTU serves {ptu_per_second}/s of {admitted}/s"
        );
        assert!(
            ptu_tpm(rate) as f64 / cost_per_second(rate) < 2.0,
            "fills early"
        );
    }
    assert_eq!(ptu_tpm(DEFAULT_RATE), 5_700);
    assert_eq!(apps()[1].quota_text(DEFAULT_RATE), "16,000/min");
    assert_eq!(apps()[2].quota_text(DEFAULT_RATE), "9,000/day");
}

#[test]
fn plans_split_the_rate_and_name_each_app() {
    let plans = plans("http://127.0.0.1:1", 20.0, Duration::from_secs(10));
    let rates: f64 = plans.iter().filter_map(|p| p.rate).sum();
    assert!((rates - 20.0).abs() < 1e-9);
    let names: Vec<_> = plans.iter().map(|p| p.apps.join(",")).collect();
    assert_eq!(names, ["chat-web", "batch-summarizer", "support-bot"]);
    for plan in &plans {
        plan.validate().expect("valid plan");
        assert_eq!(
            plan.api_key,
            Some(api_key(plan.app(0))),
            "each app sends its own key"
        );
        assert_eq!(plan.duration, Duration::from_secs(10));
    }
}

struct ManualClock(Mutex<Instant>);

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        *self.0.lock().expect("clock")
    }
    fn wall(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH
    }
}

#[test]
fn the_scaled_clock_runs_factor_times_faster() {
    let start = Instant::now();
    let inner = Arc::new(ManualClock(Mutex::new(start)));
    let scaled = ScaledClock::new(inner.clone(), PTU_TIME_SCALE);
    assert_eq!(scaled.now(), start);
    *inner.0.lock().expect("clock") = start + Duration::from_secs(6);
    assert_eq!(scaled.now(), start + Duration::from_secs(60));
    assert_eq!(scaled.wall(), SystemTime::UNIX_EPOCH);
}
