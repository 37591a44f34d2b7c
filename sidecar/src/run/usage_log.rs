//! `--usage-log FILE`: one JSON line per request, appended.
//!
//! Input: the usage sink's records. Output: lines in the file. On shutdown the writer is
//! told to stop: it writes what is still queued for it, flushes and ends, so the last
//! requests of a graceful shutdown are in the file.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::io::AsyncWriteExt as _;
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::usage::UsageRecord;

/// The running writer of the usage log.
#[derive(Debug)]
pub(super) struct UsageLog {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl UsageLog {
    /// Opens (creates, appends to) `path` and writes every record of `rx` to it.
    ///
    /// # Errors
    /// The file cannot be opened for appending.
    pub(super) async fn start(
        path: &Path,
        rx: broadcast::Receiver<Arc<UsageRecord>>,
    ) -> anyhow::Result<Self> {
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await
            .with_context(|| format!("opening usage log {}", path.display()))?;
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(write(file, rx, stopped));
        Ok(Self { stop, task })
    }

    /// Writes what is queued, flushes and ends the writer.
    pub(super) async fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

async fn write(
    mut file: tokio::fs::File,
    mut rx: broadcast::Receiver<Arc<UsageRecord>>,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut lost = 0u64;
    loop {
        let received = tokio::select! {
            received = rx.recv() => received,
            _ = &mut stopped => break,
        };
        match received {
            Ok(record) => append(&mut file, &record).await,
            Err(RecvError::Lagged(n)) => {
                lost += n;
                tracing::warn!(lost, "usage log fell behind; records lost");
            }
            Err(RecvError::Closed) => break,
        }
    }
    loop {
        match rx.try_recv() {
            Ok(record) => append(&mut file, &record).await,
            Err(TryRecvError::Lagged(n)) => {
                lost += n;
                tracing::warn!(lost, "usage log fell behind; records lost");
            }
            Err(TryRecvError::Empty | TryRecvError::Closed) => break,
        }
    }
    if let Err(error) = file.flush().await {
        tracing::error!(%error, "cannot flush the usage log");
    }
}

async fn append(file: &mut tokio::fs::File, record: &UsageRecord) {
    let mut line = serde_json::to_vec(record).unwrap_or_default();
    line.push(b'\n');
    if let Err(error) = file.write_all(&line).await {
        tracing::error!(%error, "cannot write the usage log");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::{Usage, UsageSink};

    fn record(id: &str) -> UsageRecord {
        UsageRecord {
            request_id: id.to_owned(),
            pool: "pool".to_owned(),
            operation: None,
            usage: Usage::totals(3, 4),
            duration: std::time::Duration::ZERO,
            ..UsageRecord::served("app")
        }
    }

    #[tokio::test]
    async fn finishing_writes_every_queued_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("usage.jsonl");
        std::fs::write(&path, "{\"earlier\":true}\n").expect("write");
        let sink = UsageSink::new(64);
        let log = UsageLog::start(&path, sink.subscribe())
            .await
            .expect("open");
        for i in 0..20 {
            sink.send(record(&format!("r{i}")));
        }
        log.finish().await;
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 21, "{text}");
        assert_eq!(lines[0], "{\"earlier\":true}", "appends");
        let last: serde_json::Value = serde_json::from_str(lines[20]).expect("JSON");
        assert_eq!(last["request_id"], "r19");
        assert_eq!(last["usage"]["completion_tokens"], 4);
    }
}
