use super::*;
use crate::simulate::faults::FaultMode;

#[test]
fn short_form_reads_every_key() {
    let b = BackendConfig::parse_short(
        "name=ptu,port=0,tpm=10000,rpm=60,latency_ms=20,jitterMs=5,tokens_per_sec=200,completion_tokens=7,api-key=k,usage_in_stream=false,azureMinStreamOptionsApiVersion=2024-10-21,background_ms=50,cacheMinTokens=128,reasoningModels=my-thinker|r1,reasoning_usage=Separate,batchMs=300,files_max_bytes=4096,uploadRateBytesPerSec=1000",
    )
    .expect("valid");
    assert_eq!(b.name, "ptu");
    assert_eq!(b.listen, "127.0.0.1:0".parse::<SocketAddr>().expect("addr"));
    assert_eq!((b.tpm, b.rpm), (Some(10_000), Some(60)));
    assert_eq!((b.latency_ms, b.jitter_ms), (20, 5));
    assert_eq!(b.tokens_per_second, 200);
    assert_eq!(b.completion_tokens, 7);
    assert_eq!(b.api_key.as_deref(), Some("k"));
    assert!(!b.usage_in_stream);
    assert_eq!(b.azure_min_stream_options_api_version, "2024-10-21");
    assert_eq!((b.background_ms, b.cache_min_tokens), (50, 128));
    assert_eq!(b.reasoning_models, ["my-thinker", "r1"]);
    assert_eq!(b.reasoning_usage, ReasoningUsage::Separate);
    assert_eq!((b.batch_ms, b.files_max_bytes), (300, 4096));
    assert_eq!(b.upload_rate_bytes_per_sec, Some(1000));
    b.validate().expect("validates");

    let hosted = BackendConfig::parse_short("name=x,host=127.0.0.2,port=8081").expect("valid");
    assert_eq!(hosted.listen.to_string(), "127.0.0.2:8081");
}

#[test]
fn short_form_errors_are_specific() {
    for (spec, expected) in [
        ("port=1", "no name"),
        ("name=a,color=red", "unknown key `color`"),
        ("name=a,tpm=lots", "tpm: `lots`"),
        ("name=a,oops", "not key=value"),
        (
            "name=a,reasoningUsage=hidden",
            "expected `included` or `separate`",
        ),
    ] {
        let err = BackendConfig::parse_short(spec).expect_err(spec);
        assert!(err.contains(expected), "{spec}: {err}");
    }
}

#[test]
fn yaml_list_and_mapping_forms_with_defaults() {
    let yaml = r#"
- name: ptu
  tpm: 1000
  latencyMs: 5
  faults:
    - mode: status
      status: 503
      count: 2
- name: paygo
  listen: 127.0.0.1:0
  apiKey: secret
  backgroundMs: 25
  cacheMinTokens: 256
  reasoningModels: [my-thinker]
  reasoningUsage: separate
  batchMs: 100
  filesMaxBytes: 1024
  uploadRateBytesPerSec: 64000
"#;
    let config = SimConfig::from_yaml(yaml).expect("valid");
    assert_eq!(config.backends.len(), 2);
    let ptu = &config.backends[0];
    assert_eq!((ptu.tpm, ptu.latency_ms), (Some(1000), 5));
    assert_eq!(ptu.completion_tokens, DEFAULT_COMPLETION_TOKENS);
    assert!(ptu.usage_in_stream);
    assert_eq!(
        ptu.azure_min_stream_options_api_version,
        DEFAULT_MIN_STREAM_OPTIONS_API_VERSION
    );
    assert_eq!(ptu.faults[0].mode, FaultMode::Status);
    assert_eq!(ptu.background_ms, DEFAULT_BACKGROUND_MS);
    assert_eq!(ptu.cache_min_tokens, DEFAULT_CACHE_MIN_TOKENS);
    assert_eq!(config.backends[1].api_key.as_deref(), Some("secret"));
    assert_eq!(config.backends[1].background_ms, 25);
    assert_eq!(config.backends[1].cache_min_tokens, 256);
    assert!(ptu.reasoning_models.is_empty());
    assert_eq!(ptu.reasoning_usage, ReasoningUsage::Included);
    assert_eq!(config.backends[1].reasoning_models, ["my-thinker"]);
    assert_eq!(config.backends[1].reasoning_usage, ReasoningUsage::Separate);
    assert_eq!(ptu.batch_ms, DEFAULT_BATCH_MS);
    assert_eq!(ptu.files_max_bytes, DEFAULT_FILES_MAX_BYTES);
    assert_eq!(ptu.upload_rate_bytes_per_sec, None);
    let paygo = &config.backends[1];
    assert_eq!((paygo.batch_ms, paygo.files_max_bytes), (100, 1024));
    assert_eq!(paygo.upload_rate_bytes_per_sec, Some(64_000));

    let mapping = SimConfig::from_yaml("backends:\n  - name: a\n").expect("valid");
    assert_eq!(mapping.backends[0], BackendConfig::new("a"));
}

#[test]
fn yaml_errors_name_backend_and_field() {
    let cases = [
        (
            "- name: a\n  tmp: 5\n",
            "backends[0] (a): unknown field `tmp`",
        ),
        ("- name: a\n- name: a\n", "appears twice"),
        ("- name: 'a b'\n", "name `a b`"),
        ("- name: a\n  tpm: 0\n", "tpm and rpm"),
        ("- name: a\n  completionTokens: 0\n", "completionTokens"),
        ("- name: a\n  backgroundMs: 3600001\n", "backgroundMs"),
        ("- name: a\n  batchMs: 3600001\n", "batchMs"),
        (
            "- name: a\n  uploadRateBytesPerSec: 0\n",
            "uploadRateBytesPerSec",
        ),
        ("- name: a\n  reasoningModels: ['']\n", "reasoningModels[0]"),
        (
            "- name: a\n  reasoningUsage: hidden\n",
            "unknown variant `hidden`",
        ),
        (
            "- name: a\n  azureMinStreamOptionsApiVersion: latest\n",
            "azureMinStreamOptionsApiVersion",
        ),
        (
            "- name: a\n  faults: [{mode: slowFirstByte}]\n",
            "faults[0]: slowFirstByte needs `delayMs`",
        ),
        (
            "- {name: a, listen: '127.0.0.1:9'}\n- {name: b, listen: '127.0.0.1:9'}\n",
            "used twice",
        ),
        ("servers: []\n", "unknown top-level key"),
        ("[]\n", "no backends"),
        ("- name: [\n", "not valid YAML"),
    ];
    for (yaml, expected) in cases {
        let err = SimConfig::from_yaml(yaml).expect_err(yaml);
        assert!(err.contains(expected), "{yaml:?}: {err}");
    }
}
