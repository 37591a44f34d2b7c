//! Standalone configuration: a multi-document YAML manifest file, compiled with the shared
//! `compile()`, re-read when it changes.
//!
//! Inputs: the file path, a secrets directory and the process environment. Output: snapshot
//! versions 1, 2, … on a [`SnapshotRx`] ([`watch`]). A change that does not parse or compile is
//! rejected with every reason logged, and the last good snapshot keeps serving. The file is
//! polled (content hash), which also works for Kubernetes ConfigMap mounts whose files are
//! swapped through symlinks.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use spillway_crds::v1alpha1::SecretSource;
use spillway_crds::{SecretResolver, Snapshot, compile, manifest};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::SnapshotRx;

/// Resolves backend secrets without Kubernetes: `secretRef` from `<dir>/<name>/<key>` (the
/// layout of a mounted Secret), `env` from the environment, `file` from a file.
#[derive(Clone, Debug, Default)]
pub struct LocalSecrets {
    /// Folder holding one sub-folder per Secret name.
    pub secrets_dir: Option<PathBuf>,
}

impl SecretResolver for LocalSecrets {
    fn resolve(&self, _namespace: &str, source: &SecretSource) -> Result<String, String> {
        if let Some(var) = &source.env {
            return std::env::var(var)
                .map_err(|_| format!("environment variable {var} is not set"));
        }
        if let Some(path) = &source.file {
            return std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"));
        }
        let Some(reference) = &source.secret_ref else {
            return Err("no source given".into());
        };
        let Some(dir) = &self.secrets_dir else {
            return Err(format!(
                "secretRef {}/{} needs --secrets-dir in standalone mode (files <dir>/{}/{}), \
                 or use `env:` or `file:` instead",
                reference.name, reference.key, reference.name, reference.key
            ));
        };
        let path = dir.join(&reference.name).join(&reference.key);
        std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read secret {}: {e}", path.display()))
    }
}

/// Reads and compiles `path`.
///
/// # Errors
/// Every reason the file cannot be used: unreadable, YAML or schema errors, compile problems.
pub fn load(path: &Path, secrets: &LocalSecrets) -> Result<Snapshot, Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![format!("cannot read {}: {e}", path.display())])?;
    load_text(&text, secrets)
}

/// Parses and compiles manifest text.
///
/// # Errors
/// As [`load`].
pub fn load_text(text: &str, secrets: &LocalSecrets) -> Result<Snapshot, Vec<String>> {
    let manifests = manifest::parse(text)
        .map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    for skipped in &manifests.skipped {
        tracing::debug!(object = %skipped, "skipping a kind the gateway does not read");
    }
    let (mut snapshot, problems) = compile(&manifests.input, secrets);
    if !problems.is_empty() {
        return Err(problems.iter().map(ToString::to_string).collect());
    }
    snapshot.version = 1;
    snapshot.check().map_err(|invalid| {
        vec![format!(
            "internal: the compiled snapshot is invalid: {invalid}"
        )]
    })?;
    Ok(snapshot)
}

/// Loads `path` (version 1) and watches it every `interval` in a task: each valid change is
/// published as the next version on the returned channel.
///
/// # Errors
/// As [`load`]: a file that cannot be used at start-up fails loudly.
pub fn watch(
    path: PathBuf,
    secrets: LocalSecrets,
    interval: Duration,
) -> Result<(SnapshotRx, JoinHandle<()>), Vec<String>> {
    let first = load(&path, &secrets)?;
    let (tx, rx) = watch::channel(Arc::new(first));
    Ok((rx, tokio::spawn(watch_file(path, secrets, interval, tx))))
}

fn fingerprint(bytes: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

/// Watches `path` every `interval` and publishes each valid change as the next version.
/// Runs until every receiver is gone. The caller publishes the first version (see [`watch`]).
async fn watch_file(
    path: PathBuf,
    secrets: LocalSecrets,
    interval: Duration,
    tx: watch::Sender<Arc<Snapshot>>,
) {
    let mut last = std::fs::read(&path).map(|b| fingerprint(&b)).ok();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if tx.is_closed() {
            return;
        }
        // A small file read once a second: cheap enough to do inline, and deterministic
        // under a paused test clock.
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) => {
                if last.is_some() {
                    tracing::warn!(path = %path.display(), error = %e, "config file unreadable; keeping the last good configuration");
                    last = None;
                }
                continue;
            }
        };
        let print = fingerprint(&bytes);
        if last == Some(print) {
            continue;
        }
        last = Some(print);
        let text = String::from_utf8_lossy(&bytes);
        match load_text(&text, &secrets) {
            Ok(mut snapshot) => {
                snapshot.version = tx.borrow().version + 1;
                tracing::info!(
                    version = snapshot.version,
                    pools = snapshot.pools.len(),
                    "configuration reloaded"
                );
                tx.send_replace(Arc::new(snapshot));
            }
            Err(reasons) => {
                for reason in &reasons {
                    tracing::error!(path = %path.display(), %reason, "configuration change rejected; keeping the last good configuration");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POOL: &str = "apiVersion: spillway.dev/v1alpha1\nkind: AIBackendPool\nmetadata: {name: p}\n\
                        spec: {models: [m], backends: [{name: b, url: 'http://127.0.0.1:1', apiKey: {secretRef: {name: keys, key: b}}}]}\n";

    #[test]
    fn secret_refs_resolve_from_the_secrets_dir() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("keys")).expect("mkdir");
        std::fs::write(dir.path().join("keys/b"), "sk-123\n").expect("write");
        let secrets = LocalSecrets {
            secrets_dir: Some(dir.path().into()),
        };
        let snapshot = load_text(POOL, &secrets).expect("valid");
        let key = snapshot.pools[0].backends[0]
            .api_key
            .as_ref()
            .map(|k| k.expose().to_owned());
        assert_eq!(key.as_deref(), Some("sk-123"));
    }

    #[test]
    fn missing_secrets_dir_explains_the_fix() {
        let errors = load_text(POOL, &LocalSecrets::default()).expect_err("no dir");
        assert!(errors[0].contains("--secrets-dir"), "{errors:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn publishes_valid_changes_and_keeps_the_last_good_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("gw.yaml");
        let good = POOL.replace("apiKey: {secretRef: {name: keys, key: b}}", "weight: 1");
        std::fs::write(&path, &good).expect("write");
        let (mut rx, task) = watch(
            path.clone(),
            LocalSecrets::default(),
            Duration::from_millis(100),
        )
        .expect("valid");
        assert_eq!(rx.borrow_and_update().version, 1);

        std::fs::write(&path, good.replace("weight: 1", "weight: 0")).expect("write bad");
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert!(
            !rx.has_changed().expect("open"),
            "an invalid change must not be published"
        );

        std::fs::write(&path, good.replace("weight: 1", "weight: 5")).expect("write good");
        tokio::time::timeout(Duration::from_secs(5), rx.changed())
            .await
            .expect("in time")
            .expect("open");
        let snapshot = rx.borrow_and_update().clone();
        assert_eq!(snapshot.version, 2);
        assert_eq!(snapshot.pools[0].backends[0].weight, 5);
        drop(rx);
        task.await.expect("watch ends when receivers are gone");
    }
}
