//! The stateful responses API over real HTTP: create, retrieve, input items, delete, chains
//! by `previous_response_id` on one backend only, input-token counts, errors, methods, auth
//! and faults on the id routes, on all three path families.

use std::net::SocketAddr;

use http::Method;
use serde_json::{Value, json};
use spillway_tools::simulate::{
    self, BackendConfig, FaultMode, FaultSpec, LedgerQuery, SimConfig, SimHandle,
};

use super::client::{self, Received, get, post};
use super::start;

/// The three surfaces a responses route exists on.
#[derive(Clone, Copy, Debug)]
pub enum Family {
    OpenAi,
    AzureV1,
    AzureClassic,
}

pub const FAMILIES: [Family; 3] = [Family::OpenAi, Family::AzureV1, Family::AzureClassic];

/// `…/responses{tail}` on `family`; a query in `tail` is kept (classic adds `api-version`).
pub fn path(family: Family, tail: &str) -> String {
    let (tail, query) = tail.split_once('?').unwrap_or((tail, ""));
    match family {
        Family::OpenAi => format!("/v1/responses{tail}{}", question(query)),
        Family::AzureV1 => format!("/openai/v1/responses{tail}{}", question(query)),
        Family::AzureClassic => {
            let and = if query.is_empty() { "" } else { "&" };
            format!("/openai/responses{tail}?api-version=2025-04-01-preview{and}{query}")
        }
    }
}

fn question(query: &str) -> String {
    if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    }
}

pub async fn delete(addr: SocketAddr, path: &str) -> Received {
    client::send(addr, Method::DELETE, path, &[], "")
        .await
        .unwrap_or_else(|e| panic!("DELETE {path} failed: {e}"))
}

/// Starts backends `names` with `config` applied to each.
pub async fn start_many(names: &[&str], config: impl Fn(&mut BackendConfig)) -> SimHandle {
    let backends = names
        .iter()
        .map(|name| {
            let mut backend = BackendConfig::new(*name);
            config(&mut backend);
            backend
        })
        .collect();
    simulate::start(SimConfig { backends })
        .await
        .expect("simulator starts")
}

pub fn addr(sim: &SimHandle, name: &str) -> SocketAddr {
    sim.backend(name).expect("backend").addr()
}

pub fn not_found(id: &str) -> Value {
    json!({"error": {"message": format!("Response with id '{id}' not found."),
        "type": "invalid_request_error", "param": null, "code": null}})
}

fn usage(response: &Value) -> (u64, u64) {
    let tokens = |name: &str| response["usage"][name].as_u64().expect("usage");
    (tokens("input_tokens"), tokens("output_tokens"))
}

