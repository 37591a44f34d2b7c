//! Several namespaces (the operator's scopes) on one test bed: `kubectl` in a chosen
//! namespace, a sidecar ServiceAccount and its token per namespace, the snapshot version the
//! operator publishes per scope and the wait until a scope's sidecar runs it, and the config
//! stream read as a namespace's ServiceAccount (what travels to that namespace's sidecars).
//!
//! Inputs: the [`TestBed`], the running [`Operator`] and [`Sidecar`]s. Outputs: command
//! results, parsed objects and stream lines, panics that say what was expected.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;

use super::cluster::WAIT;
use super::processes::{Operator, Sidecar};
use super::traffic::App;
use super::{AUDIENCE, SIDECAR_SA, TestBed, condition, eventually};
use crate::common::http;

/// `kubectl apply -f -` of cluster-scoped `manifests` (namespaces), which must succeed.
pub fn apply_cluster(bed: &TestBed, manifests: &str) -> String {
    let (ok, out) = bed.kubectl_with(&["apply", "-f", "-"], Some(manifests));
    assert!(ok, "kubectl apply failed:\n{out}\n---\n{manifests}");
    out
}

/// `kubectl apply -n namespace -f -` of `manifests`, which must succeed.
pub fn apply_in(bed: &TestBed, namespace: &str, manifests: &str) -> String {
    let (ok, out) = bed.kubectl_with(&["apply", "-n", namespace, "-f", "-"], Some(manifests));
    assert!(
        ok,
        "kubectl apply -n {namespace} failed:\n{out}\n---\n{manifests}"
    );
    out
}

/// `kubectl get KIND NAME -n namespace -o json`, or `None` when it does not exist.
pub fn get_in(bed: &TestBed, namespace: &str, kind: &str, name: &str) -> Option<Value> {
    let args = ["get", kind, name, "-n", namespace, "-o", "json"];
    let (ok, out) = bed.kubectl_with(&args, None);
    if ok {
        return Some(serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}")));
    }
    assert!(
        out.contains("NotFound"),
        "kubectl get {kind} {name} -n {namespace}: {out}"
    );
    None
}

/// Deletes every object of `kinds` in `namespace` (a re-run on the same test bed starts
/// clean; a namespace that does not exist yet has none).
pub fn delete_all_in(bed: &TestBed, namespace: &str, kinds: &[&str]) {
    for kind in kinds {
        bed.kubectl(&["delete", kind, "--all", "-n", namespace, "--wait=true"]);
    }
}

/// The sidecars' ServiceAccount in `namespace` (created when missing) and a one-hour token
/// for it with the operator's audience.
pub fn sidecar_token_in(bed: &TestBed, namespace: &str) -> String {
    let account =
        format!("apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {SIDECAR_SA}}}\n");
    apply_in(bed, namespace, &account);
    let args = [
        "create",
        "token",
        SIDECAR_SA,
        "-n",
        namespace,
        "--duration",
        "1h",
        "--audience",
        AUDIENCE,
    ];
    bed.kubectl(&args).trim().to_owned()
}

/// A namespace's key Secret `app-keys` and `AIGateway` `gateway` identifying `apps` by their
/// API keys (and nothing else: any other caller gets 401).
pub fn api_key_gateway(apps: &[App]) -> String {
    let mut keys = String::new();
    let mut consumers = String::new();
    for app in apps {
        keys.push_str(&format!("  {}: {}\n", app.id, app.key));
        consumers.push_str(&format!(
            "      - {{appId: {0}, key: {{secretRef: {{name: app-keys, key: {0}}}}}}}\n",
            app.id
        ));
    }
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: app-keys}}\nstringData:\n{keys}---\n\
         apiVersion: spillway.dev/v1alpha1\nkind: AIGateway\nmetadata: {{name: gateway}}\n\
         spec:\n  identity:\n    order: [ApiKey]\n    apiKeys:\n{consumers}"
    )
}

/// Polls until `kind/name` in `namespace` describes its current generation with
/// `Accepted=True` and `Ready=True`; returns it.
pub async fn ready_in(bed: &TestBed, namespace: &str, kind: &str, name: &str) -> Value {
    let what = format!("{kind} {namespace}/{name} Accepted and Ready");
    eventually(&what, WAIT, || async {
        let object = get_in(bed, namespace, kind, name).ok_or("not found")?;
        let current = object["status"]["observedGeneration"] == object["metadata"]["generation"];
        let accepted = condition(&object, "Accepted").is_some_and(|c| c.0 == "True");
        let ready = condition(&object, "Ready").is_some_and(|c| c.0 == "True");
        (current && accepted && ready)
            .then(|| object.clone())
            .ok_or_else(|| format!("{}", object["status"]))
    })
    .await
}

