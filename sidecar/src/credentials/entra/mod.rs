//! The OAuth 2.0 client-credentials exchange with Microsoft Entra ID.
//!
//! Input: a backend's [`EntraIdConfig`] plus `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
//! `AZURE_AUTHORITY_HOST` and `AZURE_FEDERATED_TOKEN_FILE` as defaults (the variables the
//! Azure workload identity webhook sets). Output: [`EntraTokenSource`], whose fetch POSTs
//! `grant_type=client_credentials`, `client_id`, `scope` and either `client_secret` or a
//! `client_assertion` (the federated token file, re-read on every fetch, or a JWT signed with
//! a client certificate's key) to
//! `{authorityHost}/{tenantId}/oauth2/v2.0/token` and parses `access_token` / `expires_in`,
//! or the AAD error JSON (`error`, `error_description`) into a [`CredentialError`].

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::Value;
use spillway_crds::snapshot::{EntraGrant, EntraIdConfig, SecretString};

use super::assertion::client_assertion;
use super::{AccessToken, CredentialError, FetchFuture, IssuedToken, TokenSource, client};

/// The default authority host (Azure public cloud).
pub const DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com";
/// Time allowed for one token request.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest token response read.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Everything one token request needs, environment defaults applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenEndpointSettings {
    /// `{authorityHost}/{tenantId}/oauth2/v2.0/token`.
    pub endpoint: String,
    /// Application (client) ID.
    pub client_id: String,
    /// OAuth scope.
    pub scope: String,
    /// The client's proof of identity.
    pub proof: Proof,
}

/// How the client proves its identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Proof {
    /// `client_secret`.
    Secret(SecretString),
    /// A `client_assertion` signed with this PEM certificate's private key.
    Certificate(SecretString),
    /// `client_assertion` read from this file at each fetch.
    FederatedTokenFile(PathBuf),
}

