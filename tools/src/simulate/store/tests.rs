use serde_json::json;

use super::items::DEFAULT_PAGE;
use super::*;

fn response(id: &str, status: ResponseStatus, background: bool, items: usize) -> StoredResponse {
    StoredResponse {
        object: json!({"id": id, "object": "response", "status": status.as_str()}),
        items: (0..items)
            .map(|i| json!({"id": format!("msg_{i}")}))
            .collect(),
        background,
        status,
        usage: None,
    }
}

fn outcome(id: &str) -> Outcome {
    Outcome {
        object: json!({"id": id, "object": "response", "status": "completed", "usage": {}}),
        usage: Usage {
            input_tokens: 10,
            output_tokens: 4,
        },
    }
}

fn job(id: &str) -> Job {
    Job {
        outcome: outcome(id),
        entry: LedgerEntry {
            prompt_tokens: 10,
            completion_tokens: 4,
            ..LedgerEntry::default()
        },
        started: Instant::now(),
        turn: None,
    }
}

fn page(store: &ResponseStore, id: &str, query: &str) -> Value {
    let query = ItemsQuery::parse(Some(query)).expect("valid query");
    store.input_items(id, &query).expect("stored")
}

fn ids(page: &Value) -> Vec<&str> {
    page["data"]
        .as_array()
        .map(|items| items.iter().filter_map(|i| i["id"].as_str()).collect())
        .unwrap_or_default()
}

#[test]
fn string_and_array_inputs_become_items_with_ids() {
    let items = items_of(Some(&json!("hello")));
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["type"], "message");
    assert_eq!(items[0]["role"], "user");
    assert_eq!(
        items[0]["content"],
        json!([{"type": "input_text", "text": "hello"}])
    );
    assert!(
        items[0]["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("msg_"))
    );

    let items = items_of(Some(&json!([
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"id": "msg_given", "type": "message", "role": "user",
         "content": [{"type": "input_text", "text": "again"}]},
        {"type": "function_call_output", "call_id": "c1", "output": "42"}
    ])));
    assert_eq!(items.len(), 4);
    assert_eq!(items[1]["content"][0]["type"], "output_text");
    assert_eq!(items[2]["id"], "msg_given");
    assert_eq!(items[3]["type"], "function_call_output");
    assert!(items.iter().all(|i| i["id"].is_string()));
    assert!(items_of(None).is_empty());
}

#[test]
fn input_items_pages_newest_first_with_order_limit_and_after() {
    let store = ResponseStore::default();
    store.insert(
        "resp_1",
        response("resp_1", ResponseStatus::Completed, false, 5),
        None,
    );
    let all = page(&store, "resp_1", "");
    assert_eq!(ids(&all), ["msg_4", "msg_3", "msg_2", "msg_1", "msg_0"]);
    assert_eq!(all["object"], "list");
    assert_eq!(
        (all["first_id"].clone(), all["last_id"].clone()),
        (json!("msg_4"), json!("msg_0"))
    );
    assert_eq!(all["has_more"], false);

    let first = page(&store, "resp_1", "order=asc&limit=2");
    assert_eq!(ids(&first), ["msg_0", "msg_1"]);
    assert_eq!(first["has_more"], true);
    let next = page(&store, "resp_1", "order=asc&limit=2&after=msg_1");
    assert_eq!(ids(&next), ["msg_2", "msg_3"]);
    let last = page(&store, "resp_1", "order=asc&limit=2&after=msg_3");
    assert_eq!(ids(&last), ["msg_4"]);
    assert_eq!(last["has_more"], false);
    let past = page(&store, "resp_1", "after=msg_0");
    assert_eq!(ids(&past), Vec::<&str>::new());
    assert_eq!(past["first_id"], Value::Null);
    let query = ItemsQuery::parse(None).expect("defaults");
    assert_eq!(store.input_items("resp_2", &query), None);
}

