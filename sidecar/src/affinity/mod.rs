//! Where each stored response lives. A response created through the gateway (the Responses
//! API with `store`, the default) exists only on the backend that created it: its id, the
//! chain that continues it (`previous_response_id`) and every later call addressed to it must
//! go there. [`ResponseHomes`] maps a response id to that backend, with the app that created
//! it (another app never reaches it) and, for `background` responses, whether its usage is
//! still to be counted.
//!
//! Bounded and expiring: at most [`CAPACITY`] ids per replica (oldest dropped first), each
//! kept [`TTL`] (the providers keep stored responses 30 days). In the Redis rate-limiting mode
//! the map is also written to Redis beside the counters, so every replica finds a response
//! created through another one; a replica reads its own copy first. A lost entry (expired,
//! evicted, Redis down) is not a wrong answer: the caller searches the backends instead.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::limiter::SharedKv;

/// Response ids remembered per replica at most.
pub const CAPACITY: usize = 100_000;
/// How long a response id is remembered.
pub const TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// The backend that holds a stored response, and who created it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Home {
    /// The pool of the backend.
    pub pool: String,
    /// The backend.
    pub backend: String,
    /// The app that created the response.
    pub app: String,
    /// The model or deployment the client asked for.
    pub model: String,
    /// A background response whose usage is counted when a client first sees it finished.
    #[serde(default)]
    pub pending_usage: bool,
}

#[derive(Debug, Default)]
struct Local {
    homes: HashMap<String, (Home, Instant)>,
    order: VecDeque<String>,
}

impl Local {
    fn insert(&mut self, id: &str, home: Home, now: Instant) {
        if self
            .homes
            .insert(id.to_owned(), (home, now + TTL))
            .is_none()
        {
            self.order.push_back(id.to_owned());
        }
        while self.homes.len() > CAPACITY {
            match self.order.pop_front() {
                Some(oldest) => {
                    self.homes.remove(&oldest);
                }
                None => break,
            }
        }
        // Ids removed some other way leave their place in `order`; keep it bounded too.
        if self.order.len() > 2 * CAPACITY {
            let homes = &self.homes;
            self.order.retain(|id| homes.contains_key(id));
        }
    }

    fn get(&mut self, id: &str, now: Instant) -> Option<Home> {
        match self.homes.get(id) {
            Some((home, until)) if *until > now => Some(home.clone()),
            Some(_) => {
                self.homes.remove(id);
                None
            }
            None => None,
        }
    }
}

/// Response id → the backend that holds it (see the module docs).
#[derive(Debug, Default)]
pub struct ResponseHomes {
    local: Mutex<Local>,
}

fn home_key(id: &str) -> String {
    format!("resp:{id}")
}

fn usage_key(id: &str) -> String {
    format!("resp-usage:{id}")
}

impl ResponseHomes {
    fn local(&self) -> std::sync::MutexGuard<'_, Local> {
        self.local
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Remembers that `id` lives at `home` (and in `shared`, when given).
    pub async fn remember(&self, id: &str, home: Home, shared: Option<&SharedKv>) {
        if let Some(kv) = shared
            && let Ok(json) = serde_json::to_string(&home)
            && kv.set(&home_key(id), &json, TTL, false).await.is_err()
        {
            tracing::warn!(
                id,
                "Redis unreachable: this response's home is known to this replica only"
            );
        }
        self.local().insert(id, home, Instant::now());
    }

    /// Where `id` lives, if known here or in `shared`.
    pub async fn find(&self, id: &str, shared: Option<&SharedKv>) -> Option<Home> {
        if let Some(home) = self.local().get(id, Instant::now()) {
            return Some(home);
        }
        let kv = shared?;
        let json = kv.get(&home_key(id)).await.ok()??;
        let home: Home = serde_json::from_str(&json).ok()?;
        self.local().insert(id, home.clone(), Instant::now());
        Some(home)
    }

    /// Forgets `id` (deleted).
    pub async fn forget(&self, id: &str, shared: Option<&SharedKv>) {
        self.local().homes.remove(id);
        if let Some(kv) = shared {
            let _ = kv.remove(&home_key(id)).await;
        }
    }

    /// Claims the counting of a background response's usage: true for exactly one caller
    /// (per fleet in Redis mode; per replica when Redis is unreachable).
    pub async fn claim_usage(&self, id: &str, shared: Option<&SharedKv>) -> bool {
        let claimed_here = {
            let mut local = self.local();
            match local.homes.get_mut(id) {
                Some((home, _)) if home.pending_usage => {
                    home.pending_usage = false;
                    true
                }
                Some(_) => false,
                None => shared.is_some(),
            }
        };
        match shared {
            Some(kv) if claimed_here => kv
                .set(&usage_key(id), "counted", TTL, true)
                .await
                .unwrap_or(true),
            _ => claimed_here,
        }
    }
}

#[cfg(test)]
mod tests;
