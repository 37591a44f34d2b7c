//! Compiling an `AIGateway`: limits, identity and rate-limit placement.

use std::collections::BTreeSet;

use sha2::{Digest, Sha256};

use super::validate::Checker;
use super::{AnonymousAccess, Object, SecretResolver};
use crate::snapshot::{
    ApiKeyConfig, AuditConfig, CorsConfig, GatewayConfig, IdentityConfig, JwtConfig,
    RateLimitingConfig, RedisConfig,
};
use crate::v1alpha1::{
    AiGatewaySpec, ApiKeyConsumer, AuditSpec, CorsSpec, IdentityMethod, IdentitySpec, JwtSpec,
    RateLimitMode, RateLimitingSpec, RedactionBuiltin,
};

/// Signature algorithms a JWT may use: asymmetric only, so a public key can never be
/// abused as an HMAC secret.
pub const JWT_ALGORITHMS: [&str; 8] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
];

pub(super) fn compile_gateway(
    object: &Object<AiGatewaySpec>,
    secrets: &dyn SecretResolver,
    anonymous: AnonymousAccess,
    check: &mut Checker,
) -> GatewayConfig {
    let spec = &object.spec;
    let defaults = GatewayConfig::default();
    let max_body = spec
        .max_request_body_bytes
        .unwrap_or(defaults.max_request_body_bytes);
    if max_body < 1024 {
        check.invalid(
            "spec.maxRequestBodyBytes",
            format!("{max_body} is too small; allow at least 1024 bytes"),
        );
    }
    let drain = check.duration_or(
        "spec.streamDrainTimeout",
        spec.stream_drain_timeout.as_deref(),
        defaults.stream_drain_timeout_ms,
    );
    let identity = match &spec.identity {
        Some(identity) => compile_identity(identity, &object.namespace, secrets, anonymous, check),
        None => IdentityConfig {
            allow_anonymous: anonymous == AnonymousAccess::WhenNoMethod,
            ..IdentityConfig::default()
        },
    };
    let identity = closed_without_methods(identity, anonymous, object);
    let rate_limiting = spec
        .rate_limiting
        .as_ref()
        .map(|rl| compile_rate_limiting(rl, &object.namespace, secrets, check))
        .unwrap_or_default();
    GatewayConfig {
        max_request_body_bytes: max_body,
        identity,
        rate_limiting,
        stream_drain_timeout_ms: drain,
        stream_drain_max_bytes: spec
            .stream_drain_max_bytes
            .unwrap_or(defaults.stream_drain_max_bytes),
        cors: spec.cors.as_ref().map(|cors| compile_cors(cors, check)),
        audit: spec
            .audit
            .as_ref()
            .filter(|audit| audit.enabled)
            .map(|audit| compile_audit(audit, check)),
    }
}

/// Longest compiled program a redaction pattern may become (keeps a pattern from costing
/// the audit writer unbounded time or memory).
const REDACTION_SIZE_LIMIT: usize = 1 << 20;

fn compile_audit(spec: &AuditSpec, check: &mut Checker) -> AuditConfig {
    let max_field_bytes = spec.max_field_bytes.unwrap_or(16 * 1024);
    if !(256..=1024 * 1024).contains(&max_field_bytes) {
        check.invalid(
            "spec.audit.maxFieldBytes",
            format!("{max_field_bytes} is out of range: use 256 to 1048576"),
        );
    }
    let redaction = spec.redaction.clone().unwrap_or_default();
    let mut patterns = Vec::new();
    for (i, pattern) in redaction.patterns.iter().enumerate() {
        let built = regex::RegexBuilder::new(&pattern.regex)
            .size_limit(REDACTION_SIZE_LIMIT)
            .build();
        match built {
            Ok(_) => patterns.push((pattern.name.clone(), pattern.regex.clone())),
            Err(error) => check.invalid(
                format!("spec.audit.redaction.patterns[{i}].regex"),
                format!("not a valid regular expression: {error}"),
            ),
        }
    }
    AuditConfig {
        apps: spec.apps.clone(),
        max_field_bytes,
        builtins: redaction.builtins.unwrap_or_else(|| {
            vec![
                RedactionBuiltin::ApiKeys,
                RedactionBuiltin::BearerTokens,
                RedactionBuiltin::Emails,
                RedactionBuiltin::CreditCards,
            ]
        }),
        patterns,
    }
}

