//! What telemetry needs to know about each configured backend, looked up by pool and
//! backend name: the GenAI provider name, the server address and port, and whether it sits
//! behind the pool's first priority group (spillover).
//!
//! Input: a [`Snapshot`]. Output: a [`BackendIndex`], rebuilt only when the applied
//! snapshot version changes, so records are resolved without parsing URLs per request and
//! without putting these details on the request path.

use std::collections::HashMap;

use opentelemetry::StringValue;
use spillway_crds::Snapshot;
use spillway_crds::snapshot::{BackendConfig, BackendType};

/// Telemetry's view of one backend.
#[derive(Clone, Debug, PartialEq)]
pub struct BackendInfo {
    /// `gen_ai.provider.name`: `azure.ai.openai` or `openai`.
    pub provider: &'static str,
    /// `server.address`: the backend's host.
    pub address: StringValue,
    /// `server.port`: the backend's port (the scheme's default when the URL has none).
    pub port: i64,
    /// The backend is in a later priority group than the first one of its pool.
    pub spillover: bool,
}

/// Backends of one snapshot by pool name, then backend name.
#[derive(Debug, Default)]
pub struct BackendIndex {
    version: Option<u64>,
    pools: HashMap<String, HashMap<String, BackendInfo>>,
}

impl BackendIndex {
    /// Indexes every backend of `snapshot`.
    pub fn build(snapshot: &Snapshot) -> Self {
        let pools = snapshot
            .pools
            .iter()
            .map(|pool| {
                let first = pool.backends.iter().map(|b| b.priority).min().unwrap_or(0);
                let backends = pool
                    .backends
                    .iter()
                    .map(|b| (b.name.clone(), info(b, first)))
                    .collect();
                (pool.name.clone(), backends)
            })
            .collect();
        Self {
            version: Some(snapshot.version),
            pools,
        }
    }

    /// The snapshot version indexed.
    pub fn version(&self) -> Option<u64> {
        self.version
    }

    /// The backend `backend` of pool `pool`, if configured.
    pub fn get(&self, pool: &str, backend: &str) -> Option<&BackendInfo> {
        self.pools.get(pool)?.get(backend)
    }
}

/// `gen_ai.provider.name` of a backend type.
pub fn provider_name(kind: BackendType) -> &'static str {
    match kind {
        BackendType::AzureOpenAI => "azure.ai.openai",
        BackendType::OpenAI => "openai",
    }
}

fn info(backend: &BackendConfig, first_priority: u32) -> BackendInfo {
    let uri = backend.base_url.parse::<http::Uri>().ok();
    let address = uri
        .as_ref()
        .and_then(http::Uri::host)
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.as_ref().map_or(0, |u| {
        u.port_u16().map_or_else(
            || match u.scheme_str() {
                Some("http") => 80,
                _ => 443,
            },
            i64::from,
        )
    });
    BackendInfo {
        provider: provider_name(backend.kind),
        address: StringValue::from(address),
        port,
        spillover: backend.priority > first_priority,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subscribe::file::{LocalSecrets, load_text};

    const POOL: &str = "apiVersion: spillway.dev/v1alpha1
kind: AIBackendPool
metadata: {name: chat}
spec:
  models: [gpt-4o]
  backends:
    - name: ptu
      url: https://ptu.openai.azure.com
    - name: paygo
      type: OpenAI
      url: http://127.0.0.1:8081
      priority: 2
";

    #[test]
    fn resolves_provider_address_port_and_spillover() {
        let snapshot = load_text(POOL, &LocalSecrets::default()).expect("valid manifest");
        let index = BackendIndex::build(&snapshot);
        assert_eq!(index.version(), Some(snapshot.version));
        let ptu = index.get("chat", "ptu").expect("ptu");
        assert_eq!(
            (ptu.provider, ptu.address.as_str(), ptu.port, ptu.spillover),
            ("azure.ai.openai", "ptu.openai.azure.com", 443, false)
        );
        let paygo = index.get("chat", "paygo").expect("paygo");
        assert_eq!(
            (
                paygo.provider,
                paygo.address.as_str(),
                paygo.port,
                paygo.spillover
            ),
            ("openai", "127.0.0.1", 8081, true)
        );
        assert!(index.get("chat", "gone").is_none());
        assert!(index.get("other", "ptu").is_none());
    }
}
