//! The inbound API surface: which OpenAI / Azure OpenAI call a request is.
//!
//! Accepted, unchanged from what the official SDKs send:
//! - Azure classic: `POST /openai/deployments/{deployment}/{operation}?api-version=…`
//! - Azure v1: `POST /openai/v1/{operation}` (model in the body)
//! - OpenAI: `POST /v1/{operation}` (model in the body)
//!
//! where `{operation}` is `chat/completions`, `completions`, `embeddings` or `responses`.

use http::Method;

use crate::error::ProxyError;
use crate::usage::Operation;

/// Which API shape the client used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// `/openai/deployments/{deployment}/…?api-version=…`
    AzureDeployments,
    /// `/openai/v1/…`
    AzureV1,
    /// `/v1/…`
    OpenAI,
}

/// A recognised inbound call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InboundRoute<'a> {
    /// API shape.
    pub flavor: Flavor,
    /// Operation.
    pub operation: Operation,
    /// The deployment from the path (Azure classic only).
    pub deployment: Option<&'a str>,
    /// The `api-version` query parameter, if sent.
    pub api_version: Option<&'a str>,
}

/// Recognises `method path?query`.
///
/// # Errors
/// [`ProxyError::UnknownRoute`] for anything else, [`ProxyError::MethodNotAllowed`] for a
/// known operation with a method other than POST.
pub fn parse<'a>(
    method: &Method,
    path: &'a str,
    query: Option<&'a str>,
) -> Result<InboundRoute<'a>, ProxyError> {
    let unknown = || ProxyError::UnknownRoute {
        method: method.to_string(),
        path: path.to_owned(),
    };
    let (flavor, deployment, tail) = if let Some(rest) = path.strip_prefix("/openai/deployments/") {
        let (deployment, tail) = rest.split_once('/').ok_or_else(unknown)?;
        if deployment.is_empty() {
            return Err(unknown());
        }
        (Flavor::AzureDeployments, Some(deployment), tail)
    } else if let Some(tail) = path.strip_prefix("/openai/v1/") {
        (Flavor::AzureV1, None, tail)
    } else if let Some(tail) = path.strip_prefix("/v1/") {
        (Flavor::OpenAI, None, tail)
    } else {
        return Err(unknown());
    };
    let operation = Operation::from_path(tail).ok_or_else(unknown)?;
    if method != Method::POST {
        return Err(ProxyError::MethodNotAllowed(method.to_string()));
    }
    Ok(InboundRoute {
        flavor,
        operation,
        deployment,
        api_version: query.and_then(|q| query_param(q, "api-version")),
    })
}

/// The raw value of query parameter `name`.
pub fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_every_shape_and_operation() {
        let r = parse(
            &Method::POST,
            "/openai/deployments/gpt-4o/chat/completions",
            Some("api-version=2024-10-21"),
        )
        .expect("azure");
        assert_eq!(
            (r.flavor, r.operation, r.deployment, r.api_version),
            (
                Flavor::AzureDeployments,
                Operation::ChatCompletions,
                Some("gpt-4o"),
                Some("2024-10-21")
            )
        );
        let r = parse(&Method::POST, "/openai/v1/embeddings", None).expect("v1");
        assert_eq!(
            (r.flavor, r.operation, r.deployment),
            (Flavor::AzureV1, Operation::Embeddings, None)
        );
        let r = parse(&Method::POST, "/v1/responses", None).expect("openai");
        assert_eq!(
            (r.flavor, r.operation),
            (Flavor::OpenAI, Operation::Responses)
        );
        let r = parse(&Method::POST, "/v1/completions", Some("a=1&api-version=x"))
            .expect("completions");
        assert_eq!(
            (r.operation, r.api_version),
            (Operation::Completions, Some("x"))
        );
    }

    #[test]
    fn rejects_unknown_paths_and_methods() {
        for path in [
            "/",
            "/openai/deployments/",
            "/openai/deployments//chat/completions",
            "/openai/deployments/x",
            "/v1/images/generations",
            "/v2/chat/completions",
        ] {
            assert!(
                matches!(
                    parse(&Method::POST, path, None),
                    Err(ProxyError::UnknownRoute { .. })
                ),
                "{path}"
            );
        }
        assert_eq!(
            parse(&Method::GET, "/v1/chat/completions", None),
            Err(ProxyError::MethodNotAllowed("GET".into()))
        );
    }
}
