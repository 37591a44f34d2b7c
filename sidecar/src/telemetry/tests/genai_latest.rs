//! The client-side GenAI metrics under `OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental`
//! against the default names, read back from `/metrics`.

use super::super::genai_latest::{TokenModality, UsageCounter, usage_points};
use super::*;

/// A chat call with every token subset: 1000 in (640 cached, 30 cache-written, 100 audio, 50
/// image), 300 out (200 reasoning, 20 audio).
fn rich() -> UsageRecord {
    UsageRecord {
        usage: Usage {
            cached_tokens: 640,
            cache_write_tokens: 30,
            audio_input_tokens: 100,
            image_input_tokens: 50,
            reasoning_tokens: 200,
            audio_output_tokens: 20,
            ..Usage::totals(1000, 300)
        },
        ..served("app-a", "ptu", 0, 0)
    }
}

/// The records both tests send: the rich call, an estimated text call on paygo, a call the
/// backend failed with 500 (no usage), an embeddings call and a quota refusal.
fn records() -> Vec<UsageRecord> {
    let mut estimated = served("app-b", "paygo", 40, 10);
    estimated.estimated = true;
    let failed = UsageRecord {
        status: 500,
        error_type: Some(ErrorType::BackendStatus(500)),
        response_model: None,
        upstream: vec![attempt("ptu", Some(500))],
        ..served("app-a", "ptu", 0, 0)
    };
    let embeddings = UsageRecord {
        operation: Some(crate::usage::Operation::Embeddings),
        ..served("app-a", "ptu", 64, 0)
    };
    let refused = refused(
        "app-a",
        429,
        "quota_exceeded",
        GatewayErrorKind::QuotaExhausted,
    );
    vec![rich(), estimated, failed, embeddings, refused]
}

fn prometheus(genai: GenAiConventions) -> String {
    let t = telemetry_with(&TelemetrySettings {
        genai,
        ..TelemetrySettings::default()
    });
    for record in records() {
        t.record(&record);
    }
    t.prometheus()
}

/// The samples named `name` whose labels include `labels`.
fn matching(text: &str, name: &str, labels: &[(&str, &str)]) -> Vec<BTreeMap<String, String>> {
    samples(text)
        .into_iter()
        .filter(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, l, _)| l)
        .collect()
}

const INPUT: &str = "gen_ai_client_inference_usage_input_tokens_total";
const OUTPUT: &str = "gen_ai_client_inference_usage_output_tokens_total";
const CACHE_READ: &str = "gen_ai_client_inference_usage_cache_read_input_tokens_total";
const CACHE_WRITE: &str = "gen_ai_client_inference_usage_cache_write_input_tokens_total";
const REASONING: &str = "gen_ai_client_inference_usage_reasoning_output_tokens_total";

#[test]
fn usage_is_split_by_modality_and_a_call_without_usage_counts_zero_of_unknown() {
    use TokenModality::{Audio, Image, Text, Unknown};
    use UsageCounter::{CacheRead, CacheWrite, Input, Output, Reasoning};
    assert_eq!(
        usage_points(Some(&rich().usage)),
        vec![
            (Input, Text, 850),
            (Input, Audio, 100),
            (Input, Image, 50),
            (Output, Text, 280),
            (Output, Audio, 20),
            (CacheRead, Text, 640),
            (CacheWrite, Text, 30),
            (Reasoning, Text, 200),
        ]
    );
    assert_eq!(
        usage_points(Some(&Usage::totals(0, 0))),
        vec![
            (Input, Text, 0),
            (Output, Text, 0),
            (CacheRead, Text, 0),
            (CacheWrite, Text, 0),
            (Reasoning, Text, 0),
        ],
        "usage of nothing is still usage: text, and no audio or image point"
    );
    assert_eq!(
        usage_points(None),
        [Input, Output, CacheRead, CacheWrite, Reasoning].map(|c| (c, Unknown, 0)),
    );
    // Subsets larger than their totals are cut to them.
    let odd = Usage {
        audio_input_tokens: 30,
        image_input_tokens: 30,
        cached_tokens: 99,
        reasoning_tokens: 99,
        audio_output_tokens: 99,
        ..Usage::totals(40, 5)
    };
    assert_eq!(
        usage_points(Some(&odd)),
        vec![
            (Input, Text, 0),
            (Input, Audio, 30),
            (Input, Image, 10),
            (Output, Text, 0),
            (Output, Audio, 5),
            (CacheRead, Text, 40),
            (CacheWrite, Text, 0),
            (Reasoning, Text, 5),
        ]
    );
}

