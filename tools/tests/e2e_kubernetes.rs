//! The full scenario of TESTING.md on a real kube-apiserver + etcd (`tests/k8s/e2e.sh`
//! prepares it): the operator process as its ServiceAccount with the chart's RBAC, the
//! manifests of `examples/ptu-spillover` and `examples/two-apps` applied with `kubectl`
//! (backend URLs pointed at `spillway simulate`), two `spillway run --operator` sidecars
//! authenticated by ServiceAccount tokens, traffic from two apps, PTU 429 → spillover with no
//! 429 reaching a client, an app over its quota, OTLP token sums equal to the simulator's
//! ledger, and `kubectl delete` of the pool ending its routing. Every step asserts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod e2e_support;
mod telemetry_support;

use std::time::Duration;

use common::Sim;
use e2e_support::cluster::{
    SIM, WAIT, apply_and_wait_ready, invalid_tokens_are_refused, wait_synced,
};
use e2e_support::processes::{Operator, Sidecar};
use e2e_support::traffic::{self, BATCH, CHAT, Call, Log, Shape};
use e2e_support::{AUDIENCE, NAMESPACE, POOL, TestBed, condition, eventually, step};
use telemetry_support::sum_where;

/// Traffic until both sidecars spilled over; no 429 ever reaches a client.
async fn spillover(sidecars: &[&Sidecar], log: &mut Log) {
    step("traffic from two apps; the PTU's 429s spill over to pay-as-you-go");
    for (i, sidecar) in sidecars.iter().enumerate() {
        let shape = Shape {
            azure: i == 0,
            stream: false,
            max_tokens: 16,
        };
        let first = log.call(sidecars, i, CHAT, POOL, shape).await;
        assert_eq!(first.status, 200, "{}", first.reply.text());
        assert_eq!(
            (first.backend.as_str(), first.attempts),
            ("ptu-swedencentral", 1),
            "{}: priority 1 first",
            sidecar.id
        );
    }
    // At least 20 calls, so every app × sidecar × streaming combination occurs, and on
    // until both sidecars spilled over.
    let mut spilled = [false, false];
    for n in 0..80 {
        if n >= 20 && spilled == [true, true] {
            break;
        }
        let (index, app) = (n % 2, if n % 4 < 2 { CHAT } else { BATCH });
        let shape = Shape {
            azure: n % 3 == 0,
            stream: n % 5 < 2,
            max_tokens: 16,
        };
        let call = log.call(sidecars, index, app, POOL, shape).await;
        assert_eq!(
            call.status,
            200,
            "{}: no 429 reaches the client: {}",
            call.id,
            call.reply.text()
        );
        if call.backend.starts_with("paygo-") && call.attempts >= 2 {
            spilled[index] = true;
        }
    }
    for app in [CHAT, BATCH] {
        for stream in [false, true] {
            assert!(
                log.calls.iter().any(|c| c.app == app && c.stream == stream),
                "{} stream={stream} was sent",
                app.id
            );
        }
    }
    assert_eq!(
        spilled,
        [true, true],
        "both sidecars spilled over within 80 calls"
    );
}

/// The ledger agrees: each sidecar met the PTU's 429, both apps were served by pay-as-you-go,
/// and every billed call is one the client saw succeed from that backend.
async fn spillover_in_the_ledger(sim: &Sim, sidecars: &[&Sidecar], log: &Log) {
    let entries = traffic::ledger(sim).await;
    for (index, sidecar) in sidecars.iter().enumerate() {
        let throttled = entries.iter().filter(|e| {
            e["backend"] == "ptu-swedencentral"
                && e["status"] == 429
                && log
                    .by_id(e["requestId"].as_str().unwrap())
                    .is_some_and(|c| c.sidecar == index)
        });
        assert!(
            throttled.count() >= 1,
            "{}: the PTU said 429 to it",
            sidecar.id
        );
    }
    let billed = traffic::billed(&entries, log);
    let ptu_429 = entries.iter().filter(|e| e["status"] == 429).count();
    eprintln!(
        "  {} calls, all 200; the PTU answered 429 {ptu_429} times",
        log.calls.len()
    );
    eprintln!("  billed (prompt, completion) per (sidecar, app, backend): {billed:?}");
    for app in [CHAT.id, BATCH.id] {
        assert!(
            billed
                .keys()
                .any(|(_, a, b)| a == app && b.starts_with("paygo-")),
            "{app} spilled"
        );
    }
}

