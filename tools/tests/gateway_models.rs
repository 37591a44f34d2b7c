//! Model lists and per-app model access on a real `spillway run` in front of a real
//! simulator: `GET models` on the three path families lists what the calling app may use
//! (answered by the gateway, nothing upstream); `AIGateway.spec.modelAccess` refuses other
//! models with 403 on every operation and hides them from the lists; an invalid rule is
//! refused with its reason while the last good configuration keeps serving.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Gateway, Sim, chat_body, http, pool_yaml};
use http::Method;

const KEY_A: &str = "key-a";

fn sha256(text: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn manifests(sim: &Sim, access: &str) -> String {
    let chat = format!("    - name: east\n      url: {}\n", sim.url("east"));
    let embed = format!("    - name: west\n      url: {}\n", sim.url("west"));
    format!(
        "{}---\n{}---\napiVersion: spillway.dev/v1alpha1\nkind: AIGateway\nmetadata: {{name: gw}}\nspec:\n  identity: {{apiKeys: [{{appId: app-a, keySha256: {}}}, {{appId: app-b, keySha256: {}}}]}}\n{access}",
        pool_yaml("chat", &["gpt-4o", "gpt-4o-mini"], &chat, ""),
        pool_yaml("embed", &["text-embedding-3-small"], &embed, ""),
        sha256(KEY_A),
        sha256("key-b"),
    )
}

async fn list(gw: &Gateway, path: &str, key: &str) -> Vec<String> {
    let reply = http(
        Method::GET,
        &format!("{}{path}", gw.url),
        &[("api-key", key)],
        "",
    )
    .await;
    assert_eq!(reply.status, 200, "{path}: {}", reply.text());
    let json = reply.json();
    assert_eq!(json["object"], "list");
    json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            assert_eq!(m["object"], "model");
            assert!(m["created"].is_u64() && m["owned_by"].is_string(), "{m}");
            m["id"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_lists_show_what_each_app_may_use_and_access_is_enforced() {
    let sim = Sim::start("backends:\n  - name: east\n  - name: west\n").await;
    let open = Gateway::start(&manifests(&sim, "")).await;
    let all = ["gpt-4o", "gpt-4o-mini", "text-embedding-3-small"];
    for path in [
        "/v1/models",
        "/openai/v1/models",
        "/openai/models?api-version=2024-10-21",
    ] {
        assert_eq!(list(&open, path, KEY_A).await, all, "{path}");
    }
    let one = http(
        Method::GET,
        &format!("{}/v1/models/gpt-4o-mini", open.url),
        &[("api-key", KEY_A)],
        "",
    )
    .await;
    assert_eq!(one.json()["id"], "gpt-4o-mini");
    // Identity applies to the lists too.
    let anonymous = http(Method::GET, &format!("{}/v1/models", open.url), &[], "").await;
    assert_eq!(anonymous.status, 401, "{}", anonymous.text());
    assert!(
        sim.entries("east").await.is_empty(),
        "lists never go upstream"
    );

    let access = "  modelAccess:\n    - {apps: [app-a], pools: [chat], models: [gpt-4o-mini]}\n    - {apps: ['*'], pools: [embed]}\n";
    let gw = Gateway::start(&manifests(&sim, access)).await;
    assert_eq!(
        list(&gw, "/v1/models", KEY_A).await,
        ["gpt-4o-mini", "text-embedding-3-small"]
    );
    assert_eq!(
        list(&gw, "/openai/models?api-version=2024-10-21", "key-b").await,
        ["text-embedding-3-small"]
    );
    let hidden = http(
        Method::GET,
        &format!("{}/openai/v1/models/gpt-4o", gw.url),
        &[("api-key", KEY_A)],
        "",
    )
    .await;
    assert_eq!(hidden.status, 404, "{}", hidden.text());

    // Calls: the allowed model works, another one is refused naming it, on every path.
    let call = |key: &'static str, path: String, model: &'static str| {
        let url = format!("{}{path}", gw.url);
        async move {
            http(
                Method::POST,
                &url,
                &[("api-key", key), ("content-type", "application/json")],
                chat_body(model, false).to_string(),
            )
            .await
        }
    };
    let ok = call(KEY_A, "/v1/chat/completions".into(), "gpt-4o-mini").await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    for path in [
        "/v1/chat/completions".to_owned(),
        "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21".to_owned(),
        "/v1/responses".to_owned(),
    ] {
        let refused = call(KEY_A, path.clone(), "gpt-4o").await;
        assert_eq!(refused.status, 403, "{path}: {}", refused.text());
        let error = &refused.json()["error"];
        assert_eq!(error["code"], "model_access_denied");
        assert!(
            error["message"].as_str().unwrap().contains("`gpt-4o`"),
            "{error}"
        );
    }
    let b_chat = call("key-b", "/v1/chat/completions".into(), "gpt-4o-mini").await;
    assert_eq!(b_chat.status, 403);
    assert_eq!(
        sim.entries("east").await.len(),
        1,
        "only the allowed call went upstream"
    );

    // A rule without apps is refused with its reason; the last good configuration serves.
    let before = gw.version().await;
    std::fs::write(
        &gw.config,
        manifests(&sim, "  modelAccess:\n    - {apps: [], pools: [chat]}\n"),
    )
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(gw.version().await, before, "an invalid rule is not applied");
    assert_eq!(
        list(&gw, "/v1/models", KEY_A).await,
        ["gpt-4o-mini", "text-embedding-3-small"]
    );
}
