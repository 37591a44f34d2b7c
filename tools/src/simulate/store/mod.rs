//! One backend's stored responses — the responses API's `store` — as an Azure OpenAI resource
//! or an OpenAI project keeps them: each response object as last returned, its input items,
//! whether it runs in the background, and the jobs of background responses still running.
//! Its conversations are kept by [`ConversationStore`] (`conversations`). Nothing here is
//! shared between backends: an id is known only where it was created.
//!
//! Input: responses created on this backend, then retrievals, deletes, cancels, input-item
//! listings and the progress of background jobs. Output: response objects, input-item pages,
//! the tokens a `previous_response_id` chain adds, and a completed job's ledger entry and
//! conversation [`Turn`].
//! Bounded: at most [`CAPACITY`] responses, the oldest created leaving first. A running job
//! is kept apart from its response until it completes or is cancelled — even when the response
//! was deleted or evicted — so a background response is billed exactly once.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use serde_json::{Value, json};

use super::ledger::LedgerEntry;

mod conversations;
mod items;

pub use conversations::{ConversationStore, Missing, Turn};
pub use items::{ItemsQuery, items_of};

/// Responses kept per backend.
pub const CAPACITY: usize = 10_000;

/// Where a stored response stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseStatus {
    /// Background, not started.
    Queued,
    /// Background running, or a stream being sent.
    InProgress,
    /// Done, with output and usage.
    Completed,
    /// A stream that ended before its last event.
    Failed,
    /// A background response cancelled before it completed.
    Cancelled,
}

impl ResponseStatus {
    /// The `status` field of the response object.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::InProgress => "in_progress",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    fn is_terminal(self) -> bool {
        !matches!(self, Self::Queued | Self::InProgress)
    }
}

/// Tokens a completed response billed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Input tokens (its own chain included).
    pub input_tokens: u64,
    /// Visible output tokens (a reasoning model's reasoning is not carried into a chain).
    pub output_tokens: u64,
}

/// A response as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredResponse {
    /// The response object as the API returns it now; its `status` follows `status`.
    pub object: Value,
    /// Input items, oldest first, each with an `id`.
    pub items: Vec<Value>,
    /// Created with `background: true`.
    pub background: bool,
    /// Where it stands.
    pub status: ResponseStatus,
    /// Usage, once completed.
    pub usage: Option<Usage>,
}

/// How a response completes: its final object and usage.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// The completed response object.
    pub object: Value,
    /// What it billed.
    pub usage: Usage,
}

/// A background response still running.
#[derive(Debug)]
pub struct Job {
    /// What it completes with.
    pub outcome: Outcome,
    /// The ledger entry recorded when it completes (tokens filled in).
    pub entry: LedgerEntry,
    /// When its create request arrived.
    pub started: Instant,
    /// What it appends to its conversation when it completes.
    pub turn: Option<Turn>,
}

/// What a background job leaves when it completes.
#[derive(Debug)]
pub struct Completed {
    /// Its ledger entry, to record.
    pub entry: LedgerEntry,
    /// When its create request arrived.
    pub started: Instant,
    /// What it appends to its conversation.
    pub turn: Option<Turn>,
}

/// Why a cancel was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelRefused {
    /// No such response on this backend.
    NotFound,
    /// The response was not created with `background: true`.
    NotBackground,
}

struct Slot {
    response: StoredResponse,
    seq: u64,
}

#[derive(Default)]
struct Inner {
    responses: HashMap<String, Slot>,
    /// Ids by creation: oldest first.
    order: BTreeMap<u64, String>,
    next: u64,
    jobs: HashMap<String, Job>,
}

impl Inner {
    /// Moves a running response to `status` (with `object` when given); terminal ones stay.
    fn advance(&mut self, id: &str, status: ResponseStatus, outcome: Option<Outcome>) {
        let Some(slot) = self.responses.get_mut(id) else {
            return;
        };
        let response = &mut slot.response;
        if response.status.is_terminal() {
            return;
        }
        if let Some(outcome) = outcome {
            response.object = outcome.object;
            response.usage = Some(outcome.usage);
        }
        response.status = status;
        response.object["status"] = status.as_str().into();
    }
}

/// The stored responses of one backend.
pub struct ResponseStore {
    capacity: usize,
    inner: Mutex<Inner>,
}

impl Default for ResponseStore {
    fn default() -> Self {
        Self::with_capacity(CAPACITY)
    }
}

