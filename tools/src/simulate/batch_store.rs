//! One backend's batches: each batch's object as last returned and where it stands, moved
//! on by its job (validating → in progress → completed or failed) or by a cancel (cancelling
//! → cancelled). Bounded: at most [`CAPACITY`] batches, the oldest created leaving first (a
//! job whose batch left completes without billing).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};

use serde_json::{Value, json};

use super::store::ItemsQuery;

/// Batches kept per backend.
pub const CAPACITY: usize = 10_000;

/// Where a batch stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchStatus {
    /// Created; its input is being checked.
    Validating,
    /// Running.
    InProgress,
    /// Done: its output (and error) file holds the results.
    Completed,
    /// It could not run to the end.
    Failed,
    /// Cancelled, not yet stopped.
    Cancelling,
    /// Cancelled and stopped.
    Cancelled,
}

impl BatchStatus {
    /// The `status` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Validating => "validating",
            Self::InProgress => "in_progress",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelling => "cancelling",
            Self::Cancelled => "cancelled",
        }
    }
}

/// Why a cancel was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelRefused {
    /// No such batch here.
    NotFound,
    /// It has already ended (or is being cancelled), in this status.
    Ended(BatchStatus),
}

struct Slot {
    object: Value,
    status: BatchStatus,
}

#[derive(Default)]
struct Inner {
    batches: HashMap<String, Slot>,
    /// Ids by creation, oldest first.
    order: BTreeMap<u64, String>,
    next: u64,
}

impl Inner {
    /// Moves batch `id` from one of `from` to `to`, setting `{to}_at` and `fields`; whether it
    /// moved.
    fn advance(
        &mut self,
        id: &str,
        from: &[BatchStatus],
        to: BatchStatus,
        at: u64,
        fields: Value,
    ) -> bool {
        let Some(slot) = self.batches.get_mut(id) else {
            return false;
        };
        if !from.contains(&slot.status) {
            return false;
        }
        slot.status = to;
        slot.object["status"] = json!(to.as_str());
        slot.object[format!("{}_at", to.as_str())] = json!(at);
        if let Value::Object(fields) = fields {
            for (key, value) in fields {
                slot.object[key] = value;
            }
        }
        true
    }
}

/// One backend's batches.
#[derive(Default)]
pub struct BatchStore {
    inner: Mutex<Inner>,
}

impl BatchStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Batches held.
    pub fn len(&self) -> usize {
        self.lock().batches.len()
    }

    /// Keeps a new batch (`object` has its `id`), validating.
    pub fn insert(&self, id: &str, object: Value) {
        let mut inner = self.lock();
        let seq = inner.next;
        inner.next += 1;
        inner.order.insert(seq, id.to_owned());
        let slot = Slot {
            object,
            status: BatchStatus::Validating,
        };
        inner.batches.insert(id.to_owned(), slot);
        while inner.batches.len() > CAPACITY {
            let Some((_, oldest)) = inner.order.pop_first() else {
                break;
            };
            inner.batches.remove(&oldest);
        }
    }

    /// The object of batch `id`.
    pub fn get(&self, id: &str) -> Option<Value> {
        self.lock().batches.get(id).map(|slot| slot.object.clone())
    }

    /// Where batch `id` stands.
    pub fn status(&self, id: &str) -> Option<BatchStatus> {
        self.lock().batches.get(id).map(|slot| slot.status)
    }

    /// Validating → in progress at `at`, with `total` requests.
    pub fn start(&self, id: &str, at: u64, total: u64) -> bool {
        let counts = json!({"request_counts": {"total": total, "completed": 0, "failed": 0}});
        let from = [BatchStatus::Validating];
        self.lock()
            .advance(id, &from, BatchStatus::InProgress, at, counts)
    }

    /// In progress → completed at `at` (finalized then too), with `fields` (output file,
    /// counts, usage); whether it completed (not when it was cancelled first).
    pub fn complete(&self, id: &str, at: u64, mut fields: Value) -> bool {
        fields["finalizing_at"] = json!(at);
        let from = [BatchStatus::InProgress];
        self.lock()
            .advance(id, &from, BatchStatus::Completed, at, fields)
    }

    /// In progress → failed at `at`, with `errors` (`{"object":"list","data":[…]}`).
    pub fn fail(&self, id: &str, at: u64, errors: Value) -> bool {
        let from = [BatchStatus::Validating, BatchStatus::InProgress];
        let fields = json!({ "errors": errors });
        self.lock()
            .advance(id, &from, BatchStatus::Failed, at, fields)
    }

    /// Validating or in progress → cancelling at `at`; the object.
    ///
    /// # Errors
    /// No such batch, or one that ended or is being cancelled.
    pub fn cancel(&self, id: &str, at: u64) -> Result<Value, CancelRefused> {
        let mut inner = self.lock();
        let from = [BatchStatus::Validating, BatchStatus::InProgress];
        let status = inner
            .batches
            .get(id)
            .map(|slot| slot.status)
            .ok_or(CancelRefused::NotFound)?;
        if !inner.advance(id, &from, BatchStatus::Cancelling, at, Value::Null) {
            return Err(CancelRefused::Ended(status));
        }
        Ok(inner.batches[id].object.clone())
    }

    /// Cancelling → cancelled at `at`.
    pub fn finish_cancel(&self, id: &str, at: u64) -> bool {
        let from = [BatchStatus::Cancelling];
        self.lock()
            .advance(id, &from, BatchStatus::Cancelled, at, Value::Null)
    }

    /// A page of batches, newest first unless `order=asc`.
    pub fn list(&self, query: &ItemsQuery) -> Value {
        let inner = self.lock();
        let objects: Vec<Value> = inner
            .order
            .values()
            .filter_map(|id| inner.batches.get(id))
            .map(|slot| slot.object.clone())
            .collect();
        query.page(&objects)
    }
}
