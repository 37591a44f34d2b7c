//! Compiling an `AIGateway`'s CORS settings: defaults that cover the SDKs' headers, origins
//! normalised and checked, every mistake a problem on its field.

use crate::compile::validate::Checker;
use crate::snapshot::CorsConfig;
use crate::v1alpha1::CorsSpec;

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

pub(super) fn compile_cors(spec: &CorsSpec, check: &mut Checker) -> CorsConfig {
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
        vec![
            "GET".into(),
            "POST".into(),
            "DELETE".into(),
            "OPTIONS".into(),
        ]
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
