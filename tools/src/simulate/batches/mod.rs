//! The batches API of one backend:
//!
//! | method | path | answer |
//! |---|---|---|
//! | POST | `batches` (`{"input_file_id","endpoint","completion_window":"24h","metadata"?}`) | the batch, `validating` |
//! | GET | `batches` (`after`, `limit`) | `{"object":"list","data","first_id","last_id","has_more"}`, newest first |
//! | GET | `batches/{id}` | the batch |
//! | POST | `batches/{id}/cancel` | the batch, `cancelling` (then `cancelled` a quarter of `batchMs` later) |
//!
//! The batch object: `{"id":"batch_…","object":"batch","endpoint","errors","input_file_id",
//! "completion_window","status","output_file_id","error_file_id","created_at",
//! "in_progress_at","expires_at","finalizing_at","completed_at","failed_at","expired_at",
//! "cancelling_at","cancelled_at","request_counts":{"total","completed","failed"},"metadata",
//! "model","usage"}`. Endpoints: `/v1/chat/completions`, `/v1/completions`,
//! `/v1/embeddings`, `/v1/responses`, each also without `/v1` (as Azure names them). The
//! input file must be on this backend (else 404 `No such File object`), with purpose
//! `batch` and 1 to 50,000 requests (else 400).
//!
//! A batch is `validating`, `in_progress` after half of the backend's `batchMs` (default
//! 2000) and then, after all of it, `completed`: its lines run ([`lines`]) into an output
//! file (and an error file when some failed; both purpose `batch_output`, stored on this
//! backend), with `request_counts` and `usage` (`input_tokens`,
//! `input_tokens_details.cached_tokens`, `output_tokens`,
//! `output_tokens_details.reasoning_tokens`, `total_tokens`) filled in. It is billed then,
//! once: one ledger entry whose `requestId` and `batchId` are the batch id, with the summed
//! tokens by type. A batch whose results do not fit in the backend's `filesMaxBytes` fails
//! instead (`errors.data[0].code` `storage_full`), and a cancelled one bills nothing.
//!
//! Every call goes through the auth check, faults and latency and leaves one ledger entry
//! with 0 tokens and the `batchId` it created or addressed.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response};
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::backend::Backend;
use super::body::SimBody;
use super::exchange::{Exchange, Faulted};
use super::files::NewFile;
use super::incoming;
use super::ledger::LedgerEntry;
use super::reply::Reply;
use super::route::{Flavour, ModelApi, Route, Target};
use super::store::ItemsQuery;
use super::text;

pub mod lines;

pub use super::batch_store::{BatchStatus, CancelRefused};

/// Seconds a batch has to complete (`completion_window: "24h"`).
const WINDOW_SECONDS: u64 = 24 * 3600;

