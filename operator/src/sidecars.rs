//! The sidecars of each scope that this replica serves: open streams and their reports.
//!
//! Inputs: stream opens and closes ([`Registry::connect`] and the returned guard), reports
//! ([`Registry::report`]) and the passing of time ([`Registry::sweep`]). Outputs: the number of
//! live sidecars per scope, pushed into the [`Publisher`] (which re-divides quotas), the
//! `synced/total` counts for status, and a stream of scopes whose counts changed (the
//! controller re-writes their status).
//!
//! A sidecar is live while it has an open stream, and for `grace` after its last report or
//! stream close — so a sidecar that reconnects (an operator restart, a network blip) keeps
//! its place and quotas are not re-divided back and forth; one that is gone for good stops
//! counting after the grace period.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::publish::Publisher;
use crate::wire::SidecarReport;

/// Registry of sidecars; cheap to clone.
#[derive(Clone, Debug)]
pub struct Registry {
    inner: Arc<Mutex<BTreeMap<String, BTreeMap<String, Session>>>>,
    publisher: Publisher,
    grace: Duration,
    changes: broadcast::Sender<String>,
}

#[derive(Debug)]
struct Session {
    open_streams: u32,
    last_seen: Instant,
    report: Option<SidecarReport>,
}

impl Session {
    fn is_live(&self, now: Instant, grace: Duration) -> bool {
        self.open_streams > 0 || now.saturating_duration_since(self.last_seen) <= grace
    }
}

/// Sidecars of a scope running the current version, out of all live ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncCounts {
    /// Live sidecars whose last report names the current version.
    pub synced: usize,
    /// Live sidecars.
    pub total: usize,
}

impl std::fmt::Display for SyncCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.synced, self.total)
    }
}

/// One live sidecar, for metrics.
#[derive(Clone, Debug)]
pub struct SidecarView {
    /// Scope.
    pub scope: String,
    /// Sidecar id.
    pub sidecar: String,
    /// Whether a stream is open now.
    pub connected: bool,
    /// Its last report.
    pub report: Option<SidecarReport>,
}

/// Marks a stream as open until dropped.
#[derive(Debug)]
pub struct StreamGuard {
    registry: Registry,
    scope: String,
    sidecar: String,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.registry
            .disconnect(&self.scope, &self.sidecar, Instant::now());
    }
}

impl Registry {
    /// A registry that counts a sidecar for `grace` after it was last heard of.
    pub fn new(publisher: Publisher, grace: Duration) -> Self {
        Self {
            inner: Arc::default(),
            publisher,
            grace,
            changes: broadcast::channel(1024).0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, BTreeMap<String, Session>>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Scopes whose sidecar counts or versions changed.
    pub fn changes(&self) -> broadcast::Receiver<String> {
        self.changes.subscribe()
    }

    /// Records an open stream of `sidecar` in `scope`.
    pub fn connect(&self, scope: &str, sidecar: &str, now: Instant) -> StreamGuard {
        self.lock()
            .entry(scope.to_owned())
            .or_default()
            .entry(sidecar.to_owned())
            .or_insert_with(|| Session {
                open_streams: 0,
                last_seen: now,
                report: None,
            })
            .open_streams += 1;
        self.changed(scope, now);
        StreamGuard {
            registry: self.clone(),
            scope: scope.to_owned(),
            sidecar: sidecar.to_owned(),
        }
    }

    fn disconnect(&self, scope: &str, sidecar: &str, now: Instant) {
        if let Some(session) = self
            .lock()
            .get_mut(scope)
            .and_then(|sessions| sessions.get_mut(sidecar))
        {
            session.open_streams = session.open_streams.saturating_sub(1);
            session.last_seen = now;
        }
    }

    /// Records a report of a sidecar in `scope`.
    pub fn report(&self, scope: &str, report: SidecarReport, now: Instant) {
        let noteworthy = {
            let mut scopes = self.lock();
            let sessions = scopes.entry(scope.to_owned()).or_default();
            match sessions.get_mut(&report.sidecar) {
                Some(session) => {
                    session.last_seen = now;
                    let before = session.report.as_ref().and_then(|r| r.version);
                    let changed = before != report.version;
                    session.report = Some(report);
                    changed
                }
                None => {
                    let session = Session {
                        open_streams: 0,
                        last_seen: now,
                        report: Some(report.clone()),
                    };
                    sessions.insert(report.sidecar, session);
                    true
                }
            }
        };
        if noteworthy {
            self.changed(scope, now);
        }
    }

    /// Forgets sidecars silent for longer than the grace period.
    pub fn sweep(&self, now: Instant) {
        let mut expired = Vec::new();
        {
            let mut scopes = self.lock();
            for (scope, sessions) in scopes.iter_mut() {
                let before = sessions.len();
                sessions.retain(|sidecar, session| {
                    let live = session.is_live(now, self.grace);
                    if !live {
                        tracing::info!(scope, sidecar, "sidecar gone; no longer counted");
                    }
                    live
                });
                if sessions.len() != before {
                    expired.push(scope.clone());
                }
            }
            scopes.retain(|_, sessions| !sessions.is_empty());
        }
        for scope in expired {
            self.changed(&scope, now);
        }
    }

    /// Sweeps every `interval` until the task is dropped.
    pub async fn sweep_every(self, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            self.sweep(Instant::now());
        }
    }

    fn live(&self, scope: &str, now: Instant) -> usize {
        self.lock().get(scope).map_or(0, |sessions| {
            sessions
                .values()
                .filter(|s| s.is_live(now, self.grace))
                .count()
        })
    }

    fn changed(&self, scope: &str, now: Instant) {
        self.publisher.set_sidecars(scope, self.live(scope, now));
        // Nobody listening (no controller, as in stream-only tests) is fine.
        let _ = self.changes.send(scope.to_owned());
    }

    /// Live sidecars of `scope`, and how many of them run `version`.
    pub fn counts(&self, scope: &str, version: u64, now: Instant) -> SyncCounts {
        let sessions = self.lock();
        let Some(sessions) = sessions.get(scope) else {
            return SyncCounts::default();
        };
        let live = sessions.values().filter(|s| s.is_live(now, self.grace));
        let mut counts = SyncCounts::default();
        for session in live {
            counts.total += 1;
            if session.report.as_ref().and_then(|r| r.version) == Some(version) {
                counts.synced += 1;
            }
        }
        counts
    }

    /// Every known sidecar.
    pub fn sidecars(&self) -> Vec<SidecarView> {
        let scopes = self.lock();
        scopes
            .iter()
            .flat_map(|(scope, sessions)| {
                sessions.iter().map(|(sidecar, session)| SidecarView {
                    scope: scope.clone(),
                    sidecar: sidecar.clone(),
                    connected: session.open_streams > 0,
                    report: session.report.clone(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
