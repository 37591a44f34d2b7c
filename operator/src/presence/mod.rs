//! Presence shared between operator replicas, so every replica sees every sidecar.
//!
//! Each replica serves the streams of the sidecars that happen to connect to it. To divide
//! quotas by the number of sidecars across all replicas, and to let the leader's status count
//! every sidecar and show its live state, each replica announces its own sidecars in a
//! `coordination.k8s.io/v1` Lease named `spillway-replica-<identity>` in the operator's
//! namespace, labelled [`LABEL`]: `holderIdentity` (the replica), `renewTime` (renewed every
//! `interval`), `leaseDurationSeconds`, and the annotation [`ANNOTATION`] holding compact JSON
//! of its live sidecars per scope — id, applied version, breaker states and per-minute quota
//! levels ([`LiveSidecar`]).
//!
//! Inputs: the [`Registry`]'s own sidecars; the Leases of the other replicas (a labelled list
//! every `interval`). Output: [`Registry::set_remotes`] with every other replica whose Lease
//! has not expired, valid until it would expire. A replica that stops renewing (it crashed or
//! lost the API server) stops counting once its Lease expires; a stopping replica deletes its
//! Lease ([`Presence::withdraw`]); Leases expired for longer than [`FORGET_AFTER`] (crashed
//! pods of old rollouts) are deleted by whichever replica sees them.
//!
//! Size: the annotation is bounded by [`MAX_ANNOTATION_BYTES`] (the API server allows 256 KiB
//! for all annotations). Past it, quota levels are left out first, then breaker states, then
//! sidecars (about 4 000 with short ids still fit) — each with a warning; what is left out
//! then simply does not count at the other replicas.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams};
use kube::{Api, Client};
use tokio::time::Instant;

use crate::sidecars::{Registry, RemoteReplica};
use crate::status::live::LiveSidecar;

/// Label on every presence Lease (value `replica`).
pub const LABEL: &str = "spillway.dev/presence";
/// Annotation with the replica's live sidecars per scope (JSON).
pub const ANNOTATION: &str = "spillway.dev/sidecars";
/// Largest annotation written.
pub const MAX_ANNOTATION_BYTES: usize = 128 * 1024;
/// Expired presence Leases older than this are deleted.
pub const FORGET_AFTER: Duration = Duration::from_secs(3600);
const FIELD_MANAGER: &str = "spillway-operator-presence";

/// The sidecars of a replica, per scope.
pub type Scopes = BTreeMap<String, Vec<LiveSidecar>>;

/// Presence settings.
#[derive(Clone, Debug)]
pub struct PresenceConfig {
    /// Namespace of the Leases (the operator's).
    pub namespace: String,
    /// This replica (its pod name).
    pub identity: String,
    /// How often the Lease is renewed and the others are read.
    pub interval: Duration,
    /// How long a Lease counts without renewal.
    pub lease_duration: Duration,
}

/// The presence Lease name of `identity`: `spillway-replica-` and the identity in lower case
/// with other characters than `[a-z0-9.-]` replaced by `-`, at most 253 characters.
pub fn lease_name(identity: &str) -> String {
    let mut name = String::from("spillway-replica-");
    name.extend(identity.chars().map(|c| {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
            c
        } else {
            '-'
        }
    }));
    name.truncate(253);
    while name.ends_with(['-', '.']) {
        name.pop();
    }
    name
}

/// The annotation text for `scopes`, at most [`MAX_ANNOTATION_BYTES`] long.
pub fn encode(scopes: &Scopes) -> String {
    let json = |s: &Scopes| serde_json::to_string(s).unwrap_or_else(|_| "{}".into());
    let full = json(scopes);
    if full.len() <= MAX_ANNOTATION_BYTES {
        return full;
    }
    let mut lean = scopes.clone();
    lean.values_mut().flatten().for_each(|s| {
        s.minute_left.clear();
        s.calendar_left.clear();
    });
    let text = json(&lean);
    tracing::warn!(
        bytes = full.len(),
        "too many sidecars to announce with quota levels; leaving them out"
    );
    if text.len() <= MAX_ANNOTATION_BYTES {
        return text;
    }
    lean.values_mut().flatten().for_each(|s| s.breakers.clear());
    let text = json(&lean);
    if text.len() <= MAX_ANNOTATION_BYTES {
        return text;
    }
    // Ids and versions only, as many as fit.
    let mut kept = Scopes::new();
    let mut size = 2;
    let mut dropped = 0usize;
    for (scope, sidecars) in lean {
        size += scope.len() + 6;
        let list = kept.entry(scope).or_default();
        for sidecar in sidecars {
            let one = serde_json::to_string(&sidecar).map_or(usize::MAX, |t| t.len() + 1);
            if size.saturating_add(one) < MAX_ANNOTATION_BYTES {
                size += one;
                list.push(sidecar);
            } else {
                dropped += 1;
            }
        }
    }
    tracing::warn!(
        dropped,
        "too many sidecars to announce; some do not count at other replicas"
    );
    json(&kept)
}