#[tokio::test]
async fn create_retrieve_list_delete_on_every_path_family() {
    let (sim, addr) = start(BackendConfig::new("ptu")).await;
    for family in FAMILIES {
        let body = json!({"model": "gpt-4o", "instructions": "Be brief.", "input": [
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": "hi"},
            {"role": "user", "content": "how are you?"}
        ], "max_output_tokens": 5});
        let created = post(addr, &path(family, ""), &body, &[]).await;
        assert_eq!(created.status, 200, "{family:?}: {}", created.text());
        let created = created.json();
        let id = created["id"].as_str().expect("id").to_owned();
        assert!(id.starts_with("resp_"));
        assert_eq!(created["status"], "completed");
        assert_eq!(
            (created["store"].clone(), created["background"].clone()),
            (json!(true), json!(false))
        );
        assert_eq!(created["instructions"], "Be brief.");
        assert_eq!(created["usage"]["input_tokens_details"]["cached_tokens"], 0);

        let got = get(addr, &path(family, &format!("/{id}"))).await;
        assert_eq!(got.status, 200, "{family:?}");
        assert_eq!(
            got.json(),
            created,
            "retrieve returns the response as created"
        );

        let items = get(addr, &path(family, &format!("/{id}/input_items")))
            .await
            .json();
        assert_eq!(items["object"], "list");
        let data = items["data"].as_array().expect("data");
        assert_eq!(data.len(), 3);
        assert_eq!(
            data[0]["content"][0]["text"], "how are you?",
            "newest first"
        );
        assert_eq!(data[1]["content"][0]["type"], "output_text");
        assert!(
            data.iter().all(|i| i["type"] == "message"
                && i["id"].as_str().is_some_and(|id| id.starts_with("msg_")))
        );
        assert_eq!(items["first_id"], data[0]["id"]);
        assert_eq!(items["last_id"], data[2]["id"]);
        assert_eq!(items["has_more"], false);
        let asc = get(
            addr,
            &path(family, &format!("/{id}/input_items?order=asc&limit=2")),
        )
        .await
        .json();
        assert_eq!(asc["data"][0]["content"][0]["text"], "hello");
        assert_eq!(asc["data"].as_array().map(Vec::len), Some(2));
        assert_eq!(asc["has_more"], true);
        let after = asc["last_id"].as_str().expect("last id");
        let rest = get(
            addr,
            &path(
                family,
                &format!("/{id}/input_items?order=asc&after={after}"),
            ),
        )
        .await
        .json();
        assert_eq!(rest["data"][0]["content"][0]["text"], "how are you?");
        let bad = get(addr, &path(family, &format!("/{id}/input_items?limit=500"))).await;
        assert_eq!(
            (bad.status.as_u16(), bad.json()["error"]["param"].clone()),
            (400, json!("limit"))
        );

        let deleted = delete(addr, &path(family, &format!("/{id}"))).await;
        assert_eq!(deleted.status, 200);
        assert_eq!(
            deleted.json(),
            json!({"id": id, "object": "response", "deleted": true})
        );
        let gone = get(addr, &path(family, &format!("/{id}"))).await;
        assert_eq!(gone.status, 404);
        assert_eq!(gone.json(), not_found(&id));
        assert_eq!(
            delete(addr, &path(family, &format!("/{id}"))).await.status,
            404
        );
        let items = get(addr, &path(family, &format!("/{id}/input_items"))).await;
        assert_eq!(items.json(), not_found(&id));
    }
    let unversioned = get(addr, "/openai/responses/resp_x").await;
    assert_eq!(unversioned.status, 404);
    assert_eq!(
        unversioned.json()["error"]["code"],
        "404",
        "Azure's api-version refusal"
    );

    let ledger = sim.ledger();
    let creates: Vec<_> = ledger
        .entries
        .iter()
        .filter(|e| e.prompt_tokens > 0)
        .collect();
    assert_eq!(creates.len(), 3, "only the creates bill");
    assert_eq!(
        ledger.entries.len(),
        3 * 10 + 1,
        "every request has an entry"
    );
    let billed: u64 = creates
        .iter()
        .map(|e| e.prompt_tokens + e.completion_tokens)
        .sum();
    assert_eq!(ledger.totals.total_tokens, billed);
    assert!(ledger.entries.iter().all(|e| e.operation.is_some()));
}

#[tokio::test]
async fn previous_response_id_chains_on_the_backend_that_stored_it() {
    let sim = start_many(&["east", "west"], |_| {}).await;
    let (east, west) = (addr(&sim, "east"), addr(&sim, "west"));
    let first = json!({"model": "gpt-4o", "input": "Name a colour.", "max_output_tokens": 6});
    let first = post(east, "/v1/responses", &first, &[]).await.json();
    let id = first["id"].as_str().expect("id");
    let (first_in, first_out) = usage(&first);

    let own = json!({"model": "gpt-4o", "input": "And another?", "max_output_tokens": 4});
    let alone = post(east, "/v1/responses", &own, &[]).await.json();
    let (own_in, _) = usage(&alone);
    let mut chained = own.clone();
    chained["previous_response_id"] = json!(id);
    let second = post(east, "/openai/v1/responses", &chained, &[]).await;
    assert_eq!(second.status, 200, "{}", second.text());
    let second = second.json();
    assert_eq!(second["previous_response_id"], id);
    assert_eq!(
        usage(&second),
        (own_in + first_in + first_out, 4),
        "the chain is billed"
    );
    let east_ledger = sim.ledger_query(&LedgerQuery {
        backend: Some("east".into()),
        since: None,
    });
    let entry = east_ledger.entries.last().expect("entry");
    assert_eq!(entry.prompt_tokens, own_in + first_in + first_out);
    // Its input items are its own only.
    let items = get(
        east,
        &format!(
            "/v1/responses/{}/input_items",
            second["id"].as_str().expect("id")
        ),
    )
    .await;
    assert_eq!(items.json()["data"].as_array().map(Vec::len), Some(1));

    let elsewhere = post(west, "/v1/responses", &chained, &[]).await;
    assert_eq!(elsewhere.status, 404);
    assert_eq!(
        elsewhere.json(),
        json!({"error": {"message": format!("Previous response with id '{id}' not found."),
            "type": "invalid_request_error", "param": "previous_response_id",
            "code": "previous_response_not_found"}})
    );
    let got = get(west, &format!("/v1/responses/{id}")).await;
    assert_eq!(
        got.json(),
        not_found(id),
        "state is not shared between backends"
    );
    let west_ledger = sim.ledger_query(&LedgerQuery {
        backend: Some("west".into()),
        since: None,
    });
    assert_eq!(west_ledger.totals.total_tokens, 0);

    let unstored = json!({"model": "gpt-4o", "input": "x", "store": false});
    let unstored = post(east, "/v1/responses", &unstored, &[]).await.json();
    assert_eq!(unstored["store"], false);
    let unstored_id = unstored["id"].as_str().expect("id");
    assert_eq!(
        get(east, &format!("/v1/responses/{unstored_id}"))
            .await
            .status,
        404
    );
    let mut on_unstored = own.clone();
    on_unstored["previous_response_id"] = json!(unstored_id);
    assert_eq!(
        post(east, "/v1/responses", &on_unstored, &[]).await.status,
        404
    );
}

