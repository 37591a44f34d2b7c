//! Never fail open, on a real kube-apiserver + etcd (`tests/k8s/e2e.sh` prepares it, and runs
//! this after `e2e_kubernetes.rs` in the same namespace, which it empties first): the operator
//! and a real `spillway run --operator` sidecar, simulated backends, and one bad edit after
//! another, each checked by what a client gets from the sidecar and by what `kubectl get`
//! says:
//! - a malformed `keySha256` in the `AIGateway`, then its key Secret deleted: calls without a
//!   credential still get 401, the apps' keys keep working from the last good version;
//! - a pool URL without `https://`: the model keeps serving from the last good generation, and
//!   status names the refused and the served generation;
//! - a younger pool claiming the same model never serves it, although its owner is refused;
//! - a `TokenQuota` edit the operator refuses: the app stays limited;
//! - an operator restart in the middle (nothing kept in memory): the same results — except that
//!   the deleted Secret's keys cannot be read any more, so every call is refused (503), never
//!   admitted anonymously, until the Secret is back;
//! - with the chart's validating webhook registered (pointed at the operator process), a rival
//!   pool and an invalid quota edit are refused at `kubectl apply` time with what to fix;
//! - `kubectl delete aigateway`: every call is refused (503), none admitted anonymously.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod e2e_support;
mod telemetry_support;

use common::{Reply, Sim};
use e2e_support::cluster::{SIM, WAIT, apply_and_wait_ready};
use e2e_support::processes::{Operator, Sidecar};
use e2e_support::traffic::{self, BATCH, CHAT, Shape};
use e2e_support::{AUDIENCE, NAMESPACE, POOL, TestBed, condition, eventually, step};
use serde_json::Value;

const SHAPE: Shape = Shape {
    azure: true,
    stream: false,
    max_tokens: 16,
};
/// A pool created after the example's, claiming its model with another account's backend.
const RIVAL: &str = "apiVersion: spillway.dev/v1alpha1
kind: AIBackendPool
metadata: {name: gpt-4o-rival}
spec:
  models: [gpt-4o]
  backends:
    - {name: rival-account, url: RIVAL_URL}
";

/// Everything of the earlier scenario goes, so this one starts from the examples alone.
fn empty_the_namespace(bed: &TestBed) {
    for kind in ["aibackendpools", "tokenquotas", "aigateways", "secrets"] {
        bed.kubectl(&["delete", kind, "--all", "-n", NAMESPACE, "--wait=true"]);
    }
}

/// Polls until the sidecar runs the operator's current version; returns it.
async fn settled(operator: &Operator, sidecar: &Sidecar) -> u64 {
    let sample = format!("spillway_operator_snapshot_version{{scope=\"{NAMESPACE}\"}}");
    eventually(
        "the sidecar runs the operator's current version",
        WAIT,
        || async {
            let published = operator.metric(&sample).await.ok_or("no version yet")?;
            let applied = sidecar.version().await;
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let published = published as u64;
            (applied == Some(published))
                .then_some(published)
                .ok_or(format!("published {published}, applied {applied:?}"))
        },
    )
    .await
}

/// Polls until `kind/name`'s status describes its current generation and `check` holds.
async fn status_until(
    bed: &TestBed,
    kind: &str,
    name: &str,
    what: &str,
    check: fn(&Value) -> bool,
) -> Value {
    eventually(&format!("{kind}/{name}: {what}"), WAIT, || async {
        let object = bed.get(kind, name).ok_or("not found")?;
        let current = object["status"]["observedGeneration"] == object["metadata"]["generation"];
        (current && check(&object))
            .then(|| object.clone())
            .ok_or_else(|| format!("{}", object["status"]))
    })
    .await
}

fn generation(object: &Value) -> i64 {
    object["metadata"]["generation"].as_i64().unwrap()
}

fn served(object: &Value) -> Option<i64> {
    object["status"]["servedGeneration"].as_i64()
}

/// A call without any credential.
async fn anonymous(sidecar: &Sidecar) -> Reply {
    let url = format!(
        "{}/openai/deployments/{POOL}/chat/completions?api-version=2024-10-21",
        sidecar.url
    );
    let body = r#"{"messages":[{"role":"user","content":"hi"}],"max_tokens":8}"#;
    common::http(http::Method::POST, &url, &[], body).await
}

/// Polls until a call without a credential gets 503 (the sidecar refuses every call).
async fn until_every_call_is_refused(sidecar: &Sidecar) {
    eventually("every call is refused with 503", WAIT, || async {
        let reply = anonymous(sidecar).await;
        (reply.status == 503)
            .then_some(())
            .ok_or(format!("{}: {}", reply.status, reply.text()))
    })
    .await;
}

