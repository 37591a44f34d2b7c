//! The conversations API over real HTTP: create with items and metadata, retrieve, update,
//! list items (order, limit, after), add, retrieve and delete items, delete; unknown ids,
//! bodies, methods, auth, faults and latency, and the ledger's 0-token entries, on all three
//! path families.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::Method;
use serde_json::{Value, json};
use spillway_tools::simulate::{Api, BackendConfig, FaultMode, FaultSpec, ModelApi, Timing};

use super::client::{self, Received, get, post};
use super::responses::{FAMILIES, Family, delete};
use super::start;

/// `…/conversations{tail}` on `family`; a query in `tail` is kept (classic adds `api-version`).
pub fn conv_path(family: Family, tail: &str) -> String {
    let (tail, query) = tail.split_once('?').unwrap_or((tail, ""));
    let and = |sep: &str| {
        if query.is_empty() {
            String::new()
        } else {
            format!("{sep}{query}")
        }
    };
    match family {
        Family::OpenAi => format!("/v1/conversations{tail}{}", and("?")),
        Family::AzureV1 => format!("/openai/v1/conversations{tail}{}", and("?")),
        Family::AzureClassic => {
            format!(
                "/openai/conversations{tail}?api-version=2025-04-01-preview{}",
                and("&")
            )
        }
    }
}

/// The 404 of an unknown conversation on a conversations route.
pub fn conversation_not_found(id: &str) -> Value {
    json!({"error": {"message": format!("Conversation with id '{id}' not found."),
        "type": "invalid_request_error", "param": null, "code": null}})
}

/// Creates a conversation with `body` on `addr` (OpenAI path); returns its object.
pub async fn create(addr: SocketAddr, body: &Value) -> Value {
    let created = post(addr, "/v1/conversations", body, &[]).await;
    assert_eq!(created.status, 200, "{}", created.text());
    created.json()
}

pub fn id_of(object: &Value) -> String {
    object["id"].as_str().expect("id").to_owned()
}

