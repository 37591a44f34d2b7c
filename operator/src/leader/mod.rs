//! Leader election on a `coordination.k8s.io/v1` Lease.
//!
//! Input: the Lease's namespace and name, this replica's identity, and timings. Output: a
//! `watch` of "this replica leads". Only the leader writes status and Events; every replica
//! compiles and serves streams. The leader renews every `renew_every`; another replica takes
//! over once a Lease has not been renewed for its `leaseDurationSeconds`; a leader that cannot
//! renew within `renew_deadline` steps down by itself, before anybody can take over. Updates
//! use the Lease's `resourceVersion`, so two replicas never both win. On shutdown the leader
//! releases the Lease so the next one takes over at once.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::time::Instant;

/// Lease settings.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica (its pod name).
    pub identity: String,
    /// How long a Lease stays valid without renewal.
    pub lease_duration: Duration,
    /// How often the leader renews (and followers look).
    pub renew_every: Duration,
}

impl LeaseConfig {
    fn renew_deadline(&self) -> Duration {
        self.lease_duration * 2 / 3
    }
}

/// What to do with the Lease as found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// No Lease yet: create it, holding it.
    Create,
    /// We hold it: renew.
    Renew,
    /// Free or expired: take it over.
    TakeOver,
    /// Somebody else holds it.
    Follow(String),
}

/// Decides from the Lease's spec (if the Lease exists) at `now`.
pub fn decide(lease: Option<&LeaseSpec>, me: &str, now: Timestamp) -> Decision {
    let Some(spec) = lease else {
        return Decision::Create;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder == me {
        return Decision::Renew;
    }
    if holder.is_empty() {
        return Decision::TakeOver;
    }
    let duration_ms = i64::from(spec.lease_duration_seconds.unwrap_or(0)) * 1000;
    let renewed_ms = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map_or(i64::MIN / 2, |t| t.0.as_millisecond());
    if renewed_ms.saturating_add(duration_ms) < now.as_millisecond() {
        Decision::TakeOver
    } else {
        Decision::Follow(holder.to_owned())
    }
}

/// Runs the election for `config`.
#[derive(Clone)]
pub struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
}

impl Elector {
    /// An elector using `client`.
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            config,
        }
    }

    fn spec(&self, now: Timestamp, acquired: Option<MicroTime>, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: i32::try_from(self.config.lease_duration.as_secs()).ok(),
            acquire_time: Some(acquired.unwrap_or(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// One look at the Lease; `Ok(true)` when we hold it afterwards.
    async fn step(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let current = self.api.get_opt(&self.config.name).await?;
        let decision = decide(
            current.as_ref().and_then(|l| l.spec.as_ref()),
            &self.config.identity,
            now,
        );
        let written = match (decision, current) {
            (Decision::Create, _) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.config.name.clone()),
                        namespace: Some(self.config.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(self.spec(now, None, 0)),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            (Decision::Renew, Some(mut lease)) => {
                let old = lease.spec.take().unwrap_or_default();
                lease.spec =
                    Some(self.spec(now, old.acquire_time, old.lease_transitions.unwrap_or(0)));
                self.api
                    .replace(&self.config.name, &PostParams::default(), &lease)
                    .await
            }
            (Decision::TakeOver, Some(mut lease)) => {
                let transitions = lease
                    .spec
                    .as_ref()
                    .and_then(|s| s.lease_transitions)
                    .unwrap_or(0);
                lease.spec = Some(self.spec(now, None, transitions.saturating_add(1)));
                self.api
                    .replace(&self.config.name, &PostParams::default(), &lease)
                    .await
            }
            (Decision::Follow(_), _) | (_, None) => return Ok(false),
        };
        match written {
            Ok(_) => Ok(true),
            // Somebody else wrote first; look again next round.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Hands the Lease over on shutdown, if we hold it.
    async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.config.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        if let Err(error) = self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            tracing::warn!(%error, "cannot release the leader Lease");
        }
    }

    /// Campaigns until `shutdown` resolves, publishing leadership on `leads`.
    pub async fn run(
        self,
        leads: watch::Sender<bool>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut last_renewed: Option<Instant> = None;
        loop {
            match self.step().await {
                Ok(true) => last_renewed = Some(Instant::now()),
                Ok(false) => last_renewed = None,
                Err(error) => tracing::warn!(%error, lease = self.config.name, "leader election"),
            }
            let leading = last_renewed.is_some_and(|t| t.elapsed() < self.config.renew_deadline());
            if leads.send_if_modified(|now| std::mem::replace(now, leading) != leading) {
                tracing::info!(
                    leading,
                    identity = self.config.identity,
                    "leadership changed"
                );
            }
            let pause = self.config.renew_every.mul_f64(0.8 + fastrand::f64() * 0.4);
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(pause) => {}
            }
        }
        if *leads.borrow() {
            leads.send_replace(false);
            self.release().await;
        }
    }
}

#[cfg(test)]
mod tests;
