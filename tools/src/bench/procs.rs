//! The bench's child processes (`spillway simulate`, `spillway run`), each optionally pinned
//! to one CPU with `taskset -c N`, and what the kernel says about them: CPU time from
//! `/proc/PID/stat` (utime + stime) and resident memory from `/proc/PID/status` (VmRSS).
//!
//! Input: the binary, its arguments, a CPU, a log file for stderr. Output: a [`Child`] that
//! has printed its JSON ready line (its other start-up lines are returned) and is killed when
//! dropped. The `/proc` parsers are pure and tested on fixed text.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Command;

/// Time a child gets to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running child process; killed on drop.
#[derive(Debug)]
pub struct Child {
    child: tokio::process::Child,
    pid: u32,
    log: PathBuf,
}

/// How to start one child.
#[derive(Clone, Debug)]
pub struct Spawn<'a> {
    /// The `spillway` binary.
    pub exe: &'a Path,
    /// Its arguments.
    pub args: Vec<String>,
    /// Pin it to this CPU with `taskset -c`.
    pub cpu: Option<usize>,
    /// Where its stderr goes.
    pub log: PathBuf,
    /// The key of the JSON stdout line that says it is ready.
    pub ready_key: &'a str,
}

impl Spawn<'_> {
    /// Starts the child and waits for its ready line; returns it with every line it printed
    /// up to and including that one.
    ///
    /// # Errors
    /// The child cannot start, exits, prints something that is not JSON, or is not ready
    /// within 30 s; the message names its log file.
    pub async fn start(self) -> anyhow::Result<(Child, Vec<Value>)> {
        let mut child = self
            .command()?
            .spawn()
            .with_context(|| format!("cannot start {} {:?}", self.exe.display(), self.args))?;
        let pid = child.id().ok_or_else(|| anyhow!("child exited at once"))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let mut lines = BufReader::new(stdout).lines();
        let mut seen = Vec::new();
        let ready = tokio::time::timeout(READY_TIMEOUT, async {
            while let Some(line) = lines.next_line().await? {
                let value: Value = serde_json::from_str(&line)
                    .with_context(|| format!("not a JSON start-up line: {line}"))?;
                let done = value.get(self.ready_key).is_some();
                seen.push(value);
                if done {
                    return Ok(true);
                }
            }
            anyhow::Ok(false)
        })
        .await;
        let why = match ready {
            Ok(Ok(true)) => None,
            Ok(Ok(false)) => Some("exited before it was ready".to_owned()),
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some("was not ready within 30s".to_owned()),
        };
        if let Some(why) = why {
            bail!(
                "{} {:?} {why}; see {}",
                self.exe.display(),
                self.args,
                self.log.display()
            );
        }
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let log = self.log;
        Ok((Child { child, pid, log }, seen))
    }

    /// The command line (under `taskset` when pinned), stdout piped, stderr to the log,
    /// `RUST_LOG=info`, no `OTEL_*` variables, killed on drop.
    fn command(&self) -> anyhow::Result<Command> {
        let mut command = match self.cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpu.to_string()).arg(self.exe);
                c
            }
            None => Command::new(self.exe),
        };
        let log = std::fs::File::create(&self.log)
            .with_context(|| format!("cannot create {}", self.log.display()))?;
        command
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .env("RUST_LOG", "info")
            .kill_on_drop(true);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("OTEL_") {
                command.env_remove(name);
            }
        }
        Ok(command)
    }
}

impl Child {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// CPU-seconds used so far (user + system).
    ///
    /// # Errors
    /// `/proc/PID/stat` unreadable (the process died) or not in the expected form.
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        let text = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .with_context(|| format!("process {} is gone; see {}", self.pid, self.log.display()))?;
        let ticks = stat_cpu_ticks(&text)
            .ok_or_else(|| anyhow!("unexpected /proc/{}/stat: {text}", self.pid))?;
        Ok(ticks as f64 / clock_ticks_per_second())
    }

    /// Resident memory now, in MiB.
    ///
    /// # Errors
    /// `/proc/PID/status` unreadable or without `VmRSS`.
    pub fn rss_mib(&self) -> anyhow::Result<f64> {
        rss_mib_of(self.pid)
            .with_context(|| format!("process {}; see {}", self.pid, self.log.display()))
    }

    /// Fails when the process has exited.
    ///
    /// # Errors
    /// It exited (with its status and log file).
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => bail!(
                "process {} exited ({status}); see {}",
                self.pid,
                self.log.display()
            ),
            Err(e) => bail!("cannot check process {}: {e}", self.pid),
        }
    }

    /// Stops the process (SIGKILL) and waits for it.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// Resident memory of process `pid` now, in MiB.
///
/// # Errors
/// `/proc/PID/status` unreadable (the process is gone) or without `VmRSS`.
pub fn rss_mib_of(pid: u32) -> anyhow::Result<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("process {pid} is gone"))?;
    let kib = status_rss_kib(&text).ok_or_else(|| anyhow!("no VmRSS in /proc/{pid}/status"))?;
    Ok(kib as f64 / 1024.0)
}

/// utime + stime (fields 14 and 15) of a `/proc/PID/stat` line, in clock ticks. The command
/// name (field 2) may hold spaces and parentheses, so fields are counted after its last `)`.
pub fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `VmRSS` of a `/proc/PID/status` text, in KiB.
pub fn status_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `getconf CLK_TCK` (100 on every common Linux), read once.
fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.trim().parse::<f64>().ok())
            .filter(|ticks| *ticks > 0.0)
            .unwrap_or(100.0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_utime_plus_stime_even_with_odd_command_names() {
        let stat = "4242 (spill way) (x)) S 1 4242 4242 0 -1 4194560 1234 0 0 0 350 27 0 0 20 0 9 0 100 1000 200";
        assert_eq!(stat_cpu_ticks(stat), Some(377));
        assert_eq!(stat_cpu_ticks("4242 (x) S 1 2"), None);
        assert_eq!(stat_cpu_ticks("no parenthesis"), None);
    }

    #[test]
    fn rss_comes_from_the_vmrss_line() {
        let status = "Name:\tspillway\nVmPeak:\t  100 kB\nVmRSS:\t    9876 kB\nThreads:\t3\n";
        assert_eq!(status_rss_kib(status), Some(9876));
        assert_eq!(status_rss_kib("Name:\tx\n"), None);
    }

    #[test]
    fn this_process_has_cpu_time_and_memory() {
        let stat = std::fs::read_to_string("/proc/self/stat").expect("linux");
        assert!(stat_cpu_ticks(&stat).is_some(), "{stat}");
        let status = std::fs::read_to_string("/proc/self/status").expect("linux");
        assert!(status_rss_kib(&status).is_some_and(|kib| kib > 0));
        assert!(clock_ticks_per_second() > 0.0);
    }
}
