//! In-memory usage totals per (app, pool, backend, model) and the most recent records, served
//! on the admin port (`/admin/usage`) for operators, the demo and tests.
//!
//! Input: records from a [`UsageSink`](super::UsageSink) subscription. Memory is bounded: the
//! recent list keeps the last `recent_capacity` records; the totals keep one entry per
//! distinct key.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use tokio::sync::broadcast::{self, error::RecvError};

use super::UsageRecord;
use crate::cost::{CostKind, Picos};

/// Sums for one key.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    /// Requests that ended with this key.
    pub requests: u64,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens (reasoning included).
    pub completion_tokens: u64,
    /// Of the prompt tokens, read from the prompt cache.
    pub cached_tokens: u64,
    /// Of the prompt tokens, written to the prompt cache.
    pub cache_write_tokens: u64,
    /// Of the prompt tokens, audio.
    pub audio_input_tokens: u64,
    /// Of the prompt tokens, image.
    pub image_input_tokens: u64,
    /// Of the completion tokens, reasoning.
    pub reasoning_tokens: u64,
    /// Of the completion tokens, audio.
    pub audio_output_tokens: u64,
    /// Requests whose counts came from the tokenizer.
    pub estimated_requests: u64,
    /// The calls' cost (metered), or their price-weighted value (provisioned), when the
    /// backend has prices.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<CostSum>,
}

/// A sum of call costs in one currency.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CostSum {
    /// ISO 4217 code.
    pub currency: String,
    /// `metered` or `provisioned`.
    pub kind: CostKind,
    /// The exact sum.
    pub amount: Picos,
}

/// `(app, pool, backend, model)`; backend is `-` when no backend answered.
pub type TotalsKey = (String, String, String, String);

#[derive(Debug, Default)]
struct Inner {
    totals: BTreeMap<TotalsKey, Totals>,
    recent: VecDeque<Arc<UsageRecord>>,
    lost: u64,
}

/// Aggregates usage records.
#[derive(Clone, Debug)]
pub struct UsageTotals {
    inner: Arc<Mutex<Inner>>,
    recent_capacity: usize,
}

/// A JSON view of the totals.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TotalsView {
    /// One row per key.
    pub rows: Vec<TotalsRow>,
    /// The last records, oldest first.
    pub recent: Vec<Arc<UsageRecord>>,
    /// Records this aggregator missed because it fell behind.
    pub lost: u64,
}

/// A row of [`TotalsView`].
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TotalsRow {
    /// App.
    pub app_id: String,
    /// Pool.
    pub pool: String,
    /// Backend, `-` when none answered.
    pub backend: String,
    /// Requested model.
    pub model: String,
    /// Sums.
    #[serde(flatten)]
    pub totals: Totals,
}

impl UsageTotals {
    /// Keeps the last `recent_capacity` records besides the sums.
    pub fn new(recent_capacity: usize) -> Self {
        Self {
            inner: Arc::default(),
            recent_capacity,
        }
    }

    /// Adds one record.
    pub fn add(&self, record: Arc<UsageRecord>) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (
            record.app_id.clone(),
            record.pool.clone(),
            record.backend.clone().unwrap_or_else(|| "-".to_owned()),
            record.model.clone(),
        );
        let entry = inner.totals.entry(key).or_default();
        entry.requests += 1;
        let usage = &record.usage;
        entry.prompt_tokens += usage.prompt_tokens;
        entry.completion_tokens += usage.completion_tokens;
        entry.cached_tokens += usage.cached_tokens;
        entry.cache_write_tokens += usage.cache_write_tokens;
        entry.audio_input_tokens += usage.audio_input_tokens;
        entry.image_input_tokens += usage.image_input_tokens;
        entry.reasoning_tokens += usage.reasoning_tokens;
        entry.audio_output_tokens += usage.audio_output_tokens;
        if let Some(cost) = &record.cost {
            match &mut entry.cost {
                Some(sum) if sum.currency == cost.currency && sum.kind == cost.kind => {
                    sum.amount += cost.amount;
                }
                // A backend's currency or kind changed: the sum restarts with the new one.
                sum => {
                    *sum = Some(CostSum {
                        currency: cost.currency.clone(),
                        kind: cost.kind,
                        amount: cost.amount,
                    });
                }
            }
        }
        entry.estimated_requests += u64::from(record.estimated);
        if self.recent_capacity > 0 {
            if inner.recent.len() == self.recent_capacity {
                inner.recent.pop_front();
            }
            inner.recent.push_back(record);
        }
    }

    /// A copy of the current state.
    pub fn view(&self) -> TotalsView {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        TotalsView {
            rows: inner
                .totals
                .iter()
                .map(|((app_id, pool, backend, model), totals)| TotalsRow {
                    app_id: app_id.clone(),
                    pool: pool.clone(),
                    backend: backend.clone(),
                    model: model.clone(),
                    totals: totals.clone(),
                })
                .collect(),
            recent: inner.recent.iter().cloned().collect(),
            lost: inner.lost,
        }
    }

    /// Consumes `rx` until the sink closes.
    pub async fn follow(self, mut rx: broadcast::Receiver<Arc<UsageRecord>>) {
        loop {
            match rx.recv().await {
                Ok(record) => self.add(record),
                Err(RecvError::Lagged(n)) => {
                    self.inner
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .lost += n;
                }
                Err(RecvError::Closed) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::usage::{Usage, UsageSink};

    fn record(app: &str, backend: Option<&str>, prompt: u64, estimated: bool) -> UsageRecord {
        UsageRecord {
            pool: "p".into(),
            backend: backend.map(Into::into),
            model: "m".into(),
            operation: None,
            usage: Usage::totals(prompt, 1),
            estimated,
            ..UsageRecord::served(app)
        }
    }

    #[tokio::test]
    async fn sums_per_key_and_keeps_a_bounded_recent_list() {
        let sink = UsageSink::new(16);
        let totals = UsageTotals::new(2);
        let task = tokio::spawn(totals.clone().follow(sink.subscribe()));
        sink.send(record("a", Some("b1"), 10, false));
        sink.send(record("a", Some("b1"), 5, true));
        sink.send(record("b", None, 0, false));
        drop(sink);
        task.await.expect("follow ends when the sink closes");
        let view = totals.view();
        assert_eq!(view.rows.len(), 2);
        assert_eq!(
            view.rows[0].totals,
            Totals {
                requests: 2,
                prompt_tokens: 15,
                completion_tokens: 2,
                estimated_requests: 1,
                ..Totals::default()
            }
        );
        assert_eq!(view.rows[1].backend, "-");
        assert_eq!(view.recent.len(), 2);
        assert_eq!(view.lost, 0);
    }
}
