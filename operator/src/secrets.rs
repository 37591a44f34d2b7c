//! Secret references, resolved from a reflector store of Kubernetes Secrets.
//!
//! Input: the Secrets store (values arrive base64-decoded by k8s-openapi) and a
//! [`SecretSource`]. Output: the value, or a message naming what is missing and how to fix it.
//! Messages name Secrets and keys, never values.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Secret;
use kube::runtime::reflector::{ObjectRef, Store};
use serde::Serialize;
use spillway_crds::SecretResolver;
use spillway_crds::v1alpha1::SecretSource;

/// Resolves `secretRef`s from the Secrets of the object's own namespace.
#[derive(Clone, Copy, Debug)]
pub struct StoreSecrets<'a> {
    store: &'a Store<Secret>,
}

impl<'a> StoreSecrets<'a> {
    /// Resolves from `store`.
    pub fn new(store: &'a Store<Secret>) -> Self {
        Self { store }
    }
}

impl SecretResolver for StoreSecrets<'_> {
    fn resolve(&self, namespace: &str, source: &SecretSource) -> Result<String, String> {
        let Some(reference) = &source.secret_ref else {
            return Err(
                "`env` and `file` work only in standalone mode; in Kubernetes use `secretRef` \
                 with a Secret in the same namespace"
                    .into(),
            );
        };
        let (name, key) = (&reference.name, &reference.key);
        let secret = self
            .store
            .get(&ObjectRef::new(name).within(namespace))
            .ok_or_else(|| {
                format!(
                    "Secret {namespace}/{name} not found; create it in namespace {namespace} \
                     or fix secretRef.name"
                )
            })?;
        let data = secret.data.as_ref();
        let Some(value) = data.and_then(|d| d.get(key)) else {
            let keys: Vec<&str> = data
                .map(|d| d.keys().map(String::as_str).collect())
                .unwrap_or_default();
            return Err(format!(
                "Secret {namespace}/{name} has no key `{key}` (its keys: {}); add the key or \
                 fix secretRef.key",
                if keys.is_empty() {
                    "none".to_owned()
                } else {
                    keys.join(", ")
                }
            ));
        };
        String::from_utf8(value.0.clone()).map_err(|_| {
            format!(
                "key `{key}` of Secret {namespace}/{name} is not UTF-8 text; store the plain key"
            )
        })
    }
}

/// Names of every Secret that `spec` references through a `secretRef`.
pub fn referenced_secrets(spec: &impl Serialize) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    if let Ok(value) = serde_json::to_value(spec) {
        collect(&value, &mut names);
    }
    names
}

fn collect(value: &serde_json::Value, names: &mut BTreeSet<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, inner) in map {
                if key == "secretRef"
                    && let Some(name) = inner.get("name").and_then(|n| n.as_str())
                {
                    names.insert(name.to_owned());
                }
                collect(inner, names);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|item| collect(item, names)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;
    use kube::api::ObjectMeta;
    use kube::runtime::reflector::store::Writer;
    use kube::runtime::watcher;
    use spillway_crds::v1alpha1::{AiBackendPoolSpec, Backend, SecretKeyRef};

    use super::*;

    fn store_with(name: &str, data: &[(&str, &[u8])]) -> Store<Secret> {
        let mut writer = Writer::default();
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("team".into()),
                ..ObjectMeta::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| ((*k).to_owned(), ByteString(v.to_vec())))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Secret::default()
        };
        writer.apply_watcher_event(&watcher::Event::Apply(secret));
        writer.as_reader()
    }

    fn source(name: &str, key: &str) -> SecretSource {
        SecretSource {
            secret_ref: Some(SecretKeyRef {
                name: name.into(),
                key: key.into(),
            }),
            ..SecretSource::default()
        }
    }

    #[test]
    fn resolves_keys_of_secrets_in_the_same_namespace() {
        let store = store_with("keys", &[("east", b"sk-east")]);
        let secrets = StoreSecrets::new(&store);
        assert_eq!(
            secrets.resolve("team", &source("keys", "east")),
            Ok("sk-east".into())
        );
        let elsewhere = secrets
            .resolve("other", &source("keys", "east"))
            .expect_err("other ns");
        assert!(
            elsewhere.contains("Secret other/keys not found"),
            "{elsewhere}"
        );
    }

    #[test]
    fn missing_keys_list_the_keys_but_never_values() {
        let store = store_with("keys", &[("east", b"sk-east"), ("west", b"sk-west")]);
        let message = StoreSecrets::new(&store)
            .resolve("team", &source("keys", "north"))
            .expect_err("no such key");
        assert!(
            message.contains("no key `north` (its keys: east, west)"),
            "{message}"
        );
        assert!(!message.contains("sk-"), "{message}");
    }

    #[test]
    fn env_and_file_are_refused_in_kubernetes() {
        let store = store_with("keys", &[]);
        let env = SecretSource {
            env: Some("KEY".into()),
            ..SecretSource::default()
        };
        let message = StoreSecrets::new(&store)
            .resolve("team", &env)
            .expect_err("standalone only");
        assert!(message.contains("standalone"), "{message}");
    }

    #[test]
    fn binary_values_are_refused() {
        let store = store_with("keys", &[("bin", &[0xff, 0xfe])]);
        let message = StoreSecrets::new(&store)
            .resolve("team", &source("keys", "bin"))
            .expect_err("not text");
        assert!(message.contains("not UTF-8"), "{message}");
    }

    #[test]
    fn finds_every_referenced_secret() {
        let spec = AiBackendPoolSpec {
            backends: vec![
                Backend {
                    api_key: Some(source("east-keys", "k")),
                    ..Backend::default()
                },
                Backend {
                    api_key: Some(source("west-keys", "k")),
                    ..Backend::default()
                },
                Backend::default(),
            ],
            ..AiBackendPoolSpec::default()
        };
        let names: Vec<String> = referenced_secrets(&spec).into_iter().collect();
        assert_eq!(names, ["east-keys", "west-keys"]);
    }
}
