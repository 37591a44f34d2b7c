//! The admission webhooks: the sidecar injection webhook, a mutating admission webhook that
//! adds the `spillway` sidecar to Pods, and the validating webhook (`validate`) that refuses
//! invalid Spillway objects and model clashes at `kubectl apply` time.
//!
//! Input: `AdmissionReview` (v1) requests that the API server sends to `POST /mutate` on the
//! operator's HTTPS server, for Pods created in namespaces or with Pod labels carrying
//! [`INJECT_LABEL`]`: enabled` (the `MutatingWebhookConfiguration`'s selectors decide which
//! Pods are sent; the chart installs it). Output: an `AdmissionReview` response that allows
//! the Pod with an RFC 6902 JSON patch adding:
//!
//! - the sidecar as a *native sidecar*: the first init container, named `spillway`, with
//!   `restartPolicy: Always` (Kubernetes ≥ 1.29, GA in 1.33), running `spillway run
//!   --operator …` on `127.0.0.1:<port>` with its admin port (probes) on `0.0.0.0:<admin>`, a
//!   startup and liveness probe on `/healthz`, a readiness probe on `/readyz` (the Pod is Ready
//!   once the sidecar applied a configuration), resources and a hardened securityContext;
//! - a projected volume `spillway-token` with a ServiceAccount token for the operator's
//!   TokenReview audience and the CA that signed the operator's certificate;
//! - `OPENAI_BASE_URL=http://127.0.0.1:<port>/v1` and
//!   `AZURE_OPENAI_ENDPOINT=http://127.0.0.1:<port>` in every app container (`spec.containers`)
//!   that does not set them itself in `env`. Init containers get no env: they run before the
//!   sidecar has a configuration, so they could not use it anyway.
//!
//! Pods labelled [`INJECT_LABEL`]`: disabled` are never changed (the Pod's label beats its
//! namespace's), and a Pod that already has a `spillway` container or the
//! [`INJECTED_ANNOTATION`] is left as it is (no double injection). Input that is not a Pod, or
//! a Pod that cannot be injected (a port or volume name clash), is allowed unchanged with a
//! warning or denied, per [`OnError`].
//!
//! - `config`: the operator flags (`--inject-*`) and [`InjectConfig`].
//! - `inject`: the pure mutation [`inject()`] and its patch.
//! - `sidecar`: the container, volume and env the mutation adds.
//! - `review`: `AdmissionReview` in, `AdmissionReview` out, never a panic.
//! - `validate`: the validating webhook at [`VALIDATE_PATH`].

mod config;
mod inject;
mod review;
mod sidecar;
mod validate;

pub use config::{CaSource, InjectArgs, InjectConfig, OnError};
pub use inject::{InjectError, Injection, SkipReason, inject};
pub use review::{MAX_REVIEW_BYTES, MUTATE_PATH, respond, review, unreadable};
pub use validate::{VALIDATE_PATH, Validator, validate};

/// Label on a Pod or namespace: `enabled` asks for the sidecar, `disabled` (on the Pod) refuses
/// it.
pub const INJECT_LABEL: &str = "spillway.dev/inject";
/// Annotation set on injected Pods; a Pod that carries it is never injected again.
pub const INJECTED_ANNOTATION: &str = "spillway.dev/injected";
/// Annotation holding the operator's CA (PEM) when [`CaSource::Pem`] is used; the sidecar
/// reads it as a file through the downward API.
pub const CA_ANNOTATION: &str = "spillway.dev/operator-ca";
/// Name of the injected container.
pub const SIDECAR_NAME: &str = "spillway";
/// Name of the injected projected volume.
pub const VOLUME_NAME: &str = "spillway-token";
/// Where the projected volume is mounted in the sidecar.
pub const MOUNT_PATH: &str = "/var/run/secrets/spillway";

#[cfg(test)]
mod tests;
