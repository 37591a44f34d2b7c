//! One backend's conversations — the Conversations API's state — as an Azure OpenAI resource or
//! an OpenAI project keeps them: each conversation's metadata, creation time and items, oldest
//! first. Nothing here is shared between backends: an id is known only where it was created.
//!
//! Input: conversations created, updated and deleted on this backend, items added and deleted,
//! and the [`Turn`]s that responses created in a conversation append. Output: conversation
//! objects `{"id","object":"conversation","created_at","metadata"}`, item pages, single items,
//! and the items (with a revision) a response create bills and keys its prompt cache on.
//! Bounded: at most [`CAPACITY`] conversations, the oldest created leaving first, and at most
//! [`MAX_ITEMS`] items each, the oldest items leaving first.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde_json::{Map, Value, json};

use super::items::ItemsQuery;
use crate::simulate::text;
use spillway_sidecar::usage::Operation;
use spillway_sidecar::usage::tokenizer;

/// Conversations kept per backend.
pub const CAPACITY: usize = 10_000;
/// Items kept per conversation.
pub const MAX_ITEMS: usize = 10_000;

/// What a lookup did not find.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missing {
    /// No such conversation on this backend.
    Conversation,
    /// The conversation has no such item.
    Item,
}

/// What a response created in a conversation appends to it once it completes: the call's
/// input items, then the response's output message.
#[derive(Clone, Debug, PartialEq)]
pub struct Turn {
    /// The conversation's id.
    pub conversation: String,
    /// The items, each with an `id`.
    pub items: Vec<Value>,
}

/// A conversation's items as a response create reads them.
#[derive(Clone, Debug, PartialEq)]
pub struct Context {
    /// The items, oldest first.
    pub items: Vec<Value>,
    /// Changes whenever the items do (for prompt-cache keys).
    pub revision: u64,
}

impl Context {
    /// The input tokens the items add to a prompt under `model`: each item counted as a
    /// responses input item without the server's `id` and `status`.
    pub fn tokens(&self, model: &str) -> u64 {
        if self.items.is_empty() {
            return 0;
        }
        let input: Vec<Value> = self
            .items
            .iter()
            .map(|item| {
                let mut item = item.clone();
                if let Some(fields) = item.as_object_mut() {
                    fields.remove("id");
                    fields.remove("status");
                }
                item
            })
            .collect();
        let count = |input: Value| {
            tokenizer::count_prompt(model, Operation::Responses, &json!({ "input": input }))
        };
        count(Value::Array(input)).saturating_sub(count(json!([])))
    }
}

struct Conversation {
    created_at: u64,
    metadata: Map<String, Value>,
    items: Vec<Value>,
    revision: u64,
    seq: u64,
}

impl Conversation {
    fn object(&self, id: &str) -> Value {
        json!({
            "id": id,
            "object": "conversation",
            "created_at": self.created_at,
            "metadata": self.metadata
        })
    }

    /// Appends `items`, the oldest leaving past [`MAX_ITEMS`].
    fn extend(&mut self, items: impl IntoIterator<Item = Value>) {
        self.items.extend(items);
        let excess = self.items.len().saturating_sub(MAX_ITEMS);
        self.items.drain(..excess);
        self.revision += 1;
    }

    fn position(&self, item_id: &str) -> Option<usize> {
        self.items
            .iter()
            .position(|item| item.get("id").and_then(Value::as_str) == Some(item_id))
    }
}

#[derive(Default)]
struct Inner {
    conversations: HashMap<String, Conversation>,
    /// Ids by creation: oldest first.
    order: BTreeMap<u64, String>,
    next: u64,
}

impl Inner {
    fn get_mut(&mut self, id: &str) -> Result<&mut Conversation, Missing> {
        self.conversations.get_mut(id).ok_or(Missing::Conversation)
    }
}

/// The conversations of one backend.
pub struct ConversationStore {
    capacity: usize,
    inner: Mutex<Inner>,
}

impl Default for ConversationStore {
    fn default() -> Self {
        Self::with_capacity(CAPACITY)
    }
}