/// No credential → 401; each app's key → 200 from one of the example pool's backends, with
/// the app's own quota headers.
async fn still_closed_and_serving(sidecar: &Sidecar, what: &str) {
    let refused = anonymous(sidecar).await;
    assert_eq!(
        refused.status,
        401,
        "{what}: no credential: {}",
        refused.text()
    );
    for app in [CHAT, BATCH] {
        let reply = traffic::send(sidecar, app.key, &format!("nfo-{}", app.id), POOL, SHAPE).await;
        assert_eq!(reply.status, 200, "{what}: {}: {}", app.id, reply.text());
        let backend = reply.header("x-spillway-backend");
        assert!(
            ["ptu-swedencentral", "paygo-eastus2", "paygo-westeurope"].contains(&backend),
            "{what}: served by the owner's backends, not {backend:?}"
        );
        // No backend here sends request limits: these are the app's own TokenQuota's.
        let rpm: u64 = reply
            .header("x-ratelimit-limit-requests")
            .parse()
            .unwrap_or(0);
        let quota_rpm = if app.id == BATCH.id { 120 } else { 1000 };
        assert!(
            (1..=quota_rpm).contains(&rpm),
            "{what}: {} is still limited by its TokenQuota ({quota_rpm} RPM): {rpm}",
            app.id
        );
    }
}

fn patch(bed: &TestBed, kind: &str, name: &str, json_patch: &str) {
    bed.kubectl(&[
        "patch",
        kind,
        name,
        "-n",
        NAMESPACE,
        "--type=json",
        "-p",
        json_patch,
    ]);
}

/// A malformed `keySha256`, then the keys' Secret deleted: authentication stays on.
async fn gateway_edits_fail_closed(bed: &TestBed, operator: &Operator, sidecar: &Sidecar) {
    step("a malformed keySha256 in the AIGateway: refused, the last good keeps serving");
    let good = bed.get("aigateway", "gateway").unwrap();
    patch(
        bed,
        "aigateway",
        "gateway",
        r#"[{"op":"add","path":"/spec/identity/apiKeys/-","value":{"appId":"intruder","keySha256":"not-hex"}}]"#,
    );
    let refused = status_until(bed, "aigateway", "gateway", "Accepted=False", |o| {
        condition(o, "Accepted").is_some_and(|c| c.0 == "False")
    })
    .await;
    assert_eq!(
        served(&refused),
        Some(generation(&good)),
        "{}",
        refused["status"]
    );
    assert_eq!(refused["status"]["identity"], "Jwt,ApiKey");
    let ready = &refused["status"]["conditions"];
    assert!(
        ready
            .to_string()
            .contains("the last good one, keeps serving"),
        "{ready}"
    );
    settled(operator, sidecar).await;
    still_closed_and_serving(sidecar, "bad keySha256").await;

    step("the apps' key Secret deleted: the last resolved key hashes keep serving");
    bed.kubectl(&[
        "delete",
        "secret",
        "app-keys",
        "-n",
        NAMESPACE,
        "--wait=true",
    ]);
    let gone = status_until(bed, "aigateway", "gateway", "ResolvedRefs=False", |o| {
        condition(o, "ResolvedRefs")
            .is_some_and(|c| c == ("False".into(), "SecretNotResolved".into()))
    })
    .await;
    assert_eq!(served(&gone), Some(generation(&good)));
    settled(operator, sidecar).await;
    still_closed_and_serving(sidecar, "Secret deleted").await;
    let table = bed.kubectl(&["get", "aigw", "gateway", "-n", NAMESPACE]);
    assert!(
        table.contains("IDENTITY") && table.contains("Jwt,ApiKey"),
        "{table}"
    );
}

/// A pool URL typo and a rival pool: the model stays with its owner's last good generation.
async fn pool_edits_keep_serving(bed: &TestBed, sim: &Sim, operator: &Operator, sidecar: &Sidecar) {
    step("a pool URL without https://: refused, generation N keeps serving");
    let good = bed.get("aibackendpool", POOL).unwrap();
    patch(
        bed,
        "aibackendpool",
        POOL,
        r#"[{"op":"replace","path":"/spec/backends/0/url","value":"contoso-ptu.openai.azure.com"}]"#,
    );
    let refused = status_until(bed, "aibackendpool", POOL, "Accepted=False", |o| {
        condition(o, "Accepted").is_some_and(|c| c == ("False".into(), "InvalidSpec".into()))
    })
    .await;
    assert_eq!(served(&refused), Some(generation(&good)));
    assert_eq!(generation(&refused), generation(&good) + 1);
    let table = bed.kubectl(&["get", "aipool", POOL, "-n", NAMESPACE]);
    assert!(table.contains("SERVED"), "{table}");

    step("a younger pool claims gpt-4o: refused, never serves it");
    bed.apply(&RIVAL.replace("RIVAL_URL", sim.url("rival-account")));
    status_until(bed, "aibackendpool", "gpt-4o-rival", "ModelConflict", |o| {
        condition(o, "Accepted").is_some_and(|c| c.1 == "ModelConflict") && served(o).is_none()
    })
    .await;
    settled(operator, sidecar).await;
    still_closed_and_serving(sidecar, "pool refused, rival present").await;
}

