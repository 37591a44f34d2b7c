//! Status of the Spillway objects, computed without a cluster.
//!
//! Input: the [`Problem`]s `compile()` found for one object (plus the operator's own findings,
//! such as a second `AIGateway` in a namespace), the snapshot version it is served in, the
//! sidecar counts, and the status the object has now. Output: the status it should have —
//! conditions `Accepted`, `ResolvedRefs` (kinds with references) and `Ready`, each with
//! `observedGeneration` and a `lastTransitionTime` that only moves when the condition's status
//! does — and the Event worth emitting for the change, if any.
//!
//! Live fields (breaker states per backend, tokens used and left per quota) are aggregated
//! from the sidecars' reports by [`live`] and passed in.
//!
//! Mapping: `InvalidSpec`, `ModelConflict`, `GatewayConflict` → `Accepted=False`;
//! `SecretNotResolved` → `ResolvedRefs=False`; `Ready=True` exactly when the current
//! generation is served as written (nothing was found against it), else `Ready=False` with
//! the first finding's reason and a message saying what is served instead: the last good
//! generation, the same generation with the Secret values read before, nothing — or, for the
//! `AIGateway` in effect, that every call is refused. `servedGeneration` says which
//! generation the sidecars run; `lastGoodGeneration` / `lastGoodSpec` keep the last accepted
//! spec so that it keeps serving after an operator restart. Pools also get `Degraded`
//! (every backend's breaker open), quotas the usage of their calendar periods, and the
//! `AIGateway` a summary of what it turns on.

use spillway_crds::v1alpha1::Condition;
use spillway_crds::{Problem, ProblemReason};

mod kinds;
pub mod live;
#[cfg(test)]
mod tests;

pub use kinds::{
    GatewaySettings, gateway_status, pool_status, quota_budgets, quota_periods, quota_status,
};

/// Sidecars of a scope running the current version, out of all live ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncCounts {
    /// Live sidecars whose last report names the current version.
    pub synced: usize,
    /// Live sidecars.
    pub total: usize,
}

impl std::fmt::Display for SyncCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.synced, self.total)
    }
}

/// Condition types.
pub mod condition {
    /// The spec is valid and does not conflict with another object.
    pub const ACCEPTED: &str = "Accepted";
    /// Every referenced Secret and key exists.
    pub const RESOLVED_REFS: &str = "ResolvedRefs";
    /// The object is part of the configuration served to the sidecars.
    pub const READY: &str = "Ready";
    /// Pools: every backend's circuit breaker is open.
    pub const DEGRADED: &str = "Degraded";
}

/// Condition reasons (UpperCamelCase, as Kubernetes conventions ask).
pub mod reason {
    /// `Accepted=True`.
    pub const ACCEPTED: &str = "Accepted";
    /// `ResolvedRefs=True`.
    pub const RESOLVED_REFS: &str = "ResolvedRefs";
    /// `Ready=True`: in the served snapshot.
    pub const PUBLISHED: &str = "Published";
    /// A field has an invalid value.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// A model is already served by an older pool.
    pub const MODEL_CONFLICT: &str = "ModelConflict";
    /// A referenced Secret or key is missing.
    pub const SECRET_NOT_RESOLVED: &str = "SecretNotResolved";
    /// Another, older `AIGateway` configures the namespace.
    pub const GATEWAY_CONFLICT: &str = "GatewayConflict";
    /// `Degraded=True`: every backend's breaker is open.
    pub const ALL_BREAKERS_OPEN: &str = "AllBreakersOpen";
    /// `Degraded=False`: some backend takes traffic.
    pub const BACKENDS_AVAILABLE: &str = "BackendsAvailable";
    /// `Degraded=Unknown`: no sidecar reports.
    pub const NO_LIVE_SIDECARS: &str = "NoLiveSidecars";
}

/// `True`.
pub const TRUE: &str = "True";
/// `False`.
pub const FALSE: &str = "False";
/// `Unknown`.
pub const UNKNOWN: &str = "Unknown";

/// Longest condition message written; longer ones are cut with a note.
const MAX_MESSAGE: usize = 2048;

/// The kind of object a status is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `AIBackendPool`.
    Pool,
    /// `TokenQuota` (no references, so no `ResolvedRefs`).
    Quota,
    /// `AIGateway`.
    Gateway,
}

/// One reason an object is not served, as status reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Offending field, e.g. `spec.backends[0].apiKey`.
    pub field: String,
    /// UpperCamelCase reason.
    pub reason: &'static str,
    /// What is wrong and what to do.
    pub message: String,
    /// Whether this is about a reference (`ResolvedRefs`) rather than the spec (`Accepted`).
    pub is_reference: bool,
}

impl From<&Problem> for Finding {
    fn from(problem: &Problem) -> Self {
        let (reason, is_reference) = match problem.reason {
            ProblemReason::InvalidSpec => (reason::INVALID_SPEC, false),
            ProblemReason::ModelConflict => (reason::MODEL_CONFLICT, false),
            ProblemReason::SecretNotResolved => (reason::SECRET_NOT_RESOLVED, true),
        };
        Self {
            field: problem.field.clone(),
            reason,
            message: problem.message.clone(),
            is_reference,
        }
    }
}

impl Finding {
    /// An `AIGateway` that is not the one in effect for its namespace.
    pub fn gateway_superseded(namespace: &str, winner: &str) -> Self {
        Self {
            field: "metadata.name".into(),
            reason: reason::GATEWAY_CONFLICT,
            message: format!(
                "AIGateway {namespace}/{winner} is older and configures this namespace; only \
                 one AIGateway per namespace is used: merge these settings into {winner} and \
                 delete this one"
            ),
            is_reference: false,
        }
    }
}

