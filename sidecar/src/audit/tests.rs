use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use spillway_crds::snapshot::AuditConfig;
use spillway_crds::v1alpha1::RedactionBuiltin;

use super::redact::{Redactor, cap, luhn};
use super::writer::line;
use super::{AuditPolicy, PendingAudit, queue};
use crate::usage::{Usage, UsageRecord};

fn config(builtins: &[RedactionBuiltin], patterns: &[(&str, &str)]) -> AuditConfig {
    AuditConfig {
        apps: Vec::new(),
        max_field_bytes: 256,
        builtins: builtins.to_vec(),
        patterns: patterns
            .iter()
            .map(|(n, r)| ((*n).to_owned(), (*r).to_owned()))
            .collect(),
    }
}

const ALL: [RedactionBuiltin; 4] = [
    RedactionBuiltin::ApiKeys,
    RedactionBuiltin::BearerTokens,
    RedactionBuiltin::Emails,
    RedactionBuiltin::CreditCards,
];

#[test]
fn builtins_mask_keys_tokens_emails_and_cards() {
    let redactor = Redactor::new(&config(&ALL, &[])).expect("compiles");
    let text = "key sk-proj-abcdefghijklmnopqrstuvwxyz0123 azure 0123456789abcdef0123456789ABCDEF \
                header Authorization: Bearer abc.def-ghi_jkl~123 jwt eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln \
                mail jane.doe+ai@contoso.co.uk card 4111 1111 1111 1111 and 4111-1111-1111-1112 \
                order 1234567890123";
    let out = redactor.redact(text);
    for secret in [
        "sk-proj-abcdefghijklmnopqrstuvwxyz0123",
        "0123456789abcdef0123456789ABCDEF",
        "abc.def-ghi_jkl~123",
        "eyJhbGciOiJSUzI1NiJ9",
        "jane.doe+ai@contoso.co.uk",
        "4111 1111 1111 1111",
    ] {
        assert!(!out.contains(secret), "{secret} left in {out}");
    }
    for mask in [
        "[REDACTED:api-key]",
        "[REDACTED:bearer-token]",
        "[REDACTED:jwt]",
        "[REDACTED:email]",
        "[REDACTED:credit-card]",
    ] {
        assert!(out.contains(mask), "{mask} missing in {out}");
    }
    assert!(
        out.contains("4111-1111-1111-1112"),
        "a number failing the Luhn check is not a card: {out}"
    );
    assert!(out.contains("order 1234567890123"), "{out}");
}

#[test]
fn only_chosen_builtins_and_own_patterns_apply() {
    let redactor = Redactor::new(&config(
        &[RedactionBuiltin::Emails],
        &[("employee-id", r"EMP-[0-9]{6}")],
    ))
    .expect("compiles");
    let out = redactor.redact("EMP-123456 wrote to a@b.io with sk-abcdefghijklmnopqrstuvwxyz");
    assert_eq!(
        out,
        "[REDACTED:employee-id] wrote to [REDACTED:email] with sk-abcdefghijklmnopqrstuvwxyz"
    );
    assert!(Redactor::new(&config(&[], &[("bad", "(")])).is_err());
    let clean = Redactor::new(&config(&ALL, &[])).expect("compiles");
    assert!(
        matches!(clean.redact("nothing here"), std::borrow::Cow::Borrowed(_)),
        "no match, no copy"
    );
}

#[test]
fn luhn_and_caps() {
    assert!(luhn("4111111111111111"));
    assert!(luhn("5500 0000 0000 0004"));
    assert!(!luhn("4111111111111112"));
    assert!(!luhn("123"));
    assert_eq!(cap("short", 10), ("short".to_owned(), false));
    let (cut, truncated) = cap("héllo wörld", 2);
    assert!(truncated);
    assert_eq!(cut, "h…[truncated 12 bytes]", "cut at a character boundary");
}

fn record(app: &str) -> UsageRecord {
    UsageRecord {
        request_id: "r1".into(),
        backend: Some("east".into()),
        stream: true,
        usage: Usage::totals(12, 7),
        ..UsageRecord::served(app)
    }
}

#[test]
fn a_line_holds_the_messages_and_completion_redacted_and_capped() {
    let policy = Arc::new(AuditPolicy::new(&config(&ALL, &[])).expect("policy"));
    let body = serde_json::json!({
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "mail bob@contoso.com my key sk-abcdefghijklmnopqrstuvwxyz"}
        ]}],
        "max_tokens": 5
    });
    let pending = PendingAudit {
        policy,
        record: record("web"),
        request_body: Bytes::from(body.to_string()),
        completion: Some(format!("Call me at ann@contoso.com. {}", "x".repeat(400))),
        at: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    };
    let line = line(&pending);
    assert_eq!(line.time, "2023-11-14T22:13:20Z");
    assert_eq!(
        (line.app_id.as_str(), line.backend.as_deref()),
        ("web", Some("east"))
    );
    assert_eq!(
        (line.usage.prompt_tokens, line.usage.completion_tokens),
        (12, 7)
    );
    assert!(
        line.request.starts_with("[{\"content\":"),
        "{}",
        line.request
    );
    assert!(!line.request.contains("bob@contoso.com"));
    assert!(!line.request.contains("sk-abcdefghij"));
    assert!(
        !line.request.contains("\"max_tokens\""),
        "only the messages"
    );
    assert!(
        line.completion
            .starts_with("Call me at [REDACTED:email]. xxx")
    );
    assert!(line.completion.ends_with("bytes]"), "capped at 256 bytes");
    assert!(line.truncated);
}

#[test]
fn policy_selects_apps() {
    let mut only = config(&ALL, &[]);
    only.apps = vec!["web".into()];
    let policy = AuditPolicy::new(&only).expect("policy");
    assert!(policy.applies_to("web"));
    assert!(!policy.applies_to("batch"));
    let every = AuditPolicy::new(&config(&ALL, &[])).expect("policy");
    assert!(every.applies_to("anyone"));
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_without_waiting() {
    let policy = Arc::new(AuditPolicy::new(&config(&ALL, &[])).expect("policy"));
    let (sink, queue) = queue(2);
    let pending = || PendingAudit {
        policy: Arc::clone(&policy),
        record: record("web"),
        request_body: Bytes::from_static(b"{}"),
        completion: None,
        at: UNIX_EPOCH,
    };
    let started = std::time::Instant::now();
    for _ in 0..5 {
        sink.send(pending());
    }
    assert!(started.elapsed() < Duration::from_secs(1), "never waits");
    assert_eq!(sink.counts().snapshot(), (0, 3, 0), "2 queued, 3 dropped");
    drop(queue);
    sink.send(pending());
    assert_eq!(sink.counts().snapshot(), (0, 4, 0), "no writer: dropped");
}
