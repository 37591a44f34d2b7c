//! CORS for browser apps (chat playgrounds) calling the gateway from another origin.
//!
//! Input: the scope's [`CorsConfig`] and a request's headers. Output: for a preflight
//! (`OPTIONS` with `Origin` and `Access-Control-Request-Method`), the headers of a `204`
//! answer or the reason it is refused — answered by the gateway itself, before identity,
//! quotas or any backend; for any other request from an allowed origin, the headers that let
//! the browser read the response (errors included, so a script sees a 429's `retry-after`).
//! An origin that is not allowed gets no CORS headers at all.
//!
//! Origins match exactly (after lower-casing), as `*`, or as `scheme://*.domain[:port]`
//! (any subdomain, at any depth, never the bare domain). Allowed request headers match
//! case-insensitively, a trailing `*` matching a prefix (`x-stainless-*`).

use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Method};
use spillway_crds::snapshot::CorsConfig;

#[cfg(test)]
mod tests;

/// The CORS policy of a scope, ready to answer requests.
#[derive(Clone, Debug)]
pub struct Cors {
    origins: Vec<OriginRule>,
    methods: Vec<Method>,
    methods_value: HeaderValue,
    headers: Vec<String>,
    exposed: Option<HeaderValue>,
    credentials: bool,
    max_age: HeaderValue,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum OriginRule {
    Any,
    Exact(String),
    /// `prefix` is `scheme://`, `suffix` is `.domain[:port]`.
    Subdomain {
        prefix: String,
        suffix: String,
    },
}

impl OriginRule {
    fn parse(text: &str) -> Self {
        if text == "*" {
            return Self::Any;
        }
        match text.split_once("*.") {
            Some((prefix, rest)) => Self::Subdomain {
                prefix: prefix.to_owned(),
                suffix: format!(".{rest}"),
            },
            None => Self::Exact(text.to_owned()),
        }
    }

    fn matches(&self, origin: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(exact) => exact == origin,
            Self::Subdomain { prefix, suffix } => origin
                .strip_prefix(prefix.as_str())
                .and_then(|rest| rest.strip_suffix(suffix.as_str()))
                .is_some_and(|sub| {
                    !sub.is_empty()
                        && !sub.starts_with('.')
                        && !sub.ends_with('.')
                        && sub
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                }),
        }
    }
}

/// Why a preflight is refused (the answer carries no CORS headers).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CorsRefusal {
    /// The origin is not in `allowedOrigins`.
    #[error(
        "origin `{0}` is not allowed to call this gateway (AIGateway spec.cors.allowedOrigins)"
    )]
    Origin(String),
    /// The method is not in `allowedMethods`.
    #[error("method `{0}` is not allowed from a browser (AIGateway spec.cors.allowedMethods)")]
    Method(String),
    /// A request header is not in `allowedHeaders`.
    #[error(
        "request header `{0}` is not allowed from a browser (AIGateway spec.cors.allowedHeaders)"
    )]
    Header(String),
}

/// Whether `headers` (of an `OPTIONS` request) make it a CORS preflight.
pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS
        && headers.contains_key(header::ORIGIN)
        && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

impl Cors {
    /// The policy for `config`; entries the compiler let through but that are not valid
    /// header values (none should be) are skipped.
    pub fn new(config: &CorsConfig) -> Self {
        let methods: Vec<Method> = config
            .allowed_methods
            .iter()
            .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
            .collect();
        let joined = |items: &mut dyn Iterator<Item = &str>| {
            HeaderValue::from_str(&items.collect::<Vec<_>>().join(", ")).ok()
        };
        let exposed = joined(&mut config.exposed_headers.iter().map(String::as_str))
            .filter(|v| !v.is_empty());
        Self {
            origins: config
                .allowed_origins
                .iter()
                .map(|o| OriginRule::parse(o))
                .collect(),
            methods_value: joined(&mut methods.iter().map(Method::as_str))
                .unwrap_or_else(|| HeaderValue::from_static("POST")),
            methods,
            headers: config
                .allowed_headers
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            exposed,
            credentials: config.allow_credentials,
            max_age: HeaderValue::from(config.max_age_secs),
        }
    }

    /// Whether `origin` may call.
    pub fn allows(&self, origin: &str) -> bool {
        let origin = origin.to_ascii_lowercase();
        self.origins.iter().any(|rule| rule.matches(&origin))
    }

    fn allows_header(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|allowed| match allowed.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => allowed == name,
            })
    }

    /// The headers of the `204` answer to a preflight, or why it is refused.
    ///
    /// # Errors
    /// The origin, the method or one of the request headers is not allowed.
    pub fn preflight(&self, request: &HeaderMap) -> Result<HeaderMap, CorsRefusal> {
        let text = |name: HeaderName| {
            request
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        let origin_value = request.get(header::ORIGIN).cloned();
        let origin = text(header::ORIGIN).unwrap_or_default();
        let Some(origin_value) = origin_value.filter(|_| self.allows(&origin)) else {
            return Err(CorsRefusal::Origin(origin));
        };
        let method = text(header::ACCESS_CONTROL_REQUEST_METHOD).unwrap_or_default();
        if !self.methods.iter().any(|m| m.as_str() == method) {
            return Err(CorsRefusal::Method(method));
        }
        let requested = text(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .unwrap_or_default()
            .to_ascii_lowercase();
        let requested: Vec<&str> = requested
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .collect();
        if let Some(refused) = requested.iter().find(|h| !self.allows_header(h)) {
            return Err(CorsRefusal::Header((*refused).to_owned()));
        }
        let mut out = HeaderMap::new();
        self.common(origin_value, &mut out);
        out.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            self.methods_value.clone(),
        );
        if let Ok(value) = HeaderValue::from_str(&requested.join(", "))
            && !value.is_empty()
        {
            out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, value);
        }
        out.insert(header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
        // Chrome's Private Network Access: a public page calling a gateway on a private
        // address asks first.
        if request
            .get("access-control-request-private-network")
            .is_some_and(|v| v == "true")
        {
            out.insert(
                "access-control-allow-private-network",
                HeaderValue::from_static("true"),
            );
        }
        Ok(out)
    }

    /// Adds the CORS headers of an actual response for `request`'s origin, if it has an
    /// allowed one; returns whether the request came from a disallowed origin.
    pub fn decorate(&self, request_origin: Option<&HeaderValue>, response: &mut HeaderMap) -> bool {
        let Some(origin) = request_origin else {
            return false;
        };
        if !self.allows(&String::from_utf8_lossy(origin.as_bytes())) {
            return true;
        }
        self.common(origin.clone(), response);
        if let Some(exposed) = &self.exposed {
            response.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, exposed.clone());
        }
        false
    }

    fn common(&self, origin: HeaderValue, out: &mut HeaderMap) {
        // The origin is echoed (never `*`) so credentials work and caches keep answers per
        // origin apart.
        out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        out.append(header::VARY, HeaderValue::from_static("Origin"));
        if self.credentials {
            out.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
    }
}
