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
    created_pool(namespace, name, models, 1_700_000_000)
}

fn created_pool(namespace: &str, name: &str, models: &[&str], at: i64) -> Arc<AiBackendPool> {
    let spec: AiBackendPoolSpec =
        serde_json::from_value(pool_spec(models, "https://a.example.com")).expect("spec");
    let mut pool = AiBackendPool::new(name, spec);
    pool.metadata.namespace = Some(namespace.to_owned());
    pool.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::from_second(at).expect("a time"),
    ));
    Arc::new(pool)
}

/// The message of a denied answer; panics when the answer allowed the object.
fn denial(answer: &Value) -> String {
    assert_eq!(answer["allowed"], false, "{answer}");
    answer["status"]["message"]
        .as_str()
        .expect("a denial says why")
        .to_owned()
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
    let message = denial(&answer);
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
    let message = denial(&answer);
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
fn the_owner_stays_editable_while_a_younger_rival_lists_its_model() {
    let owner = created_pool("team-a", "owner", &["gpt-4o"], 1_700_000_000);
    let rival = created_pool("team-a", "rival", &["gpt-4o"], 1_700_000_100);
    let mut body: Value = serde_json::from_slice(&admission(
        "AIBackendPool",
        "aibackendpools",
        "owner",
        pool_spec(&["gpt-4o"], "https://c.example.com"),
        "UPDATE",
    ))
    .expect("json");
    body["request"]["object"]["metadata"]["creationTimestamp"] = json!("2023-11-14T22:13:20Z");
    let bytes = serde_json::to_vec(&body).expect("json");
    let answer = response(&bytes, &[Arc::clone(&owner), Arc::clone(&rival)]);
    assert_eq!(answer["allowed"], true, "{answer}");
    // The rival's own update is still refused: the owner is older.
    body["request"]["name"] = json!("rival");
    body["request"]["object"]["metadata"]["name"] = json!("rival");
    body["request"]["object"]["metadata"]["creationTimestamp"] = json!("2023-11-14T22:15:00Z");
    let bytes = serde_json::to_vec(&body).expect("json");
    let answer = response(&bytes, &[owner, rival]);
    assert_eq!(answer["allowed"], false, "{answer}");
}

#[test]
fn gateways_and_quotas_are_checked_and_secrets_left_to_the_operator() {
    let bad_key = json!({"identity": {"apiKeys": [{"appId": "a", "keySha256": "not-hex"}]}});
    let answer = response(
        &admission("AIGateway", "aigateways", "gw", bad_key, "UPDATE"),
        &[],
    );
    let message = denial(&answer);
    assert!(message.contains("keySha256"), "{message}");
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
    let message = denial(&answer);
    assert!(message.contains("listed twice"), "{message}");
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
    let message = denial(&answer);
    assert!(
        message.starts_with("TokenQuota team-a/q: spec:"),
        "{message}"
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
