//! Starts the demo's moving parts in this process, on 127.0.0.1 with free ports: the
//! simulated backends (the PTU on a [`ScaledClock`]), the manifests in a folder, and the
//! gateway through [`run::start`] — exactly what `spillway run` starts: file-watched config,
//! usage totals, telemetry with `/metrics` and quota levels, data path and admin port.
//!
//! Output: a [`Stack`] with the URLs, the [`GatewayProcess`] to look at (gateway, usage
//! totals, telemetry), and the simulators' ledgers; [`Stack::shutdown`] stops it all.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use super::scenario::{self, PTU_TIME_SCALE, ScaledClock};
use crate::simulate::{self, BackendHandle, LedgerEntry, SimConfig, SimHandle};
use spillway_sidecar::clock::SystemClock;
use spillway_sidecar::run::{self, GatewayOptions, GatewayProcess};

/// Recent usage records the admin port keeps.
const RECENT_RECORDS: usize = 1000;
/// Time in-flight requests get when the demo stops.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// The running demo backends and gateway.
pub struct Stack {
    /// The PTU simulator (its rate window runs [`PTU_TIME_SCALE`] times faster).
    ptu: SimHandle,
    /// The pay-as-you-go simulator.
    paygo: SimHandle,
    /// The gateway process, wired as `spillway run` wires it.
    pub process: GatewayProcess,
    /// Data path, `http://127.0.0.1:PORT`.
    pub url: String,
    /// Admin port, `http://127.0.0.1:PORT`.
    pub admin: String,
    /// The manifest file the gateway runs on (watched: edits apply live).
    pub manifest: PathBuf,
}

impl Stack {
    /// Starts the simulators and the gateway, writing the manifests (sized for the demo's
    /// `rate`) into `dir`.
    ///
    /// # Errors
    /// A port that cannot be bound, a folder that cannot be written, manifests that do
    /// not compile, or `OTEL_*` variables that cannot be used.
    pub async fn start(dir: &Path, rate: f64) -> anyhow::Result<Stack> {
        let manifest = dir.join("gateway.yaml");
        // Telemetry as `spillway run` without flags: OTLP metrics, traces and logs when the
        // OTEL_* variables ask for them.
        let mut options = GatewayOptions::new(&manifest).telemetry_from_env(&Default::default())?;
        let mut backends = scenario::sim_backends(scenario::ptu_tpm(rate), [0; 3]).into_iter();
        let ptu_config = SimConfig {
            backends: backends.by_ref().take(1).collect(),
        };
        let clock = Arc::new(ScaledClock::new(Arc::new(SystemClock), PTU_TIME_SCALE));
        let ptu = simulate::start_with_clock(ptu_config, clock).await?;
        let paygo = simulate::start(SimConfig {
            backends: backends.collect(),
        })
        .await?;
        let urls: Vec<String> = scenario::BACKENDS
            .iter()
            .map(|name| {
                ptu.url(name)
                    .or_else(|| paygo.url(name))
                    .unwrap_or_default()
            })
            .collect();
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(
            &manifest,
            scenario::manifests([&urls[0], &urls[1], &urls[2]], rate),
        )
        .with_context(|| format!("writing {}", manifest.display()))?;
        options.recent_records = RECENT_RECORDS;
        options.shutdown_grace = SHUTDOWN_GRACE;
        let process = match run::start(options).await {
            Ok(process) => process,
            Err(error) => {
                ptu.shutdown().await;
                paygo.shutdown().await;
                return Err(error);
            }
        };
        Ok(Stack {
            ptu,
            paygo,
            url: process.url(),
            admin: process.admin_url(),
            process,
            manifest,
        })
    }

    /// The simulated backend named `name`.
    pub fn backend(&self, name: &str) -> Option<&BackendHandle> {
        self.ptu.backend(name).or_else(|| self.paygo.backend(name))
    }

    /// Every ledger entry of every simulated backend.
    pub fn ledger(&self) -> Vec<LedgerEntry> {
        let mut entries = self.ptu.ledger().entries;
        entries.extend(self.paygo.ledger().entries);
        entries
    }

    /// Stops the gateway (in-flight requests get [`SHUTDOWN_GRACE`]), then the simulators.
    pub async fn shutdown(self) {
        if let Err(error) = self.process.shutdown().await {
            tracing::warn!(%error, "the demo's gateway did not stop cleanly");
        }
        self.ptu.shutdown().await;
        self.paygo.shutdown().await;
    }
}
