//! The stateful responses API of one backend: what a create keeps, how a background response
//! runs, and the endpoints that address a stored response by id.
//!
//! - Create (`POST …/responses`, served by the handler): unless `store: false`, [`keep`]
//!   stores the response as the answer shows it — completed; in progress while its stream
//!   runs (completed when the stream ends, failed when it breaks off); or, for
//!   `background: true`, queued, `in_progress` after half of the backend's `backgroundMs`
//!   and completed after all of it (or as soon as its stream has been sent). A background
//!   response's ledger entry is recorded once, when it completes, and never when it was
//!   cancelled first. A create in a `conversation` appends its [`turn`] (input items, then
//!   output message) to it once it completes: at once, when its stream has been sent, or
//!   when its background job completes — never when it failed or was cancelled.
//! - `GET|DELETE …/responses/{id}`, `GET …/responses/{id}/input_items`,
//!   `POST …/responses/{id}/cancel` ([`serve_stored`]) and `POST …/responses/input_tokens`
//!   ([`count_input`]): the fault, the latency, then the store; each leaves one ledger entry
//!   with 0 tokens (these calls bill nothing).
//!
//! Input: the backend (its [`ResponseStore`](super::store::ResponseStore)), the request's
//! [`Exchange`] and what the handler read. Output: answers, or [`Reply`] errors in OpenAI's
//! shapes (404 `Response with id '…' not found.`, 400 for a cancel of a response not created
//! in the background).

use std::sync::Arc;

use http::{Method, Response};
use serde_json::{Value, json};

use super::backend::Backend;
use super::body::{EndHook, Ending, SimBody};
use super::call::Call;
use super::exchange::{Exchange, Faulted};
use super::payload;
use super::reply::Reply;
use super::route::{Api, ModelApi};
use super::route::{Route, Target};
use super::store::{CancelRefused, ItemsQuery, Job, Outcome, ResponseStatus, StoredResponse};
use super::store::{Turn, Usage};
use super::text::Completion;

