//! Turning stream lines into applied snapshots — the sidecar's safety rules, without I/O.
//!
//! Input: one line of the operator stream. Output: the snapshot published on the `watch`
//! channel the gateway follows, or the reason it was not. A snapshot is applied only if it
//! deserialises completely, passes [`Snapshot::check`], and carries a higher version than the
//! one serving; anything else leaves the last good snapshot in place.

use std::sync::Arc;
use std::time::Duration;

use spillway_crds::Snapshot;
use spillway_crds::snapshot::InvalidSnapshot;
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
    /// A snapshot was published; its version.
    Applied(u64),
    /// The snapshot is the one already serving.
    AlreadyApplied(u64),
}

/// Why a line was not applied.
#[derive(Debug, thiserror::Error, PartialEq)]
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
        reason: InvalidSnapshot,
    },
}

/// Applies stream lines to a `watch` channel. Until the first good snapshot the channel holds
/// an empty one of version 0: "nothing yet", never applied.
#[derive(Debug)]
pub struct Applier {
    tx: watch::Sender<Arc<Snapshot>>,
}

impl Applier {
    /// An applier and the channel it publishes on.
    pub fn new() -> (Self, watch::Receiver<Arc<Snapshot>>) {
        let (tx, rx) = watch::channel(Arc::new(Snapshot::default()));
        (Self { tx }, rx)
    }

    /// The version serving, if any.
    pub fn serving(&self) -> Option<u64> {
        Some(self.tx.borrow().version).filter(|version| *version > 0)
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
        snapshot
            .check()
            .map_err(|reason| Refusal::Invalid { version, reason })?;
        self.tx.send_replace(snapshot);
        Ok(Outcome::Applied(version))
    }
}
