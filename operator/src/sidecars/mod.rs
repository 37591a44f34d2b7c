//! The sidecars of each scope: those this replica serves (open streams and their reports) and
//! those other replicas serve (from their presence Leases, see `crate::presence`).
//!
//! Inputs: stream opens and closes ([`Registry::connect`] and the returned guard), reports
//! ([`Registry::report`]), other replicas' sidecars ([`Registry::set_remotes`]) and the passing
//! of time ([`Registry::sweep`]). Outputs: the number of live sidecars per scope across all
//! replicas (a sidecar listed by two replicas, as during a failover, counts once), pushed into
//! the [`Publisher`] (which re-divides quotas); the `synced/total` counts and the live state
//! ([`Registry::live_sidecars`]) for status; and a stream of scopes to re-write status for.
//!
//! Signals are spaced so frequent reports never mean a status write each: a new or gone
//! sidecar or a new version signals at once, a changed breaker state within
//! [`BREAKER_SIGNAL_SPACING`], changed quota levels within the live interval (10 s by default,
//! [`Registry::with_live_interval`]) — flushed by [`Registry::sweep`].
//!
//! A sidecar is live while it has an open stream, and for `grace` after its last report or
//! stream close — so a sidecar that reconnects (an operator restart, a network blip) keeps
//! its place and quotas are not re-divided back and forth; one that is gone for good stops
//! counting after the grace period.

mod remote;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::publish::Publisher;
use crate::status::SyncCounts;
use crate::status::live::LiveSidecar;
use crate::wire::SidecarReport;

pub use remote::RemoteReplica;

/// Longest wait between a changed breaker state and the signal to re-write status.
pub const BREAKER_SIGNAL_SPACING: Duration = Duration::from_secs(1);
/// Default longest wait between changed quota levels and the signal to re-write status.
pub const DEFAULT_LIVE_INTERVAL: Duration = Duration::from_secs(10);

/// Registry of sidecars; cheap to clone.
#[derive(Clone, Debug)]
pub struct Registry {
    inner: Arc<Mutex<Inner>>,
    publisher: Publisher,
    grace: Duration,
    live_interval: Duration,
    changes: broadcast::Sender<String>,
}

#[derive(Debug, Default)]
struct Inner {
    /// This replica's sidecars per scope.
    scopes: BTreeMap<String, BTreeMap<String, Session>>,
    /// Other replicas' sidecars, per replica.
    remotes: BTreeMap<String, RemoteReplica>,
    /// Scopes with a pending signal, and when it is due.
    due: BTreeMap<String, Instant>,
    /// When each scope was last signalled.
    signalled: BTreeMap<String, Instant>,
}

#[derive(Debug)]
struct Session {
    open_streams: u32,
    last_seen: Instant,
    report: Option<SidecarReport>,
    live: Option<LiveSidecar>,
}

/// How much a change matters to status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Change {
    None,
    Levels,
    Breakers,
    Now,
}

/// What changed from `before` to `after` for the same sidecar.
fn change(before: Option<&LiveSidecar>, after: Option<&LiveSidecar>) -> Change {
    match (before, after) {
        (None, None) => Change::None,
        (Some(b), Some(a)) if b.version != a.version || b.redis != a.redis => Change::Now,
        (Some(b), Some(a)) if b.breakers != a.breakers => Change::Breakers,
        (Some(b), Some(a))
            if b.minute_left != a.minute_left || b.calendar_left != a.calendar_left =>
        {
            Change::Levels
        }
        (Some(_), Some(_)) => Change::None,
        _ => Change::Now,
    }
}

