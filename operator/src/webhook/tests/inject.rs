//! The pure mutation: what is added, what is kept, when nothing happens.

use serde_json::json;

use super::*;

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
