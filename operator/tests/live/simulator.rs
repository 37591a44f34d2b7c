//! A `spillway simulate` process for the live test: simulated OpenAI backends on loopback.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::support::spillway_binary;

/// A running `spillway simulate` process.
pub struct Simulator {
    /// Base URL per backend name.
    pub urls: std::collections::HashMap<String, String>,
    _child: Child,
}

impl Simulator {
    /// Starts `spillway simulate` with `yaml` written into `dir`.
    pub async fn start(dir: &Path, yaml: &str) -> Self {
        let config = dir.join("sim.yaml");
        std::fs::write(&config, yaml).expect("sim config");
        let mut child = Command::new(spillway_binary())
            .arg("simulate")
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn spillway simulate");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut urls = std::collections::HashMap::new();
        let started = tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(Some(line)) = lines.next_line().await {
                let value: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                if value.get("ready").is_some() {
                    return true;
                }
                if let (Some(name), Some(url)) = (value["backend"].as_str(), value["url"].as_str())
                {
                    urls.insert(name.to_owned(), url.to_owned());
                }
            }
            false
        })
        .await;
        assert_eq!(started, Ok(true), "the simulator starts");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            urls,
            _child: child,
        }
    }
}
