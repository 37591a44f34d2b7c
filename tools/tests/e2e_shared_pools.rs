//! Shared pools and central quotas across namespaces, on a real kube-apiserver + etcd
//! prepared the way `tests/k8s/e2e.sh` prepares it for the other scenarios (its
//! `SPILLWAY_E2E_*` variables; `#[ignore]`d without them): a platform team keeps an
//! `AIBackendPool` and its key Secret in `platform` and grants the pool to the namespaces
//! labelled `spillway.dev/ai=granted` (`spec.allowedNamespaces`); each app namespace runs its
//! own real `spillway run --operator` sidecar, authenticated by its own ServiceAccount token.
//! - `team-a` and `team-b` (labelled) are served by the pool with the platform's key (the
//!   simulator's ledger shows it); `team-c` (unlabelled) gets 404 and the key never reaches
//!   it: neither its sidecar's `/admin/config` nor the config stream read as its
//!   ServiceAccount holds the pool or the key, while `team-a`'s stream does.
//! - Revocation: the label removed from `team-b` → within 15 s its calls get 404 and its
//!   stream no longer holds the key; `team-a` keeps being served.
//! - Central quotas (`TokenQuota.spec.namespaces`): a quota in `platform` for `from: All`
//!   limits an app in `team-a`; a stricter quota `team-a` adds itself applies too, and a
//!   looser one does not lift the central one.
//! - A changed grant (label back on `team-b`, the pool narrowed by `matchExpressions` to
//!   exclude `team-a`): `team-b` is served again, `team-a` loses the pool and the key.
//! - Usage: every record on each sidecar's `/admin/usage` names the sidecar's namespace, and
//!   the tokens of its successful records equal the ledger's for those request ids.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod e2e_support;
mod telemetry_support;

use std::time::{Duration, Instant};

use common::Sim;
use e2e_support::cluster::WAIT;
use e2e_support::processes::{Operator, Sidecar};
use e2e_support::scopes::{
    alone_in_scope, api_key_gateway, apply_cluster, apply_in, delete_all_in, get_in, pool_names,
    published, ready_in, settled, sidecar_token_in, stream_as, usage_records,
};
use e2e_support::traffic::{self, App, Call, Log, Shape};
use e2e_support::{TestBed, condition, eventually, step};

const PLATFORM: &str = "platform";
/// The app namespaces, in the order of the sidecars.
const TEAMS: [&str; 3] = ["team-a", "team-b", "team-c"];
/// Indexes of the app namespaces' sidecars.
const A: usize = 0;
const B: usize = 1;
const C: usize = 2;
const POOL: &str = "shared-chat";
const MODEL: &str = "gpt-4o";
/// The backend's key: in the Secret `ptu-key` of `platform` only.
const PTU_KEY: &str = "platform-ptu-key";
const SIM: &str = "backends:\n  - {name: platform-ptu, apiKey: platform-ptu-key}\n";
/// How long a revoked namespace may keep a pool.
const REVOCATION: Duration = Duration::from_secs(15);
const SHAPE: Shape = Shape {
    azure: false,
    stream: false,
    max_tokens: 16,
};

const APP_A: App = App {
    id: "app-a",
    key: "team-a-app-a-key",
};
/// Limited by a central quota and a stricter one of its own namespace.
const APP_A2: App = App {
    id: "app-a2",
    key: "team-a-app-a2-key",
};
/// Limited by a central quota and a looser one of its own namespace.
const APP_A3: App = App {
    id: "app-a3",
    key: "team-a-app-a3-key",
};
const APP_B: App = App {
    id: "app-b",
    key: "team-b-app-b-key",
};
const APP_C: App = App {
    id: "app-c",
    key: "team-c-app-c-key",
};
/// Under no quota: team-a's caller once the quotas have refused its other apps.
const APP_A_UNLIMITED: App = App {
    id: "app-a-unlimited",
    key: "team-a-app-a-unlimited-key",
};

const NAMESPACES: &str = "apiVersion: v1
kind: Namespace
metadata: {name: platform}
---
apiVersion: v1
kind: Namespace
metadata: {name: team-a, labels: {spillway.dev/ai: granted}}
---
apiVersion: v1
kind: Namespace
metadata: {name: team-b, labels: {spillway.dev/ai: granted}}
---
apiVersion: v1
kind: Namespace
metadata: {name: team-c}
";

