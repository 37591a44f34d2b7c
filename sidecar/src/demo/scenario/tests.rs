use std::sync::Mutex;

use super::*;
use crate::simulate::SimConfig;
use crate::subscribe::file::{LocalSecrets, load_text};

fn example(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../examples/demo/{name}"))
}

fn example_urls() -> [String; 3] {
    EXAMPLE_PORTS.map(|port| format!("http://127.0.0.1:{port}"))
}

/// `examples/demo/gateway.yaml` is exactly what the demo writes, on the example ports.
/// `SPILLWAY_BLESS=1` rewrites it.
#[test]
fn the_shipped_gateway_manifest_is_the_demos() {
    let urls = example_urls();
    let want = manifests([&urls[0], &urls[1], &urls[2]]);
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

#[test]
fn the_shipped_simulator_config_is_the_demos_at_the_default_rate() {
    let text = std::fs::read_to_string(example("simulate.yaml")).expect("simulate.yaml");
    let config = SimConfig::from_yaml(&text).expect("valid simulator config");
    assert_eq!(config.backends, sim_backends(ptu_tpm(24.0), EXAMPLE_PORTS));
}

#[test]
fn the_manifests_compile_to_ptu_first_with_the_trusted_app_header() {
    let urls = example_urls();
    let snapshot = load_text(
        &manifests([&urls[0], &urls[1], &urls[2]]),
        &LocalSecrets::default(),
    )
    .expect("the demo's manifests compile");
    assert_eq!(
        snapshot.gateway.identity.trusted_header.as_deref(),
        Some(APP_HEADER)
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

#[test]
fn the_ptu_fills_in_a_few_seconds_at_any_rate() {
    for rate in [2.0, 24.0, 200.0] {
        let seconds = ptu_tpm(rate) as f64 / cost_per_second(rate);
        assert!((2.5..4.0).contains(&seconds), "rate {rate}: {seconds}s");
    }
    assert_eq!(ptu_tpm(24.0), 18_000);
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
        assert_eq!(plan.app_header.as_str(), APP_HEADER);
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