#[test]
fn item_queries_are_checked() {
    let defaults = ItemsQuery::parse(None).expect("defaults");
    assert_eq!(
        defaults,
        ItemsQuery {
            ascending: false,
            limit: DEFAULT_PAGE,
            after: None
        }
    );
    for (query, param) in [
        ("order=up", "order"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
    ] {
        let err = ItemsQuery::parse(Some(query)).expect_err(query);
        assert_eq!(err.param, param, "{query}");
    }
    assert_eq!(
        ItemsQuery::parse(Some("limit=100")).map(|q| q.limit),
        Ok(100)
    );
}

#[test]
fn capacity_evicts_the_oldest_and_delete_forgets() {
    let store = ResponseStore::with_capacity(2);
    for id in ["resp_a", "resp_b", "resp_c"] {
        store.insert(id, response(id, ResponseStatus::Completed, false, 1), None);
    }
    assert_eq!(store.get("resp_a"), None);
    assert!(store.get("resp_b").is_some() && store.get("resp_c").is_some());
    assert!(store.delete("resp_b"));
    assert!(!store.delete("resp_b"));
    assert_eq!(store.get("resp_b"), None);
    store.insert(
        "resp_d",
        response("resp_d", ResponseStatus::Completed, false, 1),
        None,
    );
    assert_eq!(store.counts(), (2, 0));
}

#[test]
fn background_job_starts_completes_once_and_bills_once() {
    let store = ResponseStore::default();
    store.insert(
        "resp_bg",
        response("resp_bg", ResponseStatus::Queued, true, 1),
        Some(job("resp_bg")),
    );
    assert_eq!(store.context_tokens("resp_bg"), Some(0));
    store.start("resp_bg");
    assert_eq!(
        store.get("resp_bg").map(|o| o["status"].clone()),
        Some(json!("in_progress"))
    );
    let entry = store.complete_job("resp_bg").expect("job runs").entry;
    assert_eq!((entry.prompt_tokens, entry.completion_tokens), (10, 4));
    assert!(store.complete_job("resp_bg").is_none(), "billed once");
    assert_eq!(store.get("resp_bg"), Some(outcome("resp_bg").object));
    assert_eq!(store.context_tokens("resp_bg"), Some(14));
    // A finished background response is returned unchanged by cancel.
    assert_eq!(store.cancel("resp_bg"), Ok(outcome("resp_bg").object));
    store.start("resp_bg");
    assert_eq!(
        store.get("resp_bg").map(|o| o["status"].clone()),
        Some(json!("completed"))
    );
}

#[test]
fn cancel_drops_the_job_unbilled_and_refuses_foreground_responses() {
    let store = ResponseStore::default();
    store.insert(
        "resp_bg",
        response("resp_bg", ResponseStatus::Queued, true, 1),
        Some(job("resp_bg")),
    );
    let cancelled = store.cancel("resp_bg").expect("cancels");
    assert_eq!(cancelled["status"], "cancelled");
    assert!(store.complete_job("resp_bg").is_none(), "nothing to bill");
    assert_eq!(store.get("resp_bg"), Some(cancelled.clone()));
    assert_eq!(store.cancel("resp_bg"), Ok(cancelled));

    store.insert(
        "resp_fg",
        response("resp_fg", ResponseStatus::Completed, false, 1),
        None,
    );
    assert_eq!(store.cancel("resp_fg"), Err(CancelRefused::NotBackground));
    assert_eq!(store.cancel("resp_none"), Err(CancelRefused::NotFound));
}

#[test]
fn a_deleted_background_response_is_still_billed_once() {
    let store = ResponseStore::with_capacity(1);
    store.insert(
        "resp_bg",
        response("resp_bg", ResponseStatus::Queued, true, 1),
        Some(job("resp_bg")),
    );
    assert!(store.delete("resp_bg"));
    assert_eq!(store.counts(), (0, 1));
    assert!(store.complete_job("resp_bg").is_some());
    assert_eq!(
        store.get("resp_bg"),
        None,
        "completing does not bring it back"
    );
    assert_eq!(store.counts(), (0, 0));
}

#[test]
fn streams_finish_or_fail_and_terminal_states_stay() {
    let store = ResponseStore::default();
    store.insert(
        "resp_s",
        response("resp_s", ResponseStatus::InProgress, false, 1),
        None,
    );
    store.finish("resp_s", outcome("resp_s"));
    store.fail("resp_s");
    assert_eq!(store.get("resp_s"), Some(outcome("resp_s").object));
    assert_eq!(store.context_tokens("resp_s"), Some(14));

    store.insert(
        "resp_f",
        response("resp_f", ResponseStatus::InProgress, false, 1),
        None,
    );
    store.fail("resp_f");
    store.finish("resp_f", outcome("resp_f"));
    let failed = store.get("resp_f").expect("stored");
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error"]["code"], "server_error");
    assert_eq!(store.context_tokens("resp_f"), Some(0));
}