/// Request headers browsers may send by default: what the OpenAI and Azure SDKs and chat
/// playgrounds send.
pub const CORS_DEFAULT_ALLOWED_HEADERS: [&str; 11] = [
    "authorization",
    "api-key",
    "content-type",
    "accept",
    "traceparent",
    "tracestate",
    "x-ms-client-request-id",
    "x-ms-useragent",
    "openai-organization",
    "openai-project",
    "x-stainless-*",
];

/// Response headers scripts may read by default: what a client needs to back off and to
/// see who served it.
pub const CORS_DEFAULT_EXPOSED_HEADERS: [&str; 13] = [
    "retry-after",
    "retry-after-ms",
    "x-ratelimit-limit-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-requests",
    "x-ratelimit-reset-tokens",
    "x-request-id",
    "x-spillway-backend",
    "x-spillway-attempts",
    "x-spillway-tokens-consumed",
    "apim-request-id",
];

const CORS_DEFAULT_MAX_AGE_MS: u64 = 600_000;

fn compile_cors(spec: &CorsSpec, check: &mut Checker) -> CorsConfig {
    let mut origins = Vec::with_capacity(spec.allowed_origins.len());
    for (i, origin) in spec.allowed_origins.iter().enumerate() {
        match check_origin(origin) {
            Ok(normal) => origins.push(normal),
            Err(why) => check.invalid(format!("spec.cors.allowedOrigins[{i}]"), why),
        }
    }
    if spec.allowed_origins.is_empty() {
        check.invalid(
            "spec.cors.allowedOrigins",
            "list at least one origin, e.g. https://playground.example.com",
        );
    }
    let credentials = spec.allow_credentials.unwrap_or(false);
    if credentials && origins.iter().any(|o| o == "*") {
        check.invalid(
            "spec.cors.allowCredentials",
            "cannot be used with the `*` origin: list the origins",
        );
    }
    let methods = if spec.allowed_methods.is_empty() {
        vec!["GET".into(), "POST".into(), "OPTIONS".into()]
    } else {
        let mut methods = Vec::new();
        for (i, method) in spec.allowed_methods.iter().enumerate() {
            if is_token(method) {
                methods.push(method.to_ascii_uppercase());
            } else {
                check.invalid(
                    format!("spec.cors.allowedMethods[{i}]"),
                    format!("`{method}` is not an HTTP method"),
                );
            }
        }
        methods
    };
    let headers = |field: &str, given: &[String], defaults: &[&str], check: &mut Checker| {
        if given.is_empty() {
            return defaults.iter().map(|h| (*h).to_owned()).collect();
        }
        let mut out = Vec::new();
        for (i, header) in given.iter().enumerate() {
            let name = header.strip_suffix('*').unwrap_or(header);
            if is_token(name) || (name.is_empty() && header == "*") {
                out.push(header.to_ascii_lowercase());
            } else {
                check.invalid(
                    format!("spec.cors.{field}[{i}]"),
                    format!("`{header}` is not an HTTP header name (a trailing `*` is allowed)"),
                );
            }
        }
        out
    };
    let allowed_headers = headers(
        "allowedHeaders",
        &spec.allowed_headers,
        &CORS_DEFAULT_ALLOWED_HEADERS,
        check,
    );
    let exposed_headers = headers(
        "exposedHeaders",
        &spec.exposed_headers,
        &CORS_DEFAULT_EXPOSED_HEADERS,
        check,
    );
    let max_age_ms = check.duration_or(
        "spec.cors.maxAge",
        spec.max_age.as_deref(),
        CORS_DEFAULT_MAX_AGE_MS,
    );
    CorsConfig {
        allowed_origins: origins,
        allowed_methods: methods,
        allowed_headers,
        exposed_headers,
        allow_credentials: credentials,
        max_age_secs: max_age_ms / 1000,
    }
}

