//! The validating webhook: invalid specs and model clashes refused with what to fix, valid
//! objects, missing Secrets, other kinds and bad input allowed or answered as invalid.

use serde_json::{Value, json};

use super::*;

fn admission(kind: &str, resource: &str, name: &str, spec: Value, operation: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "v-uid", "kind": {"group": "spillway.dev", "version": "v1alpha1", "kind": kind},
            "resource": {"group": "spillway.dev", "version": "v1alpha1", "resource": resource},
            "name": name, "namespace": "team-a", "operation": operation,
            "userInfo": {"username": "admin"}, "dryRun": false,
            "object": {
                "apiVersion": "spillway.dev/v1alpha1", "kind": kind,
                "metadata": {"name": name, "namespace": "team-a"}, "spec": spec
            }
        }
    }))
    .expect("json")
}

fn pool_spec(models: &[&str], url: &str) -> Value {
    json!({"models": models, "backends": [
        {"name": "ptu", "url": url, "apiKey": {"secretRef": {"name": "absent", "key": "k"}}}
    ]})
}

fn stored_pool(namespace: &str, name: &str, models: &[&str]) -> Arc<AiBackendPool> {
    let spec: AiBackendPoolSpec =
        serde_json::from_value(pool_spec(models, "https://a.example.com")).expect("spec");
    let mut pool = AiBackendPool::new(name, spec);
    pool.metadata.namespace = Some(namespace.to_owned());
    Arc::new(pool)
}

fn response(body: &[u8], pools: &[Arc<AiBackendPool>]) -> Value {
    serde_json::to_value(validate(body, pools)).expect("json")["response"].clone()
}

#[test]
fn a_valid_pool_is_allowed_even_before_its_secret_exists() {
    let body = admission(
        "AIBackendPool",
        "aibackendpools",
        "chat",
        pool_spec(&["gpt-4o"], "https://a.example.com"),
        "CREATE",
    );
    let answer = response(&body, &[stored_pool("team-a", "chat", &["gpt-4o"])]);
    assert_eq!(answer["uid"], "v-uid");
    assert_eq!(answer["allowed"], true, "{answer}");
}

#[test]
fn an_invalid_pool_is_refused_with_the_field_to_fix() {
    let body = admission(
        "AIBackendPool",
        "aibackendpools",
        "chat",
        pool_spec(&["gpt-4o"], "a.example.com"),
        "UPDATE",
    );
    let answer = response(&body, &[]);
    assert_eq!(answer["allowed"], false);
    let message = answer["status"]["message"].as_str().expect("a message");
    assert!(
        message.starts_with("AIBackendPool team-a/chat is refused: spec.backends[0].url"),
        "{message}"
    );
}

#[test]
fn a_pool_claiming_another_pools_model_in_its_namespace_is_refused() {
    let pools = [
        stored_pool("team-a", "owner", &["gpt-4o", "gpt-4o-mini"]),
        stored_pool("team-b", "elsewhere", &["o3"]),
    ];
    let body = admission(
        "AIBackendPool",
        "aibackendpools",
        "rival",
        pool_spec(&["o3", "gpt-4o"], "https://b.example.com"),
        "CREATE",
    );
    let answer = response(&body, &pools);
    assert_eq!(answer["allowed"], false);
    let message = answer["status"]["message"].as_str().expect("a message");
    assert!(
        message.contains(
            "spec.models[1]: model `gpt-4o` is already served by AIBackendPool team-a/owner"
        ),
        "{message}"
    );
    assert!(
        !message.contains("o3"),
        "another namespace's pool is no clash: {message}"
    );
}

#[test]
fn gateways_and_quotas_are_checked_and_secrets_left_to_the_operator() {
    let bad_key = json!({"identity": {"apiKeys": [{"appId": "a", "keySha256": "not-hex"}]}});
    let answer = response(
        &admission("AIGateway", "aigateways", "gw", bad_key, "UPDATE"),
        &[],
    );
    assert_eq!(answer["allowed"], false);
    assert!(
        answer["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("keySha256"),
        "{answer}"
    );
    let from_secret = json!({"identity": {"apiKeys": [{"appId": "a", "key": {"secretRef": {"name": "keys", "key": "a"}}}]}});
    let answer = response(
        &admission("AIGateway", "aigateways", "gw", from_secret, "CREATE"),
        &[],
    );
    assert_eq!(answer["allowed"], true, "{answer}");
    let twice = json!({"tokensPerMinute": 10, "quotas": [{"period": "Daily", "tokens": 5}, {"period": "Daily", "tokens": 9}]});
    let answer = response(
        &admission("TokenQuota", "tokenquotas", "q", twice, "CREATE"),
        &[],
    );
    assert_eq!(answer["allowed"], false);
    assert!(
        answer["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("listed twice"),
        "{answer}"
    );
}

#[test]
fn deletes_other_kinds_and_bad_input_never_panic() {
    let delete = admission(
        "AIBackendPool",
        "aibackendpools",
        "chat",
        pool_spec(&[], "x"),
        "DELETE",
    );
    assert_eq!(response(&delete, &[])["allowed"], true);
    let unknown_field = admission(
        "TokenQuota",
        "tokenquotas",
        "q",
        json!({"tokensPerMinute": "many"}),
        "CREATE",
    );
    let answer = response(&unknown_field, &[]);
    assert_eq!(answer["allowed"], false);
    assert!(
        answer["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("TokenQuota team-a/q: spec:"),
        "{answer}"
    );
    for garbage in [
        &b"not json"[..],
        br#"{"request": {"uid": "u", "kind": 5}}"#,
        b"{}",
    ] {
        let answer = serde_json::to_value(validate(garbage, &[])).expect("json");
        assert_eq!(answer["response"]["allowed"], false, "{answer}");
    }
}
