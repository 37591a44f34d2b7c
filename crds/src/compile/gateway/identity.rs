//! Compiling an `AIGateway`'s identity: JWT issuers, API-key consumers (keys hashed), and
//! where anonymous access exists.

use std::collections::BTreeSet;

use sha2::{Digest, Sha256};

use crate::compile::validate::Checker;
use crate::compile::{AnonymousAccess, Object, SecretResolver};
use crate::snapshot::{ApiKeyConfig, IdentityConfig, JwtConfig};
use crate::v1alpha1::{AiGatewaySpec, ApiKeyConsumer, IdentityMethod, IdentitySpec, JwtSpec};

/// Signature algorithms a JWT may use: asymmetric only, so a public key can never be
/// abused as an HMAC secret.
const JWT_ALGORITHMS: [&str; 8] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
];
pub(super) fn compile_identity(
    spec: &IdentitySpec,
    namespace: &str,
    secrets: &dyn SecretResolver,
    anonymous: AnonymousAccess,
    check: &mut Checker,
) -> IdentityConfig {
    let jwt = spec.jwt.as_ref().map(|jwt| compile_jwt(jwt, check));
    let api_keys = compile_api_keys(&spec.api_keys, namespace, secrets, check);
    if let Some(header) = &spec.trusted_header {
        check.header_name("spec.identity.trustedHeader", header);
    }
    let configured = |method: &IdentityMethod| match method {
        IdentityMethod::Jwt => jwt.is_some(),
        IdentityMethod::ApiKey => !spec.api_keys.is_empty(),
        IdentityMethod::TrustedHeader => spec.trusted_header.is_some(),
    };
    let order: Vec<IdentityMethod> = if spec.order.is_empty() {
        [
            IdentityMethod::Jwt,
            IdentityMethod::ApiKey,
            IdentityMethod::TrustedHeader,
        ]
        .into_iter()
        .filter(|m| configured(m))
        .collect()
    } else {
        for (i, method) in spec.order.iter().enumerate() {
            if !configured(method) {
                check.invalid(
                    format!("spec.identity.order[{i}]"),
                    format!("{method:?} is listed but not configured; configure it or remove it from the order"),
                );
            }
        }
        let mut seen = BTreeSet::new();
        spec.order
            .iter()
            .copied()
            .filter(|m| seen.insert(*m as u8))
            .collect()
    };
    IdentityConfig {
        allow_anonymous: spec
            .allow_anonymous
            .unwrap_or(order.is_empty() && anonymous == AnonymousAccess::WhenNoMethod),
        order,
        jwt,
        api_keys,
        trusted_header: spec.trusted_header.as_ref().map(|h| h.to_ascii_lowercase()),
        refuse_all: None,
    }
}

/// An identity with no method and no anonymous access refuses every call, saying what to add
/// (rather than asking callers for a credential no method could check).
pub(super) fn closed_without_methods(
    mut identity: IdentityConfig,
    anonymous: AnonymousAccess,
    object: &Object<AiGatewaySpec>,
) -> IdentityConfig {
    if anonymous == AnonymousAccess::OnlyWhenWritten
        && identity.order.is_empty()
        && !identity.allow_anonymous
    {
        identity.refuse_all = Some(format!(
            "AIGateway {} configures no identity method: add spec.identity.jwt, apiKeys or \
             trustedHeader, or write spec.identity.allowAnonymous: true",
            object.id()
        ));
    }
    identity
}

fn compile_jwt(spec: &JwtSpec, check: &mut Checker) -> JwtConfig {
    let path = "spec.identity.jwt";
    if spec.issuers.is_empty() {
        check.invalid(
            format!("{path}.issuers"),
            "list at least one issuer, e.g. https://login.microsoftonline.com/<tenant>/v2.0",
        );
    }
    for (i, issuer) in spec.issuers.iter().enumerate() {
        check.http_url(&format!("{path}.issuers[{i}]"), issuer);
    }
    if spec.audiences.is_empty() {
        check.invalid(
            format!("{path}.audiences"),
            "list at least one audience (the app registration's client id or api://… URI)",
        );
    }
    if let Some(uri) = &spec.jwks_uri {
        check.http_url(&format!("{path}.jwksUri"), uri);
    }
    let algorithms: Vec<String> = if spec.algorithms.is_empty() {
        vec!["RS256".to_owned()]
    } else {
        spec.algorithms.clone()
    };
    for (i, alg) in algorithms.iter().enumerate() {
        if !JWT_ALGORITHMS.contains(&alg.as_str()) {
            check.invalid(
                format!("{path}.algorithms[{i}]"),
                format!(
                    "`{alg}` is not allowed; use one of {}",
                    JWT_ALGORITHMS.join(", ")
                ),
            );
        }
    }
    let app_id_claims = if spec.app_id_claims.is_empty() {
        vec!["appid".to_owned(), "azp".to_owned()]
    } else {
        spec.app_id_claims.clone()
    };
    JwtConfig {
        issuers: spec.issuers.clone(),
        tenants: spec.tenants.clone(),
        audiences: spec.audiences.clone(),
        jwks_uri: spec.jwks_uri.clone(),
        app_id_claims,
        algorithms,
        leeway_ms: check.duration_or(&format!("{path}.leeway"), spec.leeway.as_deref(), 60_000),
    }
}

fn compile_api_keys(
    consumers: &[ApiKeyConsumer],
    namespace: &str,
    secrets: &dyn SecretResolver,
    check: &mut Checker,
) -> Vec<ApiKeyConfig> {
    let mut seen = BTreeSet::new();
    let mut keys = Vec::new();
    for (i, consumer) in consumers.iter().enumerate() {
        let path = format!("spec.identity.apiKeys[{i}]");
        check.name_like(&format!("{path}.appId"), &consumer.app_id);
        let sha256 = match (&consumer.key_sha256, &consumer.key) {
            (Some(hash), None) => {
                let hash = hash.to_ascii_lowercase();
                if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                    check.invalid(
                        format!("{path}.keySha256"),
                        "must be 64 hex digits: the output of `printf %s \"$KEY\" | sha256sum`",
                    );
                }
                Some(hash)
            }
            (None, Some(source)) => check
                .secret(&format!("{path}.key"), namespace, source, secrets)
                .map(|key| hex(&Sha256::digest(key.expose().as_bytes()))),
            _ => {
                check.invalid(path.clone(), "set exactly one of keySha256 or key");
                None
            }
        };
        if let Some(sha256) = sha256 {
            if !seen.insert(sha256.clone()) {
                check.invalid(path, "this key is already given to another consumer");
                continue;
            }
            keys.push(ApiKeyConfig {
                app_id: consumer.app_id.clone(),
                sha256,
            });
        }
    }
    keys
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
