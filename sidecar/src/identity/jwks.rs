//! The issuer's signing keys: fetched over HTTP(S), cached, refetched on demand.
//!
//! Input: where the keys are ([`JwksSource`]: a `jwks_uri`, or OIDC discovery from the first
//! issuer) and timing [`JwksOptions`]. Output: the current [`Loaded`] keys, read without
//! locking. A fetch happens when a token needs keys and none are loaded, when a token names
//! an unknown `kid` ([`JwksCache::refetch`]), and in the background when the loaded keys are
//! older than `refresh_interval` ([`JwksCache::refresh_if_stale`]). Fetches are
//! single-flight (a burst of tokens causes one fetch) and rate-limited (at most one attempt
//! per `min_refetch_interval`); a failed fetch keeps the old keys. Plain `http` is allowed
//! only to loopback addresses.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

use super::keys::KeySet;
use crate::clock::Clock;
use crate::http_client::error_chain;

/// Largest JWKS or discovery document accepted.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// Timing of JWKS fetches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwksOptions {
    /// Least time between two fetch attempts while keys are loaded, for background refreshes
    /// and their retries after a failure. Default 30 s.
    pub min_refetch_interval: Duration,
    /// Least time between two fetches caused by a token whose `kid` is unknown: a rotated
    /// key is fetched at once, and tokens naming made-up keys cause at most one fetch per
    /// interval (single-flight besides). So after a rotation, tokens signed with the new key
    /// fail for at most this long. Default 2 s.
    pub unknown_key_refetch_interval: Duration,
    /// Least time between two fetch attempts while no key could be loaded yet. Default 5 s.
    pub retry_without_keys: Duration,
    /// Age after which loaded keys are refreshed in the background. Default 1 h.
    pub refresh_interval: Duration,
    /// Time allowed for one fetch (discovery and JWKS each). Default 5 s.
    pub fetch_timeout: Duration,
}

impl Default for JwksOptions {
    fn default() -> Self {
        Self {
            min_refetch_interval: Duration::from_secs(30),
            unknown_key_refetch_interval: Duration::from_secs(2),
            retry_without_keys: Duration::from_secs(5),
            refresh_interval: Duration::from_secs(3600),
            fetch_timeout: Duration::from_secs(5),
        }
    }
}

/// Where the keys come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum JwksSource {
    /// A configured `jwks_uri`.
    Uri(String),
    /// The `jwks_uri` of this OIDC discovery document.
    Discovery(String),
}

/// The keys as last loaded, and how the last attempt went.
#[derive(Default)]
pub(super) struct Loaded {
    /// The keys of the last successful fetch.
    pub keys: Option<Arc<KeySet>>,
    /// Counts fetch attempts; tells a waiter whether someone fetched meanwhile.
    pub attempt: u64,
    /// Whether the last attempt failed.
    pub last_failed: bool,
    fetched_at: Option<Instant>,
    attempted_at: Option<Instant>,
}

type FetchClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// The cached keys of one source.
pub(super) struct JwksCache {
    source: JwksSource,
    options: JwksOptions,
    clock: Arc<dyn Clock>,
    client: FetchClient,
    loaded: ArcSwap<Loaded>,
    /// Held while fetching; holds the `jwks_uri` learned by discovery.
    fetching: tokio::sync::Mutex<Option<String>>,
    refreshing: AtomicBool,
}

impl JwksCache {
    pub(super) fn new(source: JwksSource, options: JwksOptions, clock: Arc<dyn Clock>) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(options.fetch_timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(2)
            .build(https);
        Self {
            source,
            options,
            clock,
            client,
            loaded: ArcSwap::from_pointee(Loaded::default()),
            fetching: tokio::sync::Mutex::new(None),
            refreshing: AtomicBool::new(false),
        }
    }

    pub(super) fn source(&self) -> &JwksSource {
        &self.source
    }

    pub(super) fn options(&self) -> &JwksOptions {
        &self.options
    }

    /// The keys as loaded now.
    pub(super) fn current(&self) -> Arc<Loaded> {
        self.loaded.load_full()
    }

    /// Fetches the keys unless another attempt finished since the caller saw attempt
    /// `seen`, or the last attempt is too recent. Returns the keys as loaded afterwards.
    pub(super) async fn refetch(&self, seen: u64) -> Arc<Loaded> {
        self.refetch_after(seen, self.options.min_refetch_interval)
            .await
    }

    /// [`Self::refetch`] for a token whose `kid` is not among the loaded keys: allowed once
    /// the last attempt is `unknown_key_refetch_interval` old.
    pub(super) async fn refetch_for_unknown_key(&self, seen: u64) -> Arc<Loaded> {
        self.refetch_after(seen, self.options.unknown_key_refetch_interval)
            .await
    }

    async fn refetch_after(&self, seen: u64, gap: Duration) -> Arc<Loaded> {
        let mut discovered = self.fetching.lock().await;
        let current = self.current();
        if current.attempt != seen || !self.may_attempt(&current, gap) {
            return current;
        }
        self.attempt(&mut discovered, &current).await
    }

