//! Who is calling: projected ServiceAccount tokens, checked with the TokenReview API.
//!
//! Input: the bearer token of a request. Output: an [`Identity`] — the ServiceAccount's
//! namespace is the caller's scope — or nothing for a token that is invalid, has the wrong
//! audience, or does not belong to a ServiceAccount. Accepted tokens are cached for a short
//! time (by SHA-256, never the token itself) so reports every few seconds do not each cost a
//! TokenReview. Tokens are never logged.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::future::BoxFuture;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::PostParams;
use kube::{Api, Client};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

/// A validated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The ServiceAccount's namespace: the scope served.
    pub namespace: String,
    /// The ServiceAccount's name.
    pub service_account: String,
    /// The pod the token is bound to, when the token says.
    pub pod_name: Option<String>,
}

/// The token could not be checked (API server unreachable, RBAC missing).
#[derive(Debug, thiserror::Error)]
#[error("cannot review the token: {0}")]
pub struct ReviewError(pub String);

/// Validates bearer tokens.
pub trait TokenReviewer: Send + Sync {
    /// The identity behind `token`, or `None` when the token is not accepted.
    ///
    /// # Errors
    /// When the token could not be checked at all.
    fn review<'a>(&'a self, token: &'a str)
    -> BoxFuture<'a, Result<Option<Identity>, ReviewError>>;
}

/// `(namespace, name)` of a `system:serviceaccount:<namespace>:<name>` user name.
pub fn service_account(username: &str) -> Option<(&str, &str)> {
    let rest = username.strip_prefix("system:serviceaccount:")?;
    let (namespace, name) = rest.split_once(':')?;
    let valid = |s: &str| !s.is_empty() && !s.contains(':');
    (valid(namespace) && valid(name)).then_some((namespace, name))
}

/// Reviews tokens with the Kubernetes TokenReview API.
#[derive(Clone)]
pub struct KubeTokenReviewer {
    client: Client,
    audience: String,
}

impl KubeTokenReviewer {
    /// Accepts tokens issued for `audience`.
    pub fn new(client: Client, audience: impl Into<String>) -> Self {
        Self {
            client,
            audience: audience.into(),
        }
    }

    async fn ask(&self, token: &str) -> Result<Option<Identity>, ReviewError> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_owned()),
                audiences: Some(vec![self.audience.clone()]),
            },
            ..TokenReview::default()
        };
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let answer = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| ReviewError(e.to_string()))?;
        let Some(status) = answer.status else {
            return Ok(None);
        };
        let audience_ok = status
            .audiences
            .as_ref()
            .is_none_or(|a| a.contains(&self.audience));
        if status.authenticated != Some(true) || !audience_ok {
            return Ok(None);
        }
        let Some(user) = status.user else {
            return Ok(None);
        };
        let Some((namespace, name)) = user.username.as_deref().and_then(service_account) else {
            return Ok(None);
        };
        let pod_name = user
            .extra
            .as_ref()
            .and_then(|extra| extra.get("authentication.kubernetes.io/pod-name"))
            .and_then(|names| names.first().cloned());
        Ok(Some(Identity {
            namespace: namespace.to_owned(),
            service_account: name.to_owned(),
            pod_name,
        }))
    }
}

impl TokenReviewer for KubeTokenReviewer {
    fn review<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Option<Identity>, ReviewError>> {
        Box::pin(self.ask(token))
    }
}

/// Remembers accepted tokens for `ttl`.
pub struct CachedReviewer<R> {
    inner: R,
    ttl: Duration,
    accepted: Mutex<HashMap<[u8; 32], (Instant, Identity)>>,
}

/// Most cached tokens; the cache is emptied when full.
const MAX_CACHED: usize = 10_000;

impl<R: TokenReviewer> CachedReviewer<R> {
    /// Caches what `inner` accepts for `ttl`.
    pub fn new(inner: R, ttl: Duration) -> Self {
        Self {
            inner,
            ttl,
            accepted: Mutex::default(),
        }
    }

    async fn cached(&self, token: &str) -> Result<Option<Identity>, ReviewError> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = Instant::now();
        {
            let cache = self
                .accepted
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some((until, identity)) = cache.get(&key)
                && *until > now
            {
                return Ok(Some(identity.clone()));
            }
        }
        let identity = self.inner.review(token).await?;
        if let Some(identity) = &identity {
            let mut cache = self
                .accepted
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
            cache.insert(key, (now + self.ttl, identity.clone()));
        }
        Ok(identity)
    }
}

impl<R: TokenReviewer> TokenReviewer for CachedReviewer<R> {
    fn review<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Option<Identity>, ReviewError>> {
        Box::pin(self.cached(token))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn only_service_account_users_map_to_a_scope() {
        assert_eq!(
            service_account("system:serviceaccount:team-a:gateway"),
            Some(("team-a", "gateway"))
        );
        for other in [
            "system:serviceaccount:team-a",
            "system:serviceaccount::gateway",
            "system:serviceaccount:a:b:c",
            "system:node:worker-1",
            "alice@example.com",
        ] {
            assert_eq!(service_account(other), None, "{other}");
        }
    }

    struct Counting(AtomicUsize);

    impl TokenReviewer for Counting {
        fn review<'a>(
            &'a self,
            token: &'a str,
        ) -> BoxFuture<'a, Result<Option<Identity>, ReviewError>> {
            self.0.fetch_add(1, Ordering::Relaxed);
            let identity = (token == "good").then(|| Identity {
                namespace: "team".into(),
                service_account: "gw".into(),
                pod_name: None,
            });
            Box::pin(async move { Ok(identity) })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn accepted_tokens_are_cached_for_the_ttl_only() {
        let cached = CachedReviewer::new(Counting(AtomicUsize::new(0)), Duration::from_secs(60));
        for _ in 0..3 {
            assert!(cached.review("good").await.expect("reviewed").is_some());
            assert!(cached.review("bad").await.expect("reviewed").is_none());
        }
        assert_eq!(cached.inner.0.load(Ordering::Relaxed), 4, "1 good + 3 bad");
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(cached.review("good").await.expect("reviewed").is_some());
        assert_eq!(cached.inner.0.load(Ordering::Relaxed), 5);
    }
}
