//! Unit tests of the injection: the pure mutation and the AdmissionReview round trip.

use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::{Value, json};

use super::*;

const CA_PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

fn cfg() -> InjectConfig {
    InjectConfig {
        image: "example.invalid/spillway:1.2.3".into(),
        image_pull_policy: Some("IfNotPresent".into()),
        operator_url: "https://spillway-operator.spillway-system.svc:8443".into(),
        port: 15080,
        admin_port: 15081,
        audience: "spillway".into(),
        token_expiration_seconds: 3600,
        ca: CaSource::Pem(CA_PEM.into()),
        cpu_request: "50m".into(),
        memory_request: "64Mi".into(),
        memory_limit: "256Mi".into(),
        on_error: OnError::Allow,
    }
}

fn pod(value: Value) -> Pod {
    serde_json::from_value(value).expect("a Pod")
}

fn app_pod(labels: Value) -> Pod {
    pod(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "app", "namespace": "team-a", "labels": labels},
        "spec": {
            "initContainers": [{"name": "migrate", "image": "example.invalid/migrate:1"}],
            "containers": [
                {"name": "web", "image": "example.invalid/web:1", "ports": [{"containerPort": 8080}]},
                {"name": "worker", "image": "example.invalid/worker:1",
                 "env": [{"name": "OPENAI_BASE_URL", "value": "https://mine.example/v1"}]}
            ]
        }
    }))
}

fn injected(pod: &Pod, cfg: &InjectConfig) -> Pod {
    match inject(pod, cfg).expect("injectable") {
        Injection::Injected(pod) => *pod,
        Injection::Skipped(reason) => panic!("skipped: {reason:?}"),
    }
}

fn env_of(container: &Container, name: &str) -> Option<String> {
    container
        .env
        .iter()
        .flatten()
        .find(|e| e.name == name)
        .and_then(|e| e.value.clone())
}

fn as_json(pod: &Pod) -> Value {
    serde_json::to_value(pod).expect("json")
}

#[test]
fn labelled_pod_gets_a_native_sidecar_first_among_init_containers() {
    let out = injected(&app_pod(json!({INJECT_LABEL: "enabled"})), &cfg());
    let spec = out.spec.as_ref().expect("spec");
    let inits = spec.init_containers.as_ref().expect("init containers");
    assert_eq!(inits.len(), 2);
    assert_eq!(inits[0].name, SIDECAR_NAME);
    assert_eq!(
        inits[1].name, "migrate",
        "the app's init container stays, after the sidecar"
    );
    let sidecar = &inits[0];
    assert_eq!(sidecar.restart_policy.as_deref(), Some("Always"));
    assert_eq!(
        sidecar.image.as_deref(),
        Some("example.invalid/spillway:1.2.3")
    );
    assert_eq!(
        sidecar.args.clone().unwrap_or_default(),
        [
            "run",
            "--operator=https://spillway-operator.spillway-system.svc:8443",
            "--operator-token-file=/var/run/secrets/spillway/token",
            "--operator-ca-file=/var/run/secrets/spillway/ca.crt",
            "--listen=127.0.0.1:15080",
            "--admin-listen=0.0.0.0:15081",
        ]
    );
    let mounts = sidecar.volume_mounts.as_ref().expect("mounts");
    assert_eq!(
        (mounts[0].name.as_str(), mounts[0].mount_path.as_str()),
        (VOLUME_NAME, MOUNT_PATH)
    );
}

