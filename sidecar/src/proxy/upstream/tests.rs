use std::collections::BTreeMap;

use spillway_crds::compile::default_breaker;
use spillway_crds::snapshot::SecretString;

use super::*;

fn backend(kind: BackendType) -> BackendConfig {
    BackendConfig {
        name: "b".into(),
        kind,
        base_url: match kind {
            BackendType::AzureOpenAI => "https://r.openai.azure.com".into(),
            BackendType::OpenAI => "https://api.example/v1".into(),
        },
        model: None,
        model_map: BTreeMap::new(),
        api_version: None,
        priority: 1,
        weight: 1,
        api_key: Some(SecretString::new("backend-key")),
        entra_id: None,
        breaker: default_breaker(),
        stream_usage: StreamUsage::Auto,
        timeout_ms: 1_000,
        pricing: None,
    }
}

fn call<'a>(
    flavor: Flavor,
    version: Option<&'a str>,
    body_model: Option<&'a str>,
) -> CallShape<'a> {
    CallShape {
        route: InboundRoute {
            flavor,
            operation: Operation::ChatCompletions,
            deployment: (flavor == Flavor::AzureDeployments).then_some("gpt-4o"),
            api_version: version,
            suffix: "",
        },
        requested: "gpt-4o",
        body_model,
        stream: true,
        client_include_usage: None,
    }
}

