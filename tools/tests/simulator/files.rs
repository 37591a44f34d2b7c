//! The files API over real HTTP: upload, list, retrieve, download and delete on every path
//! shape, files pinned to the backend that stored them, and the byte budget.

use std::net::SocketAddr;

use serde_json::json;
use spillway_tools::simulate::{Api, BackendConfig};

use super::client::{Part, Received, get, post_form};
use super::responses::{FAMILIES, Family, delete, start_many};

/// `…/{api}{tail}` on `family` (classic: top level, with `api-version`).
pub fn path(family: Family, api: &str, tail: &str) -> String {
    let (tail, query) = tail.split_once('?').unwrap_or((tail, ""));
    let (question, and) = match query.is_empty() {
        true => ("", ""),
        false => ("?", "&"),
    };
    match family {
        Family::OpenAi => format!("/v1/{api}{tail}{question}{query}"),
        Family::AzureV1 => format!("/openai/v1/{api}{tail}{question}{query}"),
        Family::AzureClassic => {
            format!("/openai/{api}{tail}?api-version=2025-04-01-preview{and}{query}")
        }
    }
}

pub async fn upload(
    addr: SocketAddr,
    family: Family,
    purpose: &str,
    name: &str,
    bytes: &[u8],
) -> Received {
    let parts = [
        Part::Field("purpose", purpose),
        Part::File("file", name, bytes),
    ];
    post_form(addr, &path(family, "files", ""), &parts, &[]).await
}

#[tokio::test]
async fn files_live_on_the_backend_that_stored_them() {
    let sim = start_many(&["a", "b"], |_| {}).await;
    let (a, b) = (sim.backends()[0].addr(), sim.backends()[1].addr());
    for family in FAMILIES {
        let content = format!("{{\"family\":\"{family:?}\"}}\n");
        let stored = upload(a, family, "assistants", "notes.jsonl", content.as_bytes()).await;
        assert_eq!(stored.status, 200, "{family:?}: {}", stored.text());
        let file = stored.json();
        let id = file["id"].as_str().expect("id").to_owned();
        assert!(id.starts_with("file-"));
        assert_eq!(file["object"], "file");
        assert_eq!(file["bytes"], content.len());
        assert_eq!(
            (file["filename"].as_str(), file["purpose"].as_str()),
            (Some("notes.jsonl"), Some("assistants"))
        );
        assert_eq!(file["status"], "processed");
        assert!(file["created_at"].as_u64().is_some());

        let one = |tail: &str| path(family, "files", &format!("/{id}{tail}"));
        assert_eq!(get(a, &one("")).await.json(), file, "{family:?}");
        let download = get(a, &one("/content")).await;
        assert_eq!(
            download.header("content-type"),
            Some("application/octet-stream")
        );
        assert_eq!(download.body, content.as_bytes());
        let listed = get(a, &path(family, "files", "")).await.json();
        assert_eq!(listed["object"], "list");
        assert_eq!(listed["data"][0]["id"], id.as_str(), "newest first");

        let elsewhere = get(b, &one("")).await;
        assert_eq!(elsewhere.status, 404, "{family:?}: pinned to its backend");
        assert_eq!(
            elsewhere.json()["error"]["message"],
            format!("No such File object: {id}")
        );
        assert_eq!(get(b, &one("/content")).await.status, 404);
        assert_eq!(delete(b, &one("")).await.status, 404);
        assert_eq!(
            get(b, &path(family, "files", "")).await.json()["data"],
            json!([])
        );

        let deleted = delete(a, &one("")).await.json();
        assert_eq!(
            deleted,
            json!({"id": id, "object": "file", "deleted": true})
        );
        assert_eq!(get(a, &one("")).await.status, 404);
    }
    let kept = upload(a, Family::OpenAi, "batch", "x.jsonl", b"{}")
        .await
        .json();
    let by_purpose = get(a, "/v1/files?purpose=assistants").await.json();
    assert_eq!(by_purpose["data"], json!([]));
    assert_eq!(
        get(a, "/v1/files?purpose=batch").await.json()["data"][0]["id"],
        kept["id"]
    );

    let ledger = sim.ledger();
    assert!(
        ledger
            .entries
            .iter()
            .all(|e| e.operation == Some(Api::Files))
    );
    assert_eq!(
        ledger.totals.prompt_tokens + ledger.totals.completion_tokens,
        0
    );
    let uploads = ledger
        .entries
        .iter()
        .filter(|e| e.upload_bytes.is_some())
        .count();
    assert_eq!(uploads, 4);
}

#[tokio::test]
async fn uploads_past_the_byte_budget_are_refused() {
    let config = BackendConfig {
        files_max_bytes: 1000,
        ..BackendConfig::new("small")
    };
    let (_sim, addr) = super::start(config).await;
    assert_eq!(
        upload(addr, Family::OpenAi, "batch", "a", &[b'x'; 800])
            .await
            .status,
        200
    );
    let full = upload(addr, Family::OpenAi, "batch", "b", &[b'x'; 300]).await;
    assert_eq!(full.status, 413, "{}", full.text());
    assert!(
        full.json()["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("filesMaxBytes"))
    );
    let huge = upload(addr, Family::OpenAi, "batch", "c", &vec![b'x'; 200_000]).await;
    assert_eq!(huge.status, 413, "refused by its content-length");
    let health = get(addr, "/_sim/health").await.json();
    assert_eq!(
        (health["files"].as_u64(), health["fileBytes"].as_u64()),
        (Some(1), Some(800))
    );

    let no_purpose = post_form(addr, "/v1/files", &[Part::File("file", "a", b"x")], &[]).await;
    assert_eq!(no_purpose.json()["error"]["param"], "purpose");
    let bad_purpose = upload(addr, Family::OpenAi, "memes", "a", b"x").await;
    assert_eq!(
        (
            bad_purpose.status.as_u16(),
            bad_purpose.json()["error"]["param"].clone()
        ),
        (400, json!("purpose"))
    );
    let no_file = post_form(addr, "/v1/files", &[Part::Field("purpose", "batch")], &[]).await;
    assert_eq!(no_file.json()["error"]["param"], "file");
}