/// A quota edit the operator refuses (a period listed twice): the app stays limited.
async fn quota_edit_keeps_limits(bed: &TestBed, operator: &Operator, sidecar: &Sidecar) {
    step("a TokenQuota edit the operator refuses: the last good limits stay");
    let good = bed.get("tokenquota", "nightly-batch").unwrap();
    // A larger budget and a period listed twice: valid for the API server, not for compile.
    patch(
        bed,
        "tokenquota",
        "nightly-batch",
        r#"[{"op":"replace","path":"/spec/tokensPerMinute","value":20000},{"op":"add","path":"/spec/quotas/-","value":{"period":"Monthly","tokens":1}}]"#,
    );
    let refused = status_until(bed, "tokenquota", "nightly-batch", "Accepted=False", |o| {
        condition(o, "Accepted").is_some_and(|c| c.0 == "False")
    })
    .await;
    assert_eq!(served(&refused), Some(generation(&good)));
    settled(operator, sidecar).await;
    let reply = traffic::send(sidecar, BATCH.key, "nfo-quota", POOL, SHAPE).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let limit: u64 = reply.header("x-ratelimit-limit-tokens").parse().unwrap();
    assert!(
        (1..=10_000).contains(&limit),
        "the 10,000 TPM of the last good generation, not the refused 20,000: {limit}"
    );
    let table = bed.kubectl(&["get", "tq", "nightly-batch", "-n", NAMESPACE, "-o", "wide"]);
    assert!(table.contains("MONTH"), "{table}");
}

/// A new operator process knows nothing but what status kept.
async fn after_a_restart(bed: &TestBed, operator: Operator, sidecar: &Sidecar) -> Operator {
    step("restart the operator: the last good versions come back from status");
    let address = operator.stream_address().to_owned();
    operator.stop().await;
    let operator = Operator::start_on(bed, &address).await;
    settled(&operator, sidecar).await;
    // The app keys' Secret is still deleted and its values were only in the old process:
    // nothing can identify callers, so every call is refused — never admitted.
    until_every_call_is_refused(sidecar).await;
    let keyed = traffic::send(sidecar, CHAT.key, "nfo-restart", POOL, SHAPE).await;
    assert_eq!(keyed.status, 503, "{}", keyed.text());
    let error = keyed.json();
    assert_eq!(error["error"]["code"], "identity_not_configured", "{error}");
    assert!(
        error.to_string().contains("AIGateway ai-apps/gateway"),
        "{error}"
    );
    let refusing = status_until(bed, "aigateway", "gateway", "RefusingAll", |o| {
        o["status"]["identity"] == "RefusingAll"
    })
    .await;
    assert_eq!(served(&refusing), None, "{}", refusing["status"]);
    let ready = condition(&refusing, "Ready").unwrap();
    assert_eq!(ready, ("False".into(), "InvalidSpec".into()));
    assert!(
        refusing["status"]
            .to_string()
            .contains("the sidecars refuse every call (503)"),
        "{}",
        refusing["status"]
    );

    step("the Secret is back: the last good gateway serves again");
    bed.apply(&bed.example("two-apps/secrets.yaml"));
    status_until(bed, "aigateway", "gateway", "served again", |o| {
        served(o).is_some()
    })
    .await;
    settled(&operator, sidecar).await;
    still_closed_and_serving(sidecar, "after the restart").await;
    let pool = bed.get("aibackendpool", POOL).unwrap();
    assert_eq!(
        served(&pool),
        Some(generation(&pool) - 1),
        "the pool's last good, from status"
    );
    let rival = bed.get("aibackendpool", "gpt-4o-rival").unwrap();
    assert_eq!(condition(&rival, "Accepted").unwrap().1, "ModelConflict");
    operator
}

/// The chart's `ValidatingWebhookConfiguration`, pointed at the local operator process.
fn register_validator(bed: &TestBed, operator: &Operator) {
    use base64::Engine as _;
    let chart = bed.root.join("charts/spillway");
    let rendered = std::process::Command::new("helm")
        .args(["template", "spillway"])
        .arg(&chart)
        .args([
            "-n",
            "spillway-system",
            "--show-only",
            "templates/validator.yaml",
        ])
        .output()
        .expect("helm on PATH");
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let mut config: Value = serde_norway::from_slice(&rendered.stdout).expect("YAML");
    let ca = std::fs::read(&operator.ca).unwrap();
    let url = format!("{}/validate", operator.url);
    for hook in config["webhooks"].as_array_mut().unwrap() {
        hook["clientConfig"] = serde_json::json!({
            "url": url,
            "caBundle": base64::engine::general_purpose::STANDARD.encode(&ca),
        });
    }
    let (ok, out) = bed.kubectl_with(&["apply", "-f", "-"], Some(&config.to_string()));
    assert!(ok, "{out}");
}

