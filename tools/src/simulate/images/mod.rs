//! The images API: `POST images/generations` (JSON), `images/edits` and `images/variations`
//! (multipart, read streaming by [`super::upload`]). Every image is a small deterministic PNG
//! ([`png`]); a GPT image model (`gpt-image…`) answers base64 with `usage`, a DALL·E model
//! base64 or, with `response_format: url`, a `data:` URL, and no usage.
//!
//! Answer: `{"created","data":[{"b64_json"} | {"url"} (+"revised_prompt" for dall-e-3)
//! …n]}`, and for GPT image models also `"background":"opaque","output_format","quality",
//! "size"` and `"usage":{"input_tokens","input_tokens_details":{"text_tokens","image_tokens"},
//! "output_tokens","output_tokens_details":{"text_tokens":0,"image_tokens"},"total_tokens"}`
//! (see [`request`] for the counts).
//!
//! Input: the route, the request, the backend. Output: the answer after the body's checks
//! (400), the fault, the rate window (the call costs its billed tokens) and the latency; the
//! ledger entry bills prompt tokens (`imageInputTokens` of them), completion tokens (all
//! `imageOutputTokens`) and `images: n`, with the upload's bytes and timing for a form.

use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::backend::Backend;
use super::body::SimBody;
use super::exchange::{Exchange, Faulted};
use super::incoming;
use super::reply::Reply;
use super::route::{Api, Route};
use super::text;
use super::upload::{self, FormRules};
use spillway_sidecar::usage::tokenizer;

mod png;
mod request;

pub use request::ImageAsk;

/// Serves an images request.
///
/// # Errors
/// An invalid body (400) or form (400, 413), a status fault, or the rate limit (429).
pub async fn serve(
    backend: &Arc<Backend>,
    exchange: &mut Exchange,
    route: &Route,
    request: Request<Incoming>,
) -> Result<Option<Response<SimBody>>, Reply> {
    let deployment = route.deployment.as_deref();
    let ask = if route.api == Api::ImagesGenerations {
        let (_, json) = incoming::read_json(request).await?;
        ImageAsk::from_json(&json, deployment)
    } else {
        let rules = FormRules {
            file_fields: &request::IMAGE_FIELDS,
            keep_up_to: None,
        };
        let form = upload::read(backend, exchange, request, rules).await?;
        ImageAsk::from_form(route.api, &form, deployment)
    }
    .map_err(|invalid| Reply::bad_request(&invalid.message, Some(invalid.param)))?;
    exchange.entry.model = Some(ask.model.clone());
    let fault = match exchange
        .fault(backend, route.flavour, route.api, false)
        .await?
    {
        Faulted::Drop => return Ok(None),
        Faulted::Serve(fault) => fault,
    };
    let text_tokens = match ask.gpt_image() {
        true => tokenizer::count_text(&ask.model, &ask.prompt),
        false => 0,
    };
    let (image_tokens, output_tokens) = (ask.image_tokens(), ask.output_tokens());
    let input_tokens = text_tokens + image_tokens;
    let api_version = route.api_version.as_deref();
    exchange.admit(
        backend,
        route.api,
        input_tokens + output_tokens,
        api_version,
    )?;
    backend.wait_latency().await;
    let mut answer = answer(&ask, backend.unix_seconds());
    if ask.gpt_image() {
        answer["usage"] = json!({
            "input_tokens": input_tokens,
            "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": image_tokens},
            "output_tokens": output_tokens,
            "output_tokens_details": {"text_tokens": 0, "image_tokens": output_tokens},
            "total_tokens": input_tokens + output_tokens
        });
    }
    let entry = &mut exchange.entry;
    entry.prompt_tokens = input_tokens;
    entry.image_input_tokens = image_tokens;
    entry.completion_tokens = output_tokens;
    entry.image_output_tokens = output_tokens;
    entry.images = ask.n;
    Ok(Some(exchange.json_answer(backend, &answer, fault.as_ref())))
}

/// The answer to `ask` at `created`, without usage.
pub fn answer(ask: &ImageAsk, created: u64) -> Value {
    let data: Vec<Value> = (0..ask.n)
        .map(|index| {
            let seed = format!(
                "{}\n{}\n{}x{}\n{:?}\n{index}",
                ask.model, ask.prompt, ask.size.0, ask.size.1, ask.images
            );
            let encoded = text::base64(&png::pixel(seed.as_bytes()));
            let mut image = if ask.url {
                json!({ "url": format!("data:image/png;base64,{encoded}") })
            } else {
                json!({ "b64_json": encoded })
            };
            if ask.model.to_ascii_lowercase().starts_with("dall-e-3") {
                image["revised_prompt"] = json!(ask.prompt);
            }
            image
        })
        .collect();
    let mut answer = json!({ "created": created, "data": data });
    if ask.gpt_image() {
        answer["background"] = json!("opaque");
        answer["output_format"] = json!(ask.output_format);
        answer["quality"] = json!(ask.quality.as_str());
        answer["size"] = json!(format!("{}x{}", ask.size.0, ask.size.1));
    }
    answer
}

#[cfg(test)]
mod tests;
