//! The status mapping for every kind of problem, without a cluster.

use spillway_crds::v1alpha1::{AiBackendPoolSpec, Backend, TokenQuotaStatus};

use super::*;
use crate::status::SyncCounts;

const T0: &str = "2025-01-01T00:00:00Z";
const T1: &str = "2025-01-01T00:05:00Z";

fn problem(reason: ProblemReason, field: &str, message: &str) -> Finding {
    Finding::from(&Problem {
        kind: "AIBackendPool",
        namespace: "team".into(),
        name: "chat".into(),
        field: field.into(),
        reason,
        message: message.into(),
    })
}

fn find<'c>(conditions: &'c [Condition], type_: &str) -> &'c Condition {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .expect("condition present")
}

/// Generation 3 served as it is.
const CURRENT: &Serving = &Serving {
    generation: Some(3),
    last_good: None,
    refuses_calls: false,
    gateway: None,
};

/// Nothing served.
const NOTHING: &Serving = &Serving {
    generation: None,
    last_good: None,
    refuses_calls: false,
    gateway: None,
};

/// Generation 3, served as it is when nothing is found against it, else not at all.
fn observed<'a>(findings: &'a [Finding], now: &'a str) -> Observed<'a> {
    Observed {
        generation: Some(3),
        findings,
        serving: if findings.is_empty() {
            CURRENT
        } else {
            NOTHING
        },
        version: 7,
        now,
    }
}

fn get<'a>(conditions: &'a [Condition], type_: &str) -> &'a Condition {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} in {conditions:?}"))
}

fn summary(conditions: &[Condition]) -> Vec<(String, String, String)> {
    conditions
        .iter()
        .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone()))
        .collect()
}

fn triple(type_: &str, status: &str, reason: &str) -> (String, String, String) {
    (type_.into(), status.into(), reason.into())
}

#[test]
fn a_served_object_is_accepted_resolved_and_ready() {
    let conditions = conditions(Kind::Pool, &observed(&[], T0), &[]);
    assert_eq!(
        summary(&conditions),
        vec![
            triple("Accepted", "True", "Accepted"),
            triple("ResolvedRefs", "True", "ResolvedRefs"),
            triple("Ready", "True", "Published"),
        ]
    );
    assert_eq!(
        get(&conditions, "Ready").message,
        "served in configuration version 7"
    );
    assert!(conditions.iter().all(|c| c.observed_generation == Some(3)));
    assert!(conditions.iter().all(|c| c.last_transition_time == T0));
}

#[test]
fn an_invalid_spec_is_not_accepted() {
    let findings = [problem(
        ProblemReason::InvalidSpec,
        "spec.backends[1].weight",
        "weight must be at least 1",
    )];
    let conditions = conditions(Kind::Pool, &observed(&findings, T0), &[]);
    assert_eq!(
        summary(&conditions),
        vec![
            triple("Accepted", "False", "InvalidSpec"),
            triple("ResolvedRefs", "True", "ResolvedRefs"),
            triple("Ready", "False", "InvalidSpec"),
        ]
    );
    assert_eq!(
        get(&conditions, "Accepted").message,
        "spec.backends[1].weight: weight must be at least 1"
    );
    assert_eq!(
        get(&conditions, "Ready").message,
        "not served to sidecars: spec.backends[1].weight: weight must be at least 1"
    );
}

#[test]
fn a_model_conflict_is_not_accepted() {
    let findings = [problem(
        ProblemReason::ModelConflict,
        "spec.models[0]",
        "model `gpt-4o` is already served by AIBackendPool team/old; remove it from one of the pools",
    )];
    let conditions = conditions(Kind::Pool, &observed(&findings, T0), &[]);
    assert_eq!(get(&conditions, "Accepted").reason, "ModelConflict");
    assert!(get(&conditions, "Accepted").message.contains("team/old"));
    assert_eq!(get(&conditions, "ResolvedRefs").status, "True");
    assert_eq!(get(&conditions, "Ready").reason, "ModelConflict");
}

#[test]
fn a_missing_secret_leaves_refs_unresolved_but_the_spec_accepted() {
    let findings = [problem(
        ProblemReason::SecretNotResolved,
        "spec.backends[0].apiKey",
        "Secret team/keys not found; create it or fix the reference",
    )];
    let conditions = conditions(Kind::Pool, &observed(&findings, T0), &[]);
    assert_eq!(
        summary(&conditions),
        vec![
            triple("Accepted", "True", "Accepted"),
            triple("ResolvedRefs", "False", "SecretNotResolved"),
            triple("Ready", "False", "SecretNotResolved"),
        ]
    );
    assert_eq!(
        get(&conditions, "ResolvedRefs").message,
        "spec.backends[0].apiKey: Secret team/keys not found; create it or fix the reference"
    );
}

