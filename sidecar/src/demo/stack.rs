//! Starts the demo's moving parts in this process, on 127.0.0.1 with free ports: the
//! simulated backends (the PTU on a [`ScaledClock`]), the manifests in a folder, and the
//! gateway wired the way `spillway run` wires it — file-watched config, usage totals, data
//! path and admin port.
//!
//! Output: a [`Stack`] with the URLs, the gateway and its usage totals to look at, and the
//! simulators' ledgers; [`Stack::shutdown`] stops it all.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::scenario::{self, PTU_TIME_SCALE, ScaledClock};
use crate::clock::SystemClock;
use crate::proxy::{Gateway, admin};
use crate::simulate::{self, BackendHandle, LedgerEntry, SimConfig, SimHandle};
use crate::subscribe::file::{self, LocalSecrets};
use crate::usage::UsageSink;
use crate::usage::totals::UsageTotals;

/// Recent usage records the admin port keeps.
const RECENT_RECORDS: usize = 1000;

/// The running demo backends and gateway.
pub struct Stack {
    /// The PTU simulator (its rate window runs [`PTU_TIME_SCALE`] times faster).
    ptu: SimHandle,
    /// The pay-as-you-go simulator.
    paygo: SimHandle,
    /// The gateway.
    pub gateway: Gateway,
    /// Usage totals, as `/admin/usage` serves them.
    pub totals: UsageTotals,
    /// Data path, `http://127.0.0.1:PORT`.
    pub url: String,
    /// Admin port, `http://127.0.0.1:PORT`.
    pub admin: String,
    /// The manifest file the gateway runs on (watched: edits apply live).
    pub manifest: PathBuf,
    shutdown: oneshot::Sender<()>,
    serving: JoinHandle<()>,
    tasks: Vec<JoinHandle<()>>,
}

impl Stack {
    /// Starts the simulators and the gateway, writing the manifests into `dir`.
    ///
    /// # Errors
    /// A port that cannot be bound, a folder that cannot be written, or manifests that do
    /// not compile.
    pub async fn start(dir: &Path, ptu_tpm: u64) -> anyhow::Result<Stack> {
        let mut backends = scenario::sim_backends(ptu_tpm, [0; 3]).into_iter();
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
        let manifest = dir.join("gateway.yaml");
        std::fs::write(
            &manifest,
            scenario::manifests([&urls[0], &urls[1], &urls[2]]),
        )
        .with_context(|| format!("writing {}", manifest.display()))?;
        let (gateway, totals, mut tasks) = start_gateway(&manifest)?;
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let admin_listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let admin = format!("http://{}", admin_listener.local_addr()?);
        tasks.push(tokio::spawn(admin::serve(
            admin_listener,
            gateway.clone(),
            totals.clone(),
        )));
        let (shutdown, stop) = oneshot::channel::<()>();
        let serving = tokio::spawn(gateway.clone().serve(
            listener,
            async {
                let _ = stop.await;
            },
            Duration::from_secs(2),
        ));
        Ok(Stack {
            ptu,
            paygo,
            gateway,
            totals,
            url,
            admin,
            manifest,
            shutdown,
            serving,
            tasks,
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

    /// Stops the gateway (in-flight requests get 2 s), then the simulators.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(());
        let _ = tokio::time::timeout(Duration::from_secs(3), self.serving).await;
        for task in self.tasks {
            task.abort();
        }
        self.ptu.shutdown().await;
        self.paygo.shutdown().await;
    }
}

/// Loads the manifest, then wires what `spillway run` wires: the file watcher feeding the
/// gateway, and the usage totals fed by the gateway's sink.
fn start_gateway(manifest: &Path) -> anyhow::Result<(Gateway, UsageTotals, Vec<JoinHandle<()>>)> {
    let secrets = LocalSecrets::default();
    let first = file::load(manifest, &secrets).map_err(|reasons| {
        anyhow::anyhow!(
            "{} cannot be used:\n  {}",
            manifest.display(),
            reasons.join("\n  ")
        )
    })?;
    let (tx, rx) = watch::channel(Arc::new(first));
    let sink = UsageSink::new(16 * 1024);
    let totals = UsageTotals::new(RECENT_RECORDS);
    let gateway = Gateway::new(sink.clone());
    let tasks = vec![
        tokio::spawn(file::watch_file(
            manifest.to_owned(),
            secrets,
            Duration::from_secs(1),
            tx,
        )),
        tokio::spawn(totals.clone().follow(sink.subscribe())),
        tokio::spawn(gateway.clone().follow(rx)),
    ];
    Ok((gateway, totals, tasks))
}
