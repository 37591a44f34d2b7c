//! A `spillway run` launcher that keeps the process id, for its memory and for SIGTERM.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A `spillway run` process that keeps its pid; killed on drop.
pub struct RunningGateway {
    child: Child,
    pub url: String,
    pub admin: String,
    _dir: tempfile::TempDir,
}

impl Drop for RunningGateway {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

impl RunningGateway {
    /// Starts `spillway run` on `manifests` with extra `args` and `env`.
    pub async fn start(manifests: &str, args: &[&str], env: &[(&str, &str)]) -> RunningGateway {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("gateway.yaml");
        std::fs::write(&config, manifests).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_spillway"));
        command
            .args(["run", "--config"])
            .arg(Path::new(&config))
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(if std::env::var_os("SPILLWAY_TEST_LOGS").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .kill_on_drop(true);
        // Batches wait at most this long to fill (the defaults, 5 s and 1 s, would slow
        // every test that waits for spans or log records); a test may set its own.
        command
            .env("OTEL_BSP_SCHEDULE_DELAY", "50")
            .env("OTEL_BLRP_SCHEDULE_DELAY", "50");
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("spawn spillway run");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(value) = serde_json::from_str::<Value>(&line)
                    && value.get("listening").is_some()
                {
                    return Some(value);
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .expect("the gateway printed its addresses");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        RunningGateway {
            child,
            url: format!("http://{}", ready["listening"].as_str().unwrap()),
            admin: format!("http://{}", ready["admin"].as_str().unwrap()),
            _dir: dir,
        }
    }

    /// Sends SIGTERM (graceful shutdown) and waits, bounded (60 s), for the process to exit;
    /// returns whether it exited successfully.
    pub async fn terminate(&mut self) -> bool {
        let pid = self.child.id().expect("running").to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {pid}");
        tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("the gateway exits after SIGTERM")
            .expect("wait")
            .success()
    }

    /// Resident memory of the process in KiB (Linux).
    pub fn rss_kib(&self) -> u64 {
        let pid = self.child.id().expect("running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }
}