#[test]
fn spec_and_reference_problems_are_both_reported() {
    let findings = [
        problem(
            ProblemReason::SecretNotResolved,
            "spec.backends[0].apiKey",
            "missing",
        ),
        problem(
            ProblemReason::InvalidSpec,
            "spec.models",
            "at least one model",
        ),
        problem(
            ProblemReason::InvalidSpec,
            "spec.backends[1].url",
            "not a URL",
        ),
    ];
    let conditions = conditions(Kind::Pool, &observed(&findings, T0), &[]);
    assert_eq!(
        get(&conditions, "Accepted").message,
        "spec.models: at least one model; spec.backends[1].url: not a URL"
    );
    assert_eq!(
        get(&conditions, "ResolvedRefs").message,
        "spec.backends[0].apiKey: missing"
    );
    let ready = get(&conditions, "Ready");
    assert_eq!(ready.reason, "InvalidSpec", "spec problems first");
    assert!(
        ready.message.contains("spec.backends[0].apiKey: missing"),
        "{}",
        ready.message
    );
}

#[test]
fn a_second_gateway_is_not_accepted() {
    let findings = [Finding::gateway_superseded("team", "main")];
    let conditions = conditions(Kind::Gateway, &observed(&findings, T0), &[]);
    assert_eq!(get(&conditions, "Accepted").reason, "GatewayConflict");
    assert!(get(&conditions, "Accepted").message.contains("team/main"));
    assert_eq!(get(&conditions, "Ready").status, "False");
}

#[test]
fn quotas_have_no_resolved_refs_condition() {
    let findings = [problem(ProblemReason::InvalidSpec, "spec", "set a limit")];
    let conditions = conditions(Kind::Quota, &observed(&findings, T0), &[]);
    assert_eq!(
        summary(&conditions),
        vec![
            triple("Accepted", "False", "InvalidSpec"),
            triple("Ready", "False", "InvalidSpec"),
        ]
    );
}

#[test]
fn transition_times_move_only_with_the_status() {
    let first = conditions(Kind::Pool, &observed(&[], T0), &[]);
    let findings = [problem(
        ProblemReason::SecretNotResolved,
        "spec.backends[0].apiKey",
        "gone",
    )];
    let second = conditions(Kind::Pool, &observed(&findings, T1), &first);
    assert_eq!(get(&second, "Accepted").last_transition_time, T0);
    assert_eq!(get(&second, "ResolvedRefs").last_transition_time, T1);
    assert_eq!(get(&second, "Ready").last_transition_time, T1);
    let third = conditions(
        Kind::Pool,
        &observed(&findings, "2025-01-02T00:00:00Z"),
        &second,
    );
    assert_eq!(third, second, "nothing changed, nothing to write");
}

#[test]
fn long_messages_are_bounded() {
    let findings: Vec<Finding> = (0..200)
        .map(|i| {
            problem(
                ProblemReason::InvalidSpec,
                &format!("spec.backends[{i}].url"),
                "not a URL",
            )
        })
        .collect();
    let conditions = conditions(Kind::Pool, &observed(&findings, T0), &[]);
    let message = &get(&conditions, "Accepted").message;
    assert!(message.len() < MAX_MESSAGE + 64, "{}", message.len());
    assert!(message.ends_with("(more problems; fix these first)"));
}

#[test]
fn pool_status_fills_the_printer_columns() {
    let spec = AiBackendPoolSpec {
        models: vec!["gpt-4o".into(), "gpt-4o-mini".into()],
        backends: vec![Backend::default(), Backend::default()],
        ..AiBackendPoolSpec::default()
    };
    let status = pool_status(
        &spec,
        &observed(&[], T0),
        SyncCounts {
            synced: 1,
            total: 2,
        },
        (Vec::new(), Some(1)),
        None,
    );
    assert_eq!(status.models.as_deref(), Some("gpt-4o,gpt-4o-mini"));
    assert_eq!(status.open_breakers, Some(1));
    assert_eq!(status.backends, Some(2));
    assert_eq!(status.sidecars.as_deref(), Some("1/2"));
    assert_eq!(status.observed_generation, Some(3));
    let again = pool_status(
        &spec,
        &observed(&[], T1),
        SyncCounts {
            synced: 1,
            total: 2,
        },
        (Vec::new(), Some(1)),
        Some(&status),
    );
    assert_eq!(again, status);
}

#[test]
fn quota_status_carries_the_live_tokens() {
    let previous = TokenQuotaStatus {
        tokens_used: Some(10),
        tokens_remaining: Some(90),
        ..TokenQuotaStatus::default()
    };
    let tokens = live::QuotaTokens {
        used: Some(30),
        remaining: Some(70),
        note: "sum".into(),
    };
    let status = quota_status(&observed(&[], T0), tokens, Vec::new(), Some(&previous));
    assert_eq!(
        (status.tokens_used, status.tokens_remaining),
        (Some(30), Some(70))
    );
    assert_eq!(status.tokens_note.as_deref(), Some("sum"));
    assert_eq!(get(&status.conditions, "Ready").status, "True");
}