impl ResponseStore {
    /// A store keeping at most `capacity` responses.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores `response` under `id`, with the job that completes it when it runs in the
    /// background; evicts the oldest response past the capacity.
    pub fn insert(&self, id: &str, response: StoredResponse, job: Option<Job>) {
        let mut inner = self.lock();
        inner.next += 1;
        let seq = inner.next;
        if let Some(old) = inner
            .responses
            .insert(id.to_owned(), Slot { response, seq })
        {
            inner.order.remove(&old.seq);
        }
        inner.order.insert(seq, id.to_owned());
        if let Some(job) = job {
            inner.jobs.insert(id.to_owned(), job);
        }
        while inner.responses.len() > self.capacity {
            let Some((_, oldest)) = inner.order.pop_first() else {
                break;
            };
            inner.responses.remove(&oldest);
        }
    }

    /// The response object of `id`.
    pub fn get(&self, id: &str) -> Option<Value> {
        self.lock()
            .responses
            .get(id)
            .map(|slot| slot.response.object.clone())
    }

    /// The tokens that continuing `id` adds to a prompt: its input and visible output
    /// tokens (0 while it has no usage).
    pub fn context_tokens(&self, id: &str) -> Option<u64> {
        self.lock().responses.get(id).map(|slot| {
            slot.response
                .usage
                .map_or(0, |u| u.input_tokens + u.output_tokens)
        })
    }

    /// Deletes `id`; false when it was not stored. A running job still completes.
    pub fn delete(&self, id: &str) -> bool {
        let mut inner = self.lock();
        match inner.responses.remove(id) {
            Some(slot) => {
                inner.order.remove(&slot.seq);
                true
            }
            None => false,
        }
    }

    /// A page of the input items of `id`, as `GET …/input_items` returns it.
    pub fn input_items(&self, id: &str, query: &ItemsQuery) -> Option<Value> {
        let inner = self.lock();
        let items = &inner.responses.get(id)?.response.items;
        Some(query.page(items))
    }

    /// A queued background response starts (`in_progress`).
    pub fn start(&self, id: &str) {
        let mut inner = self.lock();
        let queued = inner
            .responses
            .get(id)
            .is_some_and(|slot| slot.response.status == ResponseStatus::Queued);
        if queued {
            inner.advance(id, ResponseStatus::InProgress, None);
        }
    }

    /// A running response (not a background job) completes with `outcome`.
    pub fn finish(&self, id: &str, outcome: Outcome) {
        self.lock()
            .advance(id, ResponseStatus::Completed, Some(outcome));
    }

    /// A running response fails (its stream broke off) with a `server_error`.
    pub fn fail(&self, id: &str) {
        let mut inner = self.lock();
        inner.advance(id, ResponseStatus::Failed, None);
        if let Some(slot) = inner.responses.get_mut(id)
            && slot.response.status == ResponseStatus::Failed
        {
            slot.response.object["error"] = json!({
                "code": "server_error",
                "message": "The response stream ended before the response was complete."
            });
        }
    }

    /// The background job of `id` completes: its response (if still stored) becomes the
    /// outcome; returns the ledger entry to record, when the request arrived and its
    /// conversation turn. `None` when the job already completed or was cancelled.
    pub fn complete_job(&self, id: &str) -> Option<Completed> {
        let mut inner = self.lock();
        let job = inner.jobs.remove(id)?;
        inner.advance(id, ResponseStatus::Completed, Some(job.outcome));
        Some(Completed {
            entry: job.entry,
            started: job.started,
            turn: job.turn,
        })
    }

    /// Cancels the background response `id`: a running one becomes `cancelled` and its job
    /// is dropped unbilled; a finished one is returned unchanged.
    ///
    /// # Errors
    /// [`CancelRefused`] for an unknown id or a response not created in the background.
    pub fn cancel(&self, id: &str) -> Result<Value, CancelRefused> {
        let mut inner = self.lock();
        let slot = inner.responses.get(id).ok_or(CancelRefused::NotFound)?;
        if !slot.response.background {
            return Err(CancelRefused::NotBackground);
        }
        if inner.jobs.remove(id).is_some() {
            inner.advance(id, ResponseStatus::Cancelled, None);
        }
        inner
            .responses
            .get(id)
            .map(|slot| slot.response.object.clone())
            .ok_or(CancelRefused::NotFound)
    }

    /// Responses kept and jobs running.
    pub fn counts(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.responses.len(), inner.jobs.len())
    }
}

#[cfg(test)]
mod tests;
