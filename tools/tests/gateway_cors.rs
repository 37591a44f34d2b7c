//! CORS on a real `spillway run` in front of a real simulator, with the requests a browser
//! sends: a preflight from an allowed origin is answered by the gateway (no identity, no
//! quota, nothing upstream), the real call that follows — content as an array of parts, the
//! shape chat playgrounds send — is identified, limited, counted and readable by the page
//! (errors included); a disallowed origin gets no CORS headers and its preflight is refused
//! and counted; without a CORS policy nothing changes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Gateway, Reply, Sim, http, pool_yaml};
use http::Method;
use serde_json::json;

const PLAYGROUND: &str = "https://playground.contoso.com";

fn manifests(sim: &Sim, cors: &str) -> String {
    let backends = format!("    - name: east\n      url: {}\n", sim.url("east"));
    format!(
        "{}---\napiVersion: spillway.dev/v1alpha1\nkind: TokenQuota\nmetadata: {{name: web}}\nspec: {{appId: web, requestsPerMinute: 2}}\n---\napiVersion: spillway.dev/v1alpha1\nkind: AIGateway\nmetadata: {{name: gw}}\nspec:\n  identity: {{apiKeys: [{{appId: web, keySha256: {}}}]}}\n{cors}",
        pool_yaml("chat", &["gpt-4o"], &backends, ""),
        // printf %s k-web | sha256sum
        "c7f39454528d01dfdfe5dd328d076632f5c1b95f47629aea5ab4c7b680ec25ae"
    )
}

async fn preflight(gw: &Gateway, origin: &str, headers: &str, id: &str) -> Reply {
    http(
        Method::OPTIONS,
        &format!(
            "{}/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21",
            gw.url
        ),
        &[
            ("origin", origin),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", headers),
            ("x-request-id", id),
        ],
        "",
    )
    .await
}

async fn browser_call(gw: &Gateway, origin: &str, key: &str, id: &str) -> Reply {
    let body = json!({
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is in this picture?"},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "low"}}
        ]}],
        "max_tokens": 20
    });
    http(
        Method::POST,
        &format!(
            "{}/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21",
            gw.url
        ),
        &[
            ("origin", origin),
            ("api-key", key),
            ("content-type", "application/json"),
            ("x-request-id", id),
        ],
        body.to_string(),
    )
    .await
}

const POLICY: &str =
    "  cors:\n    allowedOrigins: ['https://*.contoso.com', 'http://localhost:3000']\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_from_an_allowed_origin_preflights_then_calls() {
    let sim = Sim::start("backends:\n  - name: east\n").await;
    let gw = Gateway::start(&manifests(&sim, POLICY)).await;

    // The preflight: no credential (browsers never send one), answered by the gateway.
    let pre = preflight(
        &gw,
        PLAYGROUND,
        "api-key,content-type,x-stainless-os",
        "pre-1",
    )
    .await;
    assert_eq!(pre.status, 204, "{}", pre.text());
    assert_eq!(pre.header("access-control-allow-origin"), PLAYGROUND);
    assert_eq!(
        pre.header("access-control-allow-headers"),
        "api-key, content-type, x-stainless-os"
    );
    assert!(pre.header("access-control-allow-methods").contains("POST"));
    assert_eq!(pre.header("access-control-max-age"), "600");
    assert_eq!(pre.header("vary"), "Origin");
    assert!(
        sim.entries("east").await.is_empty(),
        "a preflight never reaches a backend"
    );

    // The call: content parts, identified by its key, counted, readable by the page.
    let reply = browser_call(&gw, PLAYGROUND, "k-web", "cors-1").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("access-control-allow-origin"), PLAYGROUND);
    let exposed = reply.header("access-control-expose-headers");
    for readable in [
        "retry-after",
        "x-ratelimit-remaining-requests",
        "x-spillway-backend",
    ] {
        assert!(exposed.contains(readable), "{readable} in {exposed}");
    }
    let record = gw.record("cors-1").await;
    let ledger = sim.entry("cors-1").await;
    assert_eq!(record["app_id"], "web");
    assert_eq!(record["usage"]["prompt_tokens"], ledger["promptTokens"]);
    assert!(
        record["usage"]["prompt_tokens"].as_u64().unwrap() > 85,
        "the image counts"
    );

    // Two preflights and one call later the quota (2 requests per minute) is spent by the
    // second call only: preflights are not calls. The 429 is readable by the page.
    preflight(&gw, PLAYGROUND, "api-key", "pre-2").await;
    let second = browser_call(&gw, PLAYGROUND, "k-web", "cors-2").await;
    assert_eq!(second.status, 200, "{}", second.text());
    let limited = browser_call(&gw, "http://localhost:3000", "k-web", "cors-3").await;
    assert_eq!(limited.status, 429, "{}", limited.text());
    assert_eq!(
        limited.header("access-control-allow-origin"),
        "http://localhost:3000"
    );
    assert!(!limited.header("retry-after").is_empty());

    // A wrong key from an allowed origin: 401 the page can read.
    let unknown = browser_call(&gw, PLAYGROUND, "k-nope", "cors-4").await;
    assert_eq!(unknown.status, 401);
    assert_eq!(unknown.header("access-control-allow-origin"), PLAYGROUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disallowed_origin_gets_no_cors_headers_and_is_counted() {
    let sim = Sim::start("backends:\n  - name: east\n").await;
    let gw = Gateway::start(&manifests(&sim, POLICY)).await;

    for (origin, headers, why) in [
        ("https://evil.example.com", "api-key", "origin"),
        ("https://contoso.com", "api-key", "origin"),
        (PLAYGROUND, "api-key, x-secret", "x-secret"),
    ] {
        let id = format!("refused-{}", why.len() + origin.len());
        let pre = preflight(&gw, origin, headers, &id).await;
        assert_eq!(pre.status, 403, "{origin} {headers}");
        assert!(
            pre.headers
                .keys()
                .all(|k| !k.as_str().starts_with("access-control-")),
            "no CORS headers for a refused preflight: {:?}",
            pre.headers
        );
        let error = pre.json();
        assert_eq!(error["error"]["code"], "cors_not_allowed");
        assert!(error["error"]["message"].as_str().unwrap().contains(why));
        let record = gw.record(&id).await;
        assert_eq!(record["status"], 403);
        assert_eq!(record["error_type"], "cors_not_allowed");
    }

    // The call itself (a non-browser client can send anything) is served, without CORS
    // headers, so a browser page on that origin cannot read it.
    let reply = browser_call(&gw, "https://evil.example.com", "k-web", "evil-call").await;
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .headers
            .keys()
            .all(|k| !k.as_str().starts_with("access-control-")),
        "{:?}",
        reply.headers
    );
    let metrics = http(Method::GET, &format!("{}/metrics", gw.admin), &[], "")
        .await
        .text();
    assert!(
        metrics
            .lines()
            .any(|l| l.contains("cors_not_allowed") && !l.starts_with('#')),
        "refused preflights are counted:\n{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_policy_nothing_is_cors() {
    let sim = Sim::start("backends:\n  - name: east\n").await;
    let gw = Gateway::start(&manifests(&sim, "")).await;
    let pre = preflight(&gw, PLAYGROUND, "api-key", "plain-pre").await;
    assert_eq!(pre.status, 405, "{}", pre.text());
    assert!(pre.header("access-control-allow-origin").is_empty());
    let reply = browser_call(&gw, PLAYGROUND, "k-web", "plain-call").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.header("access-control-allow-origin").is_empty());
}
