//! Consumer API keys: the presented key is hashed with SHA-256 and looked up among the
//! configured hashes.
//!
//! Input: the configured [`ApiKeyConfig`]s (hex SHA-256, never the key) and a presented key.
//! Output: the owning appId, or nothing. The table is bucketed by the first eight bytes of
//! the hash, and every candidate of a bucket is compared in constant time over all 32 bytes,
//! so timing reveals nothing about stored hashes beyond what the bucket of a SHA-256 output
//! (of the attacker's own guess) already does.

use std::collections::HashMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use spillway_crds::snapshot::ApiKeyConfig;
use subtle::ConstantTimeEq;

type Hash = [u8; 32];

/// The configured API keys, by hash.
#[derive(Debug, Default)]
pub(super) struct ApiKeys {
    buckets: HashMap<u64, Vec<(Hash, Arc<str>)>>,
}

impl ApiKeys {
    /// Builds the table; hashes that are not 64 hex digits are skipped with a warning (the
    /// compiler already refuses them).
    pub(super) fn new(keys: &[ApiKeyConfig]) -> Self {
        let mut buckets: HashMap<u64, Vec<(Hash, Arc<str>)>> = HashMap::new();
        for key in keys {
            let Some(hash) = parse_hex(&key.sha256) else {
                tracing::warn!(app_id = %key.app_id, "ignoring an API key whose sha256 is not 64 hex digits");
                continue;
            };
            buckets
                .entry(bucket(&hash))
                .or_default()
                .push((hash, Arc::from(key.app_id.as_str())));
        }
        Self { buckets }
    }

    /// Whether any key is configured.
    pub(super) fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// The appId owning `presented`, if any.
    pub(super) fn lookup(&self, presented: &[u8]) -> Option<&str> {
        let hash: Hash = Sha256::digest(presented).into();
        let candidates = self.buckets.get(&bucket(&hash))?;
        let mut found = None;
        for (stored, app_id) in candidates {
            if bool::from(stored.ct_eq(&hash)) {
                found = Some(app_id.as_ref());
            }
        }
        found
    }
}

fn bucket(hash: &Hash) -> u64 {
    let mut prefix = [0u8; 8];
    prefix.copy_from_slice(&hash[..8]);
    u64::from_le_bytes(prefix)
}

fn parse_hex(text: &str) -> Option<Hash> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let high = hex_digit(pair[0])?;
        let low = hex_digit(pair[1])?;
        out[i] = (high << 4) | low;
    }
    Some(out)
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn config(app: &str, key: &str) -> ApiKeyConfig {
        let hex: String = Sha256::digest(key.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        ApiKeyConfig {
            app_id: app.to_owned(),
            sha256: hex,
        }
    }

    #[test]
    fn finds_the_owner_of_a_key_among_many() {
        let mut configs: Vec<_> = (0..500)
            .map(|i| config(&format!("app-{i}"), &format!("key-{i}")))
            .collect();
        configs[7].sha256 = configs[7].sha256.to_ascii_uppercase();
        let keys = ApiKeys::new(&configs);
        assert!(!keys.is_empty());
        assert_eq!(keys.lookup(b"key-0"), Some("app-0"));
        assert_eq!(keys.lookup(b"key-499"), Some("app-499"));
        assert_eq!(keys.lookup(b"key-7"), Some("app-7"));
        assert_eq!(keys.lookup(b"key-500"), None);
        assert_eq!(keys.lookup(b""), None);
        assert_eq!(keys.lookup(b"KEY-0"), None);
    }

    #[test]
    fn skips_invalid_hashes() {
        let keys = ApiKeys::new(&[
            ApiKeyConfig {
                app_id: "short".into(),
                sha256: "abcd".into(),
            },
            ApiKeyConfig {
                app_id: "not-hex".into(),
                sha256: "z".repeat(64),
            },
        ]);
        assert!(keys.is_empty());
        assert_eq!(keys.lookup(b"abcd"), None);
    }
}
