use serde_json::json;

use super::request::{Quality, output_tokens_per_image};
use super::*;
use crate::simulate::upload::form::{FilePart, Form};

fn generation(body: Value) -> ImageAsk {
    ImageAsk::from_json(&body, None).expect("valid")
}

#[test]
fn output_tokens_follow_the_documented_table() {
    let cases = [
        (Quality::Low, (1024, 1024), 272),
        (Quality::Medium, (1024, 1024), 1056),
        (Quality::High, (1024, 1024), 4160),
        (Quality::Low, (1024, 1536), 408),
        (Quality::Medium, (1536, 1024), 1568),
        (Quality::High, (1024, 1536), 6240),
        (Quality::Medium, (512, 512), 264),
        (Quality::High, (2048, 2048), 16_640),
    ];
    for (quality, size, tokens) in cases {
        assert_eq!(
            output_tokens_per_image(quality, size),
            tokens,
            "{quality:?} {size:?}"
        );
    }
}

#[test]
fn reads_a_generation_with_defaults_and_bills_gpt_image_models() {
    let ask = generation(json!({"model": "gpt-image-1", "prompt": "a fox", "n": 2}));
    assert!(ask.gpt_image());
    assert_eq!(
        (ask.n, ask.size, ask.quality),
        (2, (1024, 1024), Quality::Medium)
    );
    assert_eq!(ask.output_tokens(), 2 * 1056);
    assert_eq!(ask.image_tokens(), 0);
    let high = generation(json!({"model": "gpt-image-1", "prompt": "a fox",
        "quality": "high", "size": "1536x1024", "output_format": "webp", "response_format": "url"}));
    assert_eq!(high.output_tokens(), 6208);
    assert!(!high.url, "GPT image models always answer base64");

    let dalle = generation(json!({"prompt": "a fox", "response_format": "url"}));
    assert_eq!(dalle.model, "dall-e-2", "OpenAI's default model");
    assert!(dalle.url && !dalle.gpt_image());
    assert_eq!(dalle.output_tokens(), 0);
    let deployed =
        ImageAsk::from_json(&json!({"prompt": "x"}), Some("gpt-image-1-mini")).expect("valid");
    assert_eq!(deployed.model, "gpt-image-1-mini");
}

#[test]
fn refuses_generations_out_of_range() {
    for (body, param) in [
        (json!({"model": "gpt-image-1"}), "prompt"),
        (json!({"prompt": "x", "n": 0}), "n"),
        (json!({"prompt": "x", "n": 11}), "n"),
        (json!({"prompt": "x", "n": "two"}), "n"),
        (json!({"prompt": "x", "size": "big"}), "size"),
        (json!({"prompt": "x", "size": "0x10"}), "size"),
        (json!({"prompt": "x", "quality": "ultra"}), "quality"),
        (
            json!({"prompt": "x", "response_format": "png"}),
            "response_format",
        ),
        (
            json!({"prompt": "x", "output_format": "gif"}),
            "output_format",
        ),
        (json!({"prompt": "x", "stream": true}), "stream"),
    ] {
        let err = ImageAsk::from_json(&body, None).expect_err("invalid");
        assert_eq!(err.param, param, "{body}");
    }
}

fn form(fields: &[(&str, &str)], images: &[(&str, u64)]) -> Form {
    Form {
        fields: fields
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect(),
        files: images
            .iter()
            .map(|(name, bytes)| FilePart {
                name: (*name).to_owned(),
                filename: Some("i.png".into()),
                bytes: *bytes,
                content: None,
            })
            .collect(),
    }
}

#[test]
fn an_edit_bills_its_images_by_their_bytes_but_not_the_mask() {
    let fields = [
        ("model", "gpt-image-1"),
        ("prompt", "add a hat"),
        ("quality", "low"),
    ];
    let edit = form(
        &fields,
        &[("image[]", 2048), ("image[]", 1), ("mask", 99_999)],
    );
    let ask = ImageAsk::from_form(Api::ImagesEdits, &edit, None).expect("valid");
    assert_eq!(ask.images, [2048, 1]);
    assert_eq!(ask.mask, Some(99_999));
    assert_eq!(ask.image_tokens(), (65 + 2) + (65 + 1));
    assert_eq!(ask.output_tokens(), 272);

    let none = form(&fields, &[("mask", 10)]);
    let err = ImageAsk::from_form(Api::ImagesEdits, &none, None).expect_err("no image");
    assert_eq!(err.param, "image");
    let no_prompt = form(&[("model", "gpt-image-1")], &[("image", 10)]);
    let err = ImageAsk::from_form(Api::ImagesEdits, &no_prompt, None).expect_err("no prompt");
    assert_eq!(err.param, "prompt");

    let variation = form(&[("n", "3")], &[("image", 10)]);
    let ask = ImageAsk::from_form(Api::ImagesVariations, &variation, None).expect("valid");
    assert_eq!((ask.model.as_str(), ask.n), ("dall-e-2", 3));
    let two = form(&[], &[("image", 10), ("image", 11)]);
    assert!(ImageAsk::from_form(Api::ImagesVariations, &two, None).is_err());
}

#[test]
fn answers_are_deterministic_pngs_in_the_shape_asked() {
    let ask =
        generation(json!({"model": "gpt-image-1", "prompt": "a fox", "n": 3, "quality": "high"}));
    let first = answer(&ask, 7);
    assert_eq!(first, answer(&ask, 7), "same request, same answer");
    assert_eq!(first["created"], 7);
    let data = first["data"].as_array().expect("data");
    assert_eq!(data.len(), 3);
    assert_ne!(data[0], data[1], "each image differs");
    assert!(
        data[0]["b64_json"]
            .as_str()
            .is_some_and(|b| b.starts_with("iVBORw0KGgo"))
    );
    assert_eq!(first["quality"], "high");
    assert_eq!(first["size"], "1024x1024");
    assert_eq!(first["output_format"], "png");

    let dalle3 =
        generation(json!({"model": "dall-e-3", "prompt": "a fox", "response_format": "url"}));
    let body = answer(&dalle3, 1);
    let url = body["data"][0]["url"].as_str().expect("url");
    assert!(url.starts_with("data:image/png;base64,iVBOR"));
    assert_eq!(body["data"][0]["revised_prompt"], "a fox");
    assert!(body.get("quality").is_none() && body.get("usage").is_none());
}
