//! What the bench runs against: one `spillway simulate` process with four backends (two
//! answering at once, two streaming paced deltas) and a `spillway run` gateway whose
//! manifest turns each feature on or off ([`Variant`]).
//!
//! Input: the binary, the CPUs, a scratch folder, the OTLP sink's URL. Output: the
//! simulator's backend URLs and a running gateway with its data-path URL. The manifest text is
//! built by the pure [`manifest`] (tested); processes come from [`super::procs`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use sha2::{Digest as _, Sha256};

use super::procs::{Child, Spawn};

/// The apps the load rotates through; each sends its name as its API key.
pub const APPS: [&str; 2] = ["bench-a", "bench-b"];
/// Model of the fast pool (answers at once).
pub const FAST_MODEL: &str = "gpt-4o";
/// Model of the paced pool (streams deltas at a fixed interval).
pub const PACED_MODEL: &str = "gpt-4o-paced";

/// Which gateway features are on. Breakers and retries are always on: they cannot be
/// switched off in a pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// Two backends per pool, API-key identity, token + request + daily quotas (limits far
    /// above the load), OTLP metrics and traces to the sink.
    AllOn,
    /// As `AllOn` without OTLP export.
    NoOtlp,
    /// As `AllOn` without any `TokenQuota`.
    NoQuota,
    /// As `AllOn` with anonymous callers instead of API keys (a default quota applies).
    NoIdentity,
    /// As `AllOn` with one backend per pool (no weighted choice).
    OneBackend,
}

impl Variant {
    /// Every variant, `AllOn` first.
    pub const ALL: [Variant; 5] = [
        Variant::AllOn,
        Variant::NoOtlp,
        Variant::NoQuota,
        Variant::NoIdentity,
        Variant::OneBackend,
    ];

    /// Label in the table.
    pub fn label(self) -> &'static str {
        match self {
            Variant::AllOn => "everything on",
            Variant::NoOtlp => "OTLP export off",
            Variant::NoQuota => "quotas off",
            Variant::NoIdentity => "identity off",
            Variant::OneBackend => "one backend",
        }
    }
}

/// The simulator's configuration: `fast-1`, `fast-2` (no latency, no pacing) and
/// `paced-1`, `paced-2` (one delta every `interval`).
pub fn simulator_yaml(interval: Duration) -> String {
    let per_second = (1.0 / interval.as_secs_f64().max(1e-3)).round() as u32;
    format!(
        "backends:\n  - {{name: fast-1}}\n  - {{name: fast-2}}\n  - {{name: paced-1, tokensPerSecond: {per_second}}}\n  - {{name: paced-2, tokensPerSecond: {per_second}}}\n"
    )
}

