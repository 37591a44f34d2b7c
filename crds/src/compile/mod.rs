//! `compile()`: user objects in, one [`Snapshot`] and a list of [`Problem`]s out.
//!
//! Pure: no client, no clock, no I/O except through the injected [`SecretResolver`]. The
//! operator calls it with reflector stores and Kubernetes Secrets; standalone mode with the
//! objects of a YAML file and env/file secrets. Every rejected object yields at least one
//! problem whose message says what to fix; an object with any problem is left out of the
//! snapshot as a whole, so a half-valid pool never serves traffic.

use std::fmt;

use crate::duration;
use crate::snapshot::Snapshot;
use crate::v1alpha1::{AiBackendPoolSpec, AiGatewaySpec, SecretSource, TokenQuotaSpec};

mod entra;
mod gateway;
mod history;
mod pool;
mod pricing;
mod quota;
#[cfg(test)]
mod tests;
mod validate;

pub use history::{Compilation, History, LastGood, Served, compile_with_history};
pub use pool::default_breaker;
pub(crate) use pool::normalise_base_url;

/// A namespaced object as `compile()` sees it: identity plus spec, whatever its origin.
#[derive(Clone, Debug, PartialEq)]
pub struct Object<S> {
    /// `metadata.namespace` (`default` when a manifest has none).
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.creationTimestamp` (RFC 3339); the older object wins a conflict.
    pub creation_timestamp: Option<String>,
    /// `metadata.generation`, when the object comes from an API server.
    pub generation: Option<i64>,
    /// The spec.
    pub spec: S,
}

impl<S> Object<S> {
    /// `namespace/name`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Everything one snapshot is compiled from.
#[derive(Clone, Debug, Default)]
pub struct CompileInput {
    /// All `AIBackendPool`s of the scope.
    pub pools: Vec<Object<AiBackendPoolSpec>>,
    /// The scope's `AIGateway`, if any.
    pub gateway: Option<Object<AiGatewaySpec>>,
    /// All `TokenQuota`s of the scope.
    pub quotas: Vec<Object<TokenQuotaSpec>>,
    /// When calls without a credential are admitted.
    pub anonymous: AnonymousAccess,
}

/// When calls without any credential are admitted (as appId `anonymous`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AnonymousAccess {
    /// Standalone (`spillway run --config`): also where the file configures no identity
    /// method and does not write `allowAnonymous` (no `AIGateway`, or one without methods);
    /// whoever runs the process owns the file.
    #[default]
    WhenNoMethod,
    /// Kubernetes: only where `allowAnonymous: true` is written. A namespace without an
    /// `AIGateway`, or whose `AIGateway` configures no method and does not write it, refuses
    /// every call and says what to create: deleting or emptying an object never turns
    /// authentication off.
    OnlyWhenWritten,
}

/// Looks up secret values.
pub trait SecretResolver {
    /// The value of `source`, for an object in `namespace`.
    ///
    /// # Errors
    /// A message saying what is missing (Secret, key, variable or file).
    fn resolve(&self, namespace: &str, source: &SecretSource) -> Result<String, String>;
}

/// Why an object was rejected; maps to a status condition reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProblemReason {
    /// A field has an invalid value.
    InvalidSpec,
    /// A model name is already served by another (older) pool.
    ModelConflict,
    /// A referenced Secret, key, variable or file could not be read.
    SecretNotResolved,
}

impl ProblemReason {
    /// The UpperCamelCase condition reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidSpec => "InvalidSpec",
            Self::ModelConflict => "ModelConflict",
            Self::SecretNotResolved => "SecretNotResolved",
        }
    }
}

/// One reason an object was not accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// `AIBackendPool` or `AIGateway`.
    pub kind: &'static str,
    /// Namespace of the object.
    pub namespace: String,
    /// Name of the object.
    pub name: String,
    /// Path of the offending field, e.g. `spec.backends[1].weight`.
    pub field: String,
    /// Category.
    pub reason: ProblemReason,
    /// What is wrong and what to do.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}/{}: {}: {}",
            self.kind, self.namespace, self.name, self.field, self.message
        )
    }
}

pub(crate) const KIND_POOL: &str = "AIBackendPool";
pub(crate) const KIND_GATEWAY: &str = "AIGateway";
pub(crate) const KIND_QUOTA: &str = "TokenQuota";

/// Compiles `input` into a snapshot (with `version` 0; the caller numbers versions) and the
/// problems of every object that was left out. Without memory: an object that does not
/// compile serves nothing ([`compile_with_history`] keeps its last good version instead).
pub fn compile(input: &CompileInput, secrets: &dyn SecretResolver) -> (Snapshot, Vec<Problem>) {
    let compiled = compile_with_history(input, &History::default(), secrets);
    (compiled.snapshot, compiled.problems)
}

pub(crate) use duration::parse as parse_duration;
