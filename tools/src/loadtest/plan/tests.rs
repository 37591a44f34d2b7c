use http_body_util::BodyExt;
use serde_json::Value;

use super::*;
use spillway_sidecar::usage::Operation;
use spillway_sidecar::usage::tokenizer::count_prompt;

fn openai() -> Plan {
    Plan::new(
        "http://127.0.0.1:8080",
        Api::OpenAi {
            model: "gpt-4o".into(),
        },
    )
}

fn azure() -> Plan {
    Plan::new(
        "http://127.0.0.1:8080/",
        Api::Azure {
            deployment: "gpt-4o".into(),
            api_version: "2024-10-21".into(),
        },
    )
}

async fn body_of(request: Request<Full<Bytes>>) -> Value {
    let bytes = request
        .into_body()
        .collect()
        .await
        .expect("full body")
        .to_bytes();
    serde_json::from_slice(&bytes).expect("JSON body")
}

#[test]
fn endpoints_follow_the_api_shape() {
    let ep = |p: &Plan| p.endpoint().expect("valid").to_string();
    assert_eq!(ep(&openai()), "http://127.0.0.1:8080/v1/chat/completions");
    let mut with_v1 = openai();
    with_v1.url = "https://gw.example/v1/".into();
    assert_eq!(ep(&with_v1), "https://gw.example/v1/chat/completions");
    assert_eq!(
        ep(&azure()),
        "http://127.0.0.1:8080/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
    );
    let mut bad = openai();
    bad.url = "ftp://x".into();
    assert_eq!(bad.endpoint(), Err(PlanError::Url("ftp://x".into())));
}

#[test]
fn validation_names_the_bad_field() {
    let mut plan = openai();
    assert_eq!(plan.validate(), Ok(()));
    plan.workers = 0;
    assert_eq!(plan.validate(), Err(PlanError::Zero("--workers")));
    plan = openai();
    plan.stream_ratio = 1.5;
    assert!(matches!(
        plan.validate(),
        Err(PlanError::Ratio("--stream-ratio", _))
    ));
    plan = openai();
    plan.rate = Some(0.0);
    assert!(matches!(plan.validate(), Err(PlanError::Rate(_))));
    plan = openai();
    plan.apps = vec!["ok".into(), "bad\napp".into()];
    assert_eq!(
        plan.validate(),
        Err(PlanError::HeaderValue("bad\napp".into()))
    );
}

#[test]
fn the_streaming_share_is_exact_and_usage_is_asked_only_on_streams() {
    let mut plan = openai();
    plan.stream_ratio = 0.3;
    plan.include_usage_ratio = 0.5;
    let streams = (0..1000).filter(|s| plan.streams(*s)).count();
    assert_eq!(streams, 300);
    let first_ten = (0..10).filter(|s| plan.streams(*s)).count();
    assert_eq!(first_ten, 3, "any prefix keeps the share");
    let asks = (0..1000).filter(|s| plan.asks_usage(*s)).count();
    assert!(
        (100..=200).contains(&asks),
        "about half the streams: {asks}"
    );
    assert!((0..1000).all(|s| !plan.asks_usage(s) || plan.streams(s)));
    plan.apps = vec!["a".into(), "b".into()];
    plan.stream_ratio = 0.5;
    let a_streams = (0..100u64)
        .filter(|s| s.is_multiple_of(2) && plan.streams(*s))
        .count();
    assert_eq!(a_streams, 25, "each app streams its share");
    plan.stream_ratio = 1.0;
    assert!((0..100).all(|s| plan.streams(s)));
    plan.stream_ratio = 0.0;
    assert!((0..100).all(|s| !plan.streams(s)));
}

#[tokio::test]
async fn requests_carry_app_key_request_id_and_the_body_shape() {
    let mut plan = azure();
    plan.apps = vec!["a".into(), "b".into()];
    plan.app_as_key = true;
    plan.stream_ratio = 1.0;
    plan.include_usage_ratio = 1.0;
    plan.request_id_prefix = "t-".into();
    let endpoint = plan.endpoint().expect("valid");
    let request = plan.request(&endpoint, "hi", 3).expect("request");
    let h = request.headers();
    assert_eq!(h["x-app-id"], "b");
    assert_eq!(h["api-key"], "b");
    assert_eq!(h["x-request-id"], "t-3");
    let body = body_of(request).await;
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"]["include_usage"], true);
    assert_eq!(
        body.get("model"),
        None,
        "Azure names the deployment in the path"
    );

    let mut plan = openai();
    plan.api_key = Some("sk-test".into());
    plan.stream_ratio = 0.0;
    let request = plan
        .request(&plan.endpoint().expect("valid"), "hi", 0)
        .expect("request");
    assert_eq!(request.headers()["authorization"], "Bearer sk-test");
    assert_eq!(request.headers().get("x-app-id"), None);
    let body = body_of(request).await;
    assert_eq!(
        (body["model"].as_str(), body["max_tokens"].as_u64()),
        (Some("gpt-4o"), Some(64))
    );
    assert_eq!(body.get("stream_options"), None);
}

#[tokio::test]
async fn the_prompt_is_about_the_asked_length() {
    for want in [20, 100, 200, 1000] {
        let mut plan = openai();
        plan.prompt_tokens = want;
        let request = plan
            .request(&plan.endpoint().expect("valid"), &plan.prompt(), 0)
            .expect("request");
        let body = body_of(request).await;
        let tokens = count_prompt("gpt-4o", Operation::ChatCompletions, &body);
        let want = u64::from(want);
        assert!(
            tokens.abs_diff(want) <= want / 50 + 2,
            "asked {want}, got {tokens} prompt tokens"
        );
    }
}
