//! The injection webhook's settings: the operator's `--inject-*` flags ([`InjectArgs`]) and
//! the resolved [`InjectConfig`] that [`super::inject()`] reads.
//!
//! Input: the command line / environment, the operator's token audience and its generated CA
//! file (if any). Output: `None` when injection is off (no `--inject-image`), else a checked
//! configuration; a bad combination is a start-up error that says which flag to fix.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// What the webhook answers when it cannot inject a Pod (input that is not a Pod, a port or
/// volume name clash).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OnError {
    /// Admit the Pod unchanged, with a warning for the client.
    #[default]
    Allow,
    /// Refuse the Pod with the reason.
    Deny,
}

/// Where the sidecar finds the CA that signed the operator's certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaSource {
    /// The CA itself (PEM): stored in a Pod annotation and projected as a file through the
    /// downward API, so it works in every namespace without copying a ConfigMap around.
    Pem(String),
    /// Key `ca.crt` of a ConfigMap that must exist in each injected Pod's namespace (e.g.
    /// distributed by trust-manager).
    ConfigMap(String),
}

/// The settings of the injection webhook.
#[derive(Clone, Debug)]
pub struct InjectConfig {
    /// The sidecar image (`repository:tag`).
    pub image: String,
    /// `imagePullPolicy` of the sidecar; the cluster default when `None`.
    pub image_pull_policy: Option<String>,
    /// The operator URL sidecars connect to (`https://…`).
    pub operator_url: String,
    /// Loopback port of the sidecar's data path (what the apps' SDKs call).
    pub port: u16,
    /// Port of the sidecar's admin endpoints (probes, metrics), on all addresses.
    pub admin_port: u16,
    /// Audience of the projected ServiceAccount token (the operator's TokenReview audience).
    pub audience: String,
    /// Lifetime of the projected token in seconds (the kubelet renews it).
    pub token_expiration_seconds: i64,
    /// The operator's CA.
    pub ca: CaSource,
    /// Requested CPU of the sidecar (a Kubernetes quantity).
    pub cpu_request: String,
    /// Requested memory of the sidecar.
    pub memory_request: String,
    /// Memory limit of the sidecar.
    pub memory_limit: String,
    /// What to answer when a Pod cannot be injected.
    pub on_error: OnError,
}

/// The operator's `--inject-*` flags. Injection is served at `POST /mutate` only when
/// `--inject-image` is set.
#[derive(Clone, Debug, clap::Args)]
pub struct InjectArgs {
    /// Sidecar image to inject (turns the webhook on), e.g. `ghcr.io/spillway/spillway:0.1.0`.
    #[arg(long, env = "SPILLWAY_INJECT_IMAGE")]
    pub inject_image: Option<String>,
    /// imagePullPolicy of the injected sidecar (Always, IfNotPresent, Never).
    #[arg(long, env = "SPILLWAY_INJECT_IMAGE_PULL_POLICY", value_parser = ["Always", "IfNotPresent", "Never"])]
    pub inject_image_pull_policy: Option<String>,
    /// Operator URL the injected sidecars connect to, e.g.
    /// `https://spillway-operator.spillway-system.svc:8443`.
    #[arg(long, env = "SPILLWAY_INJECT_OPERATOR_URL")]
    pub inject_operator_url: Option<String>,
    /// Loopback port of the sidecar's data path; the apps' SDKs are pointed at it.
    #[arg(long, default_value_t = 15080, env = "SPILLWAY_INJECT_PORT")]
    pub inject_port: u16,
    /// Port of the sidecar's admin endpoints (probes, /metrics), on all addresses.
    #[arg(long, default_value_t = 15081, env = "SPILLWAY_INJECT_ADMIN_PORT")]
    pub inject_admin_port: u16,
    /// CA (PEM) of the operator's certificate, written into each injected Pod. Default: the
    /// CA generated at start when no --tls-cert is given.
    #[arg(
        long,
        env = "SPILLWAY_INJECT_CA_FILE",
        conflicts_with = "inject_ca_configmap"
    )]
    pub inject_ca_file: Option<PathBuf>,
    /// Instead of --inject-ca-file: a ConfigMap (key `ca.crt`) present in every injected Pod's
    /// namespace.
    #[arg(long, env = "SPILLWAY_INJECT_CA_CONFIGMAP")]
    pub inject_ca_configmap: Option<String>,
    /// Lifetime of the sidecar's projected token in seconds (at least 600).
    #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(i64).range(600..))]
    pub inject_token_expiration: i64,
    /// CPU request of the sidecar.
    #[arg(long, default_value = "50m")]
    pub inject_cpu_request: String,
    /// Memory request of the sidecar.
    #[arg(long, default_value = "64Mi")]
    pub inject_memory_request: String,
    /// Memory limit of the sidecar.
    #[arg(long, default_value = "256Mi")]
    pub inject_memory_limit: String,
    /// Answer for a Pod that cannot be injected: `allow` it unchanged with a warning, or
    /// `deny` it. Match the webhook's failurePolicy (Ignore → allow, Fail → deny).
    #[arg(long, value_enum, default_value_t = OnError::Allow, env = "SPILLWAY_INJECT_ON_ERROR")]
    pub inject_on_error: OnError,
}