/// The 429 of a quota: OpenAI-shaped error naming the quota, no backend tried, and a wait in
/// `retry-after-ms` that `Retry-After` rounds up. Returns the wait in milliseconds.
fn quota_refusal_wait(refused: &Call) -> u64 {
    assert_eq!(refused.status, 429, "{}", refused.reply.text());
    let error = refused.reply.json();
    assert_eq!(error["error"]["code"], "rate_limit_exceeded", "{error}");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("`nightly-batch`"),
        "names the quota: {error}"
    );
    assert_eq!(refused.attempts, 0, "refused before any backend");
    let wait_ms: u64 = refused.reply.header("retry-after-ms").parse().unwrap();
    let wait_s: u64 = refused.reply.header("retry-after").parse().unwrap();
    assert!(
        (1..=60_000).contains(&wait_ms),
        "within a minute: {wait_ms} ms"
    );
    assert_eq!(wait_s, wait_ms.div_ceil(1000), "Retry-After rounds up");
    eprintln!("  {}: {message}", refused.id);
    wait_ms
}

/// `nightly-batch` runs out of its per-minute budget on one sidecar: 429 naming the quota,
/// no backend call, admitted again after exactly its Retry-After; `support-chat` keeps being
/// served and an unknown key gets 401.
async fn batch_hits_its_quota(sim: &Sim, sidecars: &[&Sidecar], log: &mut Log) {
    step("nightly-batch exceeds its tokens-per-minute quota");
    let before = traffic::ledger(sim).await.len();
    let shape = Shape {
        azure: true,
        stream: false,
        max_tokens: 2000,
    };
    let mut refused = None;
    for _ in 0..10 {
        let call = log.call(sidecars, 0, BATCH, POOL, shape).await;
        if call.status != 200 {
            refused = Some(log.calls.len() - 1);
            break;
        }
    }
    let refused = &log.calls[refused.expect("10,000 TPM shared by two sidecars runs out")];
    let wait_ms = quota_refusal_wait(refused);
    let refused_id = refused.id.clone();
    let entries = traffic::ledger(sim).await;
    assert!(
        entries
            .iter()
            .all(|e| e["requestId"] != refused_id.as_str()),
        "never forwarded"
    );
    assert!(
        entries.len() > before,
        "the admitted batch calls were billed"
    );

    let chat_shape = Shape {
        azure: false,
        stream: true,
        max_tokens: 16,
    };
    let chat = log.call(sidecars, 0, CHAT, POOL, chat_shape).await;
    assert_eq!(
        chat.status,
        200,
        "the other app is unaffected: {}",
        chat.reply.text()
    );
    let unknown = traffic::send(sidecars[1], "stolen-key", "e2e-unknown", POOL, shape).await;
    assert_eq!(unknown.status, 401, "an unknown key: {}", unknown.text());

    // The same call, sent after exactly the Retry-After it was given, fits.
    tokio::time::sleep(Duration::from_millis(wait_ms)).await;
    let admitted = log.call(sidecars, 0, BATCH, POOL, shape).await;
    assert_eq!(
        admitted.status,
        200,
        "after Retry-After: {}",
        admitted.reply.text()
    );
}

/// Each sidecar's OTLP token sums per app, backend and type equal the simulator's ledger of
/// the calls it made, and the operator's per-app totals equal the ledger's.
async fn otlp_equals_ledger(sim: &Sim, operator: &Operator, sidecars: &[&Sidecar], log: &Log) {
    step("OTLP token sums equal the simulators' ledger");
    let billed = traffic::billed(&traffic::ledger(sim).await, log);
    assert!(
        billed.len() >= 6,
        "two apps, two sidecars, several backends: {billed:?}"
    );
    eventually(
        "OTLP exports of both sidecars match the ledger",
        WAIT,
        || async {
            for ((index, app, backend), (prompt, completion)) in &billed {
                let points = sidecars[*index].otlp.points("spillway.tokens");
                for (kind, want) in [("input", prompt), ("output", completion)] {
                    let at = [
                        ("spillway.app_id", app.as_str()),
                        ("spillway.backend", backend.as_str()),
                        ("spillway.pool", POOL),
                        ("gen_ai.request.model", POOL),
                        ("gen_ai.token.type", kind),
                    ];
                    let got = sum_where(&points, &at);
                    #[allow(clippy::cast_precision_loss)]
                    let want = *want as f64;
                    if (got - want).abs() > f64::EPSILON {
                        return Err(format!(
                            "sidecar {index} {app} {backend} {kind}: {got} != {want}"
                        ));
                    }
                }
            }
            Ok(())
        },
    )
    .await;
    eventually(
        "the operator's per-app tokens match the ledger",
        WAIT,
        || async {
            for app in [CHAT.id, BATCH.id] {
                let want: u64 = billed
                    .iter()
                    .filter(|(k, _)| k.1 == app)
                    .map(|(_, v)| v.0 + v.1)
                    .sum();
                let sample =
                    format!("spillway_operator_app_tokens{{scope=\"{NAMESPACE}\",app=\"{app}\"}}");
                #[allow(clippy::cast_precision_loss)]
                let want = want as f64;
                let got = operator.metric(&sample).await;
                if got != Some(want) {
                    return Err(format!("{app}: {got:?} != {want}"));
                }
            }
            Ok(())
        },
    )
    .await;
}

