#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Settings resolution, the form body and token response parsing.

use std::collections::HashMap;
use std::time::Duration;

use spillway_crds::snapshot::{COGNITIVE_SERVICES_SCOPE, EntraGrant, EntraIdConfig, SecretString};

use super::*;

fn config(grant: EntraGrant) -> EntraIdConfig {
    EntraIdConfig {
        tenant_id: None,
        client_id: None,
        authority_host: None,
        scope: COGNITIVE_SERVICES_SCOPE.into(),
        grant,
    }
}

fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| map.get(name).cloned()
}

#[test]
fn workload_identity_takes_the_azure_environment_defaults() {
    let settings = TokenEndpointSettings::resolve(
        &config(EntraGrant::WorkloadIdentity {
            federated_token_file: None,
        }),
        &env(&[
            ("AZURE_TENANT_ID", "tenant-1"),
            ("AZURE_CLIENT_ID", "client-1"),
            ("AZURE_AUTHORITY_HOST", "https://login.test:8443/"),
            ("AZURE_FEDERATED_TOKEN_FILE", "/var/run/azure/token"),
        ]),
    )
    .unwrap();
    assert_eq!(
        settings,
        TokenEndpointSettings {
            endpoint: "https://login.test:8443/tenant-1/oauth2/v2.0/token".into(),
            client_id: "client-1".into(),
            scope: COGNITIVE_SERVICES_SCOPE.into(),
            proof: Proof::FederatedTokenFile("/var/run/azure/token".into()),
        }
    );
}

#[test]
fn config_wins_over_environment_and_default_authority_is_public_cloud() {
    let mut cfg = config(EntraGrant::ClientSecret(SecretString::new("s3cret")));
    cfg.tenant_id = Some("t".into());
    cfg.client_id = Some("c".into());
    let settings =
        TokenEndpointSettings::resolve(&cfg, &env(&[("AZURE_TENANT_ID", "other")])).unwrap();
    assert_eq!(
        settings.endpoint,
        "https://login.microsoftonline.com/t/oauth2/v2.0/token"
    );
    assert!(!format!("{settings:?}").contains("s3cret"));
}

#[test]
fn missing_ids_and_plain_http_are_config_errors() {
    let wi = config(EntraGrant::WorkloadIdentity {
        federated_token_file: None,
    });
    let error = TokenEndpointSettings::resolve(&wi, &env(&[])).unwrap_err();
    assert!(error.to_string().contains("AZURE_TENANT_ID"), "{error}");
    let error = TokenEndpointSettings::resolve(&wi, &env(&[("AZURE_TENANT_ID", "t")])).unwrap_err();
    assert!(error.to_string().contains("AZURE_CLIENT_ID"), "{error}");
    let error = TokenEndpointSettings::resolve(
        &wi,
        &env(&[("AZURE_TENANT_ID", "t"), ("AZURE_CLIENT_ID", "c")]),
    )
    .unwrap_err();
    assert!(
        error.to_string().contains("AZURE_FEDERATED_TOKEN_FILE"),
        "{error}"
    );
    let mut http = wi.clone();
    http.authority_host = Some("http://login.test".into());
    let error = TokenEndpointSettings::resolve(&http, &env(&[])).unwrap_err();
    assert!(error.to_string().contains("not an https URL"), "{error}");
}

#[tokio::test]
async fn form_carries_secret_or_the_current_federated_token() {
    let secret = TokenEndpointSettings {
        endpoint: "https://x/t/oauth2/v2.0/token".into(),
        client_id: "c 1".into(),
        scope: COGNITIVE_SERVICES_SCOPE.into(),
        proof: Proof::Secret(SecretString::new("a+b&c=d")),
    };
    assert_eq!(
        secret.form().await.unwrap(),
        "grant_type=client_credentials&client_id=c+1\
         &scope=https%3A%2F%2Fcognitiveservices.azure.com%2F.default\
         &client_secret=a%2Bb%26c%3Dd"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "header.payload.sig-1\n").unwrap();
    let federated = TokenEndpointSettings {
        proof: Proof::FederatedTokenFile(file.clone()),
        ..secret
    };
    let form = federated.form().await.unwrap();
    assert!(form.ends_with(
        "&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer\
         &client_assertion=header.payload.sig-1"
    ));
    std::fs::write(&file, "header.payload.sig-2").unwrap();
    assert!(
        federated.form().await.unwrap().ends_with("sig-2"),
        "re-read"
    );
    std::fs::write(&file, "  \n").unwrap();
    assert!(matches!(
        federated.form().await,
        Err(CredentialError::FederatedTokenFile { .. })
    ));
}

#[test]
fn token_responses_parse_and_errors_are_clear() {
    let ok = parse_token_response(
        "e",
        200,
        br#"{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"eyJ0"}"#,
    )
    .unwrap();
    assert_eq!(
        (ok.token.expose(), ok.lifetime),
        ("eyJ0", Duration::from_secs(3599))
    );
    let string_expiry =
        parse_token_response("e", 200, br#"{"expires_in":"60","access_token":"a"}"#).unwrap();
    assert_eq!(string_expiry.lifetime, Duration::from_secs(60));
    let refused = parse_token_response(
        "https://login.test/t/oauth2/v2.0/token",
        401,
        br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.\r\nTrace ID: 1\r\nCorrelation ID: 2"}"#,
    )
    .unwrap_err();
    assert_eq!(
        refused.to_string(),
        "token endpoint https://login.test/t/oauth2/v2.0/token answered 401: invalid_client: \
         AADSTS7000215: Invalid client secret provided."
    );
    let html = parse_token_response("e", 502, b"<html>bad gateway</html>").unwrap_err();
    assert!(
        html.to_string()
            .contains("502: http_error: <html>bad gateway")
    );
    for body in [
        &b"not json"[..],
        br#"{"expires_in":60}"#,
        br#"{"access_token":"a"}"#,
        br#"{"access_token":"a","expires_in":0}"#,
    ] {
        assert!(matches!(
            parse_token_response("e", 200, body),
            Err(CredentialError::BadResponse { .. })
        ));
    }
}
