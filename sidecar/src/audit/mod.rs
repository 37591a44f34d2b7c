//! Audit log of prompts and completions, off by default, enabled per scope (`AIGateway
//! spec.audit`) for every app or for listed appIds.
//!
//! The request path only hands over what it already holds — the request body (a cheap
//! `Bytes` clone), the completion text the body scanner reassembled, the usage record — with
//! a non-blocking `try_send` into a bounded queue ([`AuditSink`]); when the queue is full or
//! no destination is configured, the record is dropped and counted, never waited for. The
//! writer task ([`writer`]) extracts the request messages, applies the scope's
//! [`redact::Redactor`], caps each field and writes one JSON line per call.

pub mod redact;
pub mod writer;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use bytes::Bytes;
use spillway_crds::snapshot::AuditConfig;
use tokio::sync::mpsc;

use crate::usage::UsageRecord;
use redact::Redactor;

/// A scope's audit settings, ready to use.
#[derive(Debug)]
pub struct AuditPolicy {
    apps: Vec<String>,
    max_field_bytes: usize,
    redactor: Redactor,
}

impl AuditPolicy {
    /// The policy for `config`.
    ///
    /// # Errors
    /// A redaction pattern does not compile.
    pub fn new(config: &AuditConfig) -> Result<Self, regex::Error> {
        Ok(Self {
            apps: config.apps.clone(),
            max_field_bytes: usize::try_from(config.max_field_bytes).unwrap_or(usize::MAX),
            redactor: Redactor::new(config)?,
        })
    }

    /// Whether calls of `app_id` are audited.
    pub fn applies_to(&self, app_id: &str) -> bool {
        self.apps.is_empty() || self.apps.iter().any(|a| a == app_id)
    }
}

/// One call as the request path leaves it for the writer: nothing redacted yet.
#[derive(Debug)]
pub struct PendingAudit {
    /// The policy in force when the call was made.
    pub policy: Arc<AuditPolicy>,
    /// The call's usage record.
    pub record: UsageRecord,
    /// The request body as the client sent it.
    pub request_body: Bytes,
    /// The generated text (stream reassembled), if any.
    pub completion: Option<String>,
    /// When the call ended.
    pub at: SystemTime,
}

/// Audit records by how they ended.
#[derive(Debug, Default)]
pub struct AuditCounts {
    written: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
}

impl AuditCounts {
    /// `(written, dropped, failed)`.
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.written.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// The request path's end of the audit queue; cheap to clone.
#[derive(Clone, Debug)]
pub struct AuditSink {
    tx: mpsc::Sender<PendingAudit>,
    counts: Arc<AuditCounts>,
}

/// The writer's end of the audit queue.
#[derive(Debug)]
pub struct AuditQueue {
    rx: mpsc::Receiver<PendingAudit>,
    counts: Arc<AuditCounts>,
}

/// A queue holding at most `capacity` records.
pub fn queue(capacity: usize) -> (AuditSink, AuditQueue) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let counts = Arc::new(AuditCounts::default());
    (
        AuditSink {
            tx,
            counts: Arc::clone(&counts),
        },
        AuditQueue { rx, counts },
    )
}

impl AuditSink {
    /// Queues `pending` without waiting; a full queue or no writer drops it (counted).
    pub fn send(&self, pending: PendingAudit) {
        if self.tx.try_send(pending).is_err() {
            let dropped = self.counts.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(
                    dropped,
                    "audit records dropped: the audit writer is behind or no --audit-log is set"
                );
            }
        }
    }

    /// The counts, for metrics.
    pub fn counts(&self) -> &Arc<AuditCounts> {
        &self.counts
    }
}