#[test]
fn events_mark_ready_transitions_only() {
    let ready_v7 = conditions(Kind::Pool, &observed(&[], T0), &[]);
    let first = transition(&[], &ready_v7).expect("first status");
    assert_eq!((first.normal, first.reason.as_str()), (true, "Published"));

    let ready_v8 = conditions(
        Kind::Pool,
        &Observed {
            version: 8,
            ..observed(&[], T1)
        },
        &ready_v7,
    );
    assert_eq!(
        transition(&ready_v7, &ready_v8),
        None,
        "a new version is not an event"
    );

    let missing = [problem(
        ProblemReason::SecretNotResolved,
        "spec.backends[0].apiKey",
        "Secret team/keys not found",
    )];
    let broken = conditions(Kind::Pool, &observed(&missing, T1), &ready_v8);
    let warning = transition(&ready_v8, &broken).expect("flip");
    assert!(!warning.normal);
    assert_eq!(warning.reason, "SecretNotResolved");
    assert!(warning.note.contains("Secret team/keys not found"));
    assert_eq!(transition(&broken, &broken), None);

    let other = [problem(
        ProblemReason::InvalidSpec,
        "spec.models",
        "at least one model",
    )];
    let broken_otherwise = conditions(Kind::Pool, &observed(&other, T1), &broken);
    let again = transition(&broken, &broken_otherwise).expect("a different problem");
    assert_eq!(again.reason, "InvalidSpec");
}

#[test]
fn a_refused_generation_says_which_one_keeps_serving_and_keeps_it_for_restarts() {
    let findings = [problem(
        ProblemReason::InvalidSpec,
        "spec.backends[0].url",
        "must start with https://",
    )];
    let serving = Serving {
        generation: Some(2),
        last_good: Some((Some(2), r#"{"models":["gpt-4o"]}"#.into())),
        ..Serving::default()
    };
    let refused = Observed {
        serving: &serving,
        ..observed(&findings, T0)
    };
    let spec = AiBackendPoolSpec::default();
    let status = pool_status(&spec, &refused, SyncCounts::default(), (vec![], None), None);
    let ready = find(&status.conditions, "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "InvalidSpec")
    );
    assert_eq!(
        ready.message,
        "generation 3 is refused: spec.backends[0].url: must start with https://; generation \
         2, the last good one, keeps serving (configuration version 7)"
    );
    assert_eq!(status.observed_generation, Some(3));
    assert_eq!(status.served.served_generation, Some(2));
    assert_eq!(status.served.last_good_generation, Some(2));
    assert_eq!(
        status.served.last_good_spec.as_deref(),
        Some(r#"{"models":["gpt-4o"]}"#)
    );

    // Nothing known in this process: what status recorded is kept, never dropped.
    let unknown = Observed {
        serving: NOTHING,
        ..observed(&findings, T0)
    };
    let kept = pool_status(
        &spec,
        &unknown,
        SyncCounts::default(),
        (vec![], None),
        Some(&status),
    );
    assert_eq!(kept.served.served_generation, None);
    assert_eq!(kept.served.last_good_generation, Some(2));
    assert_eq!(kept.served.last_good_spec, status.served.last_good_spec);
}

#[test]
fn a_gateway_that_serves_nothing_says_calls_are_refused() {
    let findings = [problem(
        ProblemReason::SecretNotResolved,
        "spec.identity.apiKeys[0].key",
        "Secret team/keys not found",
    )];
    let refusing = Serving {
        refuses_calls: true,
        ..Serving::default()
    };
    let nothing = Observed {
        serving: &refusing,
        ..observed(&findings, T0)
    };
    let status = gateway_status(&nothing, None);
    let ready = find(&status.conditions, "Ready");
    assert_eq!(ready.reason, "SecretNotResolved");
    assert!(
        ready
            .message
            .ends_with("the sidecars refuse every call (503) until this is fixed"),
        "{}",
        ready.message
    );
    // A Secret gone while the same generation keeps serving from the values read before.
    let same = Serving {
        generation: Some(3),
        ..Serving::default()
    };
    let stale = Observed {
        serving: &same,
        ..observed(&findings, T0)
    };
    let status = gateway_status(&stale, None);
    let ready = find(&status.conditions, "Ready");
    assert!(
        ready
            .message
            .starts_with("generation 3 keeps serving with the values last read from its Secrets"),
        "{}",
        ready.message
    );
    let refs = find(&status.conditions, "ResolvedRefs");
    assert_eq!(refs.status, "False");
    assert_eq!(status.served.served_generation, Some(3));
}
