//! Unit tests of the injection webhook: shared fixtures; `inject` tests the pure mutation,
//! `review` the AdmissionReview round trip and the flags.

use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::{Value, json};

use super::*;

mod inject;
mod review;

pub(super) const CA_PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

pub(super) fn cfg() -> InjectConfig {
    InjectConfig {
        image: "example.invalid/spillway:1.2.3".into(),
        image_pull_policy: Some("IfNotPresent".into()),
        operator_url: "https://spillway-operator.spillway-system.svc:8443".into(),
        port: 15080,
        admin_port: 15081,
        audience: "spillway".into(),
        token_expiration_seconds: 3600,
        ca: CaSource::Pem(CA_PEM.into()),
        cpu_request: "50m".into(),
        memory_request: "64Mi".into(),
        memory_limit: "256Mi".into(),
        on_error: OnError::Allow,
    }
}

pub(super) fn pod(value: Value) -> Pod {
    serde_json::from_value(value).expect("a Pod")
}

pub(super) fn app_pod(labels: Value) -> Pod {
    pod(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "app", "namespace": "team-a", "labels": labels},
        "spec": {
            "initContainers": [{"name": "migrate", "image": "example.invalid/migrate:1"}],
            "containers": [
                {"name": "web", "image": "example.invalid/web:1", "ports": [{"containerPort": 8080}]},
                {"name": "worker", "image": "example.invalid/worker:1",
                 "env": [{"name": "OPENAI_BASE_URL", "value": "https://mine.example/v1"}]}
            ]
        }
    }))
}

pub(super) fn injected(pod: &Pod, cfg: &InjectConfig) -> Pod {
    match inject(pod, cfg).expect("injectable") {
        Injection::Injected(pod) => *pod,
        Injection::Skipped(reason) => panic!("skipped: {reason:?}"),
    }
}

pub(super) fn env_of(container: &Container, name: &str) -> Option<String> {
    container
        .env
        .iter()
        .flatten()
        .find(|e| e.name == name)
        .and_then(|e| e.value.clone())
}

pub(super) fn as_json(pod: &Pod) -> Value {
    serde_json::to_value(pod).expect("json")
}
