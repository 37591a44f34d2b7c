//! The pure mutation: a Pod and the configuration in, the injected Pod (or why it was left
//! alone) out. No client, no clock; the admission plumbing is in `review`.

use k8s_openapi::api::core::v1::{Container, EnvVar, Pod, PodSpec};

use super::{
    CA_ANNOTATION, CaSource, INJECT_LABEL, INJECTED_ANNOTATION, InjectConfig, SIDECAR_NAME,
    VOLUME_NAME, sidecar,
};

/// Why a Pod was admitted unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// The Pod is labelled `spillway.dev/inject: disabled`.
    OptedOut,
    /// The Pod already has the sidecar or the `spillway.dev/injected` annotation.
    AlreadyInjected,
}

/// The outcome of [`inject`].
#[derive(Clone, Debug, PartialEq)]
pub enum Injection {
    /// Leave the Pod as it is.
    Skipped(SkipReason),
    /// The Pod with the sidecar.
    Injected(Box<Pod>),
}

/// A Pod that cannot be injected as configured.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InjectError {
    /// The Pod has no spec.
    #[error("the Pod has no spec")]
    NoSpec,
    /// A container of the Pod already uses one of the sidecar's ports.
    #[error(
        "container {container} already uses port {port}, which the spillway sidecar needs; \
         change the operator's --inject-port / --inject-admin-port or the container's port"
    )]
    PortClash {
        /// The container.
        container: String,
        /// The port.
        port: u16,
    },
    /// The Pod already has a volume with the sidecar's volume name.
    #[error("the Pod already has a volume named {VOLUME_NAME}; rename it to use the sidecar")]
    VolumeExists,
}

/// Whether `pod` is already injected: a container or init container named `spillway`, or the
/// `spillway.dev/injected` annotation.
fn already_injected(pod: &Pod) -> bool {
    let annotated = pod
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(INJECTED_ANNOTATION));
    let named = pod.spec.as_ref().is_some_and(|spec| {
        spec.containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .any(|c| c.name == SIDECAR_NAME)
    });
    annotated || named
}

fn opted_out(pod: &Pod) -> bool {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(INJECT_LABEL))
        .is_some_and(|value| value == "disabled")
}

fn check_clashes(spec: &PodSpec, cfg: &InjectConfig) -> Result<(), InjectError> {
    if spec.volumes.iter().flatten().any(|v| v.name == VOLUME_NAME) {
        return Err(InjectError::VolumeExists);
    }
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    for container in containers {
        for port in container.ports.iter().flatten() {
            let clash = [cfg.port, cfg.admin_port]
                .into_iter()
                .find(|p| i32::from(*p) == port.container_port);
            if let Some(port) = clash {
                return Err(InjectError::PortClash {
                    container: container.name.clone(),
                    port,
                });
            }
        }
    }
    Ok(())
}

/// Adds the SDK env vars the container does not set itself in `env`.
fn add_sdk_env(container: &mut Container, cfg: &InjectConfig) {
    let env = container.env.get_or_insert_with(Vec::new);
    for (name, value) in sidecar::sdk_env(cfg) {
        if !env.iter().any(|e| e.name == name) {
            env.push(EnvVar {
                name: name.to_owned(),
                value: Some(value),
                ..EnvVar::default()
            });
        }
    }
}

/// Injects the spillway sidecar into `pod` (see the module docs of `webhook` for exactly
/// what is added), or says why the Pod stays as it is.
///
/// # Errors
/// A Pod without a spec, a container port equal to a sidecar port, or an existing volume
/// named `spillway-token`.
pub fn inject(pod: &Pod, cfg: &InjectConfig) -> Result<Injection, InjectError> {
    if opted_out(pod) {
        return Ok(Injection::Skipped(SkipReason::OptedOut));
    }
    if already_injected(pod) {
        return Ok(Injection::Skipped(SkipReason::AlreadyInjected));
    }
    let mut injected = pod.clone();
    let spec = injected.spec.as_mut().ok_or(InjectError::NoSpec)?;
    check_clashes(spec, cfg)?;
    spec.init_containers
        .get_or_insert_with(Vec::new)
        .insert(0, sidecar::container(cfg));
    spec.volumes
        .get_or_insert_with(Vec::new)
        .push(sidecar::volume(cfg));
    for container in &mut spec.containers {
        add_sdk_env(container, cfg);
    }
    // A projected token needs a ServiceAccount. The ServiceAccount admission plugin sets it
    // before webhooks run; where it does not run, use the one it would have chosen.
    if spec
        .service_account_name
        .as_deref()
        .is_none_or(str::is_empty)
    {
        let account = spec.service_account.clone().filter(|a| !a.is_empty());
        spec.service_account_name = Some(account.unwrap_or_else(|| "default".to_owned()));
    }
    let annotations = injected
        .metadata
        .annotations
        .get_or_insert_with(Default::default);
    annotations.insert(INJECTED_ANNOTATION.to_owned(), "true".to_owned());
    if let CaSource::Pem(pem) = &cfg.ca {
        annotations.insert(CA_ANNOTATION.to_owned(), pem.clone());
    }
    Ok(Injection::Injected(Box::new(injected)))
}

impl Injection {
    /// The RFC 6902 patch that turns `original` into this outcome (empty when skipped).
    ///
    /// # Errors
    /// When a Pod cannot be represented as JSON (not expected for decoded Pods).
    pub fn patch(&self, original: &Pod) -> Result<json_patch::Patch, serde_json::Error> {
        match self {
            Self::Skipped(_) => Ok(json_patch::Patch(Vec::new())),
            Self::Injected(injected) => {
                let before = serde_json::to_value(original)?;
                let after = serde_json::to_value(injected)?;
                Ok(json_patch::diff(&before, &after))
            }
        }
    }
}
