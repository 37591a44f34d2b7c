//! Redaction of audit text: built-in patterns (API keys, bearer tokens and JWTs, email
//! addresses, Luhn-checked payment card numbers) and a scope's own regular expressions. Every
//! match becomes `[REDACTED:<name>]`.
//!
//! Input: an [`AuditConfig`]'s pattern choices. Output: a [`Redactor`] applied by the audit
//! writer — off the request path — before a record leaves the process.

use std::borrow::Cow;

use regex::{Captures, Regex, RegexBuilder};
use spillway_crds::snapshot::AuditConfig;
use spillway_crds::v1alpha1::RedactionBuiltin;

/// Largest compiled program a pattern may become (the compiler checks the same bound).
const SIZE_LIMIT: usize = 1 << 20;

/// One pattern and how its matches are confirmed.
#[derive(Debug)]
struct Rule {
    name: String,
    regex: Regex,
    /// Only matches passing this are masked (card numbers: the Luhn check).
    confirm: Option<fn(&str) -> bool>,
}

/// Masks sensitive text; see the module docs.
#[derive(Debug)]
pub struct Redactor {
    rules: Vec<Rule>,
}

/// A built-in pattern: mask name, regular expression, confirmation.
type Builtin = (&'static str, &'static str, Option<fn(&str) -> bool>);

fn builtin(kind: RedactionBuiltin) -> Vec<Builtin> {
    match kind {
        RedactionBuiltin::BearerTokens => vec![
            (
                "bearer-token",
                r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}",
                None,
            ),
            (
                "jwt",
                r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*",
                None,
            ),
        ],
        RedactionBuiltin::ApiKeys => vec![
            ("api-key", r"\bsk-[A-Za-z0-9_-]{20,}", None),
            ("api-key", r"\b[0-9a-fA-F]{32}\b", None),
            ("api-key", r"\b[A-Za-z0-9]{84}\b", None),
            ("api-key", r"\bAKIA[0-9A-Z]{16}\b", None),
        ],
        RedactionBuiltin::Emails => vec![(
            "email",
            r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b",
            None,
        )],
        RedactionBuiltin::CreditCards => {
            vec![("credit-card", r"\b\d(?:[ -]?\d){12,18}\b", Some(luhn))]
        }
    }
}

/// Whether the digits of `text` pass the Luhn check.
pub fn luhn(text: &str) -> bool {
    let digits: Vec<u32> = text.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

impl Redactor {
    /// The redactor for `config`: built-ins first (bearer tokens before keys, so a token is
    /// masked whole), then the scope's own patterns.
    ///
    /// # Errors
    /// A pattern does not compile (the operator's compiler rejects those first).
    pub fn new(config: &AuditConfig) -> Result<Self, regex::Error> {
        let order = [
            RedactionBuiltin::BearerTokens,
            RedactionBuiltin::ApiKeys,
            RedactionBuiltin::Emails,
            RedactionBuiltin::CreditCards,
        ];
        let mut rules = Vec::new();
        for kind in order.into_iter().filter(|k| config.builtins.contains(k)) {
            for (name, pattern, confirm) in builtin(kind) {
                rules.push(Rule {
                    name: name.to_owned(),
                    regex: Regex::new(pattern)?,
                    confirm,
                });
            }
        }
        for (name, pattern) in &config.patterns {
            rules.push(Rule {
                name: name.clone(),
                regex: RegexBuilder::new(pattern).size_limit(SIZE_LIMIT).build()?,
                confirm: None,
            });
        }
        Ok(Self { rules })
    }

    /// `text` with every match masked.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for rule in &self.rules {
            if !rule.regex.is_match(&out) {
                continue;
            }
            let replaced = rule
                .regex
                .replace_all(&out, |caps: &Captures<'_>| {
                    let found = &caps[0];
                    match rule.confirm {
                        Some(confirm) if !confirm(found) => found.to_owned(),
                        _ => format!("[REDACTED:{}]", rule.name),
                    }
                })
                .into_owned();
            out = Cow::Owned(replaced);
        }
        out
    }
}

/// `text` cut to at most `max` bytes at a character boundary, marked when cut.
pub fn cap(text: &str, max: usize) -> (String, bool) {
    if text.len() <= max {
        return (text.to_owned(), false);
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    (
        format!("{}…[truncated {} bytes]", &text[..cut], text.len() - cut),
        true,
    )
}
