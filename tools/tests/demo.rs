//! `spillway demo` as the README's first command runs it: the real binary, everything
//! in-process on 127.0.0.1, `--no-tui` for plain output. The demo must end by itself, exit 0,
//! and its summary must show — checked by the demo against the simulators' ledger, the
//! gateway's breakers and what the clients got — that spillover happened, no backend's 429
//! reached a client, batch-summarizer was held to its own quota (429 with `Retry-After`) and
//! support-bot used up its daily one (403), a breaker tripped and re-closed, and the
//! gateway's tokens per app equal what the backends billed for the admitted calls.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_spillway");
const APPS: [&str; 3] = ["chat-web", "batch-summarizer", "support-bot"];

/// The summary row of `app`: `APP QUOTA SENT OK 429 403 OTHER P50 P99 …`.
fn summary_row<'a>(stdout: &'a str, app: &str) -> Vec<&'a str> {
    stdout
        .lines()
        .find(|l| l.starts_with(app) && l.contains(" / "))
        .unwrap_or_else(|| panic!("no summary row for {app}:\n{stdout}"))
        .split_whitespace()
        .collect()
}

/// The summary row of `app` shows `gateway / ledger ✓` twice (prompt, completion), with
/// equal non-zero numbers.
fn assert_tokens_match(stdout: &str, app: &str) {
    let row = summary_row(stdout, app).join(" ");
    let pairs: Vec<(&str, &str)> = row
        .split('✓')
        .filter_map(|part| {
            let (gateway, ledger) = part.trim().rsplit_once(" / ")?;
            Some((gateway.rsplit(' ').next()?, ledger))
        })
        .collect();
    assert_eq!(pairs.len(), 2, "{row}");
    for (gateway, ledger) in pairs {
        assert_eq!(gateway, ledger, "{row}");
        assert_ne!(gateway, "0", "{app} used tokens: {row}");
    }
}

/// `app`'s quota refusals in the summary: (429, 403).
fn refusals(stdout: &str, app: &str) -> (u64, u64) {
    let row = summary_row(stdout, app);
    (row[4].parse().unwrap(), row[5].parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_tells_and_verifies_its_story() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new(BIN)
            .args(["demo", "--duration", "12s", "--no-tui", "--manifests-dir"])
            .arg(dir.path())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the demo ends by itself")
    .expect("the demo runs");
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "exit {:?}\n{stdout}\n{stderr}",
        output.status
    );
    assert!(
        took < Duration::from_secs(30),
        "the 12 s demo took {took:?}"
    );

    for claim in [
        "✓ traffic ran:",
        "✓ spillover happened:",
        "✓ no backend 429 reached a client",
        "✓ an app was limited by its own quota (429 with Retry-After): batch-summarizer",
        "✓ an app used up its daily quota (403 until midnight UTC): support-bot",
        "✓ breaker tripped and re-closed: ptu-eastus",
        "✓ gateway token counts equal the backends' ledger for all 3 apps",
    ] {
        assert!(
            stdout.lines().any(|l| l.starts_with(claim)),
            "{claim:?} missing:\n{stdout}"
        );
    }
    assert!(!stdout.contains('✗'), "a claim failed:\n{stdout}");
    // The live view told the story as it happened.
    assert!(stdout.contains("ptu-eastus breaker OPEN"), "{stdout}");
    assert!(
        stdout.contains("ptu-eastus breaker CLOSED again"),
        "{stdout}"
    );

    assert!(
        stdout.contains("batch-summarizer is over its own token quota")
            && stdout.contains("support-bot used up its daily token quota")
            && stdout.contains("probe as batch-summarizer: 429, Retry-After: "),
        "{stdout}"
    );

    // Tokens per app: gateway / ledger for prompt and completion, equal and non-zero.
    for app in APPS {
        assert_tokens_match(&stdout, app);
    }
    // Per app: chat-web's quota never bites, the others' do, each in its own way.
    assert_eq!(refusals(&stdout, "chat-web"), (0, 0), "{stdout}");
    let (batch_429, batch_403) = refusals(&stdout, "batch-summarizer");
    assert!(batch_429 > 0 && batch_403 == 0, "{stdout}");
    let (bot_429, bot_403) = refusals(&stdout, "support-bot");
    assert!(bot_429 == 0 && bot_403 > 0, "{stdout}");

    let manifest = std::fs::read_to_string(dir.path().join("gateway.yaml")).unwrap();
    assert!(manifest.contains("kind: AIBackendPool") && manifest.contains("kind: AIGateway"));
    assert!(manifest.contains("apiKeys:") && !manifest.contains("trustedHeader"));
    assert_eq!(manifest.matches("kind: TokenQuota").count(), 3);
    assert!(stdout.contains(&dir.path().join("gateway.yaml").display().to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_ends_the_demo_cleanly_with_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(BIN)
        .args([
            "demo",
            "--duration",
            "60s",
            "--rate",
            "5",
            "--no-tui",
            "--manifests-dir",
        ])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap().to_string();
    // Let traffic flow, then interrupt as a terminal's Ctrl-C would.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let interrupted = Instant::now();
    let kill = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    let output = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("the demo stops after Ctrl-C")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        interrupted.elapsed() < Duration::from_secs(10),
        "in-flight requests get a few seconds, not the remaining minute"
    );
    assert!(stdout.contains("Ctrl-C: stopping the traffic"), "{stdout}");
    assert!(stdout.contains("stopped by Ctrl-C ==="), "{stdout}");
    assert!(stdout.contains("✓ traffic ran:"), "{stdout}");
    assert!(
        stdout.contains("✓ gateway token counts equal the backends' ledger"),
        "{stdout}"
    );
}
