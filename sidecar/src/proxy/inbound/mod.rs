//! The inbound API surface: which OpenAI / Azure OpenAI call a request is.
//!
//! Accepted, unchanged from what the official SDKs send, on three path families — Azure
//! classic (`/openai/…?api-version=…`), Azure v1 (`/openai/v1/…`) and OpenAI (`/v1/…`):
//! - model calls, `POST`: `chat/completions`, `completions`, `embeddings` (Azure classic:
//!   `/openai/deployments/{deployment}/{operation}`), `responses` (Azure classic:
//!   `/openai/responses` with the deployment as the body's `model`, or under a deployment),
//!   and `responses/input_tokens`;
//! - model lists, `GET`: `models` and `models/{model}`, answered by the gateway;
//! - stored responses: `GET|DELETE responses/{id}`, `GET responses/{id}/input_items`,
//!   `POST responses/{id}/cancel`, sent to the backend that holds the response.

use http::Method;

use crate::error::ProxyError;
use crate::usage::Operation;

/// Which API shape the client used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// `/openai/deployments/{deployment}/…?api-version=…`
    AzureDeployments,
    /// `/openai/{responses|models}…?api-version=…` (no deployment in the path)
    AzureClassic,
    /// `/openai/v1/…`
    AzureV1,
    /// `/v1/…`
    OpenAI,
}

/// A recognised model call.
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
    /// What follows the operation in the path: empty, or `/input_tokens` (Responses input
    /// token counting, which bills nothing).
    pub suffix: &'static str,
}

impl InboundRoute<'_> {
    /// Input token counting: routed like a model call, nothing reserved or billed.
    pub fn counts_tokens_only(&self) -> bool {
        self.suffix == INPUT_TOKENS
    }
}

/// What is done to a stored response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoredAction {
    /// `GET responses/{id}`
    Retrieve,
    /// `DELETE responses/{id}`
    Delete,
    /// `GET responses/{id}/input_items`
    InputItems,
    /// `POST responses/{id}/cancel`
    Cancel,
}

impl StoredAction {
    /// The HTTP method of the action.
    pub fn method(self) -> Method {
        match self {
            Self::Retrieve | Self::InputItems => Method::GET,
            Self::Delete => Method::DELETE,
            Self::Cancel => Method::POST,
        }
    }

    /// The path after `responses/{id}`.
    pub fn suffix(self) -> &'static str {
        match self {
            Self::Retrieve | Self::Delete => "",
            Self::InputItems => "/input_items",
            Self::Cancel => "/cancel",
        }
    }
}

/// A call addressed to a stored response by its id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredCall<'a> {
    /// API shape.
    pub flavor: Flavor,
    /// The `api-version` query parameter, if sent.
    pub api_version: Option<&'a str>,
    /// The response id.
    pub id: &'a str,
    /// What is done to it.
    pub action: StoredAction,
}

/// A recognised inbound request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inbound<'a> {
    /// A model call, routed by its model.
    Model(InboundRoute<'a>),
    /// The model list, or one model (`Some`), answered by the gateway.
    Models {
        /// API shape.
        flavor: Flavor,
        /// The model asked for, if one.
        model: Option<&'a str>,
    },
    /// A stored response, routed to the backend that holds it.
    Stored(StoredCall<'a>),
}

impl Inbound<'_> {
    /// The operation recorded for the request.
    pub fn operation(&self) -> Option<Operation> {
        match self {
            Self::Model(route) => Some(route.operation),
            Self::Stored(_) => Some(Operation::Responses),
            Self::Models { .. } => None,
        }
    }
}

const INPUT_TOKENS: &str = "/input_tokens";

/// Recognises `method path?query`.
///
/// # Errors
/// [`ProxyError::UnknownRoute`] for anything else, [`ProxyError::MethodNotAllowed`] for a
/// known path with another method.
pub fn parse<'a>(
    method: &Method,
    path: &'a str,
    query: Option<&'a str>,
) -> Result<Inbound<'a>, ProxyError> {
    let unknown = || ProxyError::UnknownRoute {
        method: method.to_string(),
        path: path.to_owned(),
    };
    let not_allowed = |allowed: &'static str| ProxyError::MethodNotAllowed {
        method: method.to_string(),
        allowed,
    };
    let api_version = query.and_then(|q| query_param(q, "api-version"));
    let (flavor, deployment, tail) = if let Some(rest) = path.strip_prefix("/openai/deployments/") {
        let (deployment, tail) = rest.split_once('/').ok_or_else(unknown)?;
        if deployment.is_empty() {
            return Err(unknown());
        }
        (Flavor::AzureDeployments, Some(deployment), tail)
    } else if let Some(tail) = path.strip_prefix("/openai/v1/") {
        (Flavor::AzureV1, None, tail)
    } else if let Some(tail) = path.strip_prefix("/openai/") {
        (Flavor::AzureClassic, None, tail)
    } else if let Some(tail) = path.strip_prefix("/v1/") {
        (Flavor::OpenAI, None, tail)
    } else {
        return Err(unknown());
    };
    let tail = tail.trim_end_matches('/');
    if let Some(operation) = Operation::from_path(tail) {
        // Without a deployment in an Azure classic path, only the Responses API exists.
        if flavor == Flavor::AzureClassic && operation != Operation::Responses {
            return Err(unknown());
        }
        if method != Method::POST {
            return Err(not_allowed("POST"));
        }
        return Ok(Inbound::Model(InboundRoute {
            flavor,
            operation,
            deployment,
            api_version,
            suffix: "",
        }));
    }
    if deployment.is_some() {
        return Err(unknown());
    }
    if tail == "models" || tail.starts_with("models/") {
        let model = tail.strip_prefix("models/").filter(|m| !m.is_empty());
        if method != Method::GET {
            return Err(not_allowed("GET"));
        }
        return Ok(Inbound::Models { flavor, model });
    }
    let Some(rest) = tail.strip_prefix("responses/") else {
        return Err(unknown());
    };
    if rest == "input_tokens" {
        if method != Method::POST {
            return Err(not_allowed("POST"));
        }
        return Ok(Inbound::Model(InboundRoute {
            flavor,
            operation: Operation::Responses,
            deployment: None,
            api_version,
            suffix: INPUT_TOKENS,
        }));
    }
    let (id, action) = match rest.split_once('/') {
        None => (rest, None),
        Some((id, "input_items")) => (id, Some(StoredAction::InputItems)),
        Some((id, "cancel")) => (id, Some(StoredAction::Cancel)),
        Some(_) => return Err(unknown()),
    };
    if id.is_empty() {
        return Err(unknown());
    }
    let action = match (action, method) {
        (None, &Method::GET) => StoredAction::Retrieve,
        (None, &Method::DELETE) => StoredAction::Delete,
        (None, _) => return Err(not_allowed("GET or DELETE")),
        (Some(action), method) if *method == action.method() => action,
        (Some(StoredAction::Cancel), _) => return Err(not_allowed("POST")),
        (Some(_), _) => return Err(not_allowed("GET")),
    };
    Ok(Inbound::Stored(StoredCall {
        flavor,
        api_version,
        id,
        action,
    }))
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
mod tests;
