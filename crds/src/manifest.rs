//! Reading multi-document YAML manifests — the files a user would `kubectl apply` — into a
//! [`CompileInput`]. Used by standalone mode, the examples and tests.
//!
//! Strict where Kubernetes would be: unknown fields, a wrong `apiVersion` or a missing name are
//! errors naming the document and field. Kinds Spillway does not read (Secrets, ConfigMaps,
//! …) are skipped and listed, so one file can serve `kubectl apply` and a standalone gateway.

use std::fmt;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::API_VERSION;
use crate::compile::{CompileInput, KIND_GATEWAY, KIND_POOL, KIND_QUOTA, Object};

/// The objects of a manifest file.
#[derive(Clone, Debug, Default)]
pub struct Manifests {
    /// Pools and gateway, ready for `compile()`.
    pub input: CompileInput,
    /// `Kind namespace/name` of documents that were skipped.
    pub skipped: Vec<String>,
}

/// A document that could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestError {
    /// 1-based document number in the file.
    pub document: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "document {}: {}", self.document, self.message)
    }
}

/// Parses every document of `text`.
///
/// # Errors
/// Every document that is not valid YAML, lacks `kind`/`metadata.name`, has the wrong
/// `apiVersion` or unknown fields; a second `AIGateway`.
pub fn parse(text: &str) -> Result<Manifests, Vec<ManifestError>> {
    let mut out = Manifests::default();
    let mut errors = Vec::new();
    for (index, document) in serde_norway::Deserializer::from_str(text).enumerate() {
        let number = index + 1;
        let value = match Value::deserialize(document) {
            Ok(Value::Null) => continue,
            Ok(value) => value,
            Err(err) => {
                errors.push(ManifestError {
                    document: number,
                    message: format!("not valid YAML: {err}"),
                });
                // A syntax error ends the stream; later documents cannot be located.
                break;
            }
        };
        if let Err(message) = read_document(&value, &mut out) {
            errors.push(ManifestError {
                document: number,
                message,
            });
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn read_document(value: &Value, out: &mut Manifests) -> Result<(), String> {
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .ok_or("missing `kind`")?;
    let metadata = value.get("metadata");
    let field = |name: &str| {
        metadata
            .and_then(|m| m.get(name))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let name = field("name").unwrap_or_default();
    let namespace = field("namespace").unwrap_or_else(|| "default".to_owned());
    if ![KIND_POOL, KIND_GATEWAY, KIND_QUOTA].contains(&kind) {
        out.skipped.push(format!("{kind} {namespace}/{name}"));
        return Ok(());
    }
    let label = format!("{kind} {namespace}/{name}");
    let api_version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    if api_version != API_VERSION {
        return Err(format!(
            "{label}: apiVersion is `{api_version}`; write `{API_VERSION}`"
        ));
    }
    if name.is_empty() {
        return Err(format!("{kind}: metadata.name is missing"));
    }
    let spec = value
        .get("spec")
        .ok_or_else(|| format!("{label}: spec is missing"))?;
    let creation_timestamp = field("creationTimestamp");
    if kind == KIND_POOL {
        out.input.pools.push(Object {
            namespace,
            name,
            creation_timestamp,
            generation: None,
            spec: strict(spec).map_err(|e| format!("{label}: {e}"))?,
        });
    } else if kind == KIND_QUOTA {
        out.input.quotas.push(Object {
            namespace,
            name,
            creation_timestamp,
            generation: None,
            spec: strict(spec).map_err(|e| format!("{label}: {e}"))?,
        });
    } else {
        if let Some(first) = &out.input.gateway {
            return Err(format!(
                "{label}: a second AIGateway; {} is already configured and a scope has one",
                first.id()
            ));
        }
        out.input.gateway = Some(Object {
            namespace,
            name,
            creation_timestamp,
            generation: None,
            spec: strict(spec).map_err(|e| format!("{label}: {e}"))?,
        });
    }
    Ok(())
}

/// Deserialises `spec`, refusing unknown fields (typos) with their path.
fn strict<T: DeserializeOwned>(spec: &Value) -> Result<T, String> {
    let mut unknown = Vec::new();
    let parsed: T = serde_ignored::deserialize(spec, |path| unknown.push(path.to_string()))
        .map_err(|e| format!("spec: {e}"))?;
    if unknown.is_empty() {
        Ok(parsed)
    } else {
        Err(format!(
            "unknown field(s) spec.{}; check the spelling against `kubectl explain`",
            unknown.join(", spec.")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pools_gateway_and_skips_other_kinds() {
        let text = r#"
apiVersion: v1
kind: Secret
metadata: {name: keys}
---
apiVersion: spillway.dev/v1alpha1
kind: AIBackendPool
metadata: {name: gpt4o, namespace: team-a}
spec:
  models: [gpt-4o]
  backends:
    - name: ptu
      url: https://ptu.example
---
apiVersion: spillway.dev/v1alpha1
kind: AIGateway
metadata: {name: gw}
spec: {maxRequestBodyBytes: 2048}
---
"#;
        let m = parse(text).expect("valid");
        assert_eq!(m.input.pools.len(), 1);
        assert_eq!(m.input.pools[0].id(), "team-a/gpt4o");
        assert_eq!(m.input.pools[0].spec.backends[0].priority, 1);
        assert_eq!(
            m.input.gateway.as_ref().map(Object::id).as_deref(),
            Some("default/gw")
        );
        assert_eq!(m.skipped, vec!["Secret default/keys".to_owned()]);
    }

    #[test]
    fn unknown_fields_wrong_api_version_and_bad_yaml_are_errors() {
        let typo = "apiVersion: spillway.dev/v1alpha1\nkind: AIBackendPool\nmetadata: {name: p}\n\
                    spec: {models: [m], backends: [{name: b, url: 'http://x', wieght: 2}]}\n";
        let errors = parse(typo).expect_err("typo");
        assert!(errors[0].message.contains("wieght"), "{}", errors[0]);

        let version =
            "apiVersion: spillway.dev/v1\nkind: AIBackendPool\nmetadata: {name: p}\nspec: {}\n";
        let errors = parse(version).expect_err("version");
        assert!(
            errors[0].message.contains("write `spillway.dev/v1alpha1`"),
            "{}",
            errors[0]
        );

        let errors = parse("kind: [unclosed").expect_err("yaml");
        assert!(errors[0].message.contains("not valid YAML"));

        let nameless = "apiVersion: spillway.dev/v1alpha1\nkind: AIGateway\nspec: {}\n";
        assert!(
            parse(nameless).expect_err("name")[0]
                .message
                .contains("metadata.name")
        );
    }

    #[test]
    fn a_second_gateway_is_an_error() {
        let gw =
            "apiVersion: spillway.dev/v1alpha1\nkind: AIGateway\nmetadata: {name: a}\nspec: {}\n";
        let errors = parse(&format!("{gw}---\n{gw}")).expect_err("two");
        assert_eq!(errors[0].document, 2);
    }
}