impl Session {
    fn is_live(&self, now: Instant, grace: Duration) -> bool {
        self.open_streams > 0 || now.saturating_duration_since(self.last_seen) <= grace
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
            live_interval: DEFAULT_LIVE_INTERVAL,
            changes: broadcast::channel(1024).0,
        }
    }

    /// Signals changed quota levels at most once per `interval` per scope.
    #[must_use]
    pub fn with_live_interval(mut self, interval: Duration) -> Self {
        self.live_interval = interval;
        self
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Scopes whose sidecar counts or versions changed.
    pub fn changes(&self) -> broadcast::Receiver<String> {
        self.changes.subscribe()
    }

    /// Records an open stream of `sidecar` in `scope`.
    pub fn connect(&self, scope: &str, sidecar: &str, now: Instant) -> StreamGuard {
        self.lock()
            .scopes
            .entry(scope.to_owned())
            .or_default()
            .entry(sidecar.to_owned())
            .or_insert_with(|| Session {
                open_streams: 0,
                last_seen: now,
                report: None,
                live: None,
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
            .scopes
            .get_mut(scope)
            .and_then(|sessions| sessions.get_mut(sidecar))
        {
            session.open_streams = session.open_streams.saturating_sub(1);
            session.last_seen = now;
        }
    }

    /// Records a report of a sidecar in `scope`.
    pub fn report(&self, scope: &str, report: SidecarReport, now: Instant) {
        let live = LiveSidecar::from_report(&report, unix_now());
        let change = {
            let mut inner = self.lock();
            let sessions = inner.scopes.entry(scope.to_owned()).or_default();
            match sessions.get_mut(&report.sidecar) {
                Some(session) => {
                    session.last_seen = now;
                    let change = change(session.live.as_ref(), Some(&live));
                    session.report = Some(report);
                    session.live = Some(live);
                    change
                }
                None => {
                    let session = Session {
                        open_streams: 0,
                        last_seen: now,
                        report: Some(report.clone()),
                        live: Some(live),
                    };
                    sessions.insert(report.sidecar, session);
                    Change::Now
                }
            }
        };
        self.signal(scope, change, now);
    }

    /// Signals `scope` now, or schedules a signal when the change can wait.
    fn signal(&self, scope: &str, change: Change, now: Instant) {
        let wait = match change {
            Change::None => return,
            Change::Now => return self.changed(scope, now),
            Change::Breakers => BREAKER_SIGNAL_SPACING,
            Change::Levels => self.live_interval,
        };
        let mut inner = self.lock();
        let due = inner.signalled.get(scope).map_or(now, |last| *last + wait);
        let entry = inner.due.entry(scope.to_owned()).or_insert(due);
        *entry = (*entry).min(due);
    }

    /// Forgets sidecars silent for longer than the grace period and replicas whose Lease
    /// expired, and sends the signals that are due.
    pub fn sweep(&self, now: Instant) {
        let mut expired = BTreeSet::new();
        let due: Vec<String>;
        {
            let mut inner = self.lock();
            for (scope, sessions) in &mut inner.scopes {
                let before = sessions.len();
                sessions.retain(|sidecar, session| {
                    let live = session.is_live(now, self.grace);
                    if !live {
                        tracing::info!(scope, sidecar, "sidecar gone; no longer counted");
                    }
                    live
                });
                if sessions.len() != before {
                    expired.insert(scope.clone());
                }
            }
            inner.scopes.retain(|_, sessions| !sessions.is_empty());
            inner.remotes.retain(|replica, remote| {
                let live = remote.until > now;
                if !live {
                    tracing::info!(
                        replica,
                        "replica's presence expired; its sidecars no longer count"
                    );
                    expired.extend(remote.scopes.keys().cloned());
                }
                live
            });
            due = inner
                .due
                .iter()
                .filter(|(_, at)| **at <= now)
                .map(|(scope, _)| scope.clone())
                .collect();
        }
        for scope in expired.into_iter().chain(due) {
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

    /// The live sidecars of `scope` across all replicas, one per id (this replica's own
    /// report wins over another replica's copy).
    pub fn live_sidecars(&self, scope: &str, now: Instant) -> Vec<LiveSidecar> {
        let inner = self.lock();
        let mut out: BTreeMap<&str, LiveSidecar> = BTreeMap::new();
        for remote in inner.remotes.values().filter(|r| r.until > now) {
            for sidecar in remote.scopes.get(scope).into_iter().flatten() {
                out.insert(&sidecar.id, sidecar.clone());
            }
        }
        for (id, session) in inner.scopes.get(scope).into_iter().flatten() {
            if session.is_live(now, self.grace) {
                let live = session.live.clone().unwrap_or_else(|| LiveSidecar {
                    id: id.clone(),
                    ..LiveSidecar::default()
                });
                out.insert(id, live);
            }
        }
        out.into_values().collect()
    }

    /// This replica's own live sidecars per scope (what it announces to the others).
    pub fn local_sidecars(&self, now: Instant) -> BTreeMap<String, Vec<LiveSidecar>> {
        let inner = self.lock();
        inner
            .scopes
            .iter()
            .map(|(scope, sessions)| {
                let live = sessions
                    .iter()
                    .filter(|(_, s)| s.is_live(now, self.grace))
                    .map(|(id, s)| {
                        s.live.clone().unwrap_or_else(|| LiveSidecar {
                            id: id.clone(),
                            ..LiveSidecar::default()
                        })
                    })
                    .collect();
                (scope.clone(), live)
            })
            .collect()
    }

    fn changed(&self, scope: &str, now: Instant) {
        {
            let mut inner = self.lock();
            inner.due.remove(scope);
            inner.signalled.insert(scope.to_owned(), now);
        }
        let live = self.live_sidecars(scope, now).len();
        self.publisher.set_sidecars(scope, live);
        // Nobody listening (no controller, as in stream-only tests) is fine.
        let _ = self.changes.send(scope.to_owned());
    }

    /// Live sidecars of `scope` across all replicas, and how many of them run `version`.
    pub fn counts(&self, scope: &str, version: u64, now: Instant) -> SyncCounts {
        let live = self.live_sidecars(scope, now);
        SyncCounts {
            synced: live.iter().filter(|s| s.version == Some(version)).count(),
            total: live.len(),
        }
    }

    /// Every sidecar this replica knows from its own streams and reports.
    pub fn sidecars(&self) -> Vec<SidecarView> {
        let inner = self.lock();
        inner
            .scopes
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

/// The wall-clock time in whole seconds since the Unix epoch.
fn unix_now() -> i64 {
    k8s_openapi::jiff::Timestamp::now().as_second()
}