/// The gateway manifest for `variant`, routing to the simulator's `urls` (by backend name).
///
/// # Errors
/// A backend of [`simulator_yaml`] missing from `urls`.
pub fn manifest(variant: Variant, urls: &BTreeMap<String, String>) -> anyhow::Result<String> {
    let url = |name: &str| {
        urls.get(name)
            .ok_or_else(|| anyhow!("the simulator did not announce backend {name}"))
    };
    let mut out = String::new();
    for (pool, model, prefix) in [
        ("bench-fast", FAST_MODEL, "fast"),
        ("bench-paced", PACED_MODEL, "paced"),
    ] {
        let count = if variant == Variant::OneBackend { 1 } else { 2 };
        let _ = write!(
            out,
            "apiVersion: spillway.dev/v1alpha1\nkind: AIBackendPool\nmetadata: {{name: {pool}}}\nspec:\n  models: [{model}]\n  backends:\n"
        );
        for n in 1..=count {
            let name = format!("{prefix}-{n}");
            let _ = writeln!(
                out,
                "    - {{name: {name}, type: OpenAI, url: \"{}\"}}",
                url(&name)?
            );
        }
        out.push_str("---\n");
    }
    if variant != Variant::NoIdentity {
        out.push_str("apiVersion: spillway.dev/v1alpha1\nkind: AIGateway\nmetadata: {name: bench}\nspec:\n  identity:\n    apiKeys:\n");
        for app in APPS {
            let hash = hex(&Sha256::digest(app.as_bytes()));
            let _ = writeln!(out, "      - {{appId: {app}, keySha256: {hash}}}");
        }
        out.push_str("---\n");
    }
    if variant != Variant::NoQuota {
        let quota_apps: Vec<Option<&str>> = match variant {
            Variant::NoIdentity => vec![None],
            _ => APPS.iter().copied().map(Some).collect(),
        };
        for app in quota_apps {
            let (name, app_line) = match app {
                Some(app) => (app.to_owned(), format!("  appId: {app}\n")),
                None => ("bench-default".to_owned(), String::new()),
            };
            let _ = write!(
                out,
                "apiVersion: spillway.dev/v1alpha1\nkind: TokenQuota\nmetadata: {{name: {name}}}\nspec:\n{app_line}  tokensPerMinute: 1000000000000\n  requestsPerMinute: 1000000000\n  quotas: [{{period: Daily, tokens: 1000000000000000}}]\n---\n"
            );
        }
    }
    Ok(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// The running simulator.
#[derive(Debug)]
pub struct Simulator {
    /// The process.
    pub child: Child,
    /// Backend name → base URL.
    pub urls: BTreeMap<String, String>,
}

/// Starts `spillway simulate` on `cpu` with [`simulator_yaml`].
///
/// # Errors
/// The process does not start or does not announce its backends.
pub async fn start_simulator(
    exe: &Path,
    cpu: Option<usize>,
    dir: &Path,
    interval: Duration,
) -> anyhow::Result<Simulator> {
    let config = dir.join("simulate.yaml");
    std::fs::write(&config, simulator_yaml(interval))
        .with_context(|| format!("cannot write {}", config.display()))?;
    let spawn = Spawn {
        exe,
        args: vec![
            "simulate".into(),
            "--config".into(),
            config.display().to_string(),
        ],
        cpu,
        log: dir.join("simulate.log"),
        ready_key: "ready",
    };
    let (child, lines) = spawn.start().await?;
    let urls = lines
        .iter()
        .filter_map(|line| {
            let name = line.get("backend")?.as_str()?;
            let url = line.get("url")?.as_str()?;
            Some((name.to_owned(), url.to_owned()))
        })
        .collect();
    Ok(Simulator { child, urls })
}

/// A running gateway.
#[derive(Debug)]
pub struct Gateway {
    /// The process.
    pub child: Child,
    /// Base URL of the data path.
    pub url: String,
    /// Which features are on.
    pub variant: Variant,
}

/// Where a gateway's files go and where it exports to.
#[derive(Clone, Debug)]
pub struct GatewaySetup<'a> {
    /// The `spillway` binary.
    pub exe: &'a Path,
    /// CPU to pin it to.
    pub cpu: Option<usize>,
    /// Scratch folder for the manifest and the log.
    pub dir: &'a Path,
    /// The simulator's backends.
    pub urls: &'a BTreeMap<String, String>,
    /// The OTLP sink's base URL.
    pub otlp: &'a str,
    /// Time between metric exports.
    pub export_interval: Duration,
}

impl GatewaySetup<'_> {
    /// Starts `spillway run` with the manifest of `variant`.
    ///
    /// # Errors
    /// The process does not start or does not print its addresses.
    pub async fn start(&self, variant: Variant) -> anyhow::Result<Gateway> {
        let tag = format!("{variant:?}").to_lowercase();
        let config: PathBuf = self.dir.join(format!("gateway-{tag}.yaml"));
        std::fs::write(&config, manifest(variant, self.urls)?)
            .with_context(|| format!("cannot write {}", config.display()))?;
        let mut args: Vec<String> = [
            "run",
            "--config",
            &config.display().to_string(),
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--reload-interval",
            "1h",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        if variant != Variant::NoOtlp {
            args.extend([
                "--otlp-endpoint".to_owned(),
                self.otlp.to_owned(),
                "--otlp-export-interval".to_owned(),
                format!("{}ms", self.export_interval.as_millis()),
            ]);
        }
        let spawn = Spawn {
            exe: self.exe,
            args,
            cpu: self.cpu,
            log: self.dir.join(format!("gateway-{tag}.log")),
            ready_key: "listening",
        };
        let (child, lines) = spawn.start().await?;
        let listen = lines
            .iter()
            .find_map(|line| line.get("listening")?.as_str())
            .ok_or_else(|| anyhow!("the gateway did not print its address"))?;
        Ok(Gateway {
            child,
            url: format!("http://{listen}"),
            variant,
        })
    }
}

#[cfg(test)]
mod tests;