/// What the sidecars run of one object, and its last good version (kept in status so that
/// it survives an operator restart).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Serving {
    /// The generation served; `None` when no version of the object is.
    pub generation: Option<i64>,
    /// The last spec that compiled: its generation and the spec as JSON.
    pub last_good: Option<(Option<i64>, String)>,
    /// This object serving nothing makes the sidecars refuse every call (the `AIGateway` in
    /// effect for its namespace).
    pub refuses_calls: bool,
    /// For the `AIGateway` in effect: what its served generation turns on.
    pub gateway: Option<GatewaySettings>,
}

/// Where an object stands: what was found against it and the version it is served in.
#[derive(Clone, Copy, Debug)]
pub struct Observed<'a> {
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// Findings against the current generation; empty when it is served.
    pub findings: &'a [Finding],
    /// What is served of the object.
    pub serving: &'a Serving,
    /// The scope's snapshot version.
    pub version: u64,
    /// RFC 3339 time used for conditions that change now.
    pub now: &'a str,
}

/// The conditions for `kind` given `observed`, carrying transition times over from `previous`.
pub fn conditions(kind: Kind, observed: &Observed<'_>, previous: &[Condition]) -> Vec<Condition> {
    let spec: Vec<&Finding> = observed
        .findings
        .iter()
        .filter(|f| !f.is_reference)
        .collect();
    let refs: Vec<&Finding> = observed
        .findings
        .iter()
        .filter(|f| f.is_reference)
        .collect();
    let make = |type_: &str, failing: &[&Finding], ok_reason: &str, ok_message: String| {
        let (status, reason, message) = match failing.first() {
            Some(first) => (FALSE, first.reason, describe(failing)),
            None => (TRUE, ok_reason, ok_message),
        };
        condition(type_, status, reason, message, observed, previous)
    };
    let mut out = vec![make(
        condition::ACCEPTED,
        &spec,
        reason::ACCEPTED,
        "the spec is valid".into(),
    )];
    if kind != Kind::Quota {
        out.push(make(
            condition::RESOLVED_REFS,
            &refs,
            reason::RESOLVED_REFS,
            "every referenced Secret key was found".into(),
        ));
    }
    let failing: Vec<&Finding> = spec.iter().chain(refs.iter()).copied().collect();
    let ready = match failing.first() {
        Some(first) => condition(
            condition::READY,
            FALSE,
            first.reason,
            not_ready_message(observed, &failing),
            observed,
            previous,
        ),
        None => condition(
            condition::READY,
            TRUE,
            reason::PUBLISHED,
            format!("served in configuration version {}", observed.version),
            observed,
            previous,
        ),
    };
    out.push(ready);
    out
}

/// What is served while the current generation has problems.
fn not_ready_message(observed: &Observed<'_>, failing: &[&Finding]) -> String {
    let problems = describe(failing);
    let current = observed.generation.map_or_else(
        || "the current spec".to_owned(),
        |g| format!("generation {g}"),
    );
    match observed.serving.generation {
        Some(served) if Some(served) == observed.generation => format!(
            "{current} keeps serving with the values last read from its Secrets until they \
             return or the object changes (configuration version {}): {problems}",
            observed.version
        ),
        Some(served) => format!(
            "{current} is refused: {problems}; generation {served}, the last good one, keeps \
             serving (configuration version {})",
            observed.version
        ),
        None if observed.serving.refuses_calls => format!(
            "not served to sidecars: {problems}; no earlier version can be served either, so \
             the sidecars refuse every call (503) until this is fixed"
        ),
        None => format!("not served to sidecars: {problems}"),
    }
}

pub(super) fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    observed: &Observed<'_>,
    previous: &[Condition],
) -> Condition {
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map_or_else(
            || observed.now.to_owned(),
            |c| c.last_transition_time.clone(),
        );
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: observed.generation,
        last_transition_time,
    }
}

/// `field: message` of every finding, `; `-separated, bounded in length.
fn describe(findings: &[&Finding]) -> String {
    let mut text = findings
        .iter()
        .map(|f| format!("{}: {}", f.field, f.message))
        .collect::<Vec<_>>()
        .join("; ");
    if text.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str(" … (more problems; fix these first)");
    }
    text
}

/// An Event to emit for a status change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// `Normal` (true) or `Warning` (false).
    pub normal: bool,
    /// UpperCamelCase reason.
    pub reason: String,
    /// What happened.
    pub note: String,
    /// The part of the object the Event is about, as a `fieldPath` (`spec.backends{ptu}`),
    /// so that Events about different parts are never folded into one series.
    pub subject: Option<String>,
}

/// The Event for going from `previous` to `next` conditions: when `Ready` appears or flips,
/// or stays `False` for a different reason or message. Version bumps of a ready object are
/// not events.
pub fn transition(previous: &[Condition], next: &[Condition]) -> Option<Transition> {
    let ready = |conditions: &[Condition]| {
        conditions
            .iter()
            .find(|c| c.type_ == condition::READY)
            .cloned()
    };
    let after = ready(next)?;
    let before = ready(previous);
    let unchanged = before.as_ref().is_some_and(|b| {
        b.status == after.status
            && (after.status == TRUE || (b.reason == after.reason && b.message == after.message))
    });
    if unchanged {
        return None;
    }
    Some(Transition {
        normal: after.status == TRUE,
        reason: after.reason.clone(),
        note: after.message,
        subject: None,
    })
}
