//! The checks every request to a model route shares, and reading its JSON body: the key
//! (`api-key` or `Authorization: Bearer`), Azure classic's `api-version`, and the body, which
//! must be a JSON object of at most [`MAX_REQUEST_BODY`] bytes. Multipart bodies (uploads) are
//! read by [`super::upload`] instead, streaming.
//!
//! Input: the request. Output: the parsed pieces, or a [`Reply`] (401, Azure's 404, 400, 413).

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use serde_json::Value;

use super::backend::Backend;
use super::reply::Reply;
use super::route::{ApiVersion, Flavour, Route};

/// Largest JSON request body accepted.
pub const MAX_REQUEST_BODY: usize = 16 << 20;

/// Checks the key the backend requires, if any.
///
/// # Errors
/// 401 in the route's dialect when no accepted key was given.
pub fn authorize(backend: &Backend, headers: &HeaderMap, flavour: Flavour) -> Result<(), Reply> {
    let Some(key) = backend.api_key.as_deref() else {
        return Ok(());
    };
    let api_key = headers.get("api-key").and_then(|v| v.to_str().ok());
    let bearer = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Several accepted keys (rotating tokens, say) are separated by `|`.
    let accepted = |given: Option<&str>| given.is_some_and(|g| key.split('|').any(|k| k == g));
    if accepted(api_key) || accepted(bearer) {
        Ok(())
    } else {
        Err(Reply::unauthorized(flavour))
    }
}

/// Azure classic paths need a known `api-version`; it is returned for the `stream_options`
/// check.
///
/// # Errors
/// Azure's 404 when it is missing or not a version.
pub fn classic_api_version(route: &Route) -> Result<Option<ApiVersion>, Reply> {
    if route.flavour != Flavour::AzureClassic {
        return Ok(None);
    }
    route
        .api_version
        .as_deref()
        .and_then(ApiVersion::parse)
        .map(Some)
        .ok_or_else(Reply::resource_not_found)
}

/// The body, which must be a JSON object, as bytes and parsed.
///
/// # Errors
/// 413 above [`MAX_REQUEST_BODY`], 400 for a body that cannot be read or is no JSON object.
pub async fn read_json(request: Request<Incoming>) -> Result<(Bytes, Value), Reply> {
    let body = read_body(request).await?;
    let json: Value = serde_json::from_slice(&body).map_err(|_| Reply::invalid_json())?;
    if !json.is_object() {
        return Err(Reply::bad_request(
            "The request body must be a JSON object.",
            None,
        ));
    }
    Ok((body, json))
}

async fn read_body(request: Request<Incoming>) -> Result<Bytes, Reply> {
    match Limited::new(request.into_body(), MAX_REQUEST_BODY)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => {
            Err(Reply::too_large(MAX_REQUEST_BODY as u64))
        }
        Err(_) => Err(Reply::bad_request(
            "The request body could not be read.",
            None,
        )),
    }
}
