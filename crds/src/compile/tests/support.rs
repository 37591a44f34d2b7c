//! Helpers shared by the compile tests.

use std::collections::BTreeMap;

use super::{Problem, SecretResolver, compile};
use crate::Snapshot;
use crate::manifest;
use crate::v1alpha1::SecretSource;

pub(super) struct Secrets(pub BTreeMap<&'static str, &'static str>);

impl SecretResolver for Secrets {
    fn resolve(&self, namespace: &str, source: &SecretSource) -> Result<String, String> {
        let key = source
            .env
            .as_deref()
            .or(source.secret_ref.as_ref().map(|r| r.name.as_str()))
            .unwrap_or("");
        self.0
            .get(key)
            .map(|v| (*v).to_owned())
            .ok_or_else(|| format!("Secret {namespace}/{key} not found"))
    }
}

pub(super) fn secrets() -> Secrets {
    Secrets(BTreeMap::from([
        ("PTU_KEY", "k-ptu"),
        ("paygo", "k-paygo"),
        ("EMPTY", " "),
        ("BATCH_KEY", "k-batch"),
        (
            "CERT_PEM",
            "-----BEGIN CERTIFICATE-----\nMII=\n-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\nMII=\n-----END PRIVATE KEY-----\n",
        ),
    ]))
}

pub(super) fn compile_text(text: &str) -> (Snapshot, Vec<Problem>) {
    compile(
        &manifest::parse(text).expect("fixture parses").input,
        &secrets(),
    )
}

pub(super) fn only_problems(text: &str) -> Vec<Problem> {
    compile_text(text).1
}