impl InjectArgs {
    /// The webhook's configuration, or `None` when `--inject-image` is not set.
    ///
    /// `audience` is the operator's `--token-audience`; `generated_ca` the CA file generated
    /// at start, used when neither `--inject-ca-file` nor `--inject-ca-configmap` is given.
    ///
    /// # Errors
    /// No operator URL, a URL that is not https, two equal ports, a port 0, or no readable CA.
    pub fn config(
        &self,
        audience: &str,
        generated_ca: Option<&Path>,
    ) -> anyhow::Result<Option<InjectConfig>> {
        let Some(image) = self.inject_image.clone().filter(|i| !i.trim().is_empty()) else {
            return Ok(None);
        };
        let operator_url = self.inject_operator_url.clone().context(
            "--inject-image needs --inject-operator-url (the operator URL for sidecars)",
        )?;
        anyhow::ensure!(
            operator_url.starts_with("https://"),
            "--inject-operator-url must be an https:// URL, got {operator_url}"
        );
        anyhow::ensure!(
            self.inject_port != 0
                && self.inject_admin_port != 0
                && self.inject_port != self.inject_admin_port,
            "--inject-port and --inject-admin-port must be two different non-zero ports"
        );
        Ok(Some(InjectConfig {
            image,
            image_pull_policy: self.inject_image_pull_policy.clone(),
            operator_url,
            port: self.inject_port,
            admin_port: self.inject_admin_port,
            audience: audience.to_owned(),
            token_expiration_seconds: self.inject_token_expiration,
            ca: self.ca_source(generated_ca)?,
            cpu_request: self.inject_cpu_request.clone(),
            memory_request: self.inject_memory_request.clone(),
            memory_limit: self.inject_memory_limit.clone(),
            on_error: self.inject_on_error,
        }))
    }

    fn ca_source(&self, generated_ca: Option<&Path>) -> anyhow::Result<CaSource> {
        if let Some(name) = &self.inject_ca_configmap {
            return Ok(CaSource::ConfigMap(name.clone()));
        }
        let file = self.inject_ca_file.as_deref().or(generated_ca).context(
            "--inject-image needs the operator's CA for the sidecars: \
             --inject-ca-file or --inject-ca-configmap",
        )?;
        let pem = std::fs::read_to_string(file)
            .with_context(|| format!("reading the CA for injected sidecars {}", file.display()))?;
        anyhow::ensure!(
            pem.contains("-----BEGIN CERTIFICATE-----"),
            "{} holds no PEM certificate",
            file.display()
        );
        Ok(CaSource::Pem(pem))
    }
}