/// The platform's pool and its key Secret; `SIM_URL` is replaced by the simulator's.
const SHARED_POOL: &str = "apiVersion: v1
kind: Secret
metadata: {name: ptu-key}
stringData: {api-key: platform-ptu-key}
---
apiVersion: spillway.dev/v1alpha1
kind: AIBackendPool
metadata: {name: shared-chat}
spec:
  models: [gpt-4o]
  backends:
    - name: platform-ptu
      url: SIM_URL
      apiVersion: \"2024-10-21\"
      apiKey: {secretRef: {name: ptu-key, key: api-key}}
  allowedNamespaces:
    from: Selector
    selector:
      matchLabels: {spillway.dev/ai: granted}
";

/// The pool's grant narrowed: labelled namespaces except `team-a` (JSON patch).
const NARROWED: &str = r#"[{"op": "replace", "path": "/spec/allowedNamespaces", "value": {
  "from": "Selector", "selector": {"matchExpressions": [
    {"key": "spillway.dev/ai", "operator": "In", "values": ["granted"]},
    {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["team-a"]}]}}}]"#;

/// Central quotas in `platform`, for every namespace.
const CENTRAL_QUOTAS: &str = "apiVersion: spillway.dev/v1alpha1
kind: TokenQuota
metadata: {name: central}
spec: {appId: app-a, requestsPerMinute: 4, namespaces: {from: All}}
---
apiVersion: spillway.dev/v1alpha1
kind: TokenQuota
metadata: {name: central-a2}
spec: {appId: app-a2, requestsPerMinute: 4, namespaces: {from: All}}
---
apiVersion: spillway.dev/v1alpha1
kind: TokenQuota
metadata: {name: central-a3}
spec: {appId: app-a3, requestsPerMinute: 2, namespaces: {from: All}}
";

/// `team-a`'s own quotas: stricter than the central one for app-a2, looser for app-a3.
const TEAM_A_QUOTAS: &str = "apiVersion: spillway.dev/v1alpha1
kind: TokenQuota
metadata: {name: team-a-a2}
spec: {appId: app-a2, requestsPerMinute: 2}
---
apiVersion: spillway.dev/v1alpha1
kind: TokenQuota
metadata: {name: team-a-a3}
spec: {appId: app-a3, requestsPerMinute: 10}
";

/// Everything the steps act on: the test bed, the simulator, the operator, and per app
/// namespace (in [`TEAMS`] order) its sidecar and its ServiceAccount's token.
struct Scene {
    bed: TestBed,
    sim: Sim,
    operator: Operator,
    sidecars: Vec<Sidecar>,
    tokens: Vec<String>,
}