#[tokio::test]
async fn input_tokens_counts_as_create_bills_and_bills_nothing() {
    let (sim, addr) = start(BackendConfig::new("ptu")).await;
    let body = json!({"model": "gpt-4o", "instructions": "Answer in French.",
        "input": [{"role": "user", "content": "What time is it?"}]});
    let created = post(addr, "/v1/responses", &body, &[]).await.json();
    for family in FAMILIES {
        let counted = post(addr, &path(family, "/input_tokens"), &body, &[]).await;
        assert_eq!(counted.status, 200, "{family:?}: {}", counted.text());
        assert_eq!(
            counted.json(),
            json!({"object": "response.input_tokens", "input_tokens": created["usage"]["input_tokens"]})
        );
    }
    let mut chained = body.clone();
    chained["previous_response_id"] = created["id"].clone();
    let counted = post(addr, "/v1/responses/input_tokens", &chained, &[])
        .await
        .json();
    let (input, output) = usage(&created);
    assert_eq!(counted["input_tokens"], 2 * input + output);
    chained["previous_response_id"] = json!("resp_unknown");
    let missing = post(addr, "/v1/responses/input_tokens", &chained, &[]).await;
    assert_eq!(
        missing.json()["error"]["code"],
        "previous_response_not_found"
    );
    let ledger = sim.ledger();
    assert_eq!(ledger.entries.len(), 6);
    assert_eq!(ledger.totals.prompt_tokens, input, "counting bills nothing");
}

#[tokio::test]
async fn id_routes_check_methods_auth_and_take_faults() {
    let config = BackendConfig {
        api_key: Some("k".into()),
        ..BackendConfig::new("ptu")
    };
    let (sim, addr) = start(config).await;
    let key = [("api-key", "k")];
    let body = json!({"model": "gpt-4o", "input": "hi"});
    let id = post(addr, "/v1/responses", &body, &key).await.json()["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let send = |method: Method, path: String| async move {
        client::send(addr, method, &path, &[("api-key", "k")], "").await
    };
    for (method, tail) in [
        (Method::POST, format!("/{id}")),
        (Method::PUT, format!("/{id}")),
        (Method::POST, format!("/{id}/input_items")),
        (Method::GET, format!("/{id}/cancel")),
        (Method::GET, "/input_tokens".to_owned()),
        (Method::GET, String::new()),
    ] {
        let answer = send(method.clone(), format!("/v1/responses{tail}"))
            .await
            .expect("answer");
        assert_eq!(answer.status, 405, "{method} {tail}");
        assert_eq!(answer.json()["error"]["type"], "invalid_request_error");
    }
    let unknown = send(Method::GET, format!("/v1/responses/{id}/steps"))
        .await
        .expect("answer");
    assert_eq!(unknown.status, 404);
    let anonymous = get(addr, &format!("/v1/responses/{id}")).await;
    assert_eq!(anonymous.status, 401);
    let azure = get(addr, &format!("/openai/v1/responses/{id}")).await;
    assert_eq!(
        (azure.status.as_u16(), azure.json()["error"]["code"].clone()),
        (401, json!("401"))
    );

    let handle = sim.backend("ptu").expect("backend");
    let mut status = FaultSpec::new(FaultMode::Status);
    status.status = Some(503);
    status.count = Some(1);
    let mut close = FaultSpec::new(FaultMode::ConnectionClose);
    close.count = Some(1);
    handle.add_faults(&[status, close]).expect("valid faults");
    let unavailable = send(Method::GET, format!("/v1/responses/{id}"))
        .await
        .expect("answer");
    assert_eq!(unavailable.status, 503);
    let dropped = send(Method::DELETE, format!("/v1/responses/{id}")).await;
    assert!(dropped.is_err(), "connection closed without an answer");
    let got = send(Method::GET, format!("/v1/responses/{id}"))
        .await
        .expect("answer");
    assert_eq!(
        got.status, 200,
        "faults used up, the response is still stored"
    );

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
    assert!(
        entries[1..]
            .iter()
            .all(|e| e.prompt_tokens == 0 && e.completion_tokens == 0)
    );
}