/// Serves a batches request.
///
/// # Errors
/// An invalid create (400), an unknown input file or batch (404), a cancel of a batch that
/// ended (400), or a status fault.
pub async fn serve(
    backend: &Arc<Backend>,
    exchange: &mut Exchange,
    route: &Route,
    request: Request<Incoming>,
) -> Result<Option<Response<SimBody>>, Reply> {
    let method = request.method().clone();
    let query = request.uri().query().map(str::to_owned);
    let create = match (&route.target, &method) {
        (Target::Batches, &Method::POST) => Some(incoming::read_json(request).await?.1),
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
    let store = &backend.batches;
    let answer = match (&route.target, create) {
        (Target::Batches, Some(body)) => create_batch(backend, exchange, route, &body)?,
        (Target::Batches, None) => {
            let page = ItemsQuery::parse(query.as_deref())
                .map_err(|invalid| Reply::bad_request(invalid.message, Some(invalid.param)))?;
            store.list(&page)
        }
        (Target::Batch(id), _) => {
            exchange.entry.batch_id = Some(id.clone());
            store.get(id).ok_or_else(|| Reply::batch_not_found(id))?
        }
        (Target::BatchCancel(id), _) => {
            exchange.entry.batch_id = Some(id.clone());
            let cancelling = store
                .cancel(id, backend.unix_seconds())
                .map_err(|refused| match refused {
                    CancelRefused::NotFound => Reply::batch_not_found(id),
                    CancelRefused::Ended(status) => Reply::bad_request(
                        &format!("Cannot cancel a batch with status '{}'.", status.as_str()),
                        None,
                    ),
                })?;
            finish_cancel_later(backend, id);
            cancelling
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

/// A batch's job: what it runs and how it bills.
struct Job {
    id: String,
    flavour: Flavour,
    api: ModelApi,
    input: Bytes,
    total: u64,
    /// The create's ledger entry, the base of the billing entry.
    entry: LedgerEntry,
    started: std::time::Instant,
}

/// Checks a create body and its input file, keeps the batch and starts its job.
fn create_batch(
    backend: &Arc<Backend>,
    exchange: &mut Exchange,
    route: &Route,
    body: &Value,
) -> Result<Value, Reply> {
    let text_field = |name: &str| body.get(name).and_then(Value::as_str);
    let missing = |name: &'static str| {
        Reply::bad_request(
            &format!("Missing required parameter: '{name}'."),
            Some(name),
        )
    };
    let input_file_id = text_field("input_file_id").ok_or_else(|| missing("input_file_id"))?;
    let endpoint = text_field("endpoint").ok_or_else(|| missing("endpoint"))?;
    let api = lines::endpoint(endpoint).ok_or_else(|| {
        Reply::bad_request(
            &format!("Invalid value: '{endpoint}'. Supported values are: '/v1/chat/completions', '/v1/completions', '/v1/embeddings' and '/v1/responses'."),
            Some("endpoint"),
        )
    })?;
    let window = text_field("completion_window").ok_or_else(|| missing("completion_window"))?;
    if window != "24h" {
        let message = format!("Invalid value: '{window}'. Supported values are: '24h'.");
        return Err(Reply::bad_request(&message, Some("completion_window")));
    }
    let metadata = body.get("metadata").cloned().unwrap_or(Value::Null);
    if !(metadata.is_object() || metadata.is_null()) {
        let message = "Invalid type for 'metadata': expected an object.";
        return Err(Reply::bad_request(message, Some("metadata")));
    }
    let (file, input) = backend
        .files
        .content(input_file_id)
        .ok_or_else(|| Reply::file_not_found(input_file_id, "input_file_id"))?;
    if file["purpose"] != "batch" {
        let message = "The input file must be uploaded with purpose 'batch'.";
        return Err(Reply::bad_request(message, Some("input_file_id")));
    }
    let (total, model) = lines::validate(&input)
        .map_err(|message| Reply::bad_request(&message, Some("input_file_id")))?;
    let id = text::object_id("batch_");
    let now = backend.unix_seconds();
    let object = json!({
        "id": id, "object": "batch", "endpoint": endpoint, "errors": null,
        "input_file_id": input_file_id, "completion_window": window, "status": "validating",
        "output_file_id": null, "error_file_id": null, "created_at": now,
        "in_progress_at": null, "expires_at": now + WINDOW_SECONDS, "finalizing_at": null,
        "completed_at": null, "failed_at": null, "expired_at": null, "cancelling_at": null,
        "cancelled_at": null, "request_counts": {"total": 0, "completed": 0, "failed": 0},
        "metadata": metadata, "model": model, "usage": null
    });
    backend.batches.insert(&id, object.clone());
    exchange.entry.batch_id = Some(id.clone());
    exchange.entry.model = model;
    let job = Job {
        id,
        flavour: route.flavour,
        api,
        input,
        total,
        entry: exchange.entry.clone(),
        started: exchange.started,
    };
    run_job(backend, job);
    Ok(object)
}

/// Runs `job`: in progress after half of the backend's batch time, completed after all of it.
fn run_job(backend: &Arc<Backend>, job: Job) {
    let backend = Arc::clone(backend);
    let total = backend.batch;
    tokio::spawn(async move {
        tokio::time::sleep(total / 2).await;
        backend
            .batches
            .start(&job.id, backend.unix_seconds(), job.total);
        tokio::time::sleep(total - total / 2).await;
        complete(&backend, job);
    });
}

/// Moves a cancelled batch to `cancelled` a quarter of the backend's batch time from now.
fn finish_cancel_later(backend: &Arc<Backend>, id: &str) {
    let (backend, id) = (Arc::clone(backend), id.to_owned());
    tokio::spawn(async move {
        tokio::time::sleep(backend.batch / 4).await;
        backend.batches.finish_cancel(&id, backend.unix_seconds());
    });
}

/// Runs the lines of a batch still in progress, stores its files, completes it and bills it.
fn complete(backend: &Backend, job: Job) {
    if backend.batches.status(&job.id) != Some(BatchStatus::InProgress) {
        return;
    }
    let now = backend.unix_seconds();
    let room = backend.files.room();
    let stored = lines::run(backend, job.flavour, job.api, &job.input, room)
        .ok()
        .and_then(|mut results| {
            let output = std::mem::take(&mut results.output);
            let errors = std::mem::take(&mut results.errors);
            let files = store_files(backend, &job.id, output, errors)?;
            Some((results, files))
        });
    let Some((results, [output, errors])) = stored else {
        let message = format!(
            "The batch's results do not fit in the {} bytes this backend's files may hold (filesMaxBytes).",
            backend.files.max_bytes()
        );
        let error =
            json!({"code": "storage_full", "message": message, "param": null, "line": null});
        let errors = json!({"object": "list", "data": [error]});
        backend.batches.fail(&job.id, now, errors);
        return;
    };
    let fields = json!({
        "output_file_id": output,
        "error_file_id": errors,
        "request_counts": {"total": job.total, "completed": results.completed, "failed": results.failed},
        "usage": results.usage.json()
    });
    if !backend.batches.complete(&job.id, now, fields) {
        // Cancelled meanwhile: its results go.
        for id in [output, errors].into_iter().flatten() {
            backend.files.delete(&id);
        }
        return;
    }
    bill(backend, job, &results.usage);
}

/// Stores the output and error files (none for an empty one) and returns their ids; `None`
/// (and nothing stored) when they do not fit.
fn store_files(
    backend: &Backend,
    batch: &str,
    output: String,
    errors: String,
) -> Option<[Option<String>; 2]> {
    let mut ids: [Option<String>; 2] = [None, None];
    for (slot, (kind, content)) in [("output", output), ("error", errors)]
        .into_iter()
        .enumerate()
    {
        if content.is_empty() {
            continue;
        }
        let file = NewFile {
            filename: format!("{batch}_{kind}.jsonl"),
            purpose: "batch_output".to_owned(),
            content: Bytes::from(content),
            created_at: backend.unix_seconds(),
        };
        let Ok(object) = backend.files.insert(file) else {
            for id in ids.iter().flatten() {
                backend.files.delete(id);
            }
            return None;
        };
        ids[slot] = object["id"].as_str().map(str::to_owned);
    }
    Some(ids)
}

/// Records the batch's one billing entry.
fn bill(backend: &Backend, job: Job, usage: &lines::BatchUsage) {
    let clock = &backend.shared.clock;
    let mut entry = job.entry;
    entry.request_id = job.id;
    entry.status = 200;
    entry.prompt_tokens = usage.input;
    entry.cached_tokens = usage.cached;
    entry.completion_tokens = usage.output;
    entry.reasoning_tokens = usage.reasoning;
    entry.timestamp_ms = clock
        .wall()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    entry.duration_ms = clock
        .now()
        .saturating_duration_since(job.started)
        .as_millis() as u64;
    backend.shared.ledger.record(entry);
}

#[cfg(test)]
mod tests;
