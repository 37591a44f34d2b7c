//! Responses created in a conversation over real HTTP: the conversation's items are billed on
//! top of the call's own input, the call's input items and output message are appended once
//! the response completes (streamed, unstored and background ones too; never a broken stream
//! or a cancelled job), and the conversation exists only on the backend that created it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use spillway_sidecar::usage::Operation;
use spillway_sidecar::usage::tokenizer::count_prompt;
use spillway_tools::simulate::{BackendConfig, FaultMode, FaultSpec, LedgerQuery};

use super::client::{get, post, sse_json};
use super::conversations::{conv_path, conversation_not_found, create, id_of, items_asc};
use super::responses::{Family, addr, path, start_many};

/// The input tokens `items` add as a conversation's context, as the simulator counts them:
/// each an input item without the server's `id` and `status`.
fn context_tokens(items: &[Value]) -> u64 {
    let bare: Vec<Value> = items
        .iter()
        .map(|item| {
            let mut item = item.clone();
            if let Some(fields) = item.as_object_mut() {
                fields.remove("id");
                fields.remove("status");
            }
            item
        })
        .collect();
    let count =
        |input: Value| count_prompt("gpt-4o", Operation::Responses, &json!({"input": input}));
    count(Value::Array(bare)) - count(json!([]))
}

async fn items(addr: SocketAddr, id: &str) -> Vec<Value> {
    let listed = items_asc(addr, id).await;
    assert_eq!(listed.status, 200, "{}", listed.text());
    listed.json()["data"].as_array().expect("data").clone()
}

fn input_tokens(response: &Value) -> u64 {
    response["usage"]["input_tokens"]
        .as_u64()
        .expect("input tokens")
}

const QUESTION: &str = "What is my name?";

fn ask(conversation: Value) -> Value {
    json!({"model": "gpt-4o", "input": QUESTION, "max_output_tokens": 5,
        "conversation": conversation})
}

#[tokio::test]
async fn each_turn_bills_the_items_before_it_and_appends_its_own() {
    let sim = start_many(&["east", "west"], |_| {}).await;
    let (east, west) = (addr(&sim, "east"), addr(&sim, "west"));
    let conversation = create(
        east,
        &json!({"items": [{"role": "user", "content": "My name is Ada."}]}),
    )
    .await;
    let id = id_of(&conversation);
    let alone = json!({"model": "gpt-4o", "input": QUESTION, "max_output_tokens": 5,
        "store": false});
    let own = input_tokens(&post(east, "/v1/responses", &alone, &[]).await.json());

    let mut billed = vec![own];
    let forms = [json!(id), json!({"id": id}), json!(id)];
    let families = [Family::OpenAi, Family::AzureV1, Family::AzureClassic];
    for (turn, (form, family)) in forms.into_iter().zip(families).enumerate() {
        let before = items(east, &id).await;
        assert_eq!(before.len(), 1 + 2 * turn);
        let answered = post(east, &path(family, ""), &ask(form), &[]).await;
        assert_eq!(answered.status, 200, "{family:?}: {}", answered.text());
        let answered = answered.json();
        assert_eq!(answered["conversation"], json!({"id": id}), "{family:?}");
        let expected = own + context_tokens(&before);
        assert_eq!(
            input_tokens(&answered),
            expected,
            "turn {turn} bills the items before it"
        );
        assert!(
            expected > billed.last().copied().unwrap_or_default(),
            "each turn bills more"
        );
        billed.push(expected);

        let after = items(east, &id).await;
        assert_eq!(
            after.len(),
            before.len() + 2,
            "its input and output are appended"
        );
        assert_eq!(after[..before.len()], before[..]);
        let input = &after[before.len()];
        assert_eq!(
            (input["type"].clone(), input["role"].clone()),
            (json!("message"), json!("user"))
        );
        assert_eq!(
            input["content"],
            json!([{"type": "input_text", "text": QUESTION}])
        );
        assert!(input["id"].as_str().is_some_and(|i| i.starts_with("msg_")));
        assert_eq!(
            after[before.len() + 1],
            answered["output"][0],
            "the output message"
        );
        let stored = get(east, &format!("/v1/responses/{}", id_of(&answered))).await;
        assert_eq!(stored.json(), answered, "stored as answered");
    }
    let east_ledger = sim.ledger_query(&LedgerQuery {
        backend: Some("east".into()),
        since: None,
    });
    let prompts: Vec<u64> = east_ledger
        .entries
        .iter()
        .filter(|e| e.prompt_tokens > 0)
        .map(|e| e.prompt_tokens)
        .collect();
    assert_eq!(prompts, billed, "the ledger bills what the usage says");

    let elsewhere = post(west, "/v1/responses", &ask(json!(id)), &[]).await;
    assert_eq!(elsewhere.status, 404);
    assert_eq!(
        elsewhere.json(),
        json!({"error": {"message": format!("Conversation with id '{id}' not found."),
            "type": "invalid_request_error", "param": "conversation",
            "code": "conversation_not_found"}})
    );
    let read_elsewhere = get(west, &conv_path(Family::OpenAi, &format!("/{id}"))).await;
    assert_eq!(
        read_elsewhere.json(),
        conversation_not_found(&id),
        "not shared"
    );
    let west_ledger = sim.ledger_query(&LedgerQuery {
        backend: Some("west".into()),
        since: None,
    });
    assert_eq!(
        (west_ledger.totals.requests, west_ledger.totals.total_tokens),
        (2, 0)
    );

    let unknown = post(east, "/openai/v1/responses", &ask(json!("conv_nope")), &[]).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["error"]["code"], "conversation_not_found");
    let mut both = ask(json!(id));
    both["previous_response_id"] = json!("resp_1");
    let refused = post(east, "/v1/responses", &both, &[]).await;
    assert_eq!(refused.status, 400);
    let error = refused.json()["error"].clone();
    assert_eq!(
        (error["type"].clone(), error["param"].clone()),
        (
            json!("invalid_request_error"),
            json!("previous_response_id")
        )
    );
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("'conversation'")),
        "{error}"
    );
    let counted = post(east, "/v1/responses/input_tokens", &ask(json!(id)), &[])
        .await
        .json();
    let now = items(east, &id).await;
    assert_eq!(
        counted["input_tokens"],
        own + context_tokens(&now),
        "counted as a create bills"
    );
    assert_eq!(now.len(), 7, "refused and counted calls append nothing");
}