/// The snapshot version the operator publishes for `scope`, if any.
pub async fn published(operator: &Operator, scope: &str) -> Option<u64> {
    let sample = format!("spillway_operator_snapshot_version{{scope=\"{scope}\"}}");
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    operator.metric(&sample).await.map(|v| v as u64)
}

/// Polls until `sidecar` (of `scope`) runs the operator's current version of that scope and
/// it is newer than `after`; returns it.
pub async fn settled(operator: &Operator, sidecar: &Sidecar, scope: &str, after: u64) -> u64 {
    let what = format!(
        "{} runs the current version of {scope} (> v{after})",
        sidecar.id
    );
    eventually(&what, WAIT, || async {
        let published = published(operator, scope)
            .await
            .ok_or("none published yet")?;
        let applied = sidecar.version().await;
        (applied == Some(published) && published > after)
            .then_some(published)
            .ok_or(format!("published v{published}, applied {applied:?}"))
    })
    .await
}

/// Polls until `scope` has exactly one live sidecar, in sync (a stream read by
/// [`stream_as`] counts as a sidecar until its grace period ends, and would halve the
/// scope's quota shares meanwhile).
pub async fn alone_in_scope(operator: &Operator, scope: &str) {
    let synced = format!("spillway_operator_sidecars{{scope=\"{scope}\",state=\"synced\"}}");
    let behind = format!("spillway_operator_sidecars{{scope=\"{scope}\",state=\"behind\"}}");
    let what = format!("{scope} has one sidecar, in sync");
    eventually(&what, WAIT, || async {
        let counts = (
            operator.metric(&synced).await,
            operator.metric(&behind).await,
        );
        (counts.0 == Some(1.0) && counts.1.unwrap_or(0.0) == 0.0)
            .then_some(())
            .ok_or(format!("synced {:?}, behind {:?}", counts.0, counts.1))
    })
    .await;
}

/// The names of the pools `sidecar` serves (`/admin/config`), and that page's whole text.
pub async fn pool_names(sidecar: &Sidecar) -> (Vec<String>, String) {
    let url = format!("{}/admin/config", sidecar.admin);
    let reply = http(http::Method::GET, &url, &[], "").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let names = reply.json()["pools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap_or("").to_owned())
        .collect();
    (names, reply.text())
}

/// `sidecar`'s recent usage records (`/admin/usage`), once it holds at least `calls` of them.
pub async fn usage_records(sidecar: &Sidecar, calls: usize) -> Vec<Value> {
    let url = format!("{}/admin/usage", sidecar.admin);
    let what = format!("{}: a usage record per call", sidecar.id);
    eventually(&what, WAIT, || async {
        let usage = http(http::Method::GET, &url, &[], "").await.json();
        assert_eq!(usage["lost"], 0, "{}: no record lost", sidecar.id);
        let records = usage["recent"].as_array().cloned().unwrap_or_default();
        if records.len() >= calls {
            Ok(records)
        } else {
            Err(format!("{} records, {calls} calls", records.len()))
        }
    })
    .await
}

/// What the operator's config stream sent to a ServiceAccount in its first second.
pub struct StreamRead {
    /// The body as received.
    pub text: String,
    /// The `hello` line's scope.
    pub scope: String,
    /// The last `snapshot` line's snapshot.
    pub snapshot: Value,
}

/// Reads `GET /v1/snapshots/watch` with `token` (a sidecar ServiceAccount's) for a second:
/// it must be answered 200 with a `hello` and a full snapshot.
pub async fn stream_as(operator: &Operator, token: &str) -> StreamRead {
    let (status, text) = operator.probe("/v1/snapshots/watch", token).await;
    assert_eq!(status, 200, "the stream: {text}");
    let lines: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let scope = lines
        .iter()
        .find(|l| l["type"] == "hello")
        .and_then(|l| l["scope"].as_str())
        .unwrap_or_else(|| panic!("a hello line first: {text}"))
        .to_owned();
    let snapshot = lines
        .iter()
        .rev()
        .find(|l| l["type"] == "snapshot")
        .map(|l| l["snapshot"].clone())
        .unwrap_or_else(|| panic!("a snapshot within a second: {text}"));
    StreamRead {
        text,
        scope,
        snapshot,
    }
}

impl StreamRead {
    /// The snapshot's pool named `name`, if it holds one.
    pub fn pool(&self, name: &str) -> Option<&Value> {
        self.snapshot["pools"]
            .as_array()?
            .iter()
            .find(|p| p["name"] == name)
    }
}
