use super::*;

fn model(method: &Method, path: &str, query: Option<&str>) -> InboundRoute<'static> {
    let path: &'static str = Box::leak(path.to_owned().into_boxed_str());
    let query: Option<&'static str> = query.map(|q| &*Box::leak(q.to_owned().into_boxed_str()));
    match parse(method, path, query) {
        Ok(Inbound::Model(route)) => route,
        other => panic!("{path}: {other:?}"),
    }
}

#[test]
fn recognises_every_shape_and_model_operation() {
    let r = model(
        &Method::POST,
        "/openai/deployments/gpt-4o/chat/completions",
        Some("api-version=2024-10-21"),
    );
    assert_eq!(
        (r.flavor, r.operation, r.deployment, r.api_version),
        (
            Flavor::AzureDeployments,
            Operation::ChatCompletions,
            Some("gpt-4o"),
            Some("2024-10-21")
        )
    );
    let r = model(&Method::POST, "/openai/v1/embeddings", None);
    assert_eq!(
        (r.flavor, r.operation, r.deployment),
        (Flavor::AzureV1, Operation::Embeddings, None)
    );
    let r = model(&Method::POST, "/v1/responses", None);
    assert_eq!(
        (r.flavor, r.operation),
        (Flavor::OpenAI, Operation::Responses)
    );
    let r = model(&Method::POST, "/v1/completions", Some("a=1&api-version=x"));
    assert_eq!(
        (r.operation, r.api_version),
        (Operation::Completions, Some("x"))
    );
    // The Azure SDK's Responses path: no deployment, model in the body.
    let r = model(
        &Method::POST,
        "/openai/responses",
        Some("api-version=2025-03-01-preview"),
    );
    assert_eq!(
        (r.flavor, r.operation, r.deployment, r.api_version),
        (
            Flavor::AzureClassic,
            Operation::Responses,
            None,
            Some("2025-03-01-preview")
        )
    );
    for path in [
        "/v1/responses/input_tokens",
        "/openai/v1/responses/input_tokens",
        "/openai/responses/input_tokens",
    ] {
        let r = model(&Method::POST, path, None);
        assert!(r.counts_tokens_only(), "{path}");
        assert_eq!(r.operation, Operation::Responses);
    }
    assert!(!model(&Method::POST, "/v1/responses/", None).counts_tokens_only());
}

#[test]
fn recognises_model_lists() {
    for (path, flavor, wanted) in [
        ("/v1/models", Flavor::OpenAI, None),
        ("/openai/v1/models", Flavor::AzureV1, None),
        ("/openai/models", Flavor::AzureClassic, None),
        ("/v1/models/gpt-4o", Flavor::OpenAI, Some("gpt-4o")),
        (
            "/openai/models/gpt-4o",
            Flavor::AzureClassic,
            Some("gpt-4o"),
        ),
        (
            "/openai/v1/models/ft:gpt-4o:org/x",
            Flavor::AzureV1,
            Some("ft:gpt-4o:org/x"),
        ),
    ] {
        assert_eq!(
            parse(&Method::GET, path, None),
            Ok(Inbound::Models {
                flavor,
                model: wanted
            }),
            "{path}"
        );
    }
    assert!(matches!(
        parse(&Method::POST, "/v1/models", None),
        Err(ProxyError::MethodNotAllowed { allowed: "GET", .. })
    ));
}

#[test]
fn recognises_stored_response_and_conversation_calls() {
    use StoredKind::{Conversation, Response};
    for (method, path, kind, suffix, action) in [
        (
            Method::GET,
            "/v1/responses/resp_1",
            Response,
            "",
            StoredAction::Retrieve,
        ),
        (
            Method::DELETE,
            "/openai/v1/responses/resp_1",
            Response,
            "",
            StoredAction::Delete,
        ),
        (
            Method::GET,
            "/openai/responses/resp_1/input_items",
            Response,
            "/input_items",
            StoredAction::Other,
        ),
        (
            Method::POST,
            "/v1/responses/resp_1/cancel",
            Response,
            "/cancel",
            StoredAction::Cancel,
        ),
        (
            Method::GET,
            "/v1/conversations/resp_1",
            Conversation,
            "",
            StoredAction::Retrieve,
        ),
        (
            Method::POST,
            "/v1/conversations/resp_1",
            Conversation,
            "",
            StoredAction::Other,
        ),
        (
            Method::DELETE,
            "/openai/conversations/resp_1",
            Conversation,
            "",
            StoredAction::Delete,
        ),
        (
            Method::POST,
            "/v1/conversations/resp_1/items",
            Conversation,
            "/items",
            StoredAction::Other,
        ),
        (
            Method::DELETE,
            "/openai/v1/conversations/resp_1/items/msg_9",
            Conversation,
            "/items/msg_9",
            StoredAction::Other,
        ),
    ] {
        match parse(&method, path, Some("api-version=v")) {
            Ok(Inbound::Stored(call)) => {
                assert_eq!(
                    (call.id, call.kind, call.suffix, call.action),
                    ("resp_1", kind, suffix, action),
                    "{path}"
                );
                assert_eq!(call.api_version, Some("v"));
            }
            other => panic!("{path}: {other:?}"),
        }
    }
    assert_eq!(
        parse(
            &Method::POST,
            "/openai/conversations",
            Some("api-version=v")
        ),
        Ok(Inbound::NewConversation {
            flavor: Flavor::AzureClassic,
            api_version: Some("v")
        })
    );
    for (method, path, allowed) in [
        (Method::POST, "/v1/responses/resp_1", "GET or DELETE"),
        (Method::GET, "/v1/responses/resp_1/cancel", "POST"),
        (Method::DELETE, "/v1/responses/resp_1/input_items", "GET"),
        (Method::GET, "/v1/responses/input_tokens", "POST"),
        (Method::GET, "/v1/chat/completions", "POST"),
        (Method::GET, "/v1/conversations", "POST"),
        (Method::PUT, "/v1/conversations/c", "GET, POST or DELETE"),
        (Method::DELETE, "/v1/conversations/c/items", "GET or POST"),
        (Method::POST, "/v1/conversations/c/items/i", "GET or DELETE"),
    ] {
        assert_eq!(
            parse(&method, path, None),
            Err(ProxyError::MethodNotAllowed {
                method: method.to_string(),
                allowed
            }),
            "{method} {path}"
        );
    }
}

#[test]
fn rejects_unknown_paths() {
    for path in [
        "/",
        "/openai/deployments/",
        "/openai/deployments//chat/completions",
        "/openai/deployments/x",
        "/openai/deployments/x/models",
        "/openai/chat/completions",
        "/v1/images/generations",
        "/v2/chat/completions",
        "/v1/responses/resp_1/other",
        "/v1/responses//cancel",
        "/v1/conversations/c/items/i/x",
        "/openai/deployments/x/conversations",
    ] {
        assert!(
            matches!(
                parse(&Method::POST, path, None),
                Err(ProxyError::UnknownRoute { .. })
            ),
            "{path}"
        );
    }
}
