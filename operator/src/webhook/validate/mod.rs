//! The validating admission webhook: refuses, at `kubectl apply` time, what the operator would
//! refuse anyway — an invalid `AIBackendPool`, `TokenQuota` or `AIGateway`, and a pool that
//! claims a model another pool of its namespace already lists.
//!
//! Input: `AdmissionReview` (v1) requests that the API server posts to [`VALIDATE_PATH`] for
//! `CREATE` and `UPDATE` of the three kinds, and the pools the operator's reflector holds.
//! Output: an `AdmissionReview` that allows the object, or denies it with every problem
//! `compile()` finds (field and what to write instead). Missing Secrets are not refused: they
//! are often created after the object that references them, and status reports them.
//!
//! The webhook is a convenience, never the safety net: with the webhook unreachable
//! (`failurePolicy: Ignore`) a bad edit still reaches the operator, which keeps serving the
//! object's last good generation.

use std::sync::Arc;

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use k8s_openapi::jiff::Timestamp;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::runtime::reflector::Store;
use serde::de::DeserializeOwned;
use spillway_crds::v1alpha1::{AiBackendPool, AiBackendPoolSpec, SecretSource};
use spillway_crds::{CompileInput, Object, ProblemReason, SecretResolver, compile};

use super::review::answer;

/// The path the webhook is served at.
pub const VALIDATE_PATH: &str = "/validate";

/// Validates Spillway objects against the pools the operator knows.
#[derive(Clone)]
pub struct Validator {
    pools: Store<AiBackendPool>,
}

impl std::fmt::Debug for Validator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Validator").finish_non_exhaustive()
    }
}

impl Validator {
    /// Checks model claims against `pools`.
    pub fn new(pools: Store<AiBackendPool>) -> Self {
        Self { pools }
    }

    /// Answers `POST /validate` with [`validate`] of the (already bounded) body.
    pub fn respond(&self, body: &[u8]) -> Response<Full<Bytes>> {
        answer(&validate(body, &self.pools.state()))
    }
}

/// Answers one `AdmissionReview` body, checking model claims against `pools`.
pub fn validate(body: &[u8], pools: &[Arc<AiBackendPool>]) -> AdmissionReview<DynamicObject> {
    let request = serde_json::from_slice::<AdmissionReview<DynamicObject>>(body)
        .map_err(|e| format!("not an AdmissionReview: {e}"))
        .and_then(|review| {
            let request: Result<AdmissionRequest<DynamicObject>, _> = review.try_into();
            request.map_err(|_| "the AdmissionReview has no request".to_owned())
        });
    match request {
        Ok(request) => verdict(&request, pools).into_review(),
        Err(reason) => AdmissionResponse::invalid(reason).into_review(),
    }
}

fn verdict(
    request: &AdmissionRequest<DynamicObject>,
    pools: &[Arc<AiBackendPool>],
) -> AdmissionResponse {
    let response = AdmissionResponse::from(request);
    let ours = request.kind.group == spillway_crds::GROUP;
    let writes = matches!(request.operation, Operation::Create | Operation::Update);
    if !ours || !writes || request.sub_resource.is_some() {
        return response;
    }
    let Some(object) = request.object.as_ref() else {
        return response.deny("the request carries no object");
    };
    let namespace = request.namespace.clone().unwrap_or_default();
    let name = object
        .metadata
        .name
        .clone()
        .unwrap_or_else(|| request.name.clone());
    let problems = match request.kind.kind.as_str() {
        "AIBackendPool" => spec_of(object).map(|spec: AiBackendPoolSpec| {
            let mut found = problems(CompileInput {
                pools: vec![named(&namespace, &name, spec.clone())],
                ..CompileInput::default()
            });
            let created = object.metadata.creation_timestamp.as_ref().map(|t| t.0);
            found.extend(claims(&namespace, (&name, created), &spec, pools));
            found
        }),
        "TokenQuota" => spec_of(object).map(|spec| {
            problems(CompileInput {
                quotas: vec![named(&namespace, &name, spec)],
                ..CompileInput::default()
            })
        }),
        "AIGateway" => spec_of(object).map(|spec| {
            problems(CompileInput {
                gateway: Some(named(&namespace, &name, spec)),
                ..CompileInput::default()
            })
        }),
        _ => Ok(Vec::new()),
    };
    match problems {
        Ok(found) if found.is_empty() => response,
        Ok(found) => response.deny(format!(
            "{} {namespace}/{name} is refused: {}",
            request.kind.kind,
            found.join("; ")
        )),
        Err(error) => response.deny(format!("{} {namespace}/{name}: {error}", request.kind.kind)),
    }
}

fn spec_of<S: DeserializeOwned>(object: &DynamicObject) -> Result<S, String> {
    let spec = object.data.get("spec").cloned().unwrap_or_default();
    serde_json::from_value(spec).map_err(|e| format!("spec: {e}"))
}

fn named<S>(namespace: &str, name: &str, spec: S) -> Object<S> {
    Object {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        creation_timestamp: None,
        generation: None,
        spec,
    }
}

/// What `compile()` finds in the object on its own, Secrets aside.
fn problems(input: CompileInput) -> Vec<String> {
    compile(&input, &SecretsLater)
        .1
        .into_iter()
        .filter(|p| p.reason != ProblemReason::SecretNotResolved)
        .map(|p| format!("{}: {}", p.field, p.message))
        .collect()
}

/// Models of `spec` that an older pool of `namespace` already lists: the oldest pool owns a
/// model (as `compile()` decides), so a new pool cannot claim it, and the owner stays editable
/// while a younger rival lists the same model. A pool being created has no creation time yet
/// and is the youngest.
fn claims(
    namespace: &str,
    (name, created): (&str, Option<Timestamp>),
    spec: &AiBackendPoolSpec,
    pools: &[Arc<AiBackendPool>],
) -> Vec<String> {
    let age =
        |created: Option<Timestamp>, name: &str| (created.is_none(), created, name.to_owned());
    let this = age(created, name);
    let mut found = Vec::new();
    let older = pools.iter().filter(|p| {
        let other = p.metadata.name.as_deref().unwrap_or_default();
        p.metadata.namespace.as_deref() == Some(namespace)
            && other != name
            && age(p.metadata.creation_timestamp.as_ref().map(|t| t.0), other) < this
    });
    for other in older {
        let other_name = other.metadata.name.as_deref().unwrap_or_default();
        for (i, model) in spec.models.iter().enumerate() {
            if other.spec.models.contains(model) {
                found.push(format!(
                    "spec.models[{i}]: model `{model}` is already served by AIBackendPool \
                     {namespace}/{other_name}; a model belongs to one pool: remove it from one \
                     of the two"
                ));
            }
        }
    }
    found
}

/// Secrets are checked when the operator compiles, not at admission.
struct SecretsLater;

impl SecretResolver for SecretsLater {
    fn resolve(&self, _namespace: &str, _source: &SecretSource) -> Result<String, String> {
        Err("checked by the operator".into())
    }
}

#[cfg(test)]
mod tests;
