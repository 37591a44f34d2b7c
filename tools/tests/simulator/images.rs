//! The images API over real HTTP: generations (JSON) and edits and variations (multipart,
//! malformed forms refused) on every path shape, GPT image usage by the documented table,
//! DALL·E answers without usage, determinism and the ledger's image counts.

use base64::Engine as _;
use serde_json::{Value, json};
use spillway_sidecar::usage::tokenizer::count_text;
use spillway_tools::simulate::{Api, BackendConfig};

use super::client::{Part, multipart, post, post_form, post_raw_form};
use super::start;

const CLASSIC_VERSION: &str = "api-version=2025-04-01-preview";

/// `images/{op}` on OpenAI, Azure v1 and Azure classic (deployment `deployment`).
fn shapes(op: &str, deployment: &str) -> [String; 3] {
    [
        format!("/v1/images/{op}"),
        format!("/openai/v1/images/{op}"),
        format!("/openai/deployments/{deployment}/images/{op}?{CLASSIC_VERSION}"),
    ]
}

fn png(b64: &Value) -> Vec<u8> {
    let text = b64.as_str().expect("base64 string");
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("valid base64")
}

#[tokio::test]
async fn generations_on_every_path_shape_bill_gpt_image_tokens() {
    let (sim, addr) = start(BackendConfig::new("img")).await;
    let prompt = "a lighthouse at dusk";
    let text_tokens = count_text("gpt-image-1", prompt);
    let mut answers = Vec::new();
    for path in shapes("generations", "gpt-image-1") {
        let mut body = json!({"prompt": prompt, "n": 2, "quality": "low", "size": "1024x1536"});
        if !path.contains("deployments") {
            body["model"] = json!("gpt-image-1");
        }
        let got = post(addr, &path, &body, &[]).await;
        assert_eq!(got.status, 200, "{path}: {}", got.text());
        let json = got.json();
        let data = json["data"].as_array().expect("data");
        assert_eq!(data.len(), 2, "{path}");
        for image in data {
            assert!(png(&image["b64_json"]).starts_with(b"\x89PNG\r\n\x1a\n"));
        }
        assert_eq!(json["size"], "1024x1536");
        assert_eq!(json["quality"], "low");
        let usage = &json["usage"];
        assert_eq!(usage["output_tokens"], 2 * 408, "{path}");
        assert_eq!(usage["input_tokens"], text_tokens);
        assert_eq!(usage["input_tokens_details"]["text_tokens"], text_tokens);
        assert_eq!(usage["input_tokens_details"]["image_tokens"], 0);
        assert_eq!(usage["total_tokens"], text_tokens + 816);
        answers.push(json);
    }
    assert_eq!(
        answers[0]["data"], answers[1]["data"],
        "same request, same images"
    );

    let dalle = json!({"model": "dall-e-3", "prompt": prompt, "response_format": "url"});
    let got = post(addr, "/v1/images/generations", &dalle, &[])
        .await
        .json();
    assert!(
        got["data"][0]["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("data:image/png;base64,"))
    );
    assert_eq!(got["data"][0]["revised_prompt"], prompt);
    assert!(got.get("usage").is_none(), "DALL·E reports no usage");

    let ledger = sim.ledger();
    assert_eq!(ledger.entries.len(), 4);
    for entry in &ledger.entries[..3] {
        assert_eq!(entry.operation, Some(Api::ImagesGenerations));
        assert_eq!(entry.model.as_deref(), Some("gpt-image-1"));
        assert_eq!((entry.status, entry.images), (200, 2));
        assert_eq!(
            (entry.prompt_tokens, entry.image_input_tokens),
            (text_tokens, 0)
        );
        assert_eq!(
            (entry.completion_tokens, entry.image_output_tokens),
            (816, 816)
        );
        assert_eq!(entry.upload_bytes, None, "a JSON body is no upload");
    }
    let dalle_entry = &ledger.entries[3];
    assert_eq!(
        (
            dalle_entry.images,
            dalle_entry.prompt_tokens,
            dalle_entry.completion_tokens
        ),
        (1, 0, 0)
    );
    assert_eq!(ledger.totals.images, 7);
    assert_eq!(ledger.totals.image_output_tokens, 3 * 816);

    let bad = post(
        addr,
        "/v1/images/generations",
        &json!({"model": "gpt-image-1", "n": 2}),
        &[],
    )
    .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["error"]["param"], "prompt");
    let classic_without_version = "/openai/deployments/gpt-image-1/images/generations";
    assert_eq!(
        post(addr, classic_without_version, &json!({"prompt": "x"}), &[])
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn edits_and_variations_read_their_images_from_multipart_forms() {
    let (sim, addr) = start(BackendConfig::new("img")).await;
    let (big, small, mask) = (vec![1_u8; 3000], vec![2_u8; 500], vec![3_u8; 70_000]);
    let prompt = "add a red hat";
    let parts = |model: Option<&'static str>| {
        let mut parts = vec![
            Part::File("image[]", "a.png", &big),
            Part::File("image[]", "b.png", &small),
            Part::File("mask", "mask.png", &mask),
            Part::Field("prompt", prompt),
        ];
        parts.extend(model.map(|m| Part::Field("model", m)));
        parts
    };
    let image_tokens = (65 + 3) + (65 + 1);
    let text_tokens = count_text("gpt-image-1", prompt);
    for path in shapes("edits", "gpt-image-1") {
        let model = (!path.contains("deployments")).then_some("gpt-image-1");
        let got = post_form(addr, &path, &parts(model), &[]).await;
        assert_eq!(got.status, 200, "{path}: {}", got.text());
        let usage = &got.json()["usage"];
        assert_eq!(
            usage["input_tokens_details"]["image_tokens"], image_tokens,
            "{path}"
        );
        assert_eq!(usage["input_tokens"], text_tokens + image_tokens);
        assert_eq!(usage["output_tokens"], 1056, "auto quality is medium");
    }
    let entry = &sim.ledger().entries[0];
    assert_eq!(entry.operation, Some(Api::ImagesEdits));
    assert_eq!(entry.image_input_tokens, image_tokens);
    assert_eq!(entry.prompt_tokens, text_tokens + image_tokens);
    assert_eq!(
        entry.upload_bytes,
        Some(multipart(&parts(Some("gpt-image-1"))).len() as u64)
    );
    assert!(entry.first_byte_ms.is_some() && entry.last_byte_ms >= entry.first_byte_ms);

    let variation = [Part::File("image", "a.png", &small), Part::Field("n", "2")];
    for path in shapes("variations", "dall-e-2") {
        let got = post_form(addr, &path, &variation, &[]).await;
        assert_eq!(got.status, 200, "{path}: {}", got.text());
        let json = got.json();
        assert_eq!(json["data"].as_array().map(Vec::len), Some(2));
        assert!(json.get("usage").is_none());
    }

    let mut cut = multipart(&parts(Some("gpt-image-1")));
    cut.truncate(cut.len() / 2);
    let malformed = post_raw_form(addr, "/v1/images/edits", cut, &[]).await;
    assert_eq!(malformed.status, 400, "{}", malformed.text());
    let error = &malformed.json()["error"];
    assert_eq!(error["type"], "invalid_request_error");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("multipart")),
        "{error}"
    );
    let not_a_form = post(addr, "/v1/images/edits", &json!({"prompt": "x"}), &[]).await;
    assert_eq!(not_a_form.status, 400);
    assert!(
        not_a_form.json()["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("multipart/form-data"))
    );
    let no_image = post_form(addr, "/v1/images/edits", &[Part::Field("prompt", "x")], &[]).await;
    assert_eq!(
        (
            no_image.status.as_u16(),
            no_image.json()["error"]["param"].clone()
        ),
        (400, json!("image"))
    );
    let refused = sim
        .ledger()
        .entries
        .iter()
        .filter(|e| e.status == 400)
        .count();
    assert_eq!(refused, 3, "refusals are recorded too");
}
