//! Compiling an `AIGateway`: limits, audit and rate-limit placement here; [`identity`] (JWT,
//! API keys, anonymous access) and [`cors`] (browser origins) in their own files.

mod cors;
mod identity;

#[cfg(test)]
pub use cors::{CORS_DEFAULT_ALLOWED_HEADERS, CORS_DEFAULT_EXPOSED_HEADERS, check_origin};

use cors::compile_cors;
use identity::{closed_without_methods, compile_identity};

use super::validate::Checker;
use super::{AnonymousAccess, Object, SecretResolver};
use crate::snapshot::{
    AuditConfig, GatewayConfig, IdentityConfig, ModelAccess, RateLimitingConfig, RedisConfig,
};
use crate::v1alpha1::{
    AiGatewaySpec, AuditSpec, ModelAccessRule, RateLimitMode, RateLimitingSpec, RedactionBuiltin,
};

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
        pass_response_headers: compile_passed_headers(&spec.pass_response_headers, check),
        model_access: compile_model_access(&spec.model_access, check),
    }
}

/// The access rules; a rule that names no app could never apply and is a problem.
fn compile_model_access(rules: &[ModelAccessRule], check: &mut Checker) -> ModelAccess {
    for (i, rule) in rules.iter().enumerate() {
        if rule.apps.iter().all(|app| app.trim().is_empty()) {
            check.invalid(
                format!("spec.modelAccess[{i}].apps"),
                "name at least one appId, or \"*\" for every app",
            );
        }
    }
    ModelAccess {
        rules: rules
            .iter()
            .map(|rule| ModelAccessRule {
                apps: rule.apps.iter().map(|a| a.trim().to_owned()).collect(),
                ..rule.clone()
            })
            .collect(),
    }
}

/// Header names (or `prefix*`), lower-cased; anything that cannot be a header name is a
/// problem on its entry.
fn compile_passed_headers(names: &[String], check: &mut Checker) -> Vec<String> {
    let mut out = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let lower = name.trim().to_ascii_lowercase();
        let stem = lower.strip_suffix('*').unwrap_or(&lower);
        let valid = !stem.is_empty()
            && stem
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.!#$%&'+^`|~".contains(&b));
        if valid {
            out.push(lower);
        } else {
            check.invalid(
                format!("spec.passResponseHeaders[{i}]"),
                format!("{name:?} is not a header name; write a name such as openai-processing-ms, or a prefix such as openai-*"),
            );
        }
    }
    out
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
