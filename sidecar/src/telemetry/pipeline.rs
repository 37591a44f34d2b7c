//! The shared shape of the queued signals (spans, log records): a follower turns each usage
//! record into items and puts them in a bounded queue without waiting; an export task sends
//! them in batches; shutdown drains both within a deadline.
//!
//! Input: the [`UsageSink`](crate::usage::UsageSink)'s records and a [`BatchExport`] (the
//! OTLP exporter of the signal). Output: exports, and [`Counts`] by result (`success`,
//! `failure`, `dropped`) for the signal's `spillway.telemetry.*` counter. Memory stays
//! bounded by the queue size; the request path never waits: the follower only `try_send`s,
//! and one export at a time is in flight, each bounded by the exporter's timeout.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::Telemetry;
use super::semconv::attr;
use crate::usage::UsageRecord;

/// Items of one signal by how they ended.
#[derive(Debug, Default)]
pub(super) struct Counts {
    exported: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

impl Counts {
    /// Counts `n` items dropped (queue full, or telemetry fell behind).
    pub(super) fn drop_items(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
    }
}

/// An exporter of batches of one signal's items.
pub(super) trait BatchExport: Send + Sync + 'static {
    /// One queued item.
    type Item: Send + 'static;
    /// Exports `batch`; must end within the exporter's timeout.
    fn export(&self, batch: Vec<Self::Item>) -> impl Future<Output = OTelSdkResult> + Send;
}

/// The sending side of a signal's bounded queue.
#[derive(Debug)]
pub(super) struct Queue<T> {
    tx: mpsc::Sender<T>,
    counts: Arc<Counts>,
}

impl<T> Queue<T> {
    /// Queues all of `items`, or none (counted as dropped) when there is no room for all.
    pub(super) fn push_all(&self, items: Vec<T>) {
        match self.tx.try_reserve_many(items.len()) {
            Ok(permits) => {
                for (permit, item) in permits.zip(items) {
                    permit.send(item);
                }
            }
            Err(_) => self.counts.drop_items(count(items.len())),
        }
    }
}

/// Spawns the export task of `exporter` on the current runtime: batches of at most
/// `max_batch` items from a queue of `max_queue`, each sent once it is full or its first item
/// has waited `delay` (so a busy gateway sends few, large exports), until the queue's sender
/// is gone — then what is left is sent at once.
pub(super) fn spawn_export<E: BatchExport>(
    exporter: E,
    max_queue: usize,
    max_batch: usize,
    delay: Duration,
    counts: &Arc<Counts>,
) -> (Queue<E::Item>, JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel(max_queue.max(1));
    let max_batch = max_batch.max(1);
    let stats = Arc::clone(counts);
    let task = tokio::spawn(async move {
        let mut batch = Vec::with_capacity(max_batch);
        while rx.recv_many(&mut batch, max_batch).await > 0 {
            fill(&mut rx, &mut batch, max_batch, delay).await;
            let n = count(batch.len());
            let items = std::mem::replace(&mut batch, Vec::with_capacity(max_batch));
            match exporter.export(items).await {
                Ok(()) => stats.exported.fetch_add(n, Ordering::Relaxed),
                Err(error) => {
                    tracing::debug!(%error, "OTLP export failed");
                    stats.failed.fetch_add(n, Ordering::Relaxed)
                }
            };
        }
    });
    let queue = Queue {
        tx,
        counts: Arc::clone(counts),
    };
    (queue, task)
}

