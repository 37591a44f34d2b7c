//! `spillway bench --quick` with tiny sizes, as a user runs it: the real binary starts its
//! simulator and gateway, measures every scenario on both sides and prints the table. The
//! test checks that every scenario and figure is there and that the numbers are sane counts
//! and durations — never how fast anything was (benchmarks are not tests).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_spillway");

/// One table row: scenario (carried down from the row that named it), metric, and the
/// direct, gateway, added, target and met cells.
#[derive(Debug)]
struct Row {
    cells: Vec<String>,
}

impl Row {
    fn direct(&self) -> &str {
        &self.cells[0]
    }
    fn gateway(&self) -> &str {
        &self.cells[1]
    }
}

fn parse_table(text: &str) -> HashMap<(String, String), Row> {
    let mut rows = HashMap::new();
    let mut scenario = String::new();
    // The main table ends where scenario (g)'s own table starts.
    let main = text.split("\n## g.").next().unwrap_or(text);
    for line in main.lines().filter(|l| l.starts_with("| ")) {
        let cells: Vec<String> = line
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_owned())
            .collect();
        assert_eq!(cells.len(), 7, "a table row has 7 cells: {line}");
        if cells[0] == "scenario" {
            continue;
        }
        if !cells[0].is_empty() {
            scenario.clone_from(&cells[0]);
        }
        let key = (scenario.clone(), cells[1].clone());
        let previous = rows.insert(
            key,
            Row {
                cells: cells[2..].to_vec(),
            },
        );
        assert!(previous.is_none(), "one row per metric: {line}");
    }
    rows
}

/// A duration cell in microseconds (`85µs`, `1.25ms`, `2.00s`).
fn micros(cell: &str) -> f64 {
    let (number, scale) = if let Some(n) = cell.strip_suffix("µs") {
        (n, 1.0)
    } else if let Some(n) = cell.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = cell.strip_suffix('s') {
        (n, 1e6)
    } else {
        panic!("not a duration: {cell}")
    };
    number.parse::<f64>().unwrap_or_else(|_| panic!("{cell}")) * scale
}

fn number(cell: &str) -> f64 {
    let digits: String = cell
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("not a number: {cell}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_bench_prints_every_scenario_with_sane_numbers() {
    let args = [
        "bench",
        "--quick",
        "--rounds",
        "1",
        "--warmup",
        "200ms",
        "--step",
        "300ms",
        "--sequential",
        "20",
        "--ladder",
        "100,200",
        "--connections",
        "2,4",
        "--streams",
        "10",
        "--deltas",
        "4",
    ];
    let child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn spillway bench");
    let output = tokio::time::timeout(Duration::from_secs(300), child.wait_with_output())
        .await
        .expect("the quick bench ends within 5 minutes")
        .expect("output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let rows = parse_table(&stdout);
    let row = |scenario: &str, metric: &str| {
        rows.get(&(scenario.to_owned(), metric.to_owned()))
            .unwrap_or_else(|| panic!("no row {scenario} / {metric} in\n{stdout}"))
    };

    // (a) durations on both sides.
    for metric in [
        "latency p50",
        "latency p99",
        "stream TTFT p50",
        "stream TTFT p99",
    ] {
        let r = row("a. one at a time", metric);
        assert!(
            micros(r.direct()) > 0.0 && micros(r.gateway()) > 0.0,
            "{metric}: {r:?}"
        );
    }
    // (b) every rate of the ladder, every request answered at these low rates.
    for rate in ["100", "200"] {
        let success = row("b. fixed rate (open loop)", &format!("{rate} QPS success"));
        assert_eq!((success.direct(), success.gateway()), ("100.0%", "100.0%"));
        let p99 = row("b. fixed rate (open loop)", &format!("{rate} QPS p99"));
        assert!(micros(p99.gateway()) > 0.0);
        let cpu = row(
            "b. fixed rate (open loop)",
            &format!("{rate} QPS CPU-s / 1k req"),
        );
        assert!(cpu.gateway().ends_with(" s"), "{cpu:?}");
    }
    // (c) throughput on both sides, CPU per request on the gateway.
    for conns in ["2", "4"] {
        let r = row("c. closed loop", &format!("{conns} conns RPS"));
        assert!(
            number(r.direct()) > 0.0 && number(r.gateway()) > 0.0,
            "{r:?}"
        );
    }
    row("c. closed loop", "max RPS with p99 ≤ 5ms");
    assert!(number(row("c. closed loop", "gateway CPU-s / 1k req").gateway()) > 0.0);
    // (d) every stream complete with every delta, on both sides.
    let completed = row("d. paced streams", "streams completed");
    assert_eq!((completed.direct(), completed.gateway()), ("10", "10"));
    let failed = row("d. paced streams", "streams failed");
    assert_eq!((failed.direct(), failed.gateway()), ("0", "0"));
    let deltas = row("d. paced streams", "deltas per stream");
    assert_eq!((deltas.direct(), deltas.gateway()), ("4", "4"));
    for metric in [
        "TTFT p50",
        "inter-chunk p50",
        "inter-chunk p99",
        "first→last delta p50",
    ] {
        let r = row("d. paced streams", metric);
        assert!(
            micros(r.direct()) > 0.0 && micros(r.gateway()) > 0.0,
            "{metric}: {r:?}"
        );
    }
    row("d. paced streams", "gaps ≥ half the pacing");
    // Resources of the gateway process.
    for metric in [
        "RSS idle (after start)",
        "RSS under closed-loop load",
        "RSS with 10 open streams",
    ] {
        let mib = number(row("gateway resources", metric).gateway());
        assert!(mib > 1.0 && mib < 4096.0, "{metric}: {mib} MiB");
    }
    for metric in [
        "CPU busy under closed-loop load",
        "CPU busy with 10 open streams",
    ] {
        assert!(row("gateway resources", metric).gateway().ends_with('%'));
    }
    row("gateway resources", "OTLP metric exports received");
    row("gateway resources", "OTLP trace exports received");
    // (e) every variant against the same direct baseline.
    for variant in [
        "everything on",
        "OTLP export off",
        "quotas off",
        "identity off",
        "one backend",
    ] {
        let scenario = format!("e. {variant}");
        let rps = row(&scenario, "RPS (64 conns)");
        assert!(number(rps.gateway()) > 0.0, "{variant}: {rps:?}");
        assert!(micros(row(&scenario, "latency p50 (one at a time)").gateway()) > 0.0);
        assert!(number(row(&scenario, "CPU-s / 1k req").gateway()) >= 0.0);
    }
    assert!(stdout.contains("targets: "), "{stdout}");
}

/// Scenario (g): prompt-cache affinity keeps each session on the backend whose cache holds
/// its prefix — the same traffic gets a larger cached share with it than without.
#[tokio::test]
async fn affinity_scenario_reports_the_cached_share_with_and_without() {
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        Command::new(BIN)
            .args(["bench", "--affinity-only"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .output(),
    )
    .await
    .expect("within 2 minutes")
    .expect("runs");
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    let share = |label: &str| -> f64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("| {label} |")))
            .unwrap_or_else(|| panic!("no {label} row in {text}"));
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        assert_eq!(cells[1], "240", "every call succeeded: {line}");
        cells[4].trim_end_matches('%').parse().unwrap()
    };
    let (off, on) = (share("affinity off"), share("affinity on"));
    assert!(
        on > off + 20.0,
        "with affinity {on}% vs without {off}%:\n{text}"
    );
}