#[test]
fn azure_classic_rewrites_the_deployment_and_keeps_the_clients_version() {
    let mut b = backend(BackendType::AzureOpenAI);
    b.model_map.insert("gpt-4o".into(), "gpt4o-ptu".into());
    let t = target(
        &b,
        &call(Flavor::AzureDeployments, Some("2024-10-21"), None),
    );
    assert_eq!(
        t.url,
        "https://r.openai.azure.com/openai/deployments/gpt4o-ptu/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(t.set_model, None);
    assert!(t.ask_usage);
}

#[test]
fn old_azure_versions_are_not_asked_for_stream_usage() {
    let b = backend(BackendType::AzureOpenAI);
    let t = target(
        &b,
        &call(Flavor::AzureDeployments, Some("2024-06-01"), None),
    );
    assert!(!t.ask_usage);
    let t = target(
        &b,
        &call(Flavor::AzureDeployments, Some("2024-09-01-preview"), None),
    );
    assert!(t.ask_usage);
    let mut always = b.clone();
    always.stream_usage = StreamUsage::Always;
    assert!(
        target(
            &always,
            &call(Flavor::AzureDeployments, Some("2024-06-01"), None)
        )
        .ask_usage
    );
    let mut never = b;
    never.stream_usage = StreamUsage::Never;
    assert!(!target(&never, &call(Flavor::OpenAI, None, Some("gpt-4o"))).ask_usage);
}

#[test]
fn api_version_override_and_v1_clients_on_azure() {
    let mut b = backend(BackendType::AzureOpenAI);
    let t = target(&b, &call(Flavor::OpenAI, None, Some("gpt-4o")));
    assert_eq!(
        t.url,
        "https://r.openai.azure.com/openai/v1/chat/completions"
    );
    assert_eq!(t.set_model, None);
    b.api_version = Some("2025-01-01-preview".into());
    b.model = Some("dep".into());
    let t = target(&b, &call(Flavor::OpenAI, None, Some("gpt-4o")));
    assert_eq!(
        t.url,
        "https://r.openai.azure.com/openai/deployments/dep/chat/completions?api-version=2025-01-01-preview"
    );
}

#[test]
fn openai_backends_get_the_model_in_the_body() {
    let mut b = backend(BackendType::OpenAI);
    let t = target(
        &b,
        &call(Flavor::AzureDeployments, Some("2024-10-21"), None),
    );
    assert_eq!(t.url, "https://api.example/v1/chat/completions");
    assert_eq!(t.set_model, Some("gpt-4o"), "classic bodies have no model");
    assert_eq!(
        target(&b, &call(Flavor::OpenAI, None, Some("gpt-4o"))).set_model,
        None
    );
    b.model = Some("gpt-4o-2024-08-06".into());
    assert_eq!(
        target(&b, &call(Flavor::OpenAI, None, Some("gpt-4o"))).set_model,
        Some("gpt-4o-2024-08-06")
    );
}

#[test]
fn usage_is_not_asked_when_the_client_did_or_for_non_streams() {
    let b = backend(BackendType::OpenAI);
    let mut c = call(Flavor::OpenAI, None, Some("gpt-4o"));
    c.client_include_usage = Some(true);
    assert!(!target(&b, &c).ask_usage);
    c.client_include_usage = Some(false);
    assert!(target(&b, &c).ask_usage);
    c.stream = false;
    assert!(!target(&b, &c).ask_usage);
}

#[test]
fn client_credentials_never_reach_the_backend() {
    let mut client = HeaderMap::new();
    client.insert(
        "authorization",
        HeaderValue::from_static("Bearer client-token"),
    );
    client.insert("api-key", HeaderValue::from_static("client-key"));
    client.insert("cookie", HeaderValue::from_static("c=1"));
    client.insert("x-app", HeaderValue::from_static("app-1"));
    client.insert("connection", HeaderValue::from_static("keep-alive"));
    client.insert("accept-encoding", HeaderValue::from_static("gzip"));
    client.insert("x-ms-useragent", HeaderValue::from_static("sdk"));
    let rid = HeaderValue::from_static("rid");
    let tp = HeaderValue::from_static("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    let azure = request_headers(
        &client,
        &backend(BackendType::AzureOpenAI),
        Some("x-app"),
        &rid,
        &tp,
    );
    assert_eq!(azure["api-key"], "backend-key");
    assert!(azure.get("authorization").is_none() && azure.get("cookie").is_none());
    assert!(
        azure.get("x-app").is_none()
            && azure.get("connection").is_none()
            && azure.get("accept-encoding").is_none()
    );
    assert_eq!(azure["x-ms-useragent"], "sdk");
    assert_eq!(azure["x-request-id"], "rid");
    let openai = request_headers(&client, &backend(BackendType::OpenAI), None, &rid, &tp);
    assert_eq!(openai["authorization"], "Bearer backend-key");
    assert!(openai.get("api-key").is_none());
    assert_eq!(openai["x-app"], "app-1");
}

#[test]
fn entra_token_replaces_any_key_as_a_sensitive_bearer() {
    let mut headers = HeaderMap::new();
    headers.insert("api-key", HeaderValue::from_static("backend-key"));
    assert!(!set_bearer(&mut headers, &AccessToken::new("bad\ntoken")));
    assert_eq!(headers["api-key"], "backend-key", "unchanged");
    assert!(set_bearer(&mut headers, &AccessToken::new("eyJ-token")));
    assert!(headers.get("api-key").is_none());
    assert_eq!(headers["authorization"], "Bearer eyJ-token");
    assert!(headers["authorization"].is_sensitive());
}

#[test]
fn only_what_apps_need_passes_back_unless_the_gateway_allows_more() {
    let name = |n: &'static str| HeaderName::from_static(n);
    for kept in [
        "content-type",
        "content-length",
        "retry-after",
        "retry-after-ms",
    ] {
        assert!(passes_back(&name(kept), &[]), "{kept}");
    }
    for dropped in [
        "x-ratelimit-remaining-tokens",
        "x-ratelimit-limit-requests",
        "server",
        "x-ms-region",
        "apim-request-id",
        "openai-organization",
        "azureml-model-session",
        "transfer-encoding",
        "connection",
    ] {
        assert!(!passes_back(&name(dropped), &[]), "{dropped}");
    }
    let extra = ["openai-*".to_owned(), "x-ms-region".to_owned()];
    assert!(passes_back(&name("openai-processing-ms"), &extra));
    assert!(passes_back(&name("x-ms-region"), &extra));
    assert!(!passes_back(&name("x-ms-regionx"), &extra));
    assert!(!passes_back(&name("server"), &extra));
    let hop = ["transfer-*".to_owned(), "connection".to_owned()];
    assert!(
        !passes_back(&name("transfer-encoding"), &hop),
        "never hop-by-hop"
    );
    assert!(!passes_back(&name("connection"), &hop));
}

#[test]
fn responses_go_outside_deployments_with_the_model_in_the_body() {
    let mut b = backend(BackendType::AzureOpenAI);
    b.model_map.insert("gpt-4o".into(), "gpt4o-ptu".into());
    b.api_version = Some("2024-10-21".into());
    let mut c = call(
        Flavor::AzureClassic,
        Some("2025-03-01-preview"),
        Some("gpt-4o"),
    );
    c.route.operation = Operation::Responses;
    c.route.deployment = None;
    let t = target(&b, &c);
    assert_eq!(
        t.url,
        "https://r.openai.azure.com/openai/responses?api-version=2025-03-01-preview"
    );
    assert_eq!((t.set_model, t.ask_usage), (Some("gpt4o-ptu"), false));
    c.route.flavor = Flavor::OpenAI;
    c.route.api_version = None;
    c.route.suffix = "/input_tokens";
    assert_eq!(
        target(&b, &c).url,
        "https://r.openai.azure.com/openai/v1/responses/input_tokens"
    );
    let o = backend(BackendType::OpenAI);
    assert_eq!(
        target(&o, &c).url,
        "https://api.example/v1/responses/input_tokens"
    );
}

#[test]
fn stored_response_calls_keep_the_clients_query() {
    let a = backend(BackendType::AzureOpenAI);
    let classic = (Flavor::AzureClassic, Some("2025-03-01-preview"));
    assert_eq!(
        with_query(
            api_url(&a, classic, "responses", "/resp_1/input_items"),
            Some("api-version=2025-03-01-preview&limit=5&order=asc")
        ),
        "https://r.openai.azure.com/openai/responses/resp_1/input_items?api-version=2025-03-01-preview&limit=5&order=asc"
    );
    assert_eq!(
        with_query(
            api_url(&a, (Flavor::AzureV1, None), "conversations", "/c_1"),
            None
        ),
        "https://r.openai.azure.com/openai/v1/conversations/c_1"
    );
    let o = backend(BackendType::OpenAI);
    assert_eq!(
        with_query(
            api_url(&o, (Flavor::OpenAI, None), "responses", "/resp_1/cancel"),
            Some("x=1")
        ),
        "https://api.example/v1/responses/resp_1/cancel?x=1"
    );
}
