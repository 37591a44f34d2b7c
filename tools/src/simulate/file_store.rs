//! One backend's files: each file's object and bytes, bounded by a byte budget (the
//! backend's `filesMaxBytes`) and [`MAX_FILES`], listed newest first.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use serde_json::{Value, json};

use super::store::ItemsQuery;
use super::text;

/// Files kept per backend.
pub const MAX_FILES: usize = 10_000;

/// A file to store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewFile {
    /// Its name.
    pub filename: String,
    /// Its purpose (`batch`, `batch_output`, `assistants`, …).
    pub purpose: String,
    /// Its bytes.
    pub content: Bytes,
    /// Unix seconds.
    pub created_at: u64,
}

/// Why a file was not stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Full {
    /// It would take the files above the byte budget.
    Bytes,
    /// There are [`MAX_FILES`] already.
    Count,
}

struct Slot {
    object: Value,
    content: Bytes,
    seq: u64,
}

#[derive(Default)]
struct Inner {
    files: HashMap<String, Slot>,
    /// Ids by creation, oldest first.
    order: BTreeMap<u64, String>,
    next: u64,
    bytes: u64,
}

/// One backend's files.
pub struct FileStore {
    max_bytes: u64,
    inner: Mutex<Inner>,
}

impl FileStore {
    /// An empty store holding at most `max_bytes`.
    pub fn new(max_bytes: u64) -> Self {
        Self {
            max_bytes,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The byte budget.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Bytes that still fit.
    pub fn room(&self) -> u64 {
        self.max_bytes.saturating_sub(self.lock().bytes)
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }

    /// Files held.
    pub fn len(&self) -> usize {
        self.lock().files.len()
    }

    /// Stores `file` under a new `file-…` id and returns its object.
    ///
    /// # Errors
    /// [`Full`] when it does not fit.
    pub fn insert(&self, file: NewFile) -> Result<Value, Full> {
        let mut inner = self.lock();
        let size = file.content.len() as u64;
        if inner.bytes + size > self.max_bytes {
            return Err(Full::Bytes);
        }
        if inner.files.len() >= MAX_FILES {
            return Err(Full::Count);
        }
        let id = text::object_id("file-");
        let object = json!({
            "id": id,
            "object": "file",
            "bytes": size,
            "created_at": file.created_at,
            "filename": file.filename,
            "purpose": file.purpose,
            "status": "processed",
            "status_details": null,
            "expires_at": null
        });
        let seq = inner.next;
        inner.next += 1;
        inner.bytes += size;
        inner.order.insert(seq, id.clone());
        let slot = Slot {
            object: object.clone(),
            content: file.content,
            seq,
        };
        inner.files.insert(id, slot);
        Ok(object)
    }

    /// The object of file `id`.
    pub fn get(&self, id: &str) -> Option<Value> {
        self.lock().files.get(id).map(|slot| slot.object.clone())
    }

    /// The object and bytes of file `id`.
    pub fn content(&self, id: &str) -> Option<(Value, Bytes)> {
        let inner = self.lock();
        let slot = inner.files.get(id)?;
        Some((slot.object.clone(), slot.content.clone()))
    }

    /// Deletes file `id`; whether it was there.
    pub fn delete(&self, id: &str) -> bool {
        let mut inner = self.lock();
        let Some(slot) = inner.files.remove(id) else {
            return false;
        };
        inner.order.remove(&slot.seq);
        inner.bytes -= slot.content.len() as u64;
        true
    }

    /// A page of files (`purpose` only, when given), newest first unless `order=asc`:
    /// `{"object":"list","data","first_id","last_id","has_more"}`.
    pub fn list(&self, query: &ItemsQuery, purpose: Option<&str>) -> Value {
        let inner = self.lock();
        let objects: Vec<Value> = inner
            .order
            .values()
            .filter_map(|id| inner.files.get(id))
            .filter(|slot| purpose.is_none_or(|p| slot.object["purpose"] == p))
            .map(|slot| slot.object.clone())
            .collect();
        query.page(&objects)
    }
}