impl Scene {
    /// Sends one call for the pool's model as `app` through namespace `index`'s sidecar.
    async fn call<'l>(&self, log: &'l mut Log, index: usize, app: App) -> &'l Call {
        let sidecars: Vec<&Sidecar> = self.sidecars.iter().collect();
        log.call(&sidecars, index, app, MODEL, SHAPE).await
    }

    /// Calls as `app` through namespace `index` until the answer is `want` (by `deadline`);
    /// returns the call's position in `log`.
    async fn until(
        &self,
        log: &mut Log,
        (index, app): (usize, App),
        want: u16,
        deadline: Instant,
    ) -> usize {
        let started = Instant::now();
        loop {
            let call = self.call(log, index, app).await;
            if call.status == want {
                let what = format!("{} answers {want} to {}", TEAMS[index], app.id);
                eprintln!("  [{:>5.1}s] {what}", started.elapsed().as_secs_f64());
                return log.calls.len() - 1;
            }
            let last = format!("{} {}", call.status, call.reply.text());
            let (team, id) = (TEAMS[index], app.id);
            assert!(
                Instant::now() < deadline,
                "{team}: no {want} for {id} in time; last: {last}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Call `at` was served by the platform's backend, which got the platform's key.
    async fn served_with_the_platform_key(&self, log: &Log, at: usize) {
        let call = &log.calls[at];
        assert_eq!(call.backend, "platform-ptu", "{}", call.reply.text());
        let entry = self.sim.entry(&call.id).await;
        assert_eq!(entry["status"], 200, "{entry}");
        assert_eq!(
            entry["apiKey"], PTU_KEY,
            "the backend got the platform's key: {entry}"
        );
    }

    /// The pool and its key reach namespace `index` over the stream (its ServiceAccount's),
    /// and its sidecar serves the pool without showing the key.
    async fn holds_the_pool(&self, index: usize) {
        let team = TEAMS[index];
        let stream = stream_as(&self.operator, &self.tokens[index]).await;
        assert_eq!(stream.scope, team);
        let pool = stream
            .pool(POOL)
            .unwrap_or_else(|| panic!("{team}: {}", stream.snapshot));
        assert_eq!(
            pool["models"],
            serde_json::json!([MODEL]),
            "same model names: {pool}"
        );
        assert_eq!(
            pool["backends"][0]["apiKey"], PTU_KEY,
            "{team}: the key travels here"
        );
        let (pools, text) = pool_names(&self.sidecars[index]).await;
        assert!(pools.iter().any(|p| p == POOL), "{team} serves it: {text}");
        assert!(
            !text.contains(PTU_KEY),
            "{team}: /admin/config never shows a key: {text}"
        );
    }

    /// Neither namespace `index`'s stream nor its sidecar's `/admin/config` holds the pool
    /// or its key (within `deadline`).
    async fn lacks_the_pool(&self, index: usize, deadline: Instant) {
        let team = TEAMS[index];
        // Read at least once, then until `deadline`.
        let stream = loop {
            let stream = stream_as(&self.operator, &self.tokens[index]).await;
            let Some(found) = [PTU_KEY, POOL]
                .into_iter()
                .find(|s| stream.text.contains(s))
            else {
                eprintln!("  {team}'s stream holds neither the pool nor its key");
                break stream;
            };
            let text = &stream.text;
            assert!(
                Instant::now() < deadline,
                "{team}'s stream holds {found}: {text}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        assert_eq!(stream.scope, team);
        assert!(
            stream.snapshot["version"].as_u64() > Some(0),
            "{}",
            stream.text
        );
        let (pools, text) = pool_names(&self.sidecars[index]).await;
        assert!(
            !pools.iter().any(|p| p == POOL),
            "{team} does not serve it: {text}"
        );
    }

    /// Namespace `index` answers 404 `model_not_found` to `app` by `deadline`, and neither
    /// its stream nor its sidecar holds the pool or the key.
    async fn loses_the_pool(&self, log: &mut Log, (index, app): (usize, App), deadline: Instant) {
        let at = self.until(log, (index, app), 404, deadline).await;
        let error = log.calls[at].reply.json();
        assert_eq!(error["error"]["code"], "model_not_found", "{error}");
        self.lacks_the_pool(index, deadline).await;
    }
}

/// The pool is served to `team-a` and `team-b` with the platform's key, and never reaches
/// `team-c`.
async fn granted_namespaces_are_served(scene: &Scene, log: &mut Log) {
    step("team-a and team-b are served by the platform's pool with the platform's key");
    for (index, app) in [(A, APP_A), (B, APP_B)] {
        let at = scene
            .until(log, (index, app), 200, Instant::now() + WAIT)
            .await;
        scene.served_with_the_platform_key(log, at).await;
        let copy = get_in(&scene.bed, TEAMS[index], "secret", "ptu-key");
        assert!(copy.is_none(), "the key Secret exists in {PLATFORM} only");
        scene.holds_the_pool(index).await;
    }

    step("team-c (not labelled) gets 404 and never holds the pool or the key");
    settled(&scene.operator, &scene.sidecars[C], TEAMS[C], 0).await;
    scene.loses_the_pool(log, (C, APP_C), Instant::now()).await;
}

/// The label removed from `team-b`: within 15 s it loses the pool and the key; `team-a`
/// keeps them.
async fn revoked_by_label(scene: &Scene, log: &mut Log) {
    step("kubectl label namespace team-b spillway.dev/ai- : team-b loses the pool within 15 s");
    let deadline = Instant::now() + REVOCATION;
    scene
        .bed
        .kubectl(&["label", "namespace", TEAMS[B], "spillway.dev/ai-"]);
    scene.loses_the_pool(log, (B, APP_B), deadline).await;
    let at = scene.until(log, (A, APP_A), 200, Instant::now()).await;
    scene.served_with_the_platform_key(log, at).await;
    scene.holds_the_pool(A).await;
}

/// Calls as `app` through team-a until one is refused (at most `max`): the number admitted
/// and the refusal's message, after checking it is a quota's 429 that reached no backend.
async fn admitted_until_refused(
    scene: &Scene,
    log: &mut Log,
    app: App,
    max: usize,
) -> (usize, String) {
    for admitted in 0..max {
        let call = scene.call(log, A, app).await;
        if call.status == 200 {
            continue;
        }
        assert_eq!(call.status, 429, "{}: {}", app.id, call.reply.text());
        let error = call.reply.json();
        assert_eq!(error["error"]["code"], "rate_limit_exceeded", "{error}");
        assert_eq!(call.attempts, 0, "refused before any backend");
        let id = call.id.clone();
        let message = error["error"]["message"].as_str().unwrap().to_owned();
        let ledger = traffic::ledger(&scene.sim).await;
        assert!(
            ledger.iter().all(|e| e["requestId"] != id.as_str()),
            "never forwarded"
        );
        eprintln!("  {}: {admitted} admitted, then {message}", app.id);
        return (admitted, message);
    }
    panic!("{}: {max} calls admitted in a row", app.id);
}

/// Central quotas in `platform` apply in `team-a`; so do `team-a`'s own: the strictest wins.
async fn central_and_local_quotas(scene: &Scene, log: &mut Log) {
    step("central TokenQuotas in platform (namespaces: from: All) and team-a's own");
    let (bed, operator) = (&scene.bed, &scene.operator);
    // A stream read earlier counts as a second sidecar for a while, halving the shares.
    alone_in_scope(operator, TEAMS[A]).await;
    let before = published(operator, TEAMS[A]).await.unwrap_or(0);
    apply_in(bed, PLATFORM, CENTRAL_QUOTAS);
    apply_in(bed, TEAMS[A], TEAM_A_QUOTAS);
    for name in ["central", "central-a2", "central-a3"] {
        ready_in(bed, PLATFORM, "tokenquota", name).await;
    }
    for name in ["team-a-a2", "team-a-a3"] {
        ready_in(bed, TEAMS[A], "tokenquota", name).await;
    }
    settled(operator, &scene.sidecars[A], TEAMS[A], before).await;

    let (admitted, message) = admitted_until_refused(scene, log, APP_A, 6).await;
    assert!(
        (1..=4).contains(&admitted),
        "central allows app-a 4 a minute: {admitted}"
    );
    assert!(
        message.contains("central"),
        "names the central quota: {message}"
    );

    let (admitted, message) = admitted_until_refused(scene, log, APP_A2, 5).await;
    assert_eq!(admitted, 2, "team-a's stricter quota applies: {message}");
    let names_local = message.contains("team-a-a2") && !message.contains("central-a2");
    assert!(names_local, "names team-a's quota: {message}");

    let (admitted, message) = admitted_until_refused(scene, log, APP_A3, 5).await;
    assert!(
        admitted <= 2,
        "a looser quota of team-a lifts nothing: {admitted}"
    );
    let names_central = message.contains("central-a3") && !message.contains("team-a-a3");
    assert!(names_central, "names the central quota: {message}");
}

/// The pool's grant narrowed by `matchExpressions` to exclude `team-a`, and the label back on
/// `team-b`: `team-a` loses the pool within 15 s, `team-b` has it again.
async fn grant_changed(scene: &Scene, log: &mut Log) {
    step("the grant changes: the pool's selector excludes team-a; team-b labelled again");
    let bed = &scene.bed;
    let deadline = Instant::now() + REVOCATION;
    let args = [
        "patch",
        "aibackendpool",
        POOL,
        "-n",
        PLATFORM,
        "--type=json",
        "-p",
        NARROWED,
    ];
    bed.kubectl(&args);
    bed.kubectl(&["label", "namespace", TEAMS[B], "spillway.dev/ai=granted"]);
    // app-a's quotas refuse it by now: ask as an app without any.
    scene
        .loses_the_pool(log, (A, APP_A_UNLIMITED), deadline)
        .await;
    ready_in(bed, PLATFORM, "aibackendpool", POOL).await;
    let at = scene.until(log, (B, APP_B), 200, deadline).await;
    scene.served_with_the_platform_key(log, at).await;
    scene.holds_the_pool(B).await;
}

/// Every usage record names its sidecar's namespace, one per call; the tokens of the
/// successful ones equal the ledger's for the same request ids.
async fn usage_per_namespace(scene: &Scene, log: &Log) {
    step("usage records name their namespace; their tokens equal the ledger's");
    let ledger = traffic::ledger(&scene.sim).await;
    for (index, sidecar) in scene.sidecars.iter().enumerate() {
        let team = TEAMS[index];
        let mine = || log.calls.iter().filter(move |c| c.sidecar == index);
        let served: Vec<&str> = mine()
            .filter(|c| c.status == 200)
            .map(|c| c.id.as_str())
            .collect();
        let billed: u64 = ledger
            .iter()
            .filter(|e| e["status"] == 200 && served.contains(&e["requestId"].as_str().unwrap()))
            .map(|e| e["promptTokens"].as_u64().unwrap() + e["completionTokens"].as_u64().unwrap())
            .sum();
        let mut sent: Vec<&str> = mine().map(|c| c.id.as_str()).collect();
        let records = usage_records(sidecar, sent.len()).await;
        let mut recorded: Vec<&str> = records
            .iter()
            .filter_map(|r| r["request_id"].as_str())
            .collect();
        sent.sort_unstable();
        recorded.sort_unstable();
        assert_eq!(recorded, sent, "{team}: one record per call, no other");
        let mut tokens = 0;
        for record in &records {
            assert_eq!(record["namespace"], team, "{record}");
            if record["status"] == 200 {
                let id = record["request_id"].as_str().unwrap();
                assert!(
                    served.contains(&id),
                    "{team}: a record of a served call: {record}"
                );
                let usage = &record["usage"];
                tokens += usage["prompt_tokens"].as_u64().unwrap()
                    + usage["completion_tokens"].as_u64().unwrap();
            }
        }
        eprintln!(
            "  {team}: {} records, {tokens} tokens served, ledger {billed}",
            records.len()
        );
        assert!(team == TEAMS[C] || tokens > 0, "{team} was served");
        assert_eq!(tokens, billed, "{team}: recorded tokens equal the ledger's");
    }
}

/// Starts the operator; creates the namespaces (emptied of earlier runs' objects), each app
/// namespace's `AIGateway`, and a sidecar per app namespace on its current version.
async fn set_the_scene(bed: TestBed, sim: Sim) -> Scene {
    step("start the operator as its ServiceAccount (the chart's RBAC)");
    let operator = Operator::start(&bed).await;
    eventually("the operator leads", WAIT, || async {
        (operator.metric("spillway_operator_leader").await == Some(1.0))
            .then_some(())
            .ok_or("not yet")
    })
    .await;

    step("namespaces platform, team-a/b (labelled), team-c; an AIGateway per app namespace");
    apply_cluster(&bed, NAMESPACES);
    for namespace in [PLATFORM, TEAMS[A], TEAMS[B], TEAMS[C]] {
        delete_all_in(
            &bed,
            namespace,
            &["aibackendpools", "tokenquotas", "aigateways"],
        );
    }
    let apps: [&[App]; 3] = [
        &[APP_A, APP_A2, APP_A3, APP_A_UNLIMITED],
        &[APP_B],
        &[APP_C],
    ];
    for (namespace, apps) in TEAMS.iter().zip(apps) {
        apply_in(&bed, namespace, &api_key_gateway(apps));
        ready_in(&bed, namespace, "aigateway", "gateway").await;
    }

    step("one sidecar per app namespace, each with its namespace's ServiceAccount token");
    let tokens: Vec<String> = TEAMS.iter().map(|ns| sidecar_token_in(&bed, ns)).collect();
    let mut sidecars = Vec::new();
    for (namespace, token) in TEAMS.iter().zip(&tokens) {
        let id = format!("sidecar-{namespace}");
        sidecars.push(Sidecar::start(&bed, &operator, &id, token).await);
    }
    for (namespace, sidecar) in TEAMS.iter().zip(&sidecars) {
        settled(&operator, sidecar, namespace, 0).await;
    }
    Scene {
        bed,
        sim,
        operator,
        sidecars,
        tokens,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Kubernetes test bed: run tests/k8s/e2e.sh"]
async fn a_platform_pool_and_central_quotas_shared_with_labelled_namespaces() {
    let scene = set_the_scene(TestBed::from_env(), Sim::start(SIM).await).await;

    step("the platform's pool, granted by label selector; its key Secret in platform only");
    let pool = SHARED_POOL.replace("SIM_URL", scene.sim.url("platform-ptu"));
    apply_in(&scene.bed, PLATFORM, &pool);
    let object = ready_in(&scene.bed, PLATFORM, "aibackendpool", POOL).await;
    let resolved = condition(&object, "ResolvedRefs").map(|c| c.0);
    assert_eq!(resolved.as_deref(), Some("True"), "{}", object["status"]);

    let mut log = Log::default();
    granted_namespaces_are_served(&scene, &mut log).await;
    revoked_by_label(&scene, &mut log).await;
    central_and_local_quotas(&scene, &mut log).await;
    grant_changed(&scene, &mut log).await;
    usage_per_namespace(&scene, &log).await;
}