/// With the chart's validating webhook, the same mistakes are refused at `kubectl apply`.
async fn the_webhook_refuses_them_at_apply_time(bed: &TestBed, sim: &Sim, operator: &Operator) {
    step("the chart's validating webhook refuses the same mistakes at kubectl apply time");
    register_validator(bed, operator);
    let rival = RIVAL
        .replace("gpt-4o-rival", "gpt-4o-second-rival")
        .replace("RIVAL_URL", sim.url("rival-account"));
    let refused = eventually("kubectl apply of a rival pool is refused", WAIT, || async {
        let (ok, out) = bed.kubectl_with(&["apply", "-n", NAMESPACE, "-f", "-"], Some(&rival));
        (!ok && out.contains("denied the request"))
            .then_some(out.clone())
            .ok_or(out)
    })
    .await;
    assert!(
        refused.contains("model `gpt-4o` is already served by AIBackendPool ai-apps/gpt-4o"),
        "{refused}"
    );
    assert!(
        bed.get("aibackendpool", "gpt-4o-second-rival").is_none(),
        "never stored"
    );
    let (ok, out) = bed.kubectl_with(
        &[
            "patch",
            "tokenquota",
            "support-chat",
            "-n",
            NAMESPACE,
            "--type=json",
            "-p",
            r#"[{"op":"add","path":"/spec/quotas/-","value":{"period":"Daily","tokens":1}}]"#,
        ],
        None,
    );
    assert!(!ok && out.contains("spec.quotas[1].period"), "{out}");
    let (ok, out) = bed.kubectl_with(
        &[
            "delete",
            "validatingwebhookconfiguration",
            "spillway-validator",
        ],
        None,
    );
    assert!(ok, "{out}");
}

/// `kubectl delete aigateway`: the namespace has no identity settings, so every call is
/// refused (503) — authentication is never turned off by removing its object.
async fn deleting_the_aigateway_closes_the_namespace(
    bed: &TestBed,
    operator: &Operator,
    sidecar: &Sidecar,
) {
    step("kubectl delete the AIGateway: every call is refused, none admitted anonymously");
    bed.kubectl(&[
        "delete",
        "aigateway",
        "gateway",
        "-n",
        NAMESPACE,
        "--wait=true",
    ]);
    until_every_call_is_refused(sidecar).await;
    settled(operator, sidecar).await;
    let refused = anonymous(sidecar).await;
    let error = refused.json();
    assert_eq!(error["error"]["code"], "identity_not_configured", "{error}");
    assert!(
        error.to_string().contains("no AIGateway"),
        "says what to create: {error}"
    );
    let keyed = traffic::send(sidecar, CHAT.key, "nfo-no-gateway", POOL, SHAPE).await;
    assert_eq!(keyed.status, 503, "{}", keyed.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Kubernetes test bed: run tests/k8s/e2e.sh"]
async fn bad_edits_never_fail_open_on_a_real_api_server() {
    let bed = TestBed::from_env();
    empty_the_namespace(&bed);
    let sim = Sim::start(&format!("{SIM}  - {{name: rival-account}}\n")).await;
    step("start the operator and one sidecar; apply the examples");
    let operator = Operator::start(&bed).await;
    apply_and_wait_ready(&bed, &sim).await;
    let token = bed.sidecar_token(Some(AUDIENCE));
    let sidecar = Sidecar::start(&bed, &operator, "sidecar-nfo", &token).await;
    settled(&operator, &sidecar).await;
    still_closed_and_serving(&sidecar, "the examples as written").await;

    gateway_edits_fail_closed(&bed, &operator, &sidecar).await;
    pool_edits_keep_serving(&bed, &sim, &operator, &sidecar).await;
    quota_edit_keeps_limits(&bed, &operator, &sidecar).await;
    let operator = after_a_restart(&bed, operator, &sidecar).await;
    the_webhook_refuses_them_at_apply_time(&bed, &sim, &operator).await;
    deleting_the_aigateway_closes_the_namespace(&bed, &operator, &sidecar).await;
    let ledger = traffic::ledger(&sim).await;
    assert!(
        ledger.iter().all(|e| e["backend"] != "rival-account"),
        "the rival pool's backend never saw a call"
    );
    drop(operator);
}
