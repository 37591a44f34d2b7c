//! Compiling a backend's `entraId`: both grants, defaults, and every problem case.

use super::support::compile_text;
use crate::snapshot::{COGNITIVE_SERVICES_SCOPE, EntraGrant, SecretString};

fn pool(auth: &str) -> String {
    format!(
        r#"
apiVersion: spillway.dev/v1alpha1
kind: AIBackendPool
metadata: {{name: gpt4o, namespace: team-a}}
spec:
  models: [gpt-4o]
  backends:
    - name: ptu
      url: https://ptu.example.com/
{auth}
"#
    )
}

#[test]
fn client_secret_compiles_with_default_scope_and_resolved_secret() {
    let (snapshot, problems) = compile_text(&pool(
        "      entraId:\n        tenantId: contoso.onmicrosoft.com\n        clientId: 00000000-0000-0000-0000-000000000001\n        clientSecret: {env: PTU_KEY}\n        authorityHost: https://login.example.test/\n",
    ));
    assert!(problems.is_empty(), "{problems:#?}");
    let backend = &snapshot.pools[0].backends[0];
    assert!(backend.api_key.is_none());
    let entra = backend.entra_id.as_ref().expect("entraId compiled");
    assert_eq!(entra.tenant_id.as_deref(), Some("contoso.onmicrosoft.com"));
    assert_eq!(
        entra.client_id.as_deref(),
        Some("00000000-0000-0000-0000-000000000001")
    );
    assert_eq!(
        entra.authority_host.as_deref(),
        Some("https://login.example.test")
    );
    assert_eq!(entra.scope, COGNITIVE_SERVICES_SCOPE);
    assert_eq!(
        entra.grant,
        EntraGrant::ClientSecret(SecretString::new("k-ptu"))
    );
    let debug = format!("{snapshot:?}");
    assert!(!debug.contains("k-ptu"), "the secret leaked into Debug");
}

#[test]
fn workload_identity_compiles_without_ids_and_keeps_its_file() {
    let (snapshot, problems) = compile_text(&pool(
        "      entraId:\n        workloadIdentity: {federatedTokenFile: /var/run/token}\n        scope: api://custom/.default\n",
    ));
    assert!(problems.is_empty(), "{problems:#?}");
    let entra = snapshot.pools[0].backends[0]
        .entra_id
        .clone()
        .expect("entraId compiled");
    assert_eq!((entra.tenant_id, entra.client_id), (None, None));
    assert_eq!(entra.scope, "api://custom/.default");
    assert_eq!(
        entra.grant,
        EntraGrant::WorkloadIdentity {
            federated_token_file: Some("/var/run/token".into())
        }
    );
    let json = serde_json::to_string(&snapshot).expect("serialises");
    let back: crate::Snapshot = serde_json::from_str(&json).expect("round trip");
    assert_eq!(back, snapshot);
}

#[test]
fn every_entra_mistake_is_a_problem_on_its_field() {
    let cases = [
        (
            "      apiKey: {env: PTU_KEY}\n      entraId:\n        workloadIdentity: {}\n",
            "spec.backends[0].entraId",
            "at most one of apiKey or entraId",
        ),
        (
            "      entraId:\n        tenantId: t\n        clientId: c\n",
            "spec.backends[0].entraId",
            "exactly one of clientSecret, certificate or workloadIdentity",
        ),
        (
            "      entraId:\n        tenantId: t\n        clientId: c\n        certificate: {env: PTU_KEY}\n",
            "spec.backends[0].entraId.certificate",
            "PEM with a CERTIFICATE",
        ),
        (
            "      entraId:\n        certificate: {env: CERT_PEM}\n",
            "spec.backends[0].entraId",
            "certificate needs tenantId and clientId",
        ),
        (
            "      entraId:\n        clientSecret: {env: PTU_KEY}\n",
            "spec.backends[0].entraId",
            "clientSecret needs tenantId and clientId",
        ),
        (
            "      entraId:\n        tenantId: t\n        clientId: c\n        clientSecret: {env: MISSING}\n",
            "spec.backends[0].entraId.clientSecret",
            "not found",
        ),
        (
            "      entraId:\n        workloadIdentity: {}\n        authorityHost: http://login.example.test\n",
            "spec.backends[0].entraId.authorityHost",
            "not an https URL",
        ),
        (
            "      entraId:\n        workloadIdentity: {}\n        tenantId: a/b\n",
            "spec.backends[0].entraId.tenantId",
            "not a GUID or domain name",
        ),
    ];
    for (auth, field, message) in cases {
        let (snapshot, problems) = compile_text(&pool(auth));
        assert!(
            snapshot.pools.is_empty(),
            "{auth}: the pool must be refused"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.field == field && p.message.contains(message)),
            "{auth}: expected `{message}` on {field}, got {problems:#?}"
        );
    }
}

#[test]
fn certificate_compiles_to_its_pem() {
    let (snapshot, problems) = compile_text(&pool(
        "      entraId:\n        tenantId: t\n        clientId: c\n        certificate: {env: CERT_PEM}\n",
    ));
    assert!(problems.is_empty(), "{problems:#?}");
    let entra = snapshot.pools[0].backends[0]
        .entra_id
        .clone()
        .expect("entraId compiled");
    let EntraGrant::Certificate(pem) = entra.grant else {
        panic!("a certificate grant")
    };
    assert!(pem.expose().contains("BEGIN CERTIFICATE"));
}