/// A request to a stored response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoredCall<'a> {
    /// `GET …/responses/{id}`.
    Retrieve(&'a str),
    /// `DELETE …/responses/{id}`.
    Delete(&'a str),
    /// `GET …/responses/{id}/input_items`, with the query string.
    InputItems(&'a str, Option<&'a str>),
    /// `POST …/responses/{id}/cancel`.
    Cancel(&'a str),
}

impl<'a> StoredCall<'a> {
    /// The stored-response call `route` and `method` make, if any (the method is allowed).
    pub fn of(route: &'a Route, method: &Method, query: Option<&'a str>) -> Option<Self> {
        match &route.target {
            Target::Response(id) if method == Method::DELETE => Some(Self::Delete(id)),
            Target::Response(id) => Some(Self::Retrieve(id)),
            Target::InputItems(id) => Some(Self::InputItems(id, query)),
            Target::Cancel(id) => Some(Self::Cancel(id)),
            Target::Create
            | Target::InputTokens
            | Target::Conversations
            | Target::Conversation(_)
            | Target::ConversationItems(_)
            | Target::ConversationItem(..)
            | Target::Files
            | Target::File(_)
            | Target::FileContent(_)
            | Target::Batches
            | Target::Batch(_)
            | Target::BatchCancel(_) => None,
        }
    }
}

/// Serves `call` on `backend`: fault, latency, then the store.
///
/// # Errors
/// A status fault, an unknown id (404), an invalid input-item query or a cancel of a
/// response not created in the background (400).
pub async fn serve_stored(
    backend: &Backend,
    exchange: &mut Exchange,
    route: &Route,
    call: StoredCall<'_>,
) -> Result<Option<Response<SimBody>>, Reply> {
    let fault = match exchange
        .fault(
            backend,
            route.flavour,
            Api::Model(ModelApi::Responses),
            false,
        )
        .await?
    {
        Faulted::Drop => return Ok(None),
        Faulted::Serve(fault) => fault,
    };
    backend.wait_latency().await;
    let store = &backend.responses;
    let answer = match call {
        StoredCall::Retrieve(id) => store.get(id).ok_or_else(|| Reply::response_not_found(id))?,
        StoredCall::Delete(id) => {
            if !store.delete(id) {
                return Err(Reply::response_not_found(id));
            }
            json!({"id": id, "object": "response", "deleted": true})
        }
        StoredCall::InputItems(id, query) => {
            let query = ItemsQuery::parse(query)
                .map_err(|invalid| Reply::bad_request(invalid.message, Some(invalid.param)))?;
            store
                .input_items(id, &query)
                .ok_or_else(|| Reply::response_not_found(id))?
        }
        StoredCall::Cancel(id) => store.cancel(id).map_err(|refused| match refused {
            CancelRefused::NotFound => Reply::response_not_found(id),
            CancelRefused::NotBackground => Reply::not_cancellable(),
        })?,
    };
    Ok(Some(exchange.json_answer(backend, &answer, fault.as_ref())))
}

/// Answers `POST …/responses/input_tokens` with the input tokens `call` would bill.
///
/// # Errors
/// A status fault.
pub async fn count_input(
    backend: &Backend,
    exchange: &mut Exchange,
    call: &Call,
) -> Result<Option<Response<SimBody>>, Reply> {
    let fault = match exchange
        .fault(backend, call.flavour, call.operation.into(), false)
        .await?
    {
        Faulted::Drop => return Ok(None),
        Faulted::Serve(fault) => fault,
    };
    backend.wait_latency().await;
    let answer = json!({"object": "response.input_tokens", "input_tokens": call.prompt_tokens});
    Ok(Some(exchange.json_answer(backend, &answer, fault.as_ref())))
}

/// What [`keep`] leaves for the create's answer.
pub struct Kept {
    /// The object a non-streamed create answers with.
    pub object: Value,
    /// For a streamed create: what to do when the stream ends.
    pub on_end: Option<EndHook>,
}

/// What the response `id` of `call`, with input `items` and answering `completion`, appends
/// to its conversation, if it has one: the input items, then its output message.
pub fn turn(call: &Call, items: &[Value], completion: &Completion, id: &str) -> Option<Turn> {
    let conversation = call.conversation.clone()?;
    let output = payload::output_message(&payload::message_id(id), &completion.text, "completed");
    let items = items.iter().cloned().chain([output]).collect();
    Some(Turn {
        conversation,
        items,
    })
}

/// Stores the response `call` creates (id `id`, input `items`, answering `completion`) as
/// the answer shows it. A background response takes the exchange's ledger entry into its
/// job, which records it on completion and then appends `turn` to its conversation.
pub fn keep(
    backend: &Arc<Backend>,
    exchange: &mut Exchange,
    call: &Call,
    items: Vec<Value>,
    completion: &Completion,
    id: &str,
    turn: Option<Turn>,
) -> Kept {
    let outcome = Outcome {
        object: payload::response_object(call, "completed", Some(completion), id),
        usage: Usage {
            input_tokens: call.prompt_tokens,
            output_tokens: completion.tokens,
        },
    };
    let stored = |status: ResponseStatus, object: Value, usage| StoredResponse {
        object,
        items,
        background: call.background,
        status,
        usage,
    };
    if call.background {
        let queued = payload::response_object(call, ResponseStatus::Queued.as_str(), None, id);
        let mut entry = exchange.take_entry();
        entry.status = 200;
        let job = Job {
            outcome,
            entry,
            started: exchange.started,
            turn,
        };
        let response = stored(ResponseStatus::Queued, queued.clone(), None);
        backend.responses.insert(id, response, Some(job));
        run_job(backend, id);
        let on_end = call.stream.then(|| {
            let (backend, id) = (Arc::clone(backend), id.to_owned());
            Box::new(move |ending| {
                if ending == Ending::Complete {
                    complete_job(&backend, &id);
                }
            }) as EndHook
        });
        return Kept {
            object: queued,
            on_end,
        };
    }
    if !call.stream {
        let object = outcome.object.clone();
        let response = stored(
            ResponseStatus::Completed,
            outcome.object,
            Some(outcome.usage),
        );
        backend.responses.insert(id, response, None);
        return Kept {
            object,
            on_end: None,
        };
    }
    let running = ResponseStatus::InProgress;
    let object = payload::response_object(call, running.as_str(), None, id);
    backend
        .responses
        .insert(id, stored(running, object.clone(), None), None);
    let (store_of, id) = (Arc::clone(backend), id.to_owned());
    let on_end: EndHook = Box::new(move |ending| match ending {
        Ending::Complete => store_of.responses.finish(&id, outcome),
        Ending::Reset | Ending::ClientGone => store_of.responses.fail(&id),
    });
    Kept {
        object,
        on_end: Some(on_end),
    }
}

/// Runs the background response `id`: `in_progress` after half of the backend's
/// background time, completed after all of it.
fn run_job(backend: &Arc<Backend>, id: &str) {
    let (backend, id) = (Arc::clone(backend), id.to_owned());
    let total = backend.background;
    tokio::spawn(async move {
        tokio::time::sleep(total / 2).await;
        backend.responses.start(&id);
        tokio::time::sleep(total - total / 2).await;
        complete_job(&backend, &id);
    });
}

/// Completes the background job `id` (if it still runs), records its ledger entry and
/// appends its turn to its conversation.
fn complete_job(backend: &Backend, id: &str) {
    if let Some(mut done) = backend.responses.complete_job(id) {
        done.entry.duration_ms = backend
            .shared
            .clock
            .now()
            .saturating_duration_since(done.started)
            .as_millis() as u64;
        backend.shared.ledger.record(done.entry);
        if let Some(turn) = done.turn {
            backend.conversations.append(turn);
        }
    }
}
