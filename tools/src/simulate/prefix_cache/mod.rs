//! The prompt-prefix cache of one backend, as OpenAI and Azure OpenAI cache prompts: a call
//! whose prompt starts with a prefix this backend processed recently reports part of its
//! prompt as `cached_tokens`.
//!
//! The prefix of a call is its prompt without the last message or item: chat
//! `messages[..n-1]`; responses `instructions`, the input items but the last, and the
//! `previous_response_id` chain or the conversation's items (as its id and revision);
//! completions and embeddings have none. It is keyed together
//! with the operation, the model and `prompt_cache_key`.
//!
//! Input: a [`Call`] (with its prompt and chain tokens counted), its body and the time.
//! Output: the cached tokens — when the prefix was seen within [`TTL`] and is estimated at
//! `cache_min_tokens` or more, its tokens rounded down to a multiple of [`BLOCK`], at most the
//! prompt, else 0 — and the prefix recorded as seen (a hit refreshes it). Bounded: at most
//! [`CAPACITY`] prefixes, the least recently seen leaving first. A prefix's token estimate is
//! kept with it, so repeated prompts cost a hash, not a tokenizer pass.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::call::Call;
use crate::simulate::route::ModelApi;
use spillway_sidecar::usage::tokenizer;

/// Prefixes kept per backend.
pub const CAPACITY: usize = 10_000;
/// How long a prefix stays cached after it was last seen.
pub const TTL: Duration = Duration::from_secs(300);
/// Cached tokens come in blocks of this many.
pub const BLOCK: u64 = 128;

type Key = [u8; 32];

/// What the cache keeps of a prefix.
#[derive(Clone, Copy, Debug)]
struct Seen {
    tokens: u64,
    at: Instant,
    tick: u64,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<Key, Seen>,
    /// Keys by the tick they were last seen at: oldest first.
    order: BTreeMap<u64, Key>,
    tick: u64,
}

impl Inner {
    /// Forgets prefixes last seen `ttl` or longer before `now` (they lead `order`).
    fn expire(&mut self, now: Instant, ttl: Duration) {
        while let Some((&tick, key)) = self.order.first_key_value() {
            let expired = self
                .entries
                .get(key)
                .is_none_or(|seen| now.saturating_duration_since(seen.at) >= ttl);
            if !expired {
                break;
            }
            let key = *key;
            self.order.remove(&tick);
            self.entries.remove(&key);
        }
    }

    /// Marks `key` seen at `now` with `tokens`, evicting the least recently seen past
    /// `capacity`.
    fn touch(&mut self, key: Key, tokens: u64, now: Instant, capacity: usize) {
        self.tick += 1;
        let tick = self.tick;
        if let Some(old) = self.entries.insert(
            key,
            Seen {
                tokens,
                at: now,
                tick,
            },
        ) {
            self.order.remove(&old.tick);
        }
        self.order.insert(tick, key);
        while self.entries.len() > capacity {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
        }
    }
}

/// One backend's cache of prompt prefixes.
#[derive(Debug)]
pub struct PrefixCache {
    min_tokens: u64,
    capacity: usize,
    ttl: Duration,
    inner: Mutex<Inner>,
}

impl PrefixCache {
    /// A cache reporting prefixes of at least `min_tokens`, with [`CAPACITY`] and [`TTL`].
    pub fn new(min_tokens: u64) -> Self {
        Self::with_bounds(min_tokens, CAPACITY, TTL)
    }