/// The other replicas with a valid presence Lease among `leases` at `now`, each with how
/// much longer its Lease is valid; plus the names of Leases expired for longer than
/// [`FORGET_AFTER`]. Leases of `me`, without a renew time or with an unreadable annotation
/// are skipped.
pub fn decode(
    leases: &[Lease],
    me: &str,
    now: Timestamp,
) -> (BTreeMap<String, (Duration, Scopes)>, Vec<String>) {
    let mut live = BTreeMap::new();
    let mut forgotten = Vec::new();
    for lease in leases {
        let Some(spec) = lease.spec.as_ref() else {
            continue;
        };
        let Some(holder) = spec.holder_identity.as_deref() else {
            continue;
        };
        let Some(renewed) = spec.renew_time.as_ref() else {
            continue;
        };
        if holder == me {
            continue;
        }
        let duration =
            SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(0).max(0)));
        let left = renewed.0.duration_since(now) + duration;
        if left.is_negative() || left.is_zero() {
            let forget = SignedDuration::try_from(FORGET_AFTER).unwrap_or(SignedDuration::MAX);
            if -left > forget
                && let Some(name) = lease.metadata.name.clone()
            {
                forgotten.push(name);
            }
            continue;
        }
        let text = lease
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANNOTATION))
            .map_or("{}", String::as_str);
        match serde_json::from_str::<Scopes>(text) {
            Ok(scopes) => {
                let left = Duration::try_from(left).unwrap_or_default();
                live.insert(holder.to_owned(), (left, scopes));
            }
            Err(error) => {
                tracing::warn!(replica = holder, %error, "unreadable presence Lease; skipped");
            }
        }
    }
    (live, forgotten)
}

/// Announces this replica's sidecars and reads the others'.
#[derive(Clone)]
pub struct Presence {
    api: Api<Lease>,
    config: PresenceConfig,
    registry: Registry,
}

impl Presence {
    /// Presence of this replica, through `client`.
    pub fn new(client: Client, config: PresenceConfig, registry: Registry) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            config,
            registry,
        }
    }

    /// Creates or renews this replica's Lease with its current sidecars.
    ///
    /// # Errors
    /// The API server refused the write or was unreachable.
    pub async fn announce(&self) -> Result<(), kube::Error> {
        let name = lease_name(&self.config.identity);
        let sidecars = encode(&self.registry.local_sidecars(Instant::now()));
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(self.config.namespace.clone()),
                labels: Some([(LABEL.to_owned(), "replica".to_owned())].into()),
                annotations: Some([(ANNOTATION.to_owned(), sidecars)].into()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.config.identity.clone()),
                lease_duration_seconds: i32::try_from(self.config.lease_duration.as_secs()).ok(),
                renew_time: Some(MicroTime(Timestamp::now())),
                ..LeaseSpec::default()
            }),
        };
        let params = PatchParams::apply(FIELD_MANAGER).force();
        self.api
            .patch(&name, &params, &Patch::Apply(&lease))
            .await?;
        Ok(())
    }

    /// Reads the other replicas' Leases (as of the wall time `wall` and the monotonic `now`)
    /// into the registry, and deletes long-expired ones.
    ///
    /// # Errors
    /// The API server refused the list or was unreachable; the registry keeps what it had,
    /// each replica until its Lease would expire.
    pub async fn observe_at(&self, wall: Timestamp, now: Instant) -> Result<(), kube::Error> {
        let list = self
            .api
            .list(&ListParams::default().labels(&format!("{LABEL}=replica")))
            .await?;
        let (live, forgotten) = decode(&list.items, &self.config.identity, wall);
        let remotes = live
            .into_iter()
            .map(|(replica, (left, scopes))| {
                let until = now + left;
                (replica, RemoteReplica { until, scopes })
            })
            .collect();
        self.registry.set_remotes(remotes, now);
        for name in forgotten {
            if let Err(error) = self.api.delete(&name, &DeleteParams::default()).await {
                tracing::debug!(lease = name, %error, "cannot delete an expired presence Lease");
            }
        }
        Ok(())
    }

    /// Deletes this replica's Lease, so the others stop counting its sidecars at once.
    pub async fn withdraw(&self) {
        let name = lease_name(&self.config.identity);
        if let Err(error) = self.api.delete(&name, &DeleteParams::default()).await {
            tracing::warn!(lease = name, %error, "cannot delete the presence Lease");
        }
    }

    /// Announces and observes every `interval` until `shutdown`, then withdraws.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            if let Err(error) = self.announce().await {
                tracing::warn!(%error, "cannot renew the presence Lease");
            }
            if let Err(error) = self.observe_at(Timestamp::now(), Instant::now()).await {
                tracing::warn!(%error, "cannot read the other replicas' presence Leases");
            }
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(self.config.interval) => {}
            }
        }
        self.withdraw().await;
    }
}

#[cfg(test)]
mod tests;