#[test]
fn sidecar_is_hardened_probed_and_bounded() {
    let out = as_json(&injected(&app_pod(json!({})), &cfg()));
    let sidecar = &out["spec"]["initContainers"][0];
    let security = &sidecar["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(sidecar["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(sidecar["readinessProbe"]["httpGet"]["port"], 15081);
    assert_eq!(sidecar["startupProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(sidecar["resources"]["requests"]["cpu"], "50m");
    assert_eq!(sidecar["resources"]["limits"]["memory"], "256Mi");
    let env: Vec<&str> = sidecar["env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(env, ["POD_NAME", "POD_NAMESPACE", "POD_UID"]);
}

#[test]
fn token_volume_has_the_operator_audience_and_the_ca_from_the_annotation() {
    let out = injected(&app_pod(json!({})), &cfg());
    let value = as_json(&out);
    let volume = value["spec"]["volumes"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["name"] == VOLUME_NAME))
        .expect("the token volume");
    let sources = &volume["projected"]["sources"];
    assert_eq!(sources[0]["serviceAccountToken"]["audience"], "spillway");
    assert_eq!(sources[0]["serviceAccountToken"]["expirationSeconds"], 3600);
    assert_eq!(sources[0]["serviceAccountToken"]["path"], "token");
    let ca = &sources[1]["downwardAPI"]["items"][0];
    assert_eq!(ca["path"], "ca.crt");
    assert_eq!(
        ca["fieldRef"]["fieldPath"],
        "metadata.annotations['spillway.dev/operator-ca']"
    );
    assert_eq!(
        value["spec"]["serviceAccountName"], "default",
        "a projected token needs a ServiceAccount"
    );
    let annotations = out.metadata.annotations.expect("annotations");
    assert_eq!(
        annotations.get(CA_ANNOTATION).map(String::as_str),
        Some(CA_PEM)
    );
    assert_eq!(
        annotations.get(INJECTED_ANNOTATION).map(String::as_str),
        Some("true")
    );
}

#[test]
fn ca_from_a_configmap_is_projected_without_an_annotation() {
    let cfg = InjectConfig {
        ca: CaSource::ConfigMap("spillway-ca".into()),
        ..cfg()
    };
    let out = injected(&app_pod(json!({})), &cfg);
    let value = as_json(&out);
    let sources = &value["spec"]["volumes"][0]["projected"]["sources"];
    assert_eq!(sources[1]["configMap"]["name"], "spillway-ca");
    assert_eq!(sources[1]["configMap"]["items"][0]["key"], "ca.crt");
    let annotations = out.metadata.annotations.expect("annotations");
    assert!(!annotations.contains_key(CA_ANNOTATION), "{annotations:?}");
}

#[test]
fn every_app_container_gets_the_sdk_env_but_keeps_its_own_base_url() {
    let out = injected(&app_pod(json!({INJECT_LABEL: "enabled"})), &cfg());
    let spec = out.spec.expect("spec");
    let web = &spec.containers[0];
    assert_eq!(
        env_of(web, "OPENAI_BASE_URL").as_deref(),
        Some("http://127.0.0.1:15080/v1")
    );
    assert_eq!(
        env_of(web, "AZURE_OPENAI_ENDPOINT").as_deref(),
        Some("http://127.0.0.1:15080")
    );
    let worker = &spec.containers[1];
    assert_eq!(
        env_of(worker, "OPENAI_BASE_URL").as_deref(),
        Some("https://mine.example/v1")
    );
    assert_eq!(
        worker.env.as_ref().map(Vec::len),
        Some(2),
        "no duplicate OPENAI_BASE_URL"
    );
    assert_eq!(
        env_of(worker, "AZURE_OPENAI_ENDPOINT").as_deref(),
        Some("http://127.0.0.1:15080")
    );
    let migrate = &spec.init_containers.expect("inits")[1];
    assert!(
        migrate.env.is_none(),
        "init containers get no env: {migrate:?}"
    );
}

#[test]
fn a_pod_without_the_label_is_injected_when_its_namespace_is_selected() {
    // The namespaceSelector of the webhook chose the Pod; the function injects what it is sent.
    let out = injected(&app_pod(json!({"app": "web"})), &cfg());
    assert_eq!(
        out.spec.expect("spec").init_containers.expect("inits")[0].name,
        SIDECAR_NAME
    );
}

#[test]
fn opt_out_label_on_the_pod_wins() {
    let outcome = inject(&app_pod(json!({INJECT_LABEL: "disabled"})), &cfg()).expect("ok");
    assert_eq!(outcome, Injection::Skipped(SkipReason::OptedOut));
    let patch = outcome.patch(&app_pod(json!({}))).expect("patch");
    assert!(patch.0.is_empty());
}

#[test]
fn an_injected_pod_is_never_injected_twice() {
    let once = injected(&app_pod(json!({})), &cfg());
    assert_eq!(
        inject(&once, &cfg()).expect("ok"),
        Injection::Skipped(SkipReason::AlreadyInjected)
    );
    let mut annotated = app_pod(json!({}));
    annotated.metadata.annotations =
        Some([(INJECTED_ANNOTATION.to_owned(), "true".to_owned())].into());
    assert_eq!(
        inject(&annotated, &cfg()).expect("ok"),
        Injection::Skipped(SkipReason::AlreadyInjected)
    );
    let own = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "spillway", "image": "example.invalid/spillway:0"}]}}));
    assert_eq!(
        inject(&own, &cfg()).expect("ok"),
        Injection::Skipped(SkipReason::AlreadyInjected)
    );
}

#[test]
fn clashes_are_errors_that_name_the_fix() {
    let clash = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "api", "image": "i", "ports": [{"containerPort": 15081}]}]}}));
    let error = inject(&clash, &cfg()).expect_err("port clash");
    assert_eq!(
        error,
        InjectError::PortClash {
            container: "api".into(),
            port: 15081
        }
    );
    assert!(error.to_string().contains("--inject-admin-port"), "{error}");
    let volume = pod(json!({"metadata": {"name": "p"}, "spec": {
        "containers": [{"name": "api", "image": "i"}],
        "volumes": [{"name": "spillway-token", "emptyDir": {}}]}}));
    assert_eq!(inject(&volume, &cfg()), Err(InjectError::VolumeExists));
    let no_spec = pod(json!({"metadata": {"name": "p"}}));
    assert_eq!(inject(&no_spec, &cfg()), Err(InjectError::NoSpec));
}

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

#[test]
fn the_pods_own_service_account_is_kept() {
    let mut own = app_pod(json!({}));
    if let Some(spec) = own.spec.as_mut() {
        spec.service_account_name = Some("robot".into());
    }
    let out = injected(&own, &cfg());
    assert_eq!(
        out.spec.and_then(|s| s.service_account_name).as_deref(),
        Some("robot")
    );
}