/// Polls the response `id` until it is `completed` (at most 5 s).
async fn wait_completed(addr: SocketAddr, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = get(addr, &format!("/v1/responses/{id}")).await.json();
        if got["status"] == "completed" {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{id} not completed after 5 s: {got}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn streamed_unstored_and_background_turns_append_when_they_complete() {
    let sim = start_many(&["ptu"], |b: &mut BackendConfig| b.background_ms = 300).await;
    let ptu = addr(&sim, "ptu");
    let id = id_of(&create(ptu, &json!({})).await);
    assert_eq!(items(ptu, &id).await.len(), 0);

    let mut streamed = ask(json!(id));
    streamed["stream"] = json!(true);
    let sent = post(ptu, "/v1/responses", &streamed, &[]).await;
    assert_eq!(sent.status, 200);
    let events = sse_json(&sent.body);
    let done = &events.last().expect("events")["response"];
    assert_eq!(done["conversation"], json!({"id": id}));
    let now = items(ptu, &id).await;
    assert_eq!(now.len(), 2, "appended once the stream was sent");
    assert_eq!(now[1], done["output"][0]);

    let mut unstored = ask(json!(id));
    unstored["store"] = json!(false);
    let answered = post(ptu, "/v1/responses", &unstored, &[]).await.json();
    assert_eq!(
        items(ptu, &id).await.len(),
        4,
        "an unstored response still joins the conversation"
    );
    let response = get(ptu, &format!("/v1/responses/{}", id_of(&answered))).await;
    assert_eq!(response.status, 404, "but is not stored itself");

    let handle = sim.backend("ptu").expect("backend");
    handle
        .add_faults(&[FaultSpec {
            count: Some(1),
            after_chunks: Some(2),
            ..FaultSpec::new(FaultMode::ResetMidStream)
        }])
        .expect("valid fault");
    let broken = post(ptu, "/v1/responses", &streamed, &[]).await;
    assert!(broken.body_error.is_some(), "the stream was cut");
    assert_eq!(
        items(ptu, &id).await.len(),
        4,
        "a broken stream appends nothing"
    );

    let mut background = ask(json!(id));
    background["background"] = json!(true);
    let queued = post(ptu, "/v1/responses", &background, &[]).await.json();
    assert_eq!(queued["status"], "queued");
    assert_eq!(items(ptu, &id).await.len(), 4, "nothing until it completes");
    let completed = wait_completed(ptu, &id_of(&queued)).await;
    let now = items(ptu, &id).await;
    assert_eq!(now.len(), 6);
    assert_eq!(now[5], completed["output"][0]);
    assert_eq!(
        input_tokens(&completed),
        input_tokens(&answered) + context_tokens(&now[2..4]),
        "billed the items it read when created"
    );

    let cancelled = post(ptu, "/v1/responses", &background, &[]).await.json();
    let cancel = format!("/v1/responses/{}/cancel", id_of(&cancelled));
    assert_eq!(
        post(ptu, &cancel, &json!({}), &[]).await.json()["status"],
        "cancelled"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        items(ptu, &id).await.len(),
        6,
        "a cancelled response appends nothing"
    );
}
