//! Support for the end-to-end test on the Kubernetes test bed (`tests/k8s/e2e.sh`): what the
//! driver script prepared (read from `SPILLWAY_E2E_*` variables), `kubectl` against the test
//! bed's API server, the example manifests with their backend URLs pointed at simulators, and
//! bounded polling.
//!
//! Inputs: the variables below, the `examples/` folder, `kubectl` on `PATH`. Outputs: command
//! results, parsed JSON objects, panics that say what was expected.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod cluster;
pub mod processes;
pub mod scopes;
pub mod traffic;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The namespace the apps, pool, quotas and sidecars live in.
pub const NAMESPACE: &str = "ai-apps";
/// The sidecars' ServiceAccount in [`NAMESPACE`].
pub const SIDECAR_SA: &str = "gateway";
/// The audience the operator asks TokenReview for (its `--token-audience`).
pub const AUDIENCE: &str = "spillway";
/// The pool of `examples/ptu-spillover` and the model it serves.
pub const POOL: &str = "gpt-4o";

/// What `tests/k8s/e2e.sh` prepared.
pub struct TestBed {
    /// Admin kubeconfig of the test bed.
    pub kubeconfig: PathBuf,
    /// Kubeconfig with the operator ServiceAccount's token (the chart's RBAC only).
    pub operator_kubeconfig: PathBuf,
    /// Namespace of the operator's ServiceAccount and Lease.
    pub operator_namespace: String,
    /// Where process logs go (kept by the script, shown on failure).
    pub log_dir: PathBuf,
    /// The repository root.
    pub root: PathBuf,
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: this test runs on the Kubernetes test bed; use tests/k8s/e2e.sh")
    })
}

impl TestBed {
    /// Reads the `SPILLWAY_E2E_*` variables the driver script exports.
    pub fn from_env() -> TestBed {
        let log_dir = PathBuf::from(var("SPILLWAY_E2E_LOG_DIR"));
        std::fs::create_dir_all(&log_dir).unwrap();
        TestBed {
            kubeconfig: var("SPILLWAY_E2E_KUBECONFIG").into(),
            operator_kubeconfig: var("SPILLWAY_E2E_OPERATOR_KUBECONFIG").into(),
            operator_namespace: var("SPILLWAY_E2E_OPERATOR_NAMESPACE"),
            log_dir,
            root: Path::new(env!("CARGO_MANIFEST_DIR")).join(".."),
        }
    }

    /// Runs `kubectl args…` as admin, feeding `stdin`; returns (success, stdout + stderr).
    pub fn kubectl_with(&self, args: &[&str], stdin: Option<&str>) -> (bool, String) {
        use std::io::Write as _;
        let mut command = Command::new("kubectl");
        command
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["--request-timeout", "20s"])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        // kubectl blocks; let the runtime's other tasks (OTLP receivers) move meanwhile.
        let out = tokio::task::block_in_place(|| {
            let mut child = command.spawn().expect("kubectl on PATH");
            let mut input = child.stdin.take().unwrap();
            if let Some(text) = stdin {
                input.write_all(text.as_bytes()).unwrap();
            }
            drop(input);
            child.wait_with_output().unwrap()
        });
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// `kubectl args…`, which must succeed; its output.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let (ok, out) = self.kubectl_with(args, None);
        assert!(ok, "kubectl {args:?} failed:\n{out}");
        out
    }

    /// `kubectl apply -n NAMESPACE -f -` of `manifests`, which must succeed.
    pub fn apply(&self, manifests: &str) -> String {
        let (ok, out) = self.kubectl_with(&["apply", "-n", NAMESPACE, "-f", "-"], Some(manifests));
        assert!(ok, "kubectl apply failed:\n{out}\n---\n{manifests}");
        out
    }

    /// `kubectl get KIND NAME -n NAMESPACE -o json`, or `None` when it does not exist.
    pub fn get(&self, kind: &str, name: &str) -> Option<Value> {
        let (ok, out) =
            self.kubectl_with(&["get", kind, name, "-n", NAMESPACE, "-o", "json"], None);
        if ok {
            return Some(serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}")));
        }
        assert!(out.contains("NotFound"), "kubectl get {kind} {name}: {out}");
        None
    }

    /// A ServiceAccount token for the sidecars, for `audience` (none: the API server's).
    pub fn sidecar_token(&self, audience: Option<&str>) -> String {
        let mut args = vec![
            "create",
            "token",
            SIDECAR_SA,
            "-n",
            NAMESPACE,
            "--duration",
            "1h",
        ];
        if let Some(audience) = audience {
            args.extend(["--audience", audience]);
        }
        self.kubectl(&args).trim().to_owned()
    }

    /// The text of `examples/<path>`.
    pub fn example(&self, path: &str) -> String {
        let file = self.root.join("examples").join(path);
        std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
    }
}

/// `text` with each `(from, to)` replaced; every `from` must occur exactly once.
pub fn replace_each(text: &str, pairs: &[(&str, &str)]) -> String {
    let mut out = text.to_owned();
    for (from, to) in pairs {
        assert_eq!(out.matches(from).count(), 1, "{from} once in the example");
        out = out.replace(from, to);
    }
    out
}

/// The status condition `kind` of `object`: (status, reason).
pub fn condition(object: &Value, kind: &str) -> Option<(String, String)> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or("").to_owned(),
                c["reason"].as_str().unwrap_or("").to_owned(),
            )
        })
}

/// Polls `check` (every 250 ms, at most `limit`) until it returns `Ok`; panics with the last
/// `Err` explanation otherwise.
pub async fn eventually<T, E, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < limit {
        match check().await {
            Ok(value) => {
                eprintln!("  [{:>5.1}s] {what}", started.elapsed().as_secs_f64());
                return value;
            }
            Err(why) => last = why.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("timed out after {limit:?} waiting for {what}; last: {last}");
}

/// Prints a step heading.
pub fn step(text: &str) {
    eprintln!("==> {text}");
}
