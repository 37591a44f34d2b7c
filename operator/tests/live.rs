//! Live state from a real sidecar to status: reconcile against the mock API server (as in
//! `controller.rs`) with the stream server in-process (as in `stream.rs`) sharing its
//! publisher and registry, a real `spillway run --operator …` sidecar and a real
//! `spillway simulate` backend pair whose priority-1 backend answers 429.

#[allow(dead_code)]
#[path = "controller/harness.rs"]
mod harness;
#[path = "live/simulator.rs"]
mod simulator;
#[allow(dead_code)]
#[path = "stream/support.rs"]
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::ObjectMeta;
use serde_json::Value;
use spillway_crds::v1alpha1::{
    AiBackendPool, AiBackendPoolSpec, AiGateway, AiGatewaySpec, Backend, Budget, IdentitySpec,
    ModelRatesSpec, PricingSpec, QuotaPeriod, TokenQuota, TokenQuotaSpec,
};
use spillway_operator::controller::reconcile;
use spillway_operator::limits::ServerLimits;
use tokio::time::Instant;

use harness::{World, events, status_patches};
use simulator::Simulator;
use support::{Operator, Sidecar, TEAM_TOKEN, eventually, http_request};

const TPM: u64 = 600;
/// The anonymous app's daily budget, in USD.
const BUDGET: &str = "5";

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some("team".into()),
        generation: Some(1),
        resource_version: Some("1".into()),
        creation_timestamp: Some(Time(Timestamp::from_second(1_700_000_000).expect("time"))),
        ..ObjectMeta::default()
    }
}

fn backend(name: &str, url: &str, priority: u32) -> Backend {
    Backend {
        name: name.into(),
        url: url.into(),
        priority,
        weight: 1,
        ..Backend::default()
    }
}

fn objects(sim: &Simulator) -> (AiBackendPool, TokenQuota) {
    let mut pool = AiBackendPool::new(
        "chat",
        AiBackendPoolSpec {
            models: vec!["gpt-4o".into()],
            backends: vec![
                backend("ptu", &sim.urls["ptu"], 1),
                backend("paygo", &sim.urls["paygo"], 2),
            ],
            pricing: Some(PricingSpec {
                currency: Some("USD".into()),
                rates: vec![ModelRatesSpec {
                    input: "2.50".into(),
                    output: Some("10.00".into()),
                    ..ModelRatesSpec::default()
                }],
                provisioned: None,
            }),
            ..AiBackendPoolSpec::default()
        },
    );
    pool.metadata = meta("chat");
    let mut quota = TokenQuota::new(
        "anon-quota",
        TokenQuotaSpec {
            app_id: Some("anonymous".into()),
            tokens_per_minute: Some(TPM),
            budgets: vec![Budget {
                period: QuotaPeriod::Daily,
                amount: BUDGET.into(),
                currency: "USD".into(),
            }],
            ..TokenQuotaSpec::default()
        },
    );
    quota.metadata = meta("anon-quota");
    (pool, quota)
}

/// The namespace's AIGateway, admitting calls without a credential (on Kubernetes only
/// where `allowAnonymous: true` is written).
fn open_gateway() -> AiGateway {
    let mut gateway = AiGateway::new(
        "gateway",
        AiGatewaySpec {
            identity: Some(IdentitySpec {
                allow_anonymous: Some(true),
                ..IdentitySpec::default()
            }),
            ..AiGatewaySpec::default()
        },
    );
    gateway.metadata = meta("gateway");
    gateway
}

