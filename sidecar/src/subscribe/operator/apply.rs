//! Turning stream lines into applied snapshots — the sidecar's safety rules, without I/O.
//!
//! Input: one line of the operator stream. Output: the snapshot published on the `watch`
//! channel the gateway follows, or the reason it was not. A snapshot is applied only if it
//! deserialises completely, passes [`validate`], and carries a higher version than the one
//! serving; anything else leaves the last good snapshot in place.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use spillway_crds::Snapshot;
use tokio::sync::watch;

use super::wire::StreamLine;

/// What a line did.
#[derive(Debug)]
pub enum Outcome {
    /// The stream began; heartbeats come this often.
    Hello {
        /// Interval between heartbeats.
        heartbeat: Duration,
    },
    /// A heartbeat.
    Heartbeat,
    /// A snapshot was applied.
    Applied {
        /// Its version.
        version: u64,
        /// The channel to follow, with the very first snapshot only.
        first: Option<watch::Receiver<Arc<Snapshot>>>,
    },
    /// The snapshot is the one already serving.
    AlreadyApplied(u64),
}

/// Why a line was not applied.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refusal {
    /// Not a stream line; only the error's category and position are kept, never content
    /// (a snapshot line holds backend keys).
    #[error("unreadable line ({category} error at column {column})")]
    Unreadable {
        /// serde_json's error category.
        category: String,
        /// Column of the error.
        column: usize,
    },
    /// The version is lower than the one serving.
    #[error("version {offered} is older than the serving version {serving}")]
    Older {
        /// Offered.
        offered: u64,
        /// Serving.
        serving: u64,
    },
    /// The snapshot breaks a rule the data plane relies on.
    #[error("invalid snapshot version {version}: {reason}")]
    Invalid {
        /// Its version.
        version: u64,
        /// The broken rule.
        reason: String,
    },
}

/// Applies stream lines to a `watch` channel, created with the first good snapshot.
#[derive(Debug, Default)]
pub struct Applier {
    tx: Option<watch::Sender<Arc<Snapshot>>>,
}

impl Applier {
    /// The version serving, if any.
    pub fn serving(&self) -> Option<u64> {
        self.tx.as_ref().map(|tx| tx.borrow().version)
    }

    /// Handles one line (without its newline).
    ///
    /// # Errors
    /// Why the line changed nothing; the last good snapshot keeps serving.
    pub fn line(&mut self, line: &[u8]) -> Result<Outcome, Refusal> {
        let parsed: StreamLine = serde_json::from_slice(line).map_err(|e| Refusal::Unreadable {
            category: format!("{:?}", e.classify()).to_lowercase(),
            column: e.column(),
        })?;
        match parsed {
            StreamLine::Hello { heartbeat_ms, .. } => Ok(Outcome::Hello {
                heartbeat: Duration::from_millis(heartbeat_ms),
            }),
            StreamLine::Heartbeat { .. } => Ok(Outcome::Heartbeat),
            StreamLine::Snapshot { snapshot } => self.snapshot(snapshot),
        }
    }

    fn snapshot(&mut self, snapshot: Arc<Snapshot>) -> Result<Outcome, Refusal> {
        let version = snapshot.version;
        if let Some(serving) = self.serving() {
            if version == serving {
                return Ok(Outcome::AlreadyApplied(version));
            }
            if version < serving {
                return Err(Refusal::Older {
                    offered: version,
                    serving,
                });
            }
        }
        validate(&snapshot).map_err(|reason| Refusal::Invalid { version, reason })?;
        match &self.tx {
            Some(tx) => {
                tx.send_replace(snapshot);
                Ok(Outcome::Applied {
                    version,
                    first: None,
                })
            }
            None => {
                let (tx, rx) = watch::channel(snapshot);
                self.tx = Some(tx);
                Ok(Outcome::Applied {
                    version,
                    first: Some(rx),
                })
            }
        }
    }
}

/// The rules the data plane relies on, checked before a pushed snapshot is applied.
///
/// # Errors
/// The first rule broken.
pub fn validate(snapshot: &Snapshot) -> Result<(), String> {
    if snapshot.version == 0 {
        return Err("version 0 is never published".into());
    }
    let mut models = BTreeSet::new();
    for pool in &snapshot.pools {
        if pool.models.is_empty() || pool.backends.is_empty() {
            return Err(format!("pool {} has no models or no backends", pool.id));
        }
        if let Some(model) = pool.models.iter().find(|m| !models.insert(m.as_str())) {
            return Err(format!("model {model} is served by two pools"));
        }
        if pool.retry.max_attempts == 0 {
            return Err(format!("pool {} allows no attempt", pool.id));
        }
        for backend in &pool.backends {
            let url_ok =
                backend.base_url.starts_with("http://") || backend.base_url.starts_with("https://");
            if !url_ok || backend.weight == 0 || backend.priority == 0 {
                return Err(format!(
                    "backend {} of pool {} needs an http(s) URL, weight ≥ 1 and priority ≥ 1",
                    backend.name, pool.id
                ));
            }
        }
    }
    for quota in &snapshot.quotas {
        if !(quota.share > 0.0 && quota.share <= 1.0) {
            return Err(format!(
                "quota {} has share {} outside (0, 1]",
                quota.id, quota.share
            ));
        }
    }
    Ok(())
}