/// An RFC 7230 token (method and header names).
fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// Checks an allowed origin and returns it lower-cased: `*`, or `scheme://host[:port]` with
/// scheme `http`/`https`, where host may start with `*.` (any subdomain).
pub fn check_origin(origin: &str) -> Result<String, String> {
    if origin == "*" {
        return Ok(origin.to_owned());
    }
    let lower = origin.to_ascii_lowercase();
    let Some((scheme, rest)) = lower.split_once("://") else {
        return Err(format!(
            "`{origin}` is not an origin: write scheme://host[:port], e.g. https://app.example.com"
        ));
    };
    if scheme != "http" && scheme != "https" {
        return Err(format!("`{origin}`: the scheme must be http or https"));
    }
    if rest.contains(['/', '?', '#', '@']) {
        return Err(format!(
            "`{origin}`: an origin has no path, query or user (no trailing `/` either)"
        ));
    }
    // `[v6]:port` keeps the colons of the address inside the brackets.
    let split_at = match rest.rfind(']') {
        Some(end) => rest[end..].find(':').map(|i| end + i),
        None => rest.rfind(':'),
    };
    let (host, port) = match split_at {
        Some(at) => (&rest[..at], Some(&rest[at + 1..])),
        None => (rest, None),
    };
    if let Some(port) = port
        && port.parse::<u16>().map_or(true, |p| p == 0)
    {
        return Err(format!("`{origin}`: `{port}` is not a port"));
    }
    let domain = host.strip_prefix("*.").unwrap_or(host);
    let valid_host = !domain.is_empty()
        && domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':'))
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('*');
    if !valid_host {
        return Err(format!(
            "`{origin}`: `{host}` is not a host name (a leading `*.` for any subdomain is allowed)"
        ));
    }
    if host.starts_with("*.") && !domain.contains('.') {
        return Err(format!(
            "`{origin}`: `*.{domain}` would match every site under a top-level domain; name the domain, e.g. *.example.com"
        ));
    }
    Ok(lower)
}

fn compile_identity(
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
fn closed_without_methods(
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

fn compile_rate_limiting(
    spec: &RateLimitingSpec,
    namespace: &str,
    secrets: &dyn SecretResolver,
    check: &mut Checker,
) -> RateLimitingConfig {
    let path = "spec.rateLimiting.redis";
    let redis = match (spec.mode, &spec.redis) {
        (RateLimitMode::Local, _) => None,
        (RateLimitMode::Redis, None) => {
            check.invalid(path, "mode Redis needs redis.url or redis.urlFrom");
            None
        }
        (RateLimitMode::Redis, Some(redis)) => {
            let url = match (&redis.url, &redis.url_from) {
                (Some(url), None) => Some(crate::snapshot::SecretString::new(url.clone())),
                (None, Some(source)) => {
                    check.secret(&format!("{path}.urlFrom"), namespace, source, secrets)
                }
                _ => {
                    check.invalid(path, "set exactly one of url or urlFrom");
                    None
                }
            };
            if url.as_ref().is_some_and(|url| {
                !url.expose().starts_with("redis://") && !url.expose().starts_with("rediss://")
            }) {
                check.invalid(path, "the URL must start with redis:// or rediss://");
            }
            let timeout_ms =
                check.duration_or(&format!("{path}.timeout"), redis.timeout.as_deref(), 200);
            url.map(|url| RedisConfig {
                url,
                key_prefix: redis
                    .key_prefix
                    .clone()
                    .unwrap_or_else(|| "spillway".to_owned()),
                on_unavailable: redis.on_redis_unavailable,
                timeout_ms,
            })
        }
    };
    RateLimitingConfig {
        mode: spec.mode,
        redis,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
