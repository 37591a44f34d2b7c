//! The rules the data plane relies on, checked once here for every snapshot a gateway is about
//! to apply — pushed by the operator or compiled from a manifest file.
//!
//! Input: a [`Snapshot`]. Output: `Ok`, or the first rule broken ([`InvalidSnapshot`]). A
//! snapshot `compile()` produces always passes; the check guards the data plane against a
//! buggy or foreign producer (an older operator, a hand-written stream).

use std::collections::BTreeSet;

use super::Snapshot;

/// A rule the data plane relies on that a snapshot breaks.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum InvalidSnapshot {
    /// Version 0 means "nothing yet" and is never applied.
    #[error("version 0 is never published")]
    VersionZero,
    /// A pool that cannot serve anything.
    #[error("pool {0} has no models or no backends")]
    EmptyPool(String),
    /// Two pools claim one model.
    #[error("model {0} is served by two pools")]
    ModelTwice(String),
    /// A retry policy without any attempt.
    #[error("pool {0} allows no attempt")]
    NoAttempt(String),
    /// A backend that cannot be routed to.
    #[error("backend {backend} of pool {pool} needs an http(s) URL, weight ≥ 1 and priority ≥ 1")]
    Backend {
        /// The pool's id.
        pool: String,
        /// The backend's name.
        backend: String,
    },
    /// A quota share outside (0, 1].
    #[error("quota {id} has share {share} outside (0, 1]")]
    Share {
        /// The quota's id.
        id: String,
        /// The share given.
        share: f64,
    },
}

impl Snapshot {
    /// Checks the rules the data plane relies on.
    ///
    /// # Errors
    /// The first rule broken.
    pub fn check(&self) -> Result<(), InvalidSnapshot> {
        if self.version == 0 {
            return Err(InvalidSnapshot::VersionZero);
        }
        let mut models = BTreeSet::new();
        for pool in &self.pools {
            if pool.models.is_empty() || pool.backends.is_empty() {
                return Err(InvalidSnapshot::EmptyPool(pool.id.clone()));
            }
            if let Some(model) = pool.models.iter().find(|m| !models.insert(m.as_str())) {
                return Err(InvalidSnapshot::ModelTwice(model.clone()));
            }
            if pool.retry.max_attempts == 0 {
                return Err(InvalidSnapshot::NoAttempt(pool.id.clone()));
            }
            for backend in &pool.backends {
                let url = &backend.base_url;
                let url_ok = url.starts_with("http://") || url.starts_with("https://");
                if !url_ok || backend.weight == 0 || backend.priority == 0 {
                    return Err(InvalidSnapshot::Backend {
                        pool: pool.id.clone(),
                        backend: backend.name.clone(),
                    });
                }
            }
        }
        for quota in &self.quotas {
            if !(quota.share > 0.0 && quota.share <= 1.0) {
                return Err(InvalidSnapshot::Share {
                    id: quota.id.clone(),
                    share: quota.share,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::{CompileInput, compile};
    use crate::manifest;

    struct NoSecrets;

    impl crate::SecretResolver for NoSecrets {
        fn resolve(&self, _: &str, _: &crate::v1alpha1::SecretSource) -> Result<String, String> {
            Err("no secrets here".into())
        }
    }

    fn compiled() -> Snapshot {
        let text = "apiVersion: spillway.dev/v1alpha1\nkind: AIBackendPool\nmetadata: {name: p}\n\
                    spec: {models: [m], backends: [{name: b, url: 'http://127.0.0.1:1'}]}\n---\n\
                    apiVersion: spillway.dev/v1alpha1\nkind: TokenQuota\nmetadata: {name: q}\n\
                    spec: {tokensPerMinute: 10}\n";
        let input: CompileInput = manifest::parse(text).expect("parses").input;
        let (mut snapshot, problems) = compile(&input, &NoSecrets);
        assert!(problems.is_empty(), "{problems:?}");
        snapshot.version = 1;
        snapshot
    }

    #[test]
    fn what_compile_produces_passes_and_every_rule_is_checked() {
        let good = compiled();
        assert_eq!(good.check(), Ok(()));
        let mut zero = good.clone();
        zero.version = 0;
        assert_eq!(zero.check(), Err(InvalidSnapshot::VersionZero));
        let mut twice = good.clone();
        twice.pools.push(twice.pools[0].clone());
        assert_eq!(twice.check(), Err(InvalidSnapshot::ModelTwice("m".into())));
        let mut empty = good.clone();
        empty.pools[0].backends.clear();
        assert!(matches!(empty.check(), Err(InvalidSnapshot::EmptyPool(_))));
        let mut attempts = good.clone();
        attempts.pools[0].retry.max_attempts = 0;
        assert!(matches!(
            attempts.check(),
            Err(InvalidSnapshot::NoAttempt(_))
        ));
        let mut scheme = good.clone();
        scheme.pools[0].backends[0].base_url = "ftp://x".into();
        let error = scheme.check().expect_err("scheme");
        assert!(error.to_string().contains("http(s) URL"), "{error}");
        let mut weight = good.clone();
        weight.pools[0].backends[0].weight = 0;
        assert!(matches!(
            weight.check(),
            Err(InvalidSnapshot::Backend { .. })
        ));
        let mut share = good;
        share.quotas[0].share = 0.0;
        assert!(matches!(share.check(), Err(InvalidSnapshot::Share { .. })));
        share.quotas[0].share = 1.5;
        assert!(matches!(share.check(), Err(InvalidSnapshot::Share { .. })));
        share.quotas[0].share = 0.5;
        assert_eq!(share.check(), Ok(()));
    }
}
