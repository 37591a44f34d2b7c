//! The in-process simulator's handle: its backends (address, faults, timing, limits) and
//! the shared ledger, and a graceful shutdown.
//!
//! Input: what [`super::start_with_clock`] started. Output: [`SimHandle`] and its
//! [`BackendHandle`]s.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::backend::{self, Timing};
use super::faults::{FaultSpec, FaultView};
use super::ledger::{self, LedgerQuery, LedgerSnapshot};
use super::ratelimit::Limits;

/// Running simulated backends. Dropping it stops them too (without waiting).
pub struct SimHandle {
    pub(super) backends: Vec<BackendHandle>,
    pub(super) ledger: Arc<ledger::Ledger>,
    pub(super) shutdown: watch::Sender<bool>,
    pub(super) tasks: Vec<JoinHandle<()>>,
}

impl SimHandle {
    /// The backends, in config order.
    pub fn backends(&self) -> &[BackendHandle] {
        &self.backends
    }

    /// The backend named `name`.
    pub fn backend(&self, name: &str) -> Option<&BackendHandle> {
        self.backends.iter().find(|b| b.name() == name)
    }

    /// `http://addr` of the backend named `name`.
    pub fn url(&self, name: &str) -> Option<String> {
        self.backend(name).map(BackendHandle::url)
    }

    /// Every ledger entry kept, with totals.
    pub fn ledger(&self) -> LedgerSnapshot {
        self.ledger.snapshot(&LedgerQuery::default())
    }

    /// Ledger entries and totals matching `query`.
    pub fn ledger_query(&self, query: &LedgerQuery) -> LedgerSnapshot {
        self.ledger.snapshot(query)
    }

    /// Forgets all ledger entries and totals.
    pub fn clear_ledger(&self) {
        self.ledger.clear();
    }

    /// Stops accepting, lets in-flight responses finish (up to
    /// [`super::server::SHUTDOWN_GRACE`]), then returns.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// One running backend: its address and runtime controls.
pub struct BackendHandle {
    pub(super) addr: SocketAddr,
    pub(super) state: Arc<backend::Backend>,
}

impl BackendHandle {
    /// Name from the config.
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ip:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Appends faults (as `POST /_sim/faults`).
    ///
    /// # Errors
    /// An invalid fault; none is added then.
    pub fn add_faults(&self, specs: &[FaultSpec]) -> Result<(), String> {
        self.state.add_faults(specs)
    }

    /// Clears faults (as `DELETE /_sim/faults`).
    pub fn clear_faults(&self) {
        self.state.clear_faults();
    }

    /// The faults in force.
    pub fn faults(&self) -> Vec<FaultView> {
        self.state.faults()
    }

    /// Latency and pacing.
    pub fn timing(&self) -> Timing {
        self.state.timing()
    }

    /// Changes latency and pacing (as `POST /_sim/latency`).
    pub fn set_timing(&self, timing: Timing) {
        self.state.set_timing(timing);
    }

    /// Rate limits.
    pub fn limits(&self) -> Limits {
        self.state.limits()
    }

    /// Changes rate limits (as `POST /_sim/limits`).
    pub fn set_limits(&self, limits: Limits) {
        self.state.set_limits(limits);
    }
}
