//! Watches the apps' quota refusals while the demo runs: tells the viewer when an app is
//! first refused by its own quota (or, which must not happen, gets a backend's 429), and —
//! once an app gets quota 429s — sends a probe as that app to read the `Retry-After` the
//! gateway gives it (the load report keeps statuses, not headers).
//!
//! Input: the shared [`ClientLog`] (fed by the load generator's hook), the apps' load plans,
//! polled by the live loop. Output: events (through [`BreakerWatch::note`]), the confirmed
//! probe answer and the number of probes sent. At most [`MAX_PROBES`] probes, one at a time;
//! a probe's request id is logged under its app first, so if admitted its tokens join the
//! ledger like any other call's.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::FutureExt as _;
use tokio::task::JoinHandle;

use super::clients::{ClientLog, Refusal, Refusals};
use super::monitor::BreakerWatch;
use super::probe::{self, ProbeAnswer};
use crate::loadtest::Plan;
use spillway_sidecar::http_client::{self, HttpClient};

/// Probes sent at most in one run.
pub const MAX_PROBES: u64 = 5;

/// The clients' log, shared with the load generator's hook.
pub type SharedLog = Arc<Mutex<ClientLog>>;

/// See the module docs.
#[derive(Debug)]
pub struct QuotaWatch {
    log: SharedLog,
    plans: Vec<Plan>,
    quotas: BTreeMap<String, String>,
    client: HttpClient,
    announced: HashSet<(String, Refusal)>,
    in_flight: Option<JoinHandle<anyhow::Result<ProbeAnswer>>>,
    /// Probes sent so far.
    pub probes: u64,
    /// The first probe answered with a quota 429 carrying `Retry-After`.
    pub confirmed: Option<ProbeAnswer>,
}

impl QuotaWatch {
    /// Watches `log` for the apps of `plans`, whose quotas read as `quotas`.
    pub fn new(log: SharedLog, plans: Vec<Plan>, quotas: BTreeMap<String, String>) -> Self {
        Self {
            log,
            plans,
            quotas,
            client: http_client::client(),
            announced: HashSet::new(),
            in_flight: None,
            probes: 0,
            confirmed: None,
        }
    }

    /// One poll: announces new kinds of refusal, collects a finished probe, starts the next.
    pub fn tick(&mut self, watch: &mut BreakerWatch, at: Duration) {
        let refusals = self.refusals();
        let mut limited = None;
        for (app, r) in &refusals {
            for (kind, count) in [
                (Refusal::Quota429, r.quota_429),
                (Refusal::Quota403, r.quota_403),
                (Refusal::Backend429, r.backend_429),
            ] {
                if count > 0 && self.announced.insert((app.clone(), kind)) {
                    watch.note(at, self.announcement(app, kind));
                }
            }
            if r.quota_429 > 0 && limited.is_none() {
                limited = Some(app.clone());
            }
        }
        if let Some(handle) = self.in_flight.as_mut()
            && let Some(joined) = handle.now_or_never()
        {
            self.in_flight = None;
            self.collect(joined, watch, at);
        }
        if let Some(app) = limited
            && self.confirmed.is_none()
            && self.in_flight.is_none()
            && self.probes < MAX_PROBES
        {
            self.start_probe(&app);
        }
    }

    /// Waits for a probe still in flight (bounded by the probe's own timeout).
    pub async fn finish(&mut self, watch: &mut BreakerWatch, at: Duration) {
        if let Some(handle) = self.in_flight.take() {
            let joined = handle.await;
            self.collect(joined, watch, at);
        }
    }

    /// Refusals per app so far.
    pub fn refusals(&self) -> BTreeMap<String, Refusals> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .refusals
            .clone()
    }

    /// Each app's quota, for people.
    pub fn quotas(&self) -> &BTreeMap<String, String> {
        &self.quotas
    }

    fn announcement(&self, app: &str, kind: Refusal) -> String {
        let quota = self.quotas.get(app).map_or("?", String::as_str);
        match kind {
            Refusal::Quota429 => format!(
                "{app} is over its own token quota ({quota}): the gateway answers 429 itself, no backend is called"
            ),
            Refusal::Quota403 => {
                format!("{app} used up its daily token quota ({quota}): 403 until midnight UTC")
            }
            Refusal::Backend429 => {
                format!("{app} received a backend's 429 (it should have spilled over)")
            }
        }
    }

    fn start_probe(&mut self, app: &str) {
        let Some(plan) = self.plans.iter().find(|p| p.app(0) == app) else {
            return;
        };
        self.probes += 1;
        let request_id = format!("demo-probe-{app}-{}", self.probes);
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .apps
            .insert(request_id.clone(), app.to_owned());
        let (client, plan) = (self.client.clone(), plan.clone());
        self.in_flight = Some(tokio::spawn(async move {
            probe::probe(&client, &plan, &request_id).await
        }));
    }

    fn collect(
        &mut self,
        joined: Result<anyhow::Result<ProbeAnswer>, tokio::task::JoinError>,
        watch: &mut BreakerWatch,
        at: Duration,
    ) {
        match joined {
            Ok(Ok(answer)) if answer.is_quota_429_with_retry_after() => {
                watch.note(
                    at,
                    format!(
                        "probe as {}: 429, Retry-After: {} s ({})",
                        answer.app,
                        answer.retry_after_s.unwrap_or_default(),
                        answer.message.as_deref().unwrap_or("no message")
                    ),
                );
                self.confirmed = Some(answer);
            }
            // Admitted (its tokens had come back) or refused otherwise: the next poll may try again.
            Ok(Ok(_)) => {}
            Ok(Err(error)) => watch.note(at, format!("the quota probe failed: {error:#}")),
            Err(error) => watch.note(at, format!("the quota probe failed: {error}")),
        }
    }
}