/// Polls each sidecar with a call for the pool's model until it answers 404 from a snapshot
/// newer than `version`.
async fn wait_until_unrouted(sidecars: &[&Sidecar], version: u64) {
    let shape = Shape {
        azure: false,
        stream: false,
        max_tokens: 16,
    };
    for (index, sidecar) in sidecars.iter().enumerate() {
        let what = format!("{} answers 404 for {POOL}", sidecar.id);
        eventually(&what, WAIT, || async {
            let v = sidecar.version().await.unwrap_or(0);
            let id = format!("e2e-probe-{index}-{v}");
            let reply = traffic::send(sidecar, CHAT.key, &id, POOL, shape).await;
            (reply.status == 404 && v > version)
                .then_some(())
                .ok_or(format!("{} at v{v}", reply.status))
        })
        .await;
    }
}

/// `kubectl delete` of the pool: both sidecars answer 404 for its model and the simulators
/// see no further call; the quotas stay served.
async fn delete_pool(bed: &TestBed, sim: &Sim, sidecars: &[&Sidecar], log: &mut Log, v: u64) {
    step("kubectl delete the pool; the sidecars stop routing to it");
    bed.kubectl(&[
        "delete",
        "aibackendpool",
        POOL,
        "-n",
        NAMESPACE,
        "--wait=true",
    ]);
    assert!(bed.get("aibackendpool", POOL).is_none(), "deleted");
    wait_until_unrouted(sidecars, v).await;
    let before = traffic::ledger(sim).await.len();
    let shape = Shape {
        azure: false,
        stream: true,
        max_tokens: 16,
    };
    for index in [0, 1, 0, 1] {
        let call = log.call(sidecars, index, BATCH, POOL, shape).await;
        assert_eq!(call.status, 404, "{}", call.reply.text());
        let code = &call.reply.json()["error"]["code"];
        assert_eq!(code, "model_not_found", "{}", call.reply.text());
    }
    let after = traffic::ledger(sim).await.len();
    assert_eq!(after, before, "no backend saw a call");
    let quota = bed.get("tokenquota", "nightly-batch").unwrap();
    let ready = condition(&quota, "Ready").unwrap();
    assert_eq!(ready.0, "True", "quotas stay served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Kubernetes test bed: run tests/k8s/e2e.sh"]
async fn operator_sidecars_spillover_quota_usage_and_pool_deletion_on_a_real_api_server() {
    let bed = TestBed::from_env();
    let sim = Sim::start(SIM).await;
    step("start the operator as its ServiceAccount (the chart's RBAC)");
    let operator = Operator::start(&bed).await;
    eventually("the operator leads", WAIT, || async {
        (operator.metric("spillway_operator_leader").await == Some(1.0))
            .then_some(())
            .ok_or("not yet")
    })
    .await;
    apply_and_wait_ready(&bed, &sim).await;
    invalid_tokens_are_refused(&bed, &operator).await;

    step("start two sidecars with ServiceAccount tokens");
    let token = bed.sidecar_token(Some(AUDIENCE));
    let a = Sidecar::start(&bed, &operator, "sidecar-a", &token).await;
    let b = Sidecar::start(&bed, &operator, "sidecar-b", &token).await;
    let sidecars = [&a, &b];
    let version = wait_synced(&bed, &operator, &sidecars).await;

    let mut log = Log::default();
    spillover(&sidecars, &mut log).await;
    spillover_in_the_ledger(&sim, &sidecars, &log).await;
    batch_hits_its_quota(&sim, &sidecars, &mut log).await;
    otlp_equals_ledger(&sim, &operator, &sidecars, &log).await;
    delete_pool(&bed, &sim, &sidecars, &mut log, version).await;
}