impl TokenEndpointSettings {
    /// Resolves `config` with `env` (an environment lookup) for the `AZURE_*` defaults.
    ///
    /// # Errors
    /// A tenant or client id, or a federated token file, given neither in the config nor in
    /// the environment; an authority host that is not https.
    pub fn resolve(
        config: &EntraIdConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, CredentialError> {
        let missing = |what: &str, var: &str| {
            CredentialError::Config(format!("no {what}: set it in entraId or set {var}"))
        };
        let authority = config
            .authority_host
            .clone()
            .or_else(|| env("AZURE_AUTHORITY_HOST"))
            .unwrap_or_else(|| DEFAULT_AUTHORITY_HOST.to_owned());
        let authority = authority.trim_end_matches('/');
        if !authority.starts_with("https://") {
            return Err(CredentialError::Config(format!(
                "authority host `{authority}` is not an https URL"
            )));
        }
        let tenant = config
            .tenant_id
            .clone()
            .or_else(|| env("AZURE_TENANT_ID"))
            .ok_or_else(|| missing("tenantId", "AZURE_TENANT_ID"))?;
        let client_id = config
            .client_id
            .clone()
            .or_else(|| env("AZURE_CLIENT_ID"))
            .ok_or_else(|| missing("clientId", "AZURE_CLIENT_ID"))?;
        let proof = match &config.grant {
            EntraGrant::ClientSecret(secret) => Proof::Secret(secret.clone()),
            EntraGrant::Certificate(pem) => Proof::Certificate(pem.clone()),
            EntraGrant::WorkloadIdentity {
                federated_token_file,
            } => Proof::FederatedTokenFile(
                federated_token_file
                    .clone()
                    .or_else(|| env("AZURE_FEDERATED_TOKEN_FILE"))
                    .ok_or_else(|| missing("federatedTokenFile", "AZURE_FEDERATED_TOKEN_FILE"))?
                    .into(),
            ),
        };
        Ok(Self {
            endpoint: format!("{authority}/{tenant}/oauth2/v2.0/token"),
            client_id,
            scope: config.scope.clone(),
            proof,
        })
    }

    /// The form body of one token request. Reads the federated token file, or signs a
    /// client assertion with the certificate.
    ///
    /// # Errors
    /// The federated token file cannot be read or is empty; the certificate PEM is unusable.
    pub async fn form(&self) -> Result<String, CredentialError> {
        let mut fields = vec![
            ("grant_type", "client_credentials".to_owned()),
            ("client_id", self.client_id.clone()),
            ("scope", self.scope.clone()),
        ];
        match &self.proof {
            Proof::Secret(secret) => fields.push(("client_secret", secret.expose().to_owned())),
            Proof::Certificate(pem) => {
                let assertion = client_assertion(
                    pem.expose(),
                    &self.client_id,
                    &self.endpoint,
                    SystemTime::now(),
                )
                .map_err(|e| CredentialError::Config(format!("certificate: {e}")))?;
                fields.push(("client_assertion_type", ASSERTION_TYPE.to_owned()));
                fields.push(("client_assertion", assertion));
            }
            Proof::FederatedTokenFile(path) => {
                let file_error = |message: String| CredentialError::FederatedTokenFile {
                    path: path.display().to_string(),
                    message,
                };
                let assertion = tokio::fs::read_to_string(path)
                    .await
                    .map_err(|e| file_error(e.to_string()))?;
                let assertion = assertion.trim();
                if assertion.is_empty() {
                    return Err(file_error("the file is empty".into()));
                }
                fields.push(("client_assertion_type", ASSERTION_TYPE.to_owned()));
                fields.push(("client_assertion", assertion.to_owned()));
            }
        }
        Ok(form_encode(&fields))
    }
}

/// `application/x-www-form-urlencoded` encoding of `fields`.
pub fn form_encode(fields: &[(&str, String)]) -> String {
    let mut out = String::new();
    for (i, (name, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode_into(&mut out, name);
        out.push('=');
        encode_into(&mut out, value);
    }
    out
}

fn encode_into(out: &mut String, text: &str) {
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(char::from(byte));
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
}

/// The production [`TokenSource`]: Entra ID over HTTPS.
#[derive(Debug)]
pub struct EntraTokenSource {
    settings: Result<TokenEndpointSettings, CredentialError>,
}

impl EntraTokenSource {
    /// A source for `config`; settings that cannot work make every fetch fail with the reason.
    pub fn new(config: &EntraIdConfig, env: &dyn Fn(&str) -> Option<String>) -> Self {
        Self {
            settings: TokenEndpointSettings::resolve(config, env),
        }
    }

    async fn fetch_once(&self) -> Result<IssuedToken, CredentialError> {
        let settings = self.settings.as_ref().map_err(Clone::clone)?;
        let endpoint = settings.endpoint.clone();
        let client = client::shared().map_err(CredentialError::Config)?;
        let form = settings.form().await?;
        let request = Request::post(&endpoint)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json")
            .body(Full::new(Bytes::from(form)))
            .map_err(|e| CredentialError::Config(format!("token endpoint {endpoint}: {e}")))?;
        let unreachable = |message: String| CredentialError::Unreachable {
            endpoint: endpoint.clone(),
            message,
        };
        let exchange = async {
            let response = client
                .request(request)
                .await
                .map_err(|e| unreachable(crate::http_client::error_chain(&e)))?;
            let status = response.status().as_u16();
            let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| unreachable(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok::<_, CredentialError>((status, body))
        };
        let (status, body) = tokio::time::timeout(FETCH_TIMEOUT, exchange)
            .await
            .map_err(|_| unreachable(format!("no answer within {FETCH_TIMEOUT:?}")))??;
        parse_token_response(&endpoint, status, &body)
    }
}

impl TokenSource for EntraTokenSource {
    fn fetch(&self) -> FetchFuture<'_> {
        Box::pin(self.fetch_once())
    }
}

/// Parses a token endpoint answer: `access_token` and `expires_in` (number or string) on
/// 2xx, the AAD error JSON otherwise.
///
/// # Errors
/// [`CredentialError::Refused`] for a non-2xx answer, [`CredentialError::BadResponse`] for a
/// 2xx answer without a usable token.
pub fn parse_token_response(
    endpoint: &str,
    status: u16,
    body: &[u8],
) -> Result<IssuedToken, CredentialError> {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    if !(200..300).contains(&status) {
        let field = |name: &str| {
            json.as_ref()
                .and_then(|j| j.get(name))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let description = field("error_description")
            .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
        let description = description.lines().next().unwrap_or("").trim();
        return Err(CredentialError::Refused {
            endpoint: endpoint.to_owned(),
            status,
            code: field("error").unwrap_or_else(|| "http_error".into()),
            description: description.chars().take(300).collect(),
        });
    }
    let bad = |message: &str| CredentialError::BadResponse {
        endpoint: endpoint.to_owned(),
        message: message.to_owned(),
    };
    let json = json.ok_or_else(|| bad("not JSON"))?;
    let token = json
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| bad("no access_token"))?;
    let expires_in = match json.get("expires_in") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
        _ => None,
    }
    .filter(|secs| *secs > 0)
    .ok_or_else(|| bad("no positive expires_in"))?;
    Ok(IssuedToken {
        token: AccessToken::new(token),
        lifetime: Duration::from_secs(expires_in),
    })
}

#[cfg(test)]
mod tests;
