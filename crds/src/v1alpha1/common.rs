//! Types shared by several kinds: secret references and status conditions.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where a secret value comes from. Exactly one field must be set. In Kubernetes use
/// `secretRef`; a standalone gateway resolves `secretRef` from `--secrets-dir/<name>/<key>`
/// (the layout of a mounted Secret) and also accepts `env` and `file`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "(has(self.secretRef) ? 1 : 0) + (has(self.env) ? 1 : 0) + (has(self.file) ? 1 : 0) == 1", "message": "set exactly one of secretRef, env or file"}
]))]
pub struct SecretSource {
    /// A key of a Secret in the namespace of the object that references it (the
    /// AIBackendPool's or the AIGateway's own namespace); Secrets of other namespaces are
    /// never read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
    /// Standalone only: an environment variable of the gateway process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// Standalone only: a file whose content (trimmed) is the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// A key of a Secret in the referencing object's own namespace.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq, Eq, Hash)]
pub struct SecretKeyRef {
    /// Name of the Secret.
    pub name: String,
    /// Key inside the Secret's data.
    pub key: String,
}

/// A status condition, following the Kubernetes conventions.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Accepted`, `ResolvedRefs`, `Ready` or (pools) `Degraded`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Machine-readable UpperCamelCase reason.
    pub reason: String,
    /// What happened and, on failure, what to fix.
    pub message: String,
    /// The generation this condition describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the status last changed (RFC 3339).
    pub last_transition_time: String,
}

/// Which generation of an object the sidecars run, and the last one that was accepted; part
/// of every Spillway kind's status.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ServedVersion {
    /// The generation the sidecars run: `metadata.generation` when the current spec is
    /// accepted, an earlier one while a newer generation is refused (see the conditions),
    /// absent when no version of this object can be served.
    #[serde(default)]
    pub served_generation: Option<i64>,
    /// The generation of `lastGoodSpec`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_good_generation: Option<i64>,
    /// The last spec that was accepted, as JSON, written by the operator: it keeps serving
    /// while a newer generation is refused, also after an operator restart. It holds Secret
    /// references, never Secret values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_good_spec: Option<String>,
}
