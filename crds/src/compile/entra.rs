//! Compiling a backend's `entraId`: exactly one grant (client secret, certificate or workload
//! identity), the ids the grant needs, an https authority host, the secret resolved like an
//! `apiKey`, and the default scope.

use super::validate::Checker;
use super::{Object, SecretResolver};
use crate::snapshot::{COGNITIVE_SERVICES_SCOPE, EntraGrant, EntraIdConfig};
use crate::v1alpha1::{AiBackendPoolSpec, EntraIdAuth};

/// The compiled `entraId` at `path`, or `None` (with problems recorded) when it cannot work.
pub(super) fn compile_entra_id(
    auth: &EntraIdAuth,
    path: &str,
    object: &Object<AiBackendPoolSpec>,
    secrets: &dyn SecretResolver,
    check: &mut Checker,
) -> Option<EntraIdConfig> {
    if let Some(host) = &auth.authority_host {
        let ok = host
            .strip_prefix("https://")
            .is_some_and(|rest| !rest.is_empty() && !rest.contains(['?', '#', ' ']));
        if !ok {
            check.invalid(
                format!("{path}.authorityHost"),
                format!("`{host}` is not an https URL, e.g. https://login.microsoftonline.com"),
            );
        }
    }
    for (field, value) in [("tenantId", &auth.tenant_id), ("clientId", &auth.client_id)] {
        if let Some(value) = value {
            let ok = !value.is_empty()
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
            if !ok {
                check.invalid(
                    format!("{path}.{field}"),
                    format!("`{value}` is not a GUID or domain name"),
                );
            }
        }
    }
    let grant = match (
        &auth.client_secret,
        &auth.certificate,
        &auth.workload_identity,
    ) {
        (Some(source), None, None) => {
            needs_ids(auth, path, "clientSecret", check);
            let field = format!("{path}.clientSecret");
            EntraGrant::ClientSecret(check.secret(&field, &object.namespace, source, secrets)?)
        }
        (None, Some(source), None) => {
            needs_ids(auth, path, "certificate", check);
            let field = format!("{path}.certificate");
            let pem = check.secret(&field, &object.namespace, source, secrets)?;
            let text = pem.expose();
            if !text.contains("-----BEGIN CERTIFICATE-----") || !text.contains("PRIVATE KEY-----") {
                check.invalid(
                    field,
                    "the value must be PEM with a CERTIFICATE and its (RSA) PRIVATE KEY",
                );
            }
            EntraGrant::Certificate(pem)
        }
        (None, None, Some(workload)) => EntraGrant::WorkloadIdentity {
            federated_token_file: workload.federated_token_file.clone(),
        },
        _ => {
            check.invalid(
                path,
                "set exactly one of clientSecret, certificate or workloadIdentity",
            );
            return None;
        }
    };
    Some(EntraIdConfig {
        tenant_id: auth.tenant_id.clone(),
        client_id: auth.client_id.clone(),
        authority_host: auth
            .authority_host
            .as_ref()
            .map(|h| h.trim_end_matches('/').to_owned()),
        scope: auth
            .scope
            .clone()
            .unwrap_or_else(|| COGNITIVE_SERVICES_SCOPE.to_owned()),
        grant,
    })
}

fn needs_ids(auth: &EntraIdAuth, path: &str, grant: &str, check: &mut Checker) {
    if auth.tenant_id.is_none() || auth.client_id.is_none() {
        check.invalid(path, format!("{grant} needs tenantId and clientId"));
    }
}
