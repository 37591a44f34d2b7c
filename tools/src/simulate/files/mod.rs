//! The files API of one backend, as OpenAI and Azure OpenAI serve it:
//!
//! | method | path | answer |
//! |---|---|---|
//! | POST | `files` (multipart `file`, `purpose`) | `{"id":"file-…","object":"file","bytes","created_at","filename","purpose","status":"processed","status_details":null,"expires_at":null}` |
//! | GET | `files` (`purpose`, `order`, `limit`, `after`) | `{"object":"list","data","first_id","last_id","has_more"}`, newest first |
//! | GET / DELETE | `files/{id}` | the file / `{"id","object":"file","deleted":true}` |
//! | GET | `files/{id}/content` | its bytes (`application/octet-stream`) |
//!
//! A file lives only on the backend that stored it: elsewhere its id is 404
//! `No such File object: …`. The upload is read streaming and kept (it is the file), within
//! the backend's `filesMaxBytes` for all its files together (batch results included); past
//! that the upload is refused with 413, before its body is read when its `content-length`
//! already says so. Every call goes through the auth check, faults and latency, and leaves one
//! ledger entry with 0 tokens (an upload with its `uploadBytes`, `firstByteMs`, `lastByteMs`).
//!
//! Input: the route, the request, the backend's [`FileStore`]. Output: answers, or
//! [`Reply`] errors.

use bytes::Bytes;
use http::{Method, Request, Response};
use hyper::body::Incoming;
use serde_json::json;

use super::backend::Backend;
use super::body::SimBody;
use super::exchange::{Exchange, Faulted};
use super::reply::Reply;
use super::route::{Route, Target, query_param};
use super::store::ItemsQuery;
use super::upload::{self, FormRules};

pub use super::file_store::{Full, MAX_FILES, NewFile};

/// Purposes an upload may name.
pub const PURPOSES: [&str; 6] = [
    "assistants",
    "batch",
    "fine-tune",
    "vision",
    "user_data",
    "evals",
];

/// Serves a files request.
///
/// # Errors
/// An invalid upload (400, 413), an unknown id (404), an invalid list query (400), or a
/// status fault.
pub async fn serve(
    backend: &Backend,
    exchange: &mut Exchange,
    route: &Route,
    request: Request<Incoming>,
) -> Result<Option<Response<SimBody>>, Reply> {
    let method = request.method().clone();
    let query = request.uri().query().map(str::to_owned);
    let upload = match (&route.target, &method) {
        (Target::Files, &Method::POST) => Some(read_upload(backend, exchange, request).await?),
        _ => None,
    };
    let fault = match exchange
        .fault(backend, route.flavour, route.api, false)
        .await?
    {
        Faulted::Drop => return Ok(None),
        Faulted::Serve(fault) => fault,
    };
    backend.wait_latency().await;
    let store = &backend.files;
    let answer = match (&route.target, upload) {
        (Target::Files, Some(file)) => store.insert(file).map_err(|full| match full {
            Full::Bytes => Reply::files_full(store.max_bytes()),
            Full::Count => Reply::bad_request(
                &format!("This backend holds {MAX_FILES} files, its limit; delete some first."),
                Some("file"),
            ),
        })?,
        (Target::Files, None) => {
            let query = query.as_deref();
            let page = ItemsQuery::parse(query)
                .map_err(|invalid| Reply::bad_request(invalid.message, Some(invalid.param)))?;
            let purpose = query.and_then(|q| query_param(q, "purpose"));
            store.list(&page, purpose.as_deref().filter(|p| !p.is_empty()))
        }
        (Target::File(id), _) if method == Method::DELETE => match store.delete(id) {
            true => json!({"id": id, "object": "file", "deleted": true}),
            false => return Err(Reply::file_not_found(id, "file_id")),
        },
        (Target::File(id), _) => store
            .get(id)
            .ok_or_else(|| Reply::file_not_found(id, "file_id"))?,
        (Target::FileContent(id), _) => {
            let (_, content) = store
                .content(id)
                .ok_or_else(|| Reply::file_not_found(id, "file_id"))?;
            exchange.record(backend, 200);
            return Ok(Some(
                SimBody::full(content).into_ok("application/octet-stream"),
            ));
        }
        _ => {
            return Err(Reply::method_not_allowed(
                method.as_str(),
                &exchange.entry.path,
            ));
        }
    };
    Ok(Some(exchange.json_answer(backend, &answer, fault.as_ref())))
}

/// Reads an upload's form into the file to store.
async fn read_upload(
    backend: &Backend,
    exchange: &mut Exchange,
    request: Request<Incoming>,
) -> Result<NewFile, Reply> {
    let rules = FormRules {
        file_fields: &["file"],
        keep_up_to: Some(backend.files.room()),
    };
    let form = upload::read(backend, exchange, request, rules).await?;
    let purpose = form
        .field("purpose")
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            Reply::bad_request("Missing required parameter: 'purpose'.", Some("purpose"))
        })?;
    if !PURPOSES.contains(&purpose) {
        let message = format!(
            "Invalid value for 'purpose': '{purpose}'. Supported values are: {}.",
            PURPOSES.map(|p| format!("'{p}'")).join(", ")
        );
        return Err(Reply::bad_request(&message, Some("purpose")));
    }
    let file = form
        .files_named(&["file"])
        .next()
        .ok_or_else(|| Reply::bad_request("Missing required parameter: 'file'.", Some("file")))?;
    Ok(NewFile {
        filename: file.filename.clone().unwrap_or_else(|| "file".to_owned()),
        purpose: purpose.to_owned(),
        content: file.content.clone().unwrap_or_else(Bytes::new),
        created_at: backend.unix_seconds(),
    })
}