    /// When the loaded keys are older than `refresh_interval`, refreshes them in a
    /// background task (at most one at a time). Needs a Tokio runtime; without one it does
    /// nothing.
    pub(super) fn refresh_if_stale(self: &Arc<Self>) {
        let current = self.current();
        let stale = current.fetched_at.is_some_and(|at| {
            self.clock.now().saturating_duration_since(at) >= self.options.refresh_interval
        });
        if !stale || !self.may_attempt(&current, self.options.min_refetch_interval) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let cache = Arc::clone(self);
        runtime.spawn(async move {
            cache.refetch(current.attempt).await;
            cache.refreshing.store(false, Ordering::Release);
        });
    }

    fn may_attempt(&self, current: &Loaded, gap: Duration) -> bool {
        let gap = if current.keys.is_some() {
            gap
        } else {
            self.options.retry_without_keys
        };
        current
            .attempted_at
            .is_none_or(|at| self.clock.now().saturating_duration_since(at) >= gap)
    }

    async fn attempt(&self, discovered: &mut Option<String>, current: &Loaded) -> Arc<Loaded> {
        let result = self.fetch_keys(discovered).await;
        let now = self.clock.now();
        let next = match result {
            Ok(keys) => {
                tracing::info!(source = ?self.source, keys = keys.len(), "loaded the token issuer's signing keys");
                Loaded {
                    keys: Some(Arc::new(keys)),
                    attempt: current.attempt + 1,
                    last_failed: false,
                    fetched_at: Some(now),
                    attempted_at: Some(now),
                }
            }
            Err(error) => {
                tracing::warn!(source = ?self.source, %error, kept = current.keys.is_some(), "could not fetch the token issuer's signing keys");
                *discovered = None;
                Loaded {
                    keys: current.keys.clone(),
                    attempt: current.attempt + 1,
                    last_failed: true,
                    fetched_at: current.fetched_at,
                    attempted_at: Some(now),
                }
            }
        };
        let next = Arc::new(next);
        self.loaded.store(Arc::clone(&next));
        next
    }

    async fn fetch_keys(&self, discovered: &mut Option<String>) -> Result<KeySet, String> {
        let uri = match (&self.source, discovered.as_ref()) {
            (JwksSource::Uri(uri), _) => uri.clone(),
            (JwksSource::Discovery(_), Some(uri)) => uri.clone(),
            (JwksSource::Discovery(url), None) => {
                let body = self.get(url).await?;
                let uri = serde_json::from_slice::<Discovery>(&body)
                    .map_err(|e| format!("the discovery document {url} is not valid: {e}"))?
                    .jwks_uri;
                discovered.insert(uri).clone()
            }
        };
        KeySet::parse(&self.get(&uri).await?)
    }

    async fn get(&self, url: &str) -> Result<Bytes, String> {
        let uri = allowed_uri(url)?;
        let request = Request::get(uri)
            .header(header::ACCEPT, "application/json")
            .header(header::USER_AGENT, "spillway")
            .body(Empty::new())
            .map_err(|e| format!("cannot request {url}: {e}"))?;
        let fetch = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| format!("{url}: {}", error_chain(&e)))?;
            if response.status() != StatusCode::OK {
                return Err(format!("{url} answered {}", response.status()));
            }
            Limited::new(response.into_body(), MAX_DOCUMENT_BYTES)
                .collect()
                .await
                .map(|body| body.to_bytes())
                .map_err(|e| format!("{url}: reading the body failed: {e}"))
        };
        tokio::time::timeout(self.options.fetch_timeout, fetch)
            .await
            .map_err(|_| {
                format!(
                    "{url} did not answer within {:?}",
                    self.options.fetch_timeout
                )
            })?
    }
}

#[derive(Deserialize)]
struct Discovery {
    jwks_uri: String,
}

/// Parses `url`, allowing `https`, and `http` only to loopback hosts.
fn allowed_uri(url: &str) -> Result<Uri, String> {
    let uri: Uri = url.parse().map_err(|_| format!("`{url}` is not a URL"))?;
    let host = uri.host().unwrap_or_default();
    match uri.scheme_str() {
        Some("https") if !host.is_empty() => Ok(uri),
        Some("http") if is_loopback(host) => Ok(uri),
        _ => Err(format!(
            "`{url}` must be an https URL (plain http only to loopback addresses)"
        )),
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_http() {
        assert!(
            allowed_uri("https://login.microsoftonline.com/common/discovery/v2.0/keys").is_ok()
        );
        assert!(allowed_uri("http://127.0.0.1:8080/keys").is_ok());
        assert!(allowed_uri("http://127.9.9.9/keys").is_ok());
        assert!(allowed_uri("http://localhost:1/keys").is_ok());
        assert!(allowed_uri("http://[::1]:1/keys").is_ok());
        assert!(allowed_uri("http://login.example.com/keys").is_err());
        assert!(allowed_uri("http://10.0.0.1/keys").is_err());
        assert!(allowed_uri("ftp://127.0.0.1/keys").is_err());
        assert!(allowed_uri("not a url").is_err());
    }
}
