//! The conversations API of one backend, as OpenAI and Azure OpenAI serve it beside the
//! responses API: create, retrieve, update and delete a conversation; list, add, retrieve and
//! delete its items. A response created with `conversation` reads and extends the same store
//! (see [`super::responses::turn`]).
//!
//! | method | path | answer |
//! |---|---|---|
//! | POST | `conversations` | `{"id":"conv_…","object":"conversation","created_at","metadata"}` |
//! | GET / POST / DELETE | `conversations/{id}` | the conversation / it with new `metadata` / `{"id","object":"conversation.deleted","deleted":true}` |
//! | GET | `conversations/{id}/items` | `{"object":"list","data","first_id","last_id","has_more"}` (`order`, `limit`, `after`) |
//! | POST | `conversations/{id}/items` | the same list of the items added, `has_more: false` |
//! | GET / DELETE | `conversations/{id}/items/{item}` | the item / the conversation |
//!
//! Input: the backend (its [`ConversationStore`](super::store::ConversationStore)), the
//! request's [`Exchange`], its route, method, query and (for a POST) JSON body. Output: the
//! body's checks (400), the fault, the latency, then the store's answer, recorded in the ledger
//! with 0 tokens (these calls bill nothing); or [`Reply`] errors in OpenAI's shapes: 404
//! `Conversation with id '…' not found.` and `Item with id '…' not found.`.

use http::{Method, Response};
use serde_json::{Value, json};

use super::backend::Backend;
use super::body::SimBody;
use super::exchange::{Exchange, Faulted};
use super::reply::Reply;
use super::route::Route;
use super::route::{Api, ModelApi};
use super::store::Missing;

mod request;

pub use request::ConversationCall;

/// Serves the conversations request `method` on `route` makes: the body's checks, the fault,
/// the latency, then the store.
///
/// # Errors
/// An invalid query or body (400), a status fault, an unknown conversation or item (404).
pub async fn serve(
    backend: &Backend,
    exchange: &mut Exchange,
    route: &Route,
    method: &Method,
    query: Option<&str>,
    body: Option<&Value>,
) -> Result<Option<Response<SimBody>>, Reply> {
    let path = exchange.entry.path.clone();
    let call = ConversationCall::read(&route.target, method, query, body)
        .ok_or_else(|| Reply::method_not_allowed(method.as_str(), &path))?
        .map_err(|invalid| Reply::bad_request(&invalid.message, Some(&invalid.param)))?;
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
    let answer = answer(backend, call)?;
    Ok(Some(exchange.json_answer(backend, &answer, fault.as_ref())))
}

/// What the store answers to `call`.
fn answer(backend: &Backend, call: ConversationCall<'_>) -> Result<Value, Reply> {
    let store = &backend.conversations;
    let missing = |missing, id, item| match missing {
        Missing::Conversation => Reply::conversation_not_found(id),
        Missing::Item => Reply::item_not_found(item),
    };
    match call {
        ConversationCall::Create { metadata, items } => {
            Ok(store.create(backend.unix_seconds(), metadata, items))
        }
        ConversationCall::Retrieve(id) => store
            .get(id)
            .ok_or_else(|| Reply::conversation_not_found(id)),
        ConversationCall::Update(id, metadata) => store
            .update(id, metadata)
            .ok_or_else(|| Reply::conversation_not_found(id)),
        ConversationCall::Delete(id) => match store.delete(id) {
            true => Ok(json!({"id": id, "object": "conversation.deleted", "deleted": true})),
            false => Err(Reply::conversation_not_found(id)),
        },
        ConversationCall::ListItems(id, query) => store
            .list(id, &query)
            .ok_or_else(|| Reply::conversation_not_found(id)),
        ConversationCall::AddItems(id, items) => store
            .add(id, items)
            .ok_or_else(|| Reply::conversation_not_found(id)),
        ConversationCall::RetrieveItem(id, item) => {
            store.item(id, item).map_err(|m| missing(m, id, item))
        }
        ConversationCall::DeleteItem(id, item) => store
            .delete_item(id, item)
            .map_err(|m| missing(m, id, item)),
    }
}

#[cfg(test)]
mod tests;