/// Adds to `batch` until it holds `max_batch` items, `delay` has passed, or the queue closed.
async fn fill<T>(
    rx: &mut mpsc::Receiver<T>,
    batch: &mut Vec<T>,
    max_batch: usize,
    delay: Duration,
) {
    let deadline = tokio::time::Instant::now() + delay;
    while batch.len() < max_batch {
        let room = max_batch - batch.len();
        match tokio::time::timeout_at(deadline, rx.recv_many(batch, room)).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// A running signal: its follower and its export task.
#[derive(Debug)]
pub struct Exporting {
    stop: oneshot::Sender<()>,
    follow: JoinHandle<()>,
    export: JoinHandle<()>,
}

impl Exporting {
    /// Follows `rx`, handing every record to `on_record` (which queues its items) until
    /// [`finish`](Self::finish); records missed because the follower fell behind are
    /// counted as dropped items (one per record).
    pub(super) fn follow(
        mut rx: broadcast::Receiver<Arc<UsageRecord>>,
        mut on_record: impl FnMut(&UsageRecord) + Send + 'static,
        counts: Arc<Counts>,
        export: JoinHandle<()>,
    ) -> Self {
        let (stop, mut stopped) = oneshot::channel::<()>();
        let follow = tokio::spawn(async move {
            loop {
                let received = tokio::select! {
                    received = rx.recv() => received,
                    _ = &mut stopped => break,
                };
                match received {
                    Ok(record) => on_record(&record),
                    Err(RecvError::Lagged(n)) => counts.drop_items(n),
                    Err(RecvError::Closed) => return,
                }
            }
            // Stopping: what the sink already holds is still queued for export.
            loop {
                match rx.try_recv() {
                    Ok(record) => on_record(&record),
                    Err(TryRecvError::Lagged(n)) => counts.drop_items(n),
                    Err(TryRecvError::Empty | TryRecvError::Closed) => break,
                }
            }
        });
        Self {
            stop,
            follow,
            export,
        }
    }

    /// Queues what the sink still holds, closes the queue and waits up to `deadline` for
    /// the export task to send everything queued; after that the rest is abandoned.
    pub async fn finish(self, deadline: Duration) {
        let _ = self.stop.send(());
        // The follower owns the queue's sender: when it ends, the queue closes.
        let _ = self.follow.await;
        let abort = self.export.abort_handle();
        if tokio::time::timeout(deadline, self.export).await.is_err() {
            abort.abort();
            tracing::warn!(?deadline, "OTLP export did not finish before shutdown");
        }
    }
}

pub(super) fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Registers the counter `name` (unit `unit`) reading `counts` on the metrics pipeline.
pub(super) fn register(
    telemetry: &Telemetry,
    name: &'static str,
    unit: &'static str,
    counts: &Arc<Counts>,
) {
    let counts = Arc::downgrade(counts);
    telemetry
        .inner
        .provider
        .meter("spillway")
        .u64_observable_counter(name)
        .with_unit(unit)
        .with_description("Exported items by result (`success`, `failure`, `dropped`).")
        .with_callback(move |observer| {
            let Some(counts) = counts.upgrade() else {
                return;
            };
            for (result, count) in [
                ("success", &counts.exported),
                ("failure", &counts.failed),
                ("dropped", &counts.dropped),
            ] {
                observer.observe(
                    count.load(Ordering::Relaxed),
                    &[KeyValue::new(attr::EXPORT_RESULT, result)],
                );
            }
        })
        .build();
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Records the size of every batch it is given.
    #[derive(Default)]
    struct Sizes(Arc<Mutex<Vec<usize>>>);

    impl BatchExport for Sizes {
        type Item = u32;

        async fn export(&self, batch: Vec<u32>) -> OTelSdkResult {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(batch.len());
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn items_wait_for_their_batch_to_fill_or_the_delay() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let counts = Arc::new(Counts::default());
        let (queue, task) = spawn_export(
            Sizes(Arc::clone(&sizes)),
            100,
            4,
            Duration::from_secs(5),
            &counts,
        );
        // Three items trickle in: one export after the delay, not three.
        for item in 0..3 {
            queue.push_all(vec![item]);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(*sizes.lock().expect("sizes"), [3]);
        // A full batch goes at once.
        queue.push_all((0..4).collect());
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(*sizes.lock().expect("sizes"), [3, 4]);
        // Closing sends what is left without waiting for the delay.
        queue.push_all(vec![9]);
        drop(queue);
        tokio::time::timeout(Duration::from_millis(100), task)
            .await
            .expect("ends at once")
            .expect("no panic");
        assert_eq!(*sizes.lock().expect("sizes"), [3, 4, 1]);
        assert_eq!(counts.exported.load(Ordering::Relaxed), 8);
    }
}
