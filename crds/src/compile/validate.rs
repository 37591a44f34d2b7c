//! Field checks shared by the compile steps. A [`Checker`] collects the problems of one object,
//! each with the path of the field and a message that says what to write instead.

use super::{Object, Problem, ProblemReason, SecretResolver, normalise_base_url, parse_duration};
use crate::billing::{AmountError, Micros};
use crate::snapshot::{SecretString, StatusRange};
use crate::v1alpha1::{BackendType, SecretSource, StatusCodeRange};

pub(crate) struct Checker {
    kind: &'static str,
    namespace: String,
    name: String,
    problems: Vec<Problem>,
}

impl Checker {
    pub(crate) fn new<S>(kind: &'static str, object: &Object<S>) -> Self {
        Self {
            kind,
            namespace: object.namespace.clone(),
            name: object.name.clone(),
            problems: Vec::new(),
        }
    }

    pub(crate) fn finish(self) -> Vec<Problem> {
        self.problems
    }

    pub(crate) fn problem(
        &mut self,
        field: impl Into<String>,
        reason: ProblemReason,
        message: impl Into<String>,
    ) {
        self.problems.push(Problem {
            kind: self.kind,
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            field: field.into(),
            reason,
            message: message.into(),
        });
    }

    pub(crate) fn invalid(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.problem(field, ProblemReason::InvalidSpec, message);
    }

    /// Names that end up in headers, metrics and paths: letters, digits, `.`, `_`, `-`.
    pub(crate) fn name_like(&mut self, field: &str, value: &str) {
        let ok = !value.is_empty()
            && value.len() <= 253
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'));
        if !ok {
            self.invalid(
                field,
                format!(
                    "`{value}` is not a valid name; use 1–253 letters, digits, '.', '_', '-' or ':'"
                ),
            );
        }
    }

    /// A decimal amount or weight such as `"2.50"`; zero after a problem.
    pub(crate) fn amount(&mut self, field: &str, text: &str) -> Micros {
        text.parse().unwrap_or_else(|err: AmountError| {
            self.invalid(field, err.to_string());
            Micros::default()
        })
    }