    /// A cache with explicit bounds.
    pub fn with_bounds(min_tokens: u64, capacity: usize, ttl: Duration) -> Self {
        Self {
            min_tokens,
            capacity: capacity.max(1),
            ttl,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The cached tokens of `call` (body `request`) at `now`; records its prefix as seen.
    pub fn serve(&self, call: &Call, request: &Value, now: Instant) -> u64 {
        let Some(prefix) = Prefix::of(call, request) else {
            return 0;
        };
        let key = prefix.key(call, request);
        let hit = {
            let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            inner.expire(now, self.ttl);
            inner.entries.get(&key).map(|seen| seen.tokens)
        };
        // A miss counts the prefix outside the lock.
        let tokens = hit.unwrap_or_else(|| prefix.tokens(call));
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .touch(key, tokens, now, self.capacity);
        match hit {
            Some(tokens) if tokens >= self.min_tokens => {
                (tokens / BLOCK * BLOCK).min(call.prompt_tokens)
            }
            _ => 0,
        }
    }

    /// Prefixes kept now.
    pub fn kept(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entries
            .len()
    }
}

/// The prefix of one call, borrowed from its body.
struct Prefix<'a> {
    instructions: Option<&'a str>,
    items: &'a [Value],
}

impl<'a> Prefix<'a> {
    /// The prefix of `call`, or `None` when it has none.
    fn of(call: &Call, request: &'a Value) -> Option<Self> {
        let all_but_last = |field: &str| match request.get(field) {
            Some(Value::Array(items)) if items.len() > 1 => &items[..items.len() - 1],
            _ => &[],
        };
        let prefix = match call.operation {
            ModelApi::ChatCompletions => Self {
                instructions: None,
                items: all_but_last("messages"),
            },
            ModelApi::Responses => Self {
                instructions: request.get("instructions").and_then(Value::as_str),
                items: all_but_last("input"),
            },
            ModelApi::Completions | ModelApi::Embeddings => return None,
        };
        let empty = prefix.instructions.is_none_or(str::is_empty)
            && prefix.items.is_empty()
            && call.previous_response_id.is_none()
            && call.conversation.is_none();
        (!empty).then_some(prefix)
    }

    /// What the prefix is cached under.
    fn key(&self, call: &Call, request: &Value) -> Key {
        let mut hasher = HashWriter(Sha256::new());
        // Chat messages and responses items differ, so the operation leads.
        hasher
            .0
            .update([u8::from(call.operation == ModelApi::Responses)]);
        let cache_key = request.get("prompt_cache_key").and_then(Value::as_str);
        let fields = [
            Some(call.model.as_str()),
            cache_key,
            call.previous_response_id.as_deref(),
            call.conversation.as_deref(),
            self.instructions,
        ];
        for field in fields {
            // A presence byte, then the text and a terminator, so fields cannot run together.
            match field {
                Some(text) => {
                    hasher.0.update([1]);
                    hasher.0.update(text.as_bytes());
                    hasher.0.update([0]);
                }
                None => hasher.0.update([2]),
            }
        }
        hasher.0.update(call.conversation_revision.to_le_bytes());
        for item in self.items {
            // Writing into a hasher cannot fail.
            let _ = serde_json::to_writer(&mut hasher, item);
            hasher.0.update([0]);
        }
        let digest = hasher.0.finalize();
        let mut key = [0; 32];
        key.copy_from_slice(&digest);
        key
    }

    /// The prefix's estimated tokens: its messages or items as the prompt counter counts
    /// them, the instructions, and the chain of previous responses or the conversation.
    fn tokens(&self, call: &Call) -> u64 {
        let items = Value::Array(self.items.to_vec());
        let counted = match call.operation {
            ModelApi::Responses => {
                let instructions = self.instructions.unwrap_or_default();
                let body = if self.items.is_empty() {
                    json!({"instructions": instructions})
                } else {
                    json!({"instructions": instructions, "input": items})
                };
                tokenizer::count_prompt(&call.model, ModelApi::Responses.tokenizer(), &body)
            }
            _ => tokenizer::count_prompt(
                &call.model,
                call.operation.tokenizer(),
                &json!({"messages": items}),
            ),
        };
        counted + call.context_tokens
    }
}

/// Feeds serialized JSON into a SHA-256.
struct HashWriter(Sha256);

impl io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
