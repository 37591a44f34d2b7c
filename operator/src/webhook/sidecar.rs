//! The objects the injection adds to a Pod: the native sidecar container, its projected
//! volume, and the SDK env vars for app containers.
//!
//! Input: an [`InjectConfig`]. Output: `k8s-openapi` values, built the same way for every Pod.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapProjection, Container, ContainerPort, DownwardAPIProjection,
    DownwardAPIVolumeFile, EnvVar, EnvVarSource, HTTPGetAction, KeyToPath, ObjectFieldSelector,
    Probe, ProjectedVolumeSource, ResourceRequirements, SeccompProfile, SecurityContext,
    ServiceAccountTokenProjection, Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{CA_ANNOTATION, CaSource, InjectConfig, MOUNT_PATH, SIDECAR_NAME, VOLUME_NAME};

/// The env var names pointing SDKs at the sidecar, with their values.
pub(super) fn sdk_env(cfg: &InjectConfig) -> [(&'static str, String); 2] {
    [
        (
            "OPENAI_BASE_URL",
            format!("http://127.0.0.1:{}/v1", cfg.port),
        ),
        (
            "AZURE_OPENAI_ENDPOINT",
            format!("http://127.0.0.1:{}", cfg.port),
        ),
    ]
}

/// The user and group the sidecar runs as (the image's non-root user).
const SIDECAR_UID: i64 = 65532;
/// Token file inside [`MOUNT_PATH`].
const TOKEN_FILE: &str = "token";
/// CA file inside [`MOUNT_PATH`].
const CA_FILE: &str = "ca.crt";

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_owned(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn http_probe(path: &str, port: u16, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::Int(i32::from(port)),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(2),
        ..Probe::default()
    }
}

fn resources(cfg: &InjectConfig) -> ResourceRequirements {
    let quantity = |q: &str| Quantity(q.to_owned());
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), quantity(&cfg.cpu_request)),
            ("memory".to_owned(), quantity(&cfg.memory_request)),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_owned(),
            quantity(&cfg.memory_limit),
        )])),
        ..ResourceRequirements::default()
    }
}

fn security_context() -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(SIDECAR_UID),
        run_as_group: Some(SIDECAR_UID),
        read_only_root_filesystem: Some(true),
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            ..Capabilities::default()
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            ..SeccompProfile::default()
        }),
        ..SecurityContext::default()
    }
}

fn args(cfg: &InjectConfig) -> Vec<String> {
    [
        "run".to_owned(),
        format!("--operator={}", cfg.operator_url),
        format!("--operator-token-file={MOUNT_PATH}/{TOKEN_FILE}"),
        format!("--operator-ca-file={MOUNT_PATH}/{CA_FILE}"),
        format!("--listen=127.0.0.1:{}", cfg.port),
        format!("--admin-listen=0.0.0.0:{}", cfg.admin_port),
    ]
    .into()
}

/// The native sidecar: an init container with `restartPolicy: Always`.
pub(super) fn container(cfg: &InjectConfig) -> Container {
    Container {
        name: SIDECAR_NAME.to_owned(),
        image: Some(cfg.image.clone()),
        image_pull_policy: cfg.image_pull_policy.clone(),
        args: Some(args(cfg)),
        env: Some(vec![
            field_env("POD_NAME", "metadata.name"),
            field_env("POD_NAMESPACE", "metadata.namespace"),
            field_env("POD_UID", "metadata.uid"),
        ]),
        ports: Some(vec![ContainerPort {
            name: Some("spillway-admin".to_owned()),
            container_port: i32::from(cfg.admin_port),
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        restart_policy: Some("Always".to_owned()),
        // Started = listening: app containers start once the sidecar is up; the Pod turns Ready
        // once the sidecar also applied a configuration from the operator.
        startup_probe: Some(http_probe("/healthz", cfg.admin_port, 1, 30)),
        liveness_probe: Some(http_probe("/healthz", cfg.admin_port, 10, 3)),
        readiness_probe: Some(http_probe("/readyz", cfg.admin_port, 5, 2)),
        resources: Some(resources(cfg)),
        security_context: Some(security_context()),
        volume_mounts: Some(vec![VolumeMount {
            name: VOLUME_NAME.to_owned(),
            mount_path: MOUNT_PATH.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    }
}

fn ca_projection(ca: &CaSource) -> VolumeProjection {
    match ca {
        CaSource::Pem(_) => VolumeProjection {
            downward_api: Some(DownwardAPIProjection {
                items: Some(vec![DownwardAPIVolumeFile {
                    path: CA_FILE.to_owned(),
                    field_ref: Some(ObjectFieldSelector {
                        field_path: format!("metadata.annotations['{CA_ANNOTATION}']"),
                        ..ObjectFieldSelector::default()
                    }),
                    ..DownwardAPIVolumeFile::default()
                }]),
            }),
            ..VolumeProjection::default()
        },
        CaSource::ConfigMap(name) => VolumeProjection {
            config_map: Some(ConfigMapProjection {
                name: name.clone(),
                items: Some(vec![KeyToPath {
                    key: CA_FILE.to_owned(),
                    path: CA_FILE.to_owned(),
                    ..KeyToPath::default()
                }]),
                ..ConfigMapProjection::default()
            }),
            ..VolumeProjection::default()
        },
    }
}

/// The projected volume: a ServiceAccount token for the operator's audience and its CA.
pub(super) fn volume(cfg: &InjectConfig) -> Volume {
    let token = VolumeProjection {
        service_account_token: Some(ServiceAccountTokenProjection {
            audience: Some(cfg.audience.clone()),
            expiration_seconds: Some(cfg.token_expiration_seconds),
            path: TOKEN_FILE.to_owned(),
        }),
        ..VolumeProjection::default()
    };
    Volume {
        name: VOLUME_NAME.to_owned(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(vec![token, ca_projection(&cfg.ca)]),
            ..ProjectedVolumeSource::default()
        }),
        ..Volume::default()
    }
}
