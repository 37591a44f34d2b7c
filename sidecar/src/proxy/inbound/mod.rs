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
//!   `POST responses/{id}/cancel`, sent to the backend that holds the response;
//! - conversations: `POST conversations` (a new one), `GET|POST|DELETE conversations/{id}`,
//!   `GET|POST conversations/{id}/items`, `GET|DELETE conversations/{id}/items/{item}`, sent
//!   to the backend that holds the conversation.

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

/// What the gateway keeps by id, on the backend that created it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoredKind {
    /// A Responses API response (`responses/{id}`).
    Response,
    /// A conversation (`conversations/{id}`).
    Conversation,
}

impl StoredKind {
    /// The path segment of the collection.
    pub fn collection(self) -> &'static str {
        match self {
            Self::Response => "responses",
            Self::Conversation => "conversations",
        }
    }

    /// The noun in messages ("Response with id … not found.").
    pub fn noun(self) -> &'static str {
        match self {
            Self::Response => "Response",
            Self::Conversation => "Conversation",
        }
    }
}

/// The bookkeeping a call addressed to a stored object implies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoredAction {
    /// `GET {id}`: a finished background response is counted.
    Retrieve,
    /// `DELETE {id}`: the id is forgotten.
    Delete,
    /// `POST responses/{id}/cancel`: as a retrieve.
    Cancel,
    /// Anything else (input items, conversation items, metadata updates).
    Other,
}

/// A call addressed to a stored response or conversation by its id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredCall<'a> {
    /// API shape.
    pub flavor: Flavor,
    /// The `api-version` query parameter, if sent.
    pub api_version: Option<&'a str>,
    /// Response or conversation.
    pub kind: StoredKind,
    /// The id.
    pub id: &'a str,
    /// The path after the id (`""`, `/input_items`, `/cancel`, `/items`, `/items/{item}`).
    pub suffix: &'a str,
    /// What it implies.
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
    /// A stored response or conversation, routed to the backend that holds it.
    Stored(StoredCall<'a>),
    /// `POST conversations`: a new conversation, on a backend of the app's pool.
    NewConversation {
        /// API shape.
        flavor: Flavor,
        /// The `api-version` query parameter, if sent.
        api_version: Option<&'a str>,
    },
}

impl Inbound<'_> {
    /// The operation recorded for the request.
    pub fn operation(&self) -> Option<Operation> {
        match self {
            Self::Model(route) => Some(route.operation),
            Self::Stored(_) | Self::NewConversation { .. } => Some(Operation::Responses),
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
    if tail == "conversations" {
        if method != Method::POST {
            return Err(not_allowed("POST"));
        }
        return Ok(Inbound::NewConversation {
            flavor,
            api_version,
        });
    }
    let (kind, rest) = if let Some(rest) = tail.strip_prefix("responses/") {
        (StoredKind::Response, rest)
    } else if let Some(rest) = tail.strip_prefix("conversations/") {
        (StoredKind::Conversation, rest)
    } else {
        return Err(unknown());
    };
    if kind == StoredKind::Response && rest == "input_tokens" {
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
    let (id, suffix) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    if id.is_empty() {
        return Err(unknown());
    }
    let action = stored_action(kind, suffix, method).ok_or_else(unknown)??;
    Ok(Inbound::Stored(StoredCall {
        flavor,
        api_version,
        kind,
        id,
        suffix,
        action,
    }))
}

/// What `method` on `suffix` of a stored object means: `None` for a path that does not
/// exist, `Some(Err(allowed))` for a method the path does not take.
fn stored_action(
    kind: StoredKind,
    suffix: &str,
    method: &Method,
) -> Option<Result<StoredAction, ProxyError>> {
    let m = |allowed: &'static str| {
        Err(ProxyError::MethodNotAllowed {
            method: method.to_string(),
            allowed,
        })
    };
    let item = suffix
        .strip_prefix("/items/")
        .is_some_and(|item| !item.is_empty() && !item.contains('/'));
    Some(match (kind, suffix, method.as_str()) {
        (_, "", "GET") => Ok(StoredAction::Retrieve),
        (_, "", "DELETE") => Ok(StoredAction::Delete),
        (StoredKind::Conversation, "", "POST") => Ok(StoredAction::Other),
        (StoredKind::Response, "", _) => m("GET or DELETE"),
        (StoredKind::Conversation, "", _) => m("GET, POST or DELETE"),
        (StoredKind::Response, "/input_items", "GET") => Ok(StoredAction::Other),
        (StoredKind::Response, "/input_items", _) => m("GET"),
        (StoredKind::Response, "/cancel", "POST") => Ok(StoredAction::Cancel),
        (StoredKind::Response, "/cancel", _) => m("POST"),
        (StoredKind::Conversation, "/items", "GET" | "POST") => Ok(StoredAction::Other),
        (StoredKind::Conversation, "/items", _) => m("GET or POST"),
        (StoredKind::Conversation, _, "GET" | "DELETE") if item => Ok(StoredAction::Other),
        (StoredKind::Conversation, _, _) if item => m("GET or DELETE"),
        _ => return None,
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
mod tests;
