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

/// Which namespaces may use an object kept in another namespace, in the style of Gateway
/// API's `allowedRoutes.namespaces`: a platform team keeps an `AIBackendPool` (and its key
/// Secrets) or a `TokenQuota` in its own namespace and grants it to app namespaces.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AllowedNamespaces {
    /// `Same` (default): this namespace only. `All`: every namespace. `Selector`: the
    /// namespaces whose labels match `selector`.
    #[serde(default)]
    pub from: NamespacesFrom,
    /// With `from: Selector`: the namespaces' labels to match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

/// See [`AllowedNamespaces::from`].
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
pub enum NamespacesFrom {
    /// This namespace only.
    #[default]
    Same,
    /// Every namespace.
    All,
    /// Namespaces whose labels match the selector.
    Selector,
}

/// A Kubernetes label selector: every `matchLabels` pair and every `matchExpressions`
/// requirement must hold.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    /// Labels that must have exactly these values.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub match_labels: std::collections::BTreeMap<String, String>,
    /// Set-based requirements.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One set-based requirement of a [`LabelSelector`].
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelectorRequirement {
    /// The label key.
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: String,
    /// The values for `In` / `NotIn`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

impl LabelSelector {
    /// Whether `labels` match. An unknown operator matches nothing (compile reports it).
    pub fn matches(&self, labels: &std::collections::BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| {
                let value = labels.get(&r.key);
                match r.operator.as_str() {
                    "In" => value.is_some_and(|v| r.values.contains(v)),
                    "NotIn" => value.is_none_or(|v| !r.values.contains(v)),
                    "Exists" => value.is_some(),
                    "DoesNotExist" => value.is_none(),
                    _ => false,
                }
            })
    }
}

impl AllowedNamespaces {
    /// Whether an object kept in `home` may be used in `namespace`, whose labels are
    /// `labels`. Its own namespace always may.
    pub fn grants(
        &self,
        home: &str,
        namespace: &str,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> bool {
        namespace == home
            || match self.from {
                NamespacesFrom::Same => false,
                NamespacesFrom::All => true,
                NamespacesFrom::Selector => {
                    self.selector.as_ref().is_some_and(|s| s.matches(labels))
                }
            }
    }

    /// Whether other namespaces may use it at all.
    pub fn is_shared(&self) -> bool {
        self.from != NamespacesFrom::Same
    }
}