/// Reconciles and folds the written statuses and Events into `statuses` / `all_events`.
async fn reconcile_into(
    world: &World,
    statuses: &mut BTreeMap<String, Value>,
    all_events: &mut Vec<(String, String, String, String)>,
) {
    reconcile(Arc::clone(&world.namespace), Arc::clone(&world.ctx))
        .await
        .expect("reconcile");
    let seen = world.api.take();
    statuses.extend(status_patches(&seen));
    all_events.extend(events(&seen));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_state_and_quota_levels_reach_status_from_a_real_sidecar() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = Simulator::start(
        dir.path(),
        "backends:\n  - name: ptu\n    faults:\n      - {mode: status, status: 429, headers: {retry-after: \"120\"}}\n  - name: paygo\n",
    )
    .await;
    let mut world = World::new();
    let (pool, quota) = objects(&sim);
    world.put_pool(pool);
    world.put_quota(quota);
    world.put_gateway(open_gateway());
    let operator = Operator::serve_with(
        dir.path(),
        0,
        None,
        world.ctx.publisher.clone(),
        world.ctx.sidecars.clone(),
        ServerLimits::default(),
    )
    .await;
    let mut statuses = BTreeMap::new();
    let mut all_events = Vec::new();
    reconcile_into(&world, &mut statuses, &mut all_events).await;
    assert_eq!(
        statuses["anon-quota"]["tokensNote"],
        "no live sidecar serves this namespace"
    );
    assert!(
        statuses["chat"].get("openBreakers").is_none(),
        "{}",
        statuses["chat"]
    );

    let sidecar = Sidecar::start(&operator, dir.path(), "sidecar-a", TEAM_TOKEN).await;
    eventually("the sidecar serves version 1", || async {
        sidecar.version().await == Some(1)
    })
    .await;
    let body = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hello there"}],"max_tokens":20}"#;
    for _ in 0..8 {
        let (status, text) =
            http_request(&sidecar.listen, "POST", "/v1/chat/completions", body).await;
        assert_eq!(status, 200, "spilled over to paygo: {text}");
    }

    // The usage totals of a report may trail its quota levels on a busy machine (records
    // reach the totals through a queue): wait until both show the calls.
    let counted_usage = || -> u64 {
        world
            .ctx
            .sidecars
            .sidecars()
            .iter()
            .filter_map(|v| v.report.as_ref()?.usage.get("anonymous").copied())
            .map(|u| u.prompt_tokens + u.completion_tokens)
            .sum()
    };
    eventually(
        "the report shows the open breaker, the used quota and the usage behind it",
        || async {
            world
                .ctx
                .sidecars
                .live_sidecars("team", Instant::now())
                .iter()
                .any(|s| {
                    let left = s
                        .minute_left
                        .get("anon-quota")
                        .and_then(|a| a.get("anonymous"))
                        .copied();
                    s.breakers.get("chat/ptu")
                        == Some(&spillway_operator::status::live::Breaker::Open)
                        && left < Some(TPM - 100)
                        && left.is_some_and(|left| counted_usage() >= TPM - left)
                })
        },
    )
    .await;
    reconcile_into(&world, &mut statuses, &mut all_events).await;

    let pool = &statuses["chat"];
    assert_eq!(pool["openBreakers"], 1, "{pool}");
    assert_eq!(pool["sidecars"], "1/1");
    let states = pool["backendStates"].as_array().expect("backend states");
    assert_eq!(states[0]["name"], "ptu");
    assert_eq!(
        (states[0]["open"].as_u64(), states[0]["closed"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(states[1]["name"], "paygo");
    assert_eq!(
        (states[1]["closed"].as_u64(), states[1]["open"].as_u64()),
        (Some(1), Some(0))
    );
    let trips: Vec<_> = all_events.iter().filter(|e| e.2 == "BreakerOpen").collect();
    assert_eq!(trips.len(), 1, "{all_events:?}");
    assert_eq!(
        (trips[0].0.as_str(), trips[0].1.as_str()),
        ("chat", "Warning")
    );
    assert!(trips[0].3.starts_with("backend ptu:"), "{}", trips[0].3);

    let quota = &statuses["anon-quota"];
    let used = quota["tokensUsed"].as_u64().expect("tokensUsed");
    let remaining = quota["tokensRemaining"].as_u64().expect("tokensRemaining");
    assert_eq!(used + remaining, TPM, "{quota}");
    // What the sidecar counted for the app bounds what can be in use (the bucket refills).
    let counted = counted_usage();
    assert!(
        used > 0 && used <= counted,
        "used {used}, counted {counted}: {quota}"
    );
    assert!(
        quota["tokensNote"]
            .as_str()
            .is_some_and(|n| n.contains("1 of 1 live sidecars")),
        "{quota}"
    );
    // The budget's spend, as the sidecar's budget level tells it: 8 calls on paygo at 2.50
    // and 10.00 per million tokens cost well under a cent, but more than nothing.
    let budget = &quota["budgets"][0];
    assert_eq!(
        (budget["period"].as_str(), budget["currency"].as_str()),
        (Some("Daily"), Some("USD")),
        "{quota}"
    );
    let spent: f64 = budget["spent"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("spent is known");
    assert!(spent > 0.0 && spent < 0.01, "{quota}");
    assert_eq!(
        budget["usage"].as_str(),
        Some(
            format!(
                "{}/{BUDGET} USD",
                budget["spent"].as_str().unwrap_or_default()
            )
            .as_str()
        ),
        "{quota}"
    );
    // Later reports of the same open breaker are no new Event.
    for _ in 0..3 {
        reconcile_into(&world, &mut statuses, &mut all_events).await;
    }
    let trips = all_events.iter().filter(|e| e.2 == "BreakerOpen").count();
    assert_eq!(trips, 1, "{all_events:?}");
    sidecar.kill().await;
    operator.stop().await;
}
