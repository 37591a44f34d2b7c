//! Route parsing: surfaces, targets, methods, `api-version` ordering.

use super::*;

const RESPONSES: Api = Api::Model(ModelApi::Responses);

#[test]
fn parses_the_three_surfaces() {
    let classic = parse(
        "/openai/deployments/gpt-4o/chat/completions",
        Some("api-version=2024-10-21"),
    );
    assert_eq!(
        classic,
        Some(Route {
            flavour: Flavour::AzureClassic,
            deployment: Some("gpt-4o".into()),
            api: Api::Model(ModelApi::ChatCompletions),
            target: Target::Create,
            api_version: Some("2024-10-21".into()),
        })
    );
    let v1 = parse("/openai/v1/responses", None).map(|r| (r.flavour, r.api));
    assert_eq!(v1, Some((Flavour::AzureV1, RESPONSES)));
    let openai = parse("/v1/embeddings", None).map(|r| (r.flavour, r.api));
    assert_eq!(
        openai,
        Some((Flavour::OpenAi, Api::Model(ModelApi::Embeddings)))
    );
    let responses = parse("/openai/responses", Some("api-version=2025-04-01-preview"));
    assert_eq!(responses.map(|r| r.deployment), Some(None));
}

#[test]
fn rejects_unknown_routes() {
    for path in [
        "/",
        "/v1/models",
        "/openai/deployments//chat/completions",
        "/openai/deployments/x",
        "/openai/chat/completions",
        "/v2/chat/completions",
        "/v1/responses/resp_1/steps",
        "/v1/responses//cancel",
        "/v1/chat/completions/x",
    ] {
        assert_eq!(parse(path, None), None, "{path}");
    }
}

#[test]
fn parses_stored_response_targets_and_their_methods() {
    let target = |path: &str| parse(path, None).map(|r| (r.api, r.target));
    let id = || "resp_1".to_owned();
    assert_eq!(
        target("/v1/responses/resp_1"),
        Some((RESPONSES, Target::Response(id())))
    );
    assert_eq!(
        target("/openai/v1/responses/resp_1/input_items"),
        Some((RESPONSES, Target::InputItems(id())))
    );
    assert_eq!(
        target("/openai/responses/resp_1/cancel"),
        Some((RESPONSES, Target::Cancel(id())))
    );
    assert_eq!(
        target("/v1/responses/input_tokens"),
        Some((RESPONSES, Target::InputTokens))
    );
    assert_eq!(target("/v1/responses/"), Some((RESPONSES, Target::Create)));
    assert!(Target::Create.allows(&Method::POST));
    assert!(!Target::Create.allows(&Method::GET));
    assert!(Target::Response(id()).allows(&Method::DELETE));
    assert!(!Target::Response(id()).allows(&Method::POST));
    assert!(Target::InputItems(id()).allows(&Method::GET));
    assert!(!Target::Cancel(id()).allows(&Method::GET));
    assert!(Target::InputTokens.allows(&Method::POST));
}

#[test]
fn parses_conversation_targets_and_their_methods() {
    let target = |path: &str| parse(path, None).map(|r| (r.api, r.target));
    let conv = || "conv_1".to_owned();
    let of = |t| Some((RESPONSES, t));
    assert_eq!(target("/v1/conversations"), of(Target::Conversations));
    assert_eq!(
        target("/openai/v1/conversations/"),
        of(Target::Conversations)
    );
    assert_eq!(
        target("/openai/conversations/conv_1"),
        of(Target::Conversation(conv()))
    );
    assert_eq!(
        target("/v1/conversations/conv_1/items"),
        of(Target::ConversationItems(conv()))
    );
    assert_eq!(
        target("/v1/conversations/conv_1/items/msg%5F2"),
        of(Target::ConversationItem(conv(), "msg_2".into()))
    );
    for path in [
        "/v1/conversationsx",
        "/v1/conversations//items",
        "/v1/conversations/conv_1/steps",
        "/v1/conversations/conv_1/items/msg_1/x",
        "/openai/deployments/gpt-4o/conversations",
    ] {
        assert_eq!(parse(path, None), None, "{path}");
    }
    assert!(Target::Conversations.allows(&Method::POST));
    assert!(!Target::Conversations.allows(&Method::GET));
    for method in [Method::GET, Method::POST, Method::DELETE] {
        assert!(Target::Conversation(conv()).allows(&method));
    }
    assert!(!Target::Conversation(conv()).allows(&Method::PUT));
    assert!(Target::ConversationItems(conv()).allows(&Method::POST));
    assert!(!Target::ConversationItems(conv()).allows(&Method::DELETE));
    let item = Target::ConversationItem(conv(), "msg_1".into());
    assert!(item.allows(&Method::DELETE) && !item.allows(&Method::POST));
    assert!(item.is_conversation() && !Target::Create.is_conversation());
}

