//! AdmissionReview in and out, bad input, and the `--inject-*` flags.

use serde_json::{Value, json};

use super::*;

fn admission(object: Value, operation: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "7d3c-uid", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "team-a", "operation": operation,
            "userInfo": {"username": "admin"}, "object": object, "dryRun": false
        }
    }))
    .expect("json")
}

fn answer(body: &[u8], cfg: &InjectConfig) -> Value {
    serde_json::to_value(review(body, cfg)).expect("json")
}

#[test]
fn review_answers_with_a_json_patch_that_injects_the_pod() {
    let original = as_json(&app_pod(json!({INJECT_LABEL: "enabled"})));
    let out = answer(&admission(original.clone(), "CREATE"), &cfg());
    assert_eq!(out["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(out["kind"], "AdmissionReview");
    let response = &out["response"];
    assert_eq!(response["uid"], "7d3c-uid");
    assert_eq!(response["allowed"], true);
    assert_eq!(response["patchType"], "JSONPatch");
    let bytes: Vec<u8> = serde_json::from_value(response["patch"].clone()).expect("patch bytes");
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).expect("an RFC 6902 patch");
    let mut patched = original;
    json_patch::patch(&mut patched, &patch).expect("the patch applies to the object sent");
    assert_eq!(patched["spec"]["initContainers"][0]["name"], SIDECAR_NAME);
    assert_eq!(patched["spec"]["initContainers"][1]["name"], "migrate");
    assert_eq!(
        patched["spec"]["containers"][0]["env"][0]["name"],
        "OPENAI_BASE_URL"
    );
}

#[test]
fn review_leaves_skipped_pods_and_other_operations_alone() {
    for (labels, operation) in [
        (json!({INJECT_LABEL: "disabled"}), "CREATE"),
        (json!({}), "UPDATE"),
    ] {
        let out = answer(&admission(as_json(&app_pod(labels)), operation), &cfg());
        assert_eq!(out["response"]["allowed"], true, "{out}");
        assert!(out["response"].get("patch").is_none(), "{out}");
    }
}

#[test]
fn bad_input_is_allowed_with_a_warning_or_denied_per_config() {
    let not_a_pod = admission(
        json!({"metadata": {"name": "p"}, "spec": {"containers": "nope"}}),
        "CREATE",
    );
    let out = answer(&not_a_pod, &cfg());
    assert_eq!(out["response"]["uid"], "7d3c-uid");
    assert_eq!(out["response"]["allowed"], true);
    let warning = out["response"]["warnings"][0].as_str().unwrap_or_default();
    assert!(warning.contains("not a valid Pod"), "{out}");

    let deny = InjectConfig {
        on_error: OnError::Deny,
        ..cfg()
    };
    let out = answer(&not_a_pod, &deny);
    assert_eq!(out["response"]["allowed"], false);
    let message = out["response"]["status"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("spillway sidecar injection failed"),
        "{out}"
    );

    let garbage = br#"{"request": {"uid": "u-1", "kind": 5}}"#;
    let out = answer(garbage, &deny);
    assert_eq!(
        (
            out["response"]["uid"].as_str(),
            out["response"]["allowed"].as_bool()
        ),
        (Some("u-1"), Some(false))
    );
    let out = answer(b"\xff not json", &cfg());
    assert_eq!(
        out["response"]["allowed"], false,
        "nothing to allow without a uid: {out}"
    );
}

#[test]
fn flags_turn_injection_on_and_check_it() {
    use clap::Parser as _;
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        inject: InjectArgs,
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, CA_PEM).expect("write");
    let parse = |args: &[&str]| {
        Cli::try_parse_from(["t"].iter().chain(args))
            .expect("parses")
            .inject
    };
    assert!(
        parse(&[])
            .config("spillway", Some(&ca))
            .expect("off")
            .is_none()
    );
    let on = parse(&[
        "--inject-image=i:1",
        "--inject-operator-url=https://op:8443",
    ])
    .config("aud", Some(&ca))
    .expect("valid")
    .expect("on");
    assert_eq!(
        (on.audience.as_str(), on.port, on.ca),
        ("aud", 15080, CaSource::Pem(CA_PEM.into()))
    );
    let error = parse(&["--inject-image=i:1"])
        .config("aud", Some(&ca))
        .expect_err("no URL");
    assert!(
        format!("{error:#}").contains("--inject-operator-url"),
        "{error:#}"
    );
    let error = parse(&["--inject-image=i:1", "--inject-operator-url=https://op"])
        .config("aud", None)
        .expect_err("no CA");
    assert!(
        format!("{error:#}").contains("--inject-ca-file"),
        "{error:#}"
    );
    let error =
        parse(&["--inject-image=i", "--inject-operator-url=http://op"]).config("a", Some(&ca));
    assert!(error.is_err(), "plain http is refused");
    assert!(Cli::try_parse_from(["t", "--inject-on-error=maybe"]).is_err());
}