    /// An ISO 4217 currency code: three upper-case letters.
    pub(crate) fn currency(&mut self, field: &str, code: &str) {
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
            self.invalid(
                field,
                format!(
                    "`{code}` is not an ISO 4217 currency code; write three upper-case letters \
                     such as USD or EUR"
                ),
            );
        }
    }

    pub(crate) fn header_name(&mut self, field: &str, value: &str) {
        let ok = !value.is_empty()
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
        if !ok {
            self.invalid(field, format!("`{value}` is not an HTTP header name"));
        }
    }

    pub(crate) fn duration_required(&mut self, field: &str, text: &str) -> u64 {
        match parse_duration(text) {
            Ok(d) if d.as_millis() > 0 => u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
            Ok(_) => {
                self.invalid(field, "must be longer than 0");
                1
            }
            Err(message) => {
                self.invalid(field, message);
                1
            }
        }
    }

    pub(crate) fn duration_or(&mut self, field: &str, text: Option<&str>, default_ms: u64) -> u64 {
        match text {
            Some(text) => self.duration_required(field, text),
            None => default_ms,
        }
    }

    pub(crate) fn status_ranges(
        &mut self,
        field: &str,
        ranges: &[StatusCodeRange],
    ) -> Vec<StatusRange> {
        for (i, r) in ranges.iter().enumerate() {
            if !(100..=599).contains(&r.min) || !(100..=599).contains(&r.max) {
                self.invalid(
                    format!("{field}[{i}]"),
                    format!(
                        "{}–{} is outside the HTTP status codes 100–599",
                        r.min, r.max
                    ),
                );
            } else if r.min > r.max {
                self.invalid(
                    format!("{field}[{i}]"),
                    format!("min {} is greater than max {}", r.min, r.max),
                );
            }
        }
        ranges
            .iter()
            .map(|r| StatusRange {
                min: r.min,
                max: r.max,
            })
            .collect()
    }

    pub(crate) fn http_url(&mut self, field: &str, url: &str) {
        let ok = (url.starts_with("https://") || url.starts_with("http://"))
            && url
                .split_once("://")
                .is_some_and(|(_, rest)| !rest.is_empty() && !rest.starts_with('/'))
            && !url.contains(' ');
        if !ok {
            self.invalid(field, format!("`{url}` is not an http(s) URL"));
        }
    }

    pub(crate) fn base_url(&mut self, field: &str, url: &str, kind: BackendType) -> String {
        let Some((scheme, rest)) = url.split_once("://") else {
            self.invalid(
                field,
                format!("`{url}` is not a URL; write e.g. https://my-resource.openai.azure.com"),
            );
            return String::new();
        };
        let host = rest.split('/').next().unwrap_or("");
        if !matches!(scheme, "http" | "https") {
            self.invalid(
                field,
                format!("scheme `{scheme}` is not supported; use https (or http for local tests)"),
            );
        } else if host.is_empty() || host.contains(['@', ' ']) {
            self.invalid(field, format!("`{url}` has no valid host"));
        } else if url.contains(['?', '#', ' ']) {
            self.invalid(
                field,
                format!("`{url}` must not contain a query, fragment or spaces"),
            );
        }
        normalise_base_url(url, kind)
    }

    pub(crate) fn secret(
        &mut self,
        field: &str,
        namespace: &str,
        source: &SecretSource,
        secrets: &dyn SecretResolver,
    ) -> Option<SecretString> {
        let set = [
            source.secret_ref.is_some(),
            source.env.is_some(),
            source.file.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if set != 1 {
            self.invalid(field, "set exactly one of secretRef, env or file");
            return None;
        }
        match secrets.resolve(namespace, source) {
            Ok(value) if !value.trim().is_empty() => Some(SecretString::new(value.trim())),
            Ok(_) => {
                self.problem(
                    field,
                    ProblemReason::SecretNotResolved,
                    "the secret value is empty",
                );
                None
            }
            Err(message) => {
                self.problem(field, ProblemReason::SecretNotResolved, message);
                None
            }
        }
    }
}

/// `allowedNamespaces` / `namespaces` of a shared object at `path`: a selector exactly when
/// `from: Selector`, with known operators and values where they need them.
pub(super) fn check_allowed_namespaces(
    allowed: Option<&crate::v1alpha1::AllowedNamespaces>,
    path: &str,
    check: &mut Checker,
) {
    use crate::v1alpha1::NamespacesFrom;
    let Some(allowed) = allowed else { return };
    match (allowed.from, &allowed.selector) {
        (NamespacesFrom::Selector, None) => check.invalid(
            format!("{path}.selector"),
            "from: Selector needs a selector (matchLabels or matchExpressions)",
        ),
        (NamespacesFrom::Same | NamespacesFrom::All, Some(_)) => check.invalid(
            format!("{path}.selector"),
            "a selector is used only with from: Selector",
        ),
        (_, Some(selector)) => {
            if selector.match_labels.is_empty() && selector.match_expressions.is_empty() {
                check.invalid(
                    format!("{path}.selector"),
                    "an empty selector would match every namespace; write from: All for that",
                );
            }
            for (i, r) in selector.match_expressions.iter().enumerate() {
                let at = format!("{path}.selector.matchExpressions[{i}]");
                match r.operator.as_str() {
                    "In" | "NotIn" if r.values.is_empty() => {
                        check.invalid(format!("{at}.values"), "In and NotIn need values");
                    }
                    "Exists" | "DoesNotExist" if !r.values.is_empty() => {
                        check.invalid(
                            format!("{at}.values"),
                            "Exists and DoesNotExist take no values",
                        );
                    }
                    "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
                    other => check.invalid(
                        format!("{at}.operator"),
                        format!(
                            "{other:?} is not an operator; use In, NotIn, Exists or DoesNotExist"
                        ),
                    ),
                }
            }
        }
        _ => {}
    }
}
