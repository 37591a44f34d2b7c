//! `compile()` of an `AIGateway`'s audit settings: off by default, defaults, bad patterns.

use super::support::compile_text;
use crate::v1alpha1::RedactionBuiltin;

const GW: &str =
    "apiVersion: spillway.dev/v1alpha1\nkind: AIGateway\nmetadata: {name: gw, namespace: ns}\n";

#[test]
fn audit_is_off_unless_enabled() {
    for spec in ["spec: {}\n", "spec:\n  audit: {apps: [web]}\n"] {
        let (snapshot, problems) = compile_text(&format!("{GW}{spec}"));
        assert!(problems.is_empty(), "{problems:#?}");
        assert_eq!(snapshot.gateway.audit, None, "{spec}");
    }
}

#[test]
fn audit_defaults_redact_everything_built_in() {
    let (snapshot, problems) = compile_text(&format!(
        "{GW}spec:\n  audit: {{enabled: true, redaction: {{patterns: [{{name: emp, regex: 'EMP-[0-9]+'}}]}}}}\n"
    ));
    assert!(problems.is_empty(), "{problems:#?}");
    let audit = snapshot.gateway.audit.expect("audit");
    assert!(audit.apps.is_empty(), "every app");
    assert_eq!(audit.max_field_bytes, 16 * 1024);
    assert_eq!(
        audit.builtins,
        [
            RedactionBuiltin::ApiKeys,
            RedactionBuiltin::BearerTokens,
            RedactionBuiltin::Emails,
            RedactionBuiltin::CreditCards
        ]
    );
    assert_eq!(
        audit.patterns,
        [("emp".to_owned(), "EMP-[0-9]+".to_owned())]
    );
}

#[test]
fn audit_problems_name_the_field() {
    let cases = [
        (
            "{enabled: true, redaction: {patterns: [{name: bad, regex: '(unclosed'}]}}",
            "spec.audit.redaction.patterns[0].regex",
            "not a valid regular expression",
        ),
        (
            "{enabled: true, maxFieldBytes: 10}",
            "spec.audit.maxFieldBytes",
            "256 to 1048576",
        ),
    ];
    for (audit, field, needle) in cases {
        let (_, problems) = compile_text(&format!("{GW}spec:\n  audit: {audit}\n"));
        let problem = problems
            .iter()
            .find(|p| p.field == field)
            .unwrap_or_else(|| panic!("{audit}: no problem at {field}: {problems:#?}"));
        assert!(problem.message.contains(needle), "{}", problem.message);
    }
}