impl ConversationStore {
    /// A store keeping at most `capacity` conversations.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Creates a conversation with `metadata` and `items` (each with an `id`) at
    /// `created_at` (Unix seconds); evicts the oldest past the capacity. Returns its object.
    pub fn create(
        &self,
        created_at: u64,
        metadata: Map<String, Value>,
        items: Vec<Value>,
    ) -> Value {
        let id = text::object_id("conv_");
        let mut inner = self.lock();
        inner.next += 1;
        let seq = inner.next;
        let mut conversation = Conversation {
            created_at,
            metadata,
            items: Vec::new(),
            revision: 0,
            seq,
        };
        conversation.extend(items);
        let object = conversation.object(&id);
        inner.order.insert(seq, id.clone());
        inner.conversations.insert(id, conversation);
        while inner.conversations.len() > self.capacity {
            let Some((_, oldest)) = inner.order.pop_first() else {
                break;
            };
            inner.conversations.remove(&oldest);
        }
        object
    }

    /// The object of conversation `id`.
    pub fn get(&self, id: &str) -> Option<Value> {
        self.lock().conversations.get(id).map(|c| c.object(id))
    }

    /// Replaces the metadata of `id`; returns its object.
    pub fn update(&self, id: &str, metadata: Map<String, Value>) -> Option<Value> {
        let mut inner = self.lock();
        let conversation = inner.conversations.get_mut(id)?;
        conversation.metadata = metadata;
        Some(conversation.object(id))
    }

    /// Deletes `id` with its items; false when it was not stored.
    pub fn delete(&self, id: &str) -> bool {
        let mut inner = self.lock();
        match inner.conversations.remove(id) {
            Some(conversation) => {
                inner.order.remove(&conversation.seq);
                true
            }
            None => false,
        }
    }

    /// The items of `id` for a response create.
    pub fn context(&self, id: &str) -> Option<Context> {
        self.lock().conversations.get(id).map(|c| Context {
            items: c.items.clone(),
            revision: c.revision,
        })
    }

    /// A page of the items of `id`, as `GET …/items` returns it.
    pub fn list(&self, id: &str, query: &ItemsQuery) -> Option<Value> {
        let inner = self.lock();
        Some(query.page(&inner.conversations.get(id)?.items))
    }

    /// Adds `items` (each with an `id`) to `id`; returns the list of the items added.
    pub fn add(&self, id: &str, items: Vec<Value>) -> Option<Value> {
        let mut inner = self.lock();
        let conversation = inner.conversations.get_mut(id)?;
        let added = json!({
            "object": "list",
            "data": &items,
            "first_id": items.first().and_then(|i| i.get("id")),
            "last_id": items.last().and_then(|i| i.get("id")),
            "has_more": false
        });
        conversation.extend(items);
        Some(added)
    }

    /// The item `item_id` of `id`.
    ///
    /// # Errors
    /// [`Missing`] conversation or item.
    pub fn item(&self, id: &str, item_id: &str) -> Result<Value, Missing> {
        let inner = self.lock();
        let conversation = inner.conversations.get(id).ok_or(Missing::Conversation)?;
        let at = conversation.position(item_id).ok_or(Missing::Item)?;
        Ok(conversation.items[at].clone())
    }

    /// Deletes the item `item_id` of `id`; returns the conversation's object.
    ///
    /// # Errors
    /// [`Missing`] conversation or item.
    pub fn delete_item(&self, id: &str, item_id: &str) -> Result<Value, Missing> {
        let mut inner = self.lock();
        let conversation = inner.get_mut(id)?;
        let at = conversation.position(item_id).ok_or(Missing::Item)?;
        conversation.items.remove(at);
        conversation.revision += 1;
        Ok(conversation.object(id))
    }

    /// Appends a response's turn to its conversation (nothing if it was deleted meanwhile).
    pub fn append(&self, turn: Turn) {
        if let Ok(conversation) = self.lock().get_mut(&turn.conversation) {
            conversation.extend(turn.items);
        }
    }

    /// Conversations kept.
    pub fn len(&self) -> usize {
        self.lock().conversations.len()
    }
}

#[cfg(test)]
mod tests;
