use serde_json::json;

use super::*;
use crate::simulate::store::items_of;

fn items(texts: &[&str]) -> Vec<Value> {
    let input: Vec<Value> = texts
        .iter()
        .map(|text| json!({"role": "user", "content": text}))
        .collect();
    items_of(Some(&Value::Array(input)))
}

fn metadata(pairs: &[(&str, &str)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
        .collect()
}

fn id_of(object: &Value) -> String {
    object["id"].as_str().expect("id").to_owned()
}

fn texts(page: &Value) -> Vec<&str> {
    page["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|item| item["content"][0]["text"].as_str().expect("text"))
        .collect()
}

#[test]
fn create_get_update_delete() {
    let store = ConversationStore::default();
    let created = store.create(7, metadata(&[("topic", "demo")]), items(&["a"]));
    let id = id_of(&created);
    assert!(id.starts_with("conv_"));
    assert_eq!(
        created,
        json!({"id": id, "object": "conversation", "created_at": 7, "metadata": {"topic": "demo"}})
    );
    assert_eq!(store.get(&id), Some(created));
    let updated = store
        .update(&id, metadata(&[("topic", "new")]))
        .expect("stored");
    assert_eq!(updated["metadata"], json!({"topic": "new"}));
    assert_eq!(store.get(&id), Some(updated));
    assert_eq!(store.update("conv_x", Map::new()), None);
    assert!(store.delete(&id));
    assert!(!store.delete(&id));
    assert_eq!(store.get(&id), None);
    assert_eq!(store.len(), 0);
}

#[test]
fn items_list_add_get_and_delete() {
    let store = ConversationStore::default();
    let id = id_of(&store.create(0, Map::new(), items(&["a", "b"])));
    let added = store.add(&id, items(&["c", "d"])).expect("stored");
    assert_eq!(added["object"], "list");
    assert_eq!(texts(&added), ["c", "d"]);
    assert_eq!(added["first_id"], added["data"][0]["id"]);
    assert_eq!(added["last_id"], added["data"][1]["id"]);
    assert_eq!(added["has_more"], false);

    let all = |query: &str| {
        let query = ItemsQuery::parse(Some(query)).expect("query");
        store.list(&id, &query).expect("stored")
    };
    assert_eq!(texts(&all("")), ["d", "c", "b", "a"], "newest first");
    let page = all("order=asc&limit=3");
    assert_eq!(
        (texts(&page), page["has_more"].clone()),
        (vec!["a", "b", "c"], json!(true))
    );
    let after = page["last_id"].as_str().expect("last");
    assert_eq!(texts(&all(&format!("order=asc&after={after}"))), ["d"]);

    let b = all("order=asc")["data"][1].clone();
    let b_id = id_of(&b);
    assert_eq!(store.item(&id, &b_id), Ok(b));
    assert_eq!(store.item(&id, "msg_x"), Err(Missing::Item));
    assert_eq!(store.item("conv_x", &b_id), Err(Missing::Conversation));
    let conversation = store.delete_item(&id, &b_id).expect("deleted");
    assert_eq!(conversation, store.get(&id).expect("stored"));
    assert_eq!(texts(&all("order=asc")), ["a", "c", "d"]);
    assert_eq!(store.delete_item(&id, &b_id), Err(Missing::Item));
    assert_eq!(store.add("conv_x", items(&["e"])), None);
    assert_eq!(
        store.list("conv_x", &ItemsQuery::parse(None).expect("q")),
        None
    );
}

#[test]
fn turns_append_and_every_change_of_items_is_a_new_revision() {
    let store = ConversationStore::default();
    let id = id_of(&store.create(0, Map::new(), Vec::new()));
    let revision = |store: &ConversationStore| store.context(&id).expect("stored").revision;
    let first = revision(&store);
    assert_eq!(store.context(&id).map(|c| c.items.len()), Some(0));
    store.append(Turn {
        conversation: id.clone(),
        items: items(&["q", "a"]),
    });
    let second = revision(&store);
    assert_ne!(first, second);
    store.update(&id, metadata(&[("k", "v")]));
    assert_eq!(
        revision(&store),
        second,
        "metadata is not part of the prompt"
    );
    let context = store.context(&id).expect("stored");
    assert_eq!(context.items.len(), 2);
    store
        .delete_item(&id, &id_of(&context.items[0]))
        .expect("item");
    assert_ne!(revision(&store), second);
    store.delete(&id);
    store.append(Turn {
        conversation: id.clone(),
        items: items(&["late"]),
    });
    assert_eq!(
        store.context(&id),
        None,
        "a deleted conversation stays deleted"
    );
}

#[test]
fn context_tokens_count_items_as_input_without_server_fields() {
    let model = "gpt-4o";
    let empty = Context {
        items: Vec::new(),
        revision: 0,
    };
    assert_eq!(empty.tokens(model), 0);
    let stored = items(&["hello there", "how are you?"]);
    let context = Context {
        items: stored.clone(),
        revision: 0,
    };
    let bare: Vec<Value> = stored
        .iter()
        .map(|item| json!({"type": "message", "role": "user", "content": item["content"]}))
        .collect();
    let count = |input: Value| {
        tokenizer::count_prompt(model, Operation::Responses, &json!({"input": input}))
    };
    assert_eq!(
        context.tokens(model),
        count(Value::Array(bare)) - count(json!([]))
    );
    let mut with_status = stored;
    with_status[0]["status"] = json!("completed");
    let same = Context {
        items: with_status,
        revision: 1,
    };
    assert_eq!(same.tokens(model), context.tokens(model));
    assert!(
        context.tokens(model) > 2 * 3,
        "more than the per-message overhead"
    );
}

#[test]
fn capacity_evicts_the_oldest_conversation_and_items_are_bounded() {
    let store = ConversationStore::with_capacity(2);
    let ids: Vec<String> = (0..3)
        .map(|_| id_of(&store.create(0, Map::new(), Vec::new())))
        .collect();
    assert_eq!(store.len(), 2);
    assert_eq!(store.get(&ids[0]), None);
    assert!(store.get(&ids[1]).is_some() && store.get(&ids[2]).is_some());

    let many: Vec<Value> = (0..MAX_ITEMS + 5)
        .map(|i| json!({"id": format!("msg_{i}"), "type": "message"}))
        .collect();
    store.append(Turn {
        conversation: ids[2].clone(),
        items: many,
    });
    let kept = store.context(&ids[2]).expect("stored").items;
    assert_eq!(kept.len(), MAX_ITEMS);
    assert_eq!(kept[0]["id"], "msg_5", "the oldest items leave first");
}
