//! `GET models` and `GET models/{model}` on every path family (`/v1/models`,
//! `/openai/v1/models`, `/openai/models?api-version=…`), answered by the gateway itself: the
//! models and deployments of the pools the calling app may use (the AIGateway's
//! `modelAccess`), in the list shape the official SDKs parse. A model the app may not use is
//! absent from the list and 404 on retrieve, as if it did not exist.
//!
//! Input: the applied configuration and the app. Output: a JSON response.

use std::collections::BTreeSet;

use bytes::Bytes;
use http::{HeaderValue, Response, header};
use serde_json::{Value, json};

use super::Applied;
use crate::error::ProxyError;

/// The model names `app` may call, sorted, each once.
pub(crate) fn visible(applied: &Applied, app: &str) -> BTreeSet<String> {
    let access = &applied.snapshot.gateway.model_access;
    applied
        .routes
        .pools()
        .iter()
        .flat_map(|pool| {
            let name = &pool.config().name;
            pool.config()
                .models
                .iter()
                .filter(move |model| access.allows(app, name, model))
        })
        .cloned()
        .collect()
}

fn model_object(id: &str) -> Value {
    json!({"id": id, "object": "model", "created": 0, "owned_by": "spillway"})
}

/// The list, or the one `model`, that `app` may use.
///
/// # Errors
/// [`ProxyError::ModelNotFound`] for a model the app may not use or no pool serves.
pub(crate) fn answer(
    applied: &Applied,
    app: &str,
    model: Option<&str>,
) -> Result<Response<Bytes>, ProxyError> {
    let visible = visible(applied, app);
    let body = match model {
        None => json!({
            "object": "list",
            "data": visible.iter().map(|id| model_object(id)).collect::<Vec<_>>(),
        }),
        Some(model) if visible.contains(model) => model_object(model),
        Some(model) => return Err(ProxyError::ModelNotFound(model.to_owned())),
    };
    let mut response = Response::new(Bytes::from(body.to_string()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}
