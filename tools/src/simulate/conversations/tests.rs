use http::Method;
use serde_json::{Map, Value, json};

use super::request::Invalid;
use super::*;
use crate::simulate::route::Target;

fn read<'a>(
    target: &'a Target,
    method: Method,
    query: Option<&str>,
    body: Option<&Value>,
) -> Result<ConversationCall<'a>, Invalid> {
    ConversationCall::read(target, &method, query, body).expect("a conversations call")
}

fn refused(target: &Target, method: Method, body: &Value) -> (String, String) {
    let invalid = read(target, method, None, Some(body)).expect_err("refused");
    (invalid.message, invalid.param)
}

#[test]
fn create_takes_an_empty_body_metadata_and_items_with_ids() {
    let create = Target::Conversations;
    assert_eq!(
        read(&create, Method::POST, None, Some(&json!({}))),
        Ok(ConversationCall::Create {
            metadata: Map::new(),
            items: Vec::new()
        })
    );
    let body = json!({"metadata": {"topic": "demo"}, "items": [
        {"role": "user", "content": "hi"},
        {"type": "message", "role": "assistant", "content": "hello", "id": "msg_mine"}
    ]});
    let Ok(ConversationCall::Create { metadata, items }) =
        read(&create, Method::POST, None, Some(&body))
    else {
        panic!("a create");
    };
    assert_eq!(Value::Object(metadata), json!({"topic": "demo"}));
    assert_eq!(items[0]["type"], "message");
    assert_eq!(
        items[0]["content"],
        json!([{"type": "input_text", "text": "hi"}])
    );
    assert!(
        items[0]["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("msg_"))
    );
    assert_eq!(items[1]["id"], "msg_mine");
    assert_eq!(items[1]["content"][0]["type"], "output_text");
    let nulls = json!({"metadata": null, "items": null});
    assert!(read(&create, Method::POST, None, Some(&nulls)).is_ok());
}

#[test]
fn id_routes_map_methods_to_calls() {
    let conversation = Target::Conversation("conv_1".into());
    let items = Target::ConversationItems("conv_1".into());
    let item = Target::ConversationItem("conv_1".into(), "msg_1".into());
    assert_eq!(
        read(&conversation, Method::GET, None, None),
        Ok(ConversationCall::Retrieve("conv_1"))
    );
    assert_eq!(
        read(&conversation, Method::DELETE, None, None),
        Ok(ConversationCall::Delete("conv_1"))
    );
    let update = json!({"metadata": {"k": "v"}});
    let Ok(ConversationCall::Update("conv_1", metadata)) =
        read(&conversation, Method::POST, None, Some(&update))
    else {
        panic!("an update");
    };
    assert_eq!(metadata.len(), 1);
    let cleared = read(
        &conversation,
        Method::POST,
        None,
        Some(&json!({"metadata": null})),
    );
    assert_eq!(cleared, Ok(ConversationCall::Update("conv_1", Map::new())));
    let Ok(ConversationCall::ListItems("conv_1", query)) =
        read(&items, Method::GET, Some("order=asc&limit=5"), None)
    else {
        panic!("a listing");
    };
    assert!(query.ascending && query.limit == 5);
    assert_eq!(
        read(&items, Method::GET, Some("limit=0"), None).map_err(|i| i.param),
        Err("limit".to_owned())
    );
    assert_eq!(
        read(&item, Method::GET, None, None),
        Ok(ConversationCall::RetrieveItem("conv_1", "msg_1"))
    );
    assert_eq!(
        read(&item, Method::DELETE, None, None),
        Ok(ConversationCall::DeleteItem("conv_1", "msg_1"))
    );
    assert!(ConversationCall::read(&Target::Create, &Method::POST, None, None).is_none());
}

#[test]
fn bodies_are_checked_with_the_parameter_at_fault() {
    let create = Target::Conversations;
    let conversation = Target::Conversation("conv_1".into());
    let items = Target::ConversationItems("conv_1".into());
    let param = |target: &Target, body: Value| refused(target, Method::POST, &body).1;

    assert_eq!(param(&conversation, json!({})), "metadata");
    assert_eq!(param(&items, json!({})), "items");
    assert_eq!(param(&items, json!({"items": []})), "items");
    assert_eq!(param(&create, json!({"items": "hi"})), "items");
    assert_eq!(param(&create, json!({"items": ["hi"]})), "items[0]");
    assert_eq!(
        param(&create, json!({"items": [{"content": "x"}]})),
        "items[0].type"
    );
    let too_many: Vec<Value> = (0..21)
        .map(|_| json!({"role": "user", "content": "x"}))
        .collect();
    let (message, param_name) = refused(&items, Method::POST, &json!({"items": too_many}));
    assert_eq!(param_name, "items");
    assert!(message.contains("maximum length 20"), "{message}");

    assert_eq!(param(&create, json!({"metadata": "x"})), "metadata");
    assert_eq!(param(&create, json!({"metadata": {"k": 1}})), "metadata.k");
    let long_value = "v".repeat(513);
    assert_eq!(
        param(&create, json!({"metadata": {"k": long_value}})),
        "metadata.k"
    );
    let long_key = "k".repeat(65);
    assert_eq!(
        param(&create, json!({"metadata": {long_key: "v"}})),
        "metadata"
    );
    let crowded: serde_json::Map<String, Value> = (0..17)
        .map(|i| (format!("k{i}"), Value::from("v")))
        .collect();
    let (message, _) = refused(&create, Method::POST, &json!({"metadata": crowded}));
    assert!(message.contains("at most 16 properties"), "{message}");
    let (message, _) = refused(&create, Method::POST, &json!({"metadata": [1]}));
    assert_eq!(
        message,
        "Invalid type for 'metadata': expected an object, but got an array instead."
    );
}