fn texts(list: &Value) -> Vec<&str> {
    list["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|item| item["content"][0]["text"].as_str().expect("text"))
        .collect()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One family's whole lifecycle; returns how many requests it sent.
async fn lifecycle(addr: SocketAddr, family: Family) -> usize {
    let path = |tail: &str| conv_path(family, tail);
    let body = json!({"metadata": {"topic": "demo"}, "items": [
        {"role": "user", "content": "hello"},
        {"type": "message", "role": "assistant", "content": "hi there"}
    ]});
    let created = post(addr, &path(""), &body, &[]).await;
    assert_eq!(created.status, 200, "{family:?}: {}", created.text());
    assert_eq!(created.header("content-type"), Some("application/json"));
    let created = created.json();
    let id = id_of(&created);
    assert!(id.starts_with("conv_"), "{id}");
    let created_at = created["created_at"].as_u64().expect("created_at");
    assert!(created_at.abs_diff(unix_now()) < 60, "{created_at}");
    assert_eq!(
        created,
        json!({"id": id, "object": "conversation", "created_at": created_at,
            "metadata": {"topic": "demo"}})
    );
    let empty = post(addr, &path(""), &json!({}), &[]).await.json();
    assert_eq!(empty["metadata"], json!({}));
    assert_ne!(empty["id"], created["id"]);

    let got = get(addr, &path(&format!("/{id}"))).await;
    assert_eq!((got.status.as_u16(), got.json()), (200, created.clone()));
    let updated = post(
        addr,
        &path(&format!("/{id}")),
        &json!({"metadata": {"topic": "new"}}),
        &[],
    )
    .await;
    assert_eq!(updated.status, 200, "{}", updated.text());
    let mut expected = created.clone();
    expected["metadata"] = json!({"topic": "new"});
    assert_eq!(updated.json(), expected);
    assert_eq!(get(addr, &path(&format!("/{id}"))).await.json(), expected);

    let items = get(addr, &path(&format!("/{id}/items"))).await.json();
    assert_eq!(items["object"], "list");
    assert_eq!(texts(&items), ["hi there", "hello"], "newest first");
    let data = items["data"].as_array().expect("data");
    assert!(data.iter().all(
        |i| i["type"] == "message" && i["id"].as_str().is_some_and(|id| id.starts_with("msg_"))
    ));
    assert_eq!(data[0]["content"][0]["type"], "output_text");
    assert_eq!(data[1]["content"][0]["type"], "input_text");
    assert_eq!(
        (items["first_id"].clone(), items["last_id"].clone()),
        (data[0]["id"].clone(), data[1]["id"].clone())
    );
    assert_eq!(items["has_more"], false);

    let more = json!({"items": [
        {"role": "user", "content": "one"},
        {"role": "user", "content": "two"},
        {"role": "user", "content": "three", "id": "msg_mine"}
    ]});
    let added = post(addr, &path(&format!("/{id}/items")), &more, &[]).await;
    assert_eq!(added.status, 200, "{}", added.text());
    let added = added.json();
    assert_eq!(texts(&added), ["one", "two", "three"]);
    assert_eq!(added["first_id"], added["data"][0]["id"]);
    assert_eq!(added["last_id"], "msg_mine");
    assert_eq!(added["has_more"], false);

    let page = get(addr, &path(&format!("/{id}/items?order=asc&limit=2")))
        .await
        .json();
    assert_eq!(texts(&page), ["hello", "hi there"]);
    assert_eq!(page["has_more"], true);
    let after = page["last_id"].as_str().expect("last_id");
    let rest = get(addr, &path(&format!("/{id}/items?order=asc&after={after}")))
        .await
        .json();
    assert_eq!(texts(&rest), ["one", "two", "three"]);
    assert_eq!(rest["has_more"], false);
    let newest = get(addr, &path(&format!("/{id}/items?limit=1")))
        .await
        .json();
    assert_eq!(
        (texts(&newest), newest["has_more"].clone()),
        (vec!["three"], json!(true))
    );
    let bad = get(addr, &path(&format!("/{id}/items?order=sideways"))).await;
    assert_eq!(
        (bad.status.as_u16(), bad.json()["error"]["param"].clone()),
        (400, json!("order"))
    );

    let item_path = path(&format!("/{id}/items/msg_mine"));
    let item = get(addr, &item_path).await;
    assert_eq!(item.status, 200);
    assert_eq!(item.json(), added["data"][2]);
    let after_delete = delete(addr, &item_path).await;
    assert_eq!(
        (after_delete.status.as_u16(), after_delete.json()),
        (200, expected)
    );
    let gone = get(addr, &item_path).await;
    assert_eq!(gone.status, 404);
    assert_eq!(
        gone.json(),
        json!({"error": {"message": "Item with id 'msg_mine' not found.",
            "type": "invalid_request_error", "param": null, "code": null}})
    );
    let left = get(addr, &path(&format!("/{id}/items?order=asc")))
        .await
        .json();
    assert_eq!(texts(&left), ["hello", "hi there", "one", "two"]);

    let deleted = delete(addr, &path(&format!("/{id}"))).await;
    assert_eq!(deleted.status, 200);
    assert_eq!(
        deleted.json(),
        json!({"id": id, "object": "conversation.deleted", "deleted": true})
    );
    for (method, tail) in [
        (Method::GET, format!("/{id}")),
        (Method::DELETE, format!("/{id}")),
        (Method::GET, format!("/{id}/items")),
        (Method::GET, format!("/{id}/items/msg_x")),
    ] {
        let answer = client::send(addr, method.clone(), &path(&tail), &[], "")
            .await
            .expect("answer");
        assert_eq!(
            (answer.status.as_u16(), answer.json()),
            (404, conversation_not_found(&id)),
            "{method} {tail}"
        );
    }
    let add_to_gone = post(addr, &path(&format!("/{id}/items")), &more, &[]).await;
    assert_eq!(add_to_gone.json(), conversation_not_found(&id));
    let update_gone = post(
        addr,
        &path(&format!("/{id}")),
        &json!({"metadata": {}}),
        &[],
    )
    .await;
    assert_eq!(update_gone.status, 404);
    22
}

#[tokio::test]
async fn create_retrieve_update_items_and_delete_on_every_path_family() {
    let (sim, addr) = start(BackendConfig::new("ptu")).await;
    let mut sent = 0;
    for family in FAMILIES {
        sent += lifecycle(addr, family).await;
    }
    let unversioned = [
        post(addr, "/openai/conversations", &json!({}), &[]).await,
        get(addr, "/openai/conversations/conv_x/items").await,
    ];
    for refused in unversioned {
        assert_eq!(refused.status, 404);
        assert_eq!(
            refused.json()["error"]["code"],
            "404",
            "Azure's api-version refusal"
        );
        sent += 1;
    }
    let deployment = post(
        addr,
        "/openai/deployments/gpt-4o/conversations?api-version=2025-04-01-preview",
        &json!({}),
        &[],
    )
    .await;
    assert_eq!(
        deployment.status, 404,
        "conversations have no deployment path"
    );
    sent += 1;

    let ledger = sim.ledger();
    assert_eq!(ledger.entries.len(), sent, "every request has an entry");
    assert_eq!(ledger.totals.total_tokens, 0, "conversations bill nothing");
    let conversations = ledger
        .entries
        .iter()
        .filter(|e| e.path.contains("/conversations"));
    assert!(
        conversations
            .clone()
            .all(|e| e.prompt_tokens == 0 && e.completion_tokens == 0)
    );
    let (unknown, known) = ledger.entries.split_last().expect("entries");
    assert!(
        known
            .iter()
            .all(|e| e.operation == Some(Api::Model(ModelApi::Responses))),
        "conversations belong to the responses API"
    );
    assert_eq!(unknown.operation, None, "no route");
    let health = get(addr, "/_sim/health").await.json();
    assert_eq!(
        health["conversations"], 3,
        "one empty conversation per family is left"
    );
}

#[tokio::test]
async fn bodies_methods_auth_faults_and_latency() {
    let config = BackendConfig {
        api_key: Some("k".into()),
        ..BackendConfig::new("ptu")
    };
    let (sim, addr) = start(config).await;
    let key = [("api-key", "k")];
    let send = |method: Method, path: String, body: &'static str| async move {
        client::send(addr, method, &path, &[("api-key", "k")], body).await
    };
    let created = post(
        addr,
        "/v1/conversations",
        &json!({"items": [{"role": "user", "content": "x"}]}),
        &key,
    )
    .await
    .json();
    let id = id_of(&created);

    for (method, tail) in [
        (Method::GET, String::new()),
        (Method::DELETE, String::new()),
        (Method::PUT, format!("/{id}")),
        (Method::PATCH, format!("/{id}")),
        (Method::DELETE, format!("/{id}/items")),
        (Method::POST, format!("/{id}/items/msg_1")),
    ] {
        let answer = send(method.clone(), format!("/v1/conversations{tail}"), "")
            .await
            .expect("answer");
        assert_eq!(answer.status, 405, "{method} {tail}");
        assert_eq!(answer.json()["error"]["type"], "invalid_request_error");
    }
    let unknown = send(Method::GET, format!("/v1/conversations/{id}/steps"), "")
        .await
        .expect("answer");
    assert_eq!(unknown.status, 404);

    let bad = |path: String, body: &'static str| send(Method::POST, path, body);
    let not_json = bad("/v1/conversations".into(), "{nope")
        .await
        .expect("answer");
    assert_eq!(not_json.status, 400);
    for (path, body, param) in [
        (
            "/v1/conversations".to_owned(),
            r#"{"items": "hi"}"#,
            "items",
        ),
        (
            "/v1/conversations".to_owned(),
            r#"{"items": [1]}"#,
            "items[0]",
        ),
        (
            "/v1/conversations".to_owned(),
            r#"{"metadata": {"k": 1}}"#,
            "metadata.k",
        ),
        (format!("/v1/conversations/{id}"), "{}", "metadata"),
        (
            format!("/v1/conversations/{id}/items"),
            r#"{"items": []}"#,
            "items",
        ),
    ] {
        let answer = bad(path.clone(), body).await.expect("answer");
        assert_eq!(answer.status, 400, "{path} {body}: {}", answer.text());
        assert_eq!(answer.json()["error"]["param"], param, "{path} {body}");
        assert_eq!(answer.json()["error"]["type"], "invalid_request_error");
    }

    let anonymous = get(addr, &format!("/v1/conversations/{id}")).await;
    assert_eq!(
        (
            anonymous.status.as_u16(),
            anonymous.json()["error"]["code"].clone()
        ),
        (401, json!("invalid_api_key"))
    );
    let azure = post(
        addr,
        "/openai/v1/conversations",
        &json!({}),
        &[("api-key", "wrong")],
    )
    .await;
    assert_eq!(
        (azure.status.as_u16(), azure.json()["error"]["code"].clone()),
        (401, json!("401"))
    );
    let bearer = post(
        addr,
        "/v1/conversations",
        &json!({}),
        &[("authorization", "Bearer k")],
    )
    .await;
    assert_eq!(bearer.status, 200);

    let handle = sim.backend("ptu").expect("backend");
    let mut status = FaultSpec::new(FaultMode::Status);
    status.status = Some(503);
    status.count = Some(1);
    let mut close = FaultSpec::new(FaultMode::ConnectionClose);
    close.count = Some(1);
    handle.add_faults(&[status, close]).expect("valid faults");
    let unavailable = send(Method::POST, "/v1/conversations".into(), "{}")
        .await
        .expect("answer");
    assert_eq!(unavailable.status, 503);
    let dropped = send(Method::DELETE, format!("/v1/conversations/{id}"), "").await;
    assert!(dropped.is_err(), "connection closed without an answer");
    handle.set_timing(Timing {
        latency_ms: 150,
        ..Timing::default()
    });
    let started = Instant::now();
    let got = send(Method::GET, format!("/v1/conversations/{id}/items"), "")
        .await
        .expect("answer");
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "latency applies"
    );
    assert_eq!(
        got.status, 200,
        "faults used up, the conversation is still there"
    );
    assert_eq!(got.json()["data"].as_array().map(Vec::len), Some(1));

    let entries = sim.ledger().entries;
    let last: Vec<(u16, Option<&str>)> = entries[entries.len() - 3..]
        .iter()
        .map(|e| (e.status, e.fault.as_deref()))
        .collect();
    assert_eq!(
        last,
        [
            (503, Some("status")),
            (0, Some("connectionClose")),
            (200, None)
        ]
    );
    assert_eq!(entries.len(), 1 + 6 + 1 + 1 + 5 + 3 + 3);
    assert_eq!(sim.ledger().totals.total_tokens, 0);
}

/// The answer to `GET …/conversations/{id}/items?order=asc` on `addr`.
pub async fn items_asc(addr: SocketAddr, id: &str) -> Received {
    get(
        addr,
        &format!("/v1/conversations/{id}/items?order=asc&limit=100"),
    )
    .await
}