#[test]
fn decodes_query_and_deployment() {
    assert_eq!(
        query_param("a=1&api-version=2024-06-01&b", "api-version").as_deref(),
        Some("2024-06-01")
    );
    assert_eq!(query_param("b", "b").as_deref(), Some(""));
    assert_eq!(query_param("x=%41%2", "x").as_deref(), Some("A%2"));
    let route = parse("/openai/deployments/my%20dep/completions", None);
    assert_eq!(route.and_then(|r| r.deployment).as_deref(), Some("my dep"));
}

#[test]
fn orders_api_versions_with_preview_first() {
    let v = |s| ApiVersion::parse(s).expect(s);
    assert!(v("2024-06-01") < v("2024-09-01-preview"));
    assert!(v("2024-09-01-preview") < v("2024-09-01"));
    assert!(v("2024-10-21") > v("2024-09-01-preview"));
    assert_eq!(ApiVersion::parse("preview"), None);
    assert_eq!(ApiVersion::parse("2024-13-01"), None);
    assert_eq!(ApiVersion::parse("2024-1-01"), None);
}

#[test]
fn places_images_and_audio_under_deployments_and_files_and_batches_on_top() {
    let api = |path: &str| parse(path, Some("api-version=2025-04-01-preview")).map(|r| r.api);
    for (op, expected) in [
        ("images/generations", Api::ImagesGenerations),
        ("images/edits", Api::ImagesEdits),
        ("images/variations", Api::ImagesVariations),
        ("audio/transcriptions", Api::AudioTranscriptions),
        ("audio/translations", Api::AudioTranslations),
        ("audio/speech", Api::AudioSpeech),
    ] {
        for path in [
            format!("/openai/deployments/dep/{op}"),
            format!("/openai/v1/{op}"),
            format!("/v1/{op}"),
        ] {
            assert_eq!(api(&path), Some(expected), "{path}");
        }
        assert_eq!(api(&format!("/openai/{op}")), None, "needs a deployment");
    }
    for (path, expected) in [
        ("/openai/files", Api::Files),
        ("/openai/v1/files/", Api::Files),
        ("/v1/batches", Api::Batches),
        ("/openai/batches", Api::Batches),
    ] {
        assert_eq!(api(path), Some(expected), "{path}");
    }
    for path in [
        "/openai/deployments/dep/files",
        "/openai/deployments/dep/batches/batch_1",
        "/v1/images",
        "/v1/audio/speech/x",
    ] {
        assert_eq!(api(path), None, "{path}");
    }
}

#[test]
fn parses_file_and_batch_targets_and_their_methods() {
    let target = |path: &str| parse(path, None).map(|r| (r.api, r.target));
    let id = |s: &str| s.to_owned();
    assert_eq!(target("/v1/files"), Some((Api::Files, Target::Files)));
    assert_eq!(
        target("/v1/files/file-1"),
        Some((Api::Files, Target::File(id("file-1"))))
    );
    assert_eq!(
        target("/openai/v1/files/file%2D1/content"),
        Some((Api::Files, Target::FileContent(id("file-1"))))
    );
    assert_eq!(target("/v1/batches"), Some((Api::Batches, Target::Batches)));
    assert_eq!(
        target("/v1/batches/batch_1/"),
        Some((Api::Batches, Target::Batch(id("batch_1"))))
    );
    assert_eq!(
        target("/v1/batches/batch_1/cancel"),
        Some((Api::Batches, Target::BatchCancel(id("batch_1"))))
    );
    for path in [
        "/v1/files//content",
        "/v1/files/file-1/raw",
        "/v1/files/file-1/content/x",
        "/v1/batches/batch_1/results",
        "/v1/batches//cancel",
    ] {
        assert_eq!(parse(path, None), None, "{path}");
    }
    assert!(Target::Files.allows(&Method::GET) && Target::Files.allows(&Method::POST));
    assert!(!Target::Files.allows(&Method::DELETE));
    assert!(Target::File(id("f")).allows(&Method::DELETE));
    assert!(!Target::File(id("f")).allows(&Method::POST));
    assert!(Target::FileContent(id("f")).allows(&Method::GET));
    assert!(!Target::FileContent(id("f")).allows(&Method::DELETE));
    assert!(Target::Batches.allows(&Method::POST));
    assert!(!Target::Batch(id("b")).allows(&Method::DELETE));
    assert!(Target::BatchCancel(id("b")).allows(&Method::POST));
    assert!(!Target::BatchCancel(id("b")).allows(&Method::GET));
}