#[test]
fn the_opt_in_emits_the_inference_counters_and_histograms_with_spillways_attributes() {
    let text = prometheus(GenAiConventions::LatestExperimental);
    let ptu = [
        ("spillway_app_id", "app-a"),
        ("spillway_pool", "chat"),
        ("spillway_backend", "ptu"),
        ("spillway_token_estimated", "false"),
        ("gen_ai_operation_name", "chat"),
        ("gen_ai_provider_name", "azure.ai.openai"),
        ("server_address", "ptu.openai.azure.com"),
        ("server_port", "443"),
        ("gen_ai_request_model", "gpt-4o"),
        ("gen_ai_response_model", "gpt-4o-2024-08-06"),
    ];
    let at = |modality: &'static str| [&ptu[..], &[("gen_ai_token_modality", modality)]].concat();
    let counted = |name: &str, modality: &'static str| value(&text, name, &at(modality));
    assert_eq!(
        [INPUT, OUTPUT].map(|n| ["text", "audio", "image"].map(|m| counted(n, m))),
        [[850.0, 100.0, 50.0], [280.0, 20.0, 0.0]]
    );
    assert_eq!(
        [CACHE_READ, CACHE_WRITE, REASONING].map(|n| counted(n, "text")),
        [640.0, 30.0, 200.0]
    );
    // The estimated paygo call: text, and the subsets it did not have as 0.
    let paygo = [
        ("spillway_app_id", "app-b"),
        ("spillway_backend", "paygo"),
        ("spillway_token_estimated", "true"),
        ("gen_ai_provider_name", "openai"),
        ("gen_ai_token_modality", "text"),
    ];
    assert_eq!(
        [INPUT, OUTPUT, CACHE_READ, REASONING].map(|n| value(&text, n, &paygo)),
        [40.0, 10.0, 0.0, 0.0]
    );
    for name in [INPUT, OUTPUT, CACHE_READ, CACHE_WRITE, REASONING] {
        assert_eq!(
            matching(&text, name, &[("spillway_backend", "paygo")]).len(),
            1,
            "{name}: one text point, none for audio or image"
        );
        // The failed call: a 0 of modality unknown, as the conventions ask.
        let unknown = [
            ("spillway_backend", "ptu"),
            ("gen_ai_token_modality", "unknown"),
        ];
        assert_eq!(matching(&text, name, &unknown).len(), 1, "{name}");
        assert_eq!(value(&text, name, &unknown), 0.0, "{name}");
        for labels in matching(&text, name, &[]) {
            assert!(!labels.contains_key("error_type"), "{name}: {labels:?}");
            assert!(
                !labels.contains_key("gen_ai_token_type"),
                "{name}: {labels:?}"
            );
            assert_ne!(labels["gen_ai_operation_name"], "embeddings", "{name}");
        }
    }
    assert_histograms_of_the_latest_conventions(&text);
}

/// Per-call tokens and durations: every inference call that reached a backend (the failed
/// one with 0 tokens and its `error.type`), embeddings apart.
fn assert_histograms_of_the_latest_conventions(text: &str) {
    let count = |name: &str, labels: &[(&str, &str)]| value(text, &format!("{name}_count"), labels);
    let sum = |name: &str| value(text, &format!("{name}_sum"), &[]);
    let input = "gen_ai_client_inference_operation_input_tokens";
    let output = "gen_ai_client_inference_operation_output_tokens";
    let duration = "gen_ai_client_inference_duration_seconds";
    assert_eq!([input, output, duration].map(|n| count(n, &[])), [3.0; 3]);
    assert_eq!((sum(input), sum(output)), (1040.0, 310.0));
    for name in [input, output, duration] {
        assert_eq!(count(name, &[("error_type", "500")]), 1.0, "{name}");
        assert!(
            matching(text, &format!("{name}_count"), &[])
                .iter()
                .all(|l| !l.contains_key("gen_ai_token_modality")),
            "{name} is not broken down by modality"
        );
    }
    let embeddings = [("gen_ai_operation_name", "embeddings")];
    assert_eq!(
        count("gen_ai_client_embeddings_duration_seconds", &embeddings),
        1.0
    );
    let embedded = "gen_ai_client_embeddings_operation_input_tokens";
    assert_eq!((count(embedded, &embeddings), sum(embedded)), (1.0, 64.0));
    for (family, kind) in [
        (INPUT, "counter"),
        (CACHE_READ, "counter"),
        (input, "histogram"),
        (duration, "histogram"),
        (embedded, "histogram"),
    ] {
        assert!(
            text.contains(&format!("\n# TYPE {family} {kind}\n")),
            "{family} {kind}:\n{text}"
        );
    }
}

#[test]
fn only_the_client_metrics_change_names_and_the_default_keeps_the_old_ones() {
    let old = prometheus(GenAiConventions::Legacy);
    let new = prometheus(GenAiConventions::LatestExperimental);
    let families = |text: &str, prefix: &str| {
        text.lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter(|l| l.starts_with(prefix))
            .map(|l| l.split(' ').next().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        families(&old, "gen_ai_client_"),
        [
            "gen_ai_client_operation_duration_seconds",
            "gen_ai_client_token_usage"
        ]
    );
    assert_eq!(
        families(&new, "gen_ai_client_"),
        [
            "gen_ai_client_embeddings_duration_seconds",
            "gen_ai_client_embeddings_operation_input_tokens",
            "gen_ai_client_inference_duration_seconds",
            "gen_ai_client_inference_operation_input_tokens",
            "gen_ai_client_inference_operation_output_tokens",
            CACHE_READ,
            CACHE_WRITE,
            INPUT,
            OUTPUT,
            REASONING,
        ]
    );
    assert_eq!(
        value(
            &old,
            "gen_ai_client_token_usage_sum",
            &[("gen_ai_token_type", "input")]
        ),
        1000.0 + 40.0 + 64.0
    );
    // The server-side GenAI metrics and Spillway's own are the same either way.
    for prefix in ["gen_ai_server_", "spillway_tokens", "spillway_requests"] {
        let lines = |text: &str| {
            let mut lines: Vec<_> = text.lines().filter(|l| l.starts_with(prefix)).collect();
            lines.sort_unstable();
            lines.join("\n")
        };
        assert!(!lines(&old).is_empty(), "{prefix}");
        assert_eq!(lines(&old), lines(&new), "{prefix}");
    }
    assert_eq!(
        value(
            &new,
            "spillway_tokens_total",
            &[
                ("spillway_token_type", "reasoning_output"),
                ("gen_ai_token_type", "output")
            ]
        ),
        200.0
    );
}
