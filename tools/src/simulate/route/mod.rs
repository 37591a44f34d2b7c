//! Which simulated API a request addresses: Azure classic
//! (`/openai/deployments/{d}/{op}?api-version=…`, and at the resource's top level
//! `/openai/{op}?api-version=…` for the responses, conversations, files and batches APIs),
//! Azure v1 (`/openai/v1/{op}`) or OpenAI (`/v1/{op}`); which operation ([`Api`]) and what
//! under it ([`Target`]: the operation itself, a stored response's `responses/{id}`,
//! `…/input_items`, `…/cancel`, `responses/input_tokens`, the conversations API's
//! `conversations`, `conversations/{id}`, `…/items`, `…/items/{item}`, the files API's
//! `files`, `files/{id}`, `files/{id}/content`, or the batches API's `batches`,
//! `batches/{id}`, `batches/{id}/cancel`) and which methods that takes; and Azure
//! `api-version` ordering. Conversations belong to the responses API (their operation is
//! `responses`) and have no deployment path; nor have files and batches. Images and audio
//! have one on Azure classic paths.
//!
//! Input: the request path and query. Output: a [`Route`], or `None` for an unknown route.

use http::Method;

mod api;

pub use api::{Api, ModelApi};

/// The response dialect a route implies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    /// Azure classic deployment paths, versioned by `api-version`.
    AzureClassic,
    /// Azure's `/openai/v1/` surface.
    AzureV1,
    /// OpenAI's `/v1/` surface.
    OpenAi,
}

impl Flavour {
    /// Azure adds content-filter results and Azure-shaped errors.
    pub fn is_azure(self) -> bool {
        !matches!(self, Self::OpenAi)
    }
}

/// What a route addresses under its operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `…/{op}`: POST runs the model (creates a response, for the responses API).
    Create,
    /// `…/responses/input_tokens`: POST counts the input tokens of a create body.
    InputTokens,
    /// `…/responses/{id}`: GET retrieves, DELETE deletes a stored response.
    Response(String),
    /// `…/responses/{id}/input_items`: GET lists a stored response's input items.
    InputItems(String),
    /// `…/responses/{id}/cancel`: POST cancels a background response.
    Cancel(String),
    /// `…/conversations`: POST creates a conversation.
    Conversations,
    /// `…/conversations/{id}`: GET retrieves, POST updates, DELETE deletes a conversation.
    Conversation(String),
    /// `…/conversations/{id}/items`: GET lists, POST adds a conversation's items.
    ConversationItems(String),
    /// `…/conversations/{id}/items/{item}`: GET retrieves, DELETE deletes an item.
    ConversationItem(String, String),
    /// `…/files`: GET lists, POST uploads a file.
    Files,
    /// `…/files/{id}`: GET retrieves, DELETE deletes a file.
    File(String),
    /// `…/files/{id}/content`: GET downloads a file's bytes.
    FileContent(String),
    /// `…/batches`: GET lists, POST creates a batch.
    Batches,
    /// `…/batches/{id}`: GET retrieves a batch.
    Batch(String),
    /// `…/batches/{id}/cancel`: POST cancels a batch.
    BatchCancel(String),
}

impl Target {
    /// Whether `method` is served on this target (else 405).
    pub fn allows(&self, method: &Method) -> bool {
        match self {
            Self::Create
            | Self::InputTokens
            | Self::Cancel(_)
            | Self::Conversations
            | Self::BatchCancel(_) => method == Method::POST,
            Self::Response(_) | Self::ConversationItem(..) | Self::File(_) => {
                method == Method::GET || method == Method::DELETE
            }
            Self::InputItems(_) | Self::FileContent(_) | Self::Batch(_) => method == Method::GET,
            Self::Conversation(_) => [Method::GET, Method::POST, Method::DELETE].contains(method),
            Self::ConversationItems(_) | Self::Files | Self::Batches => {
                method == Method::GET || method == Method::POST
            }
        }
    }

    /// Whether this is a route of the conversations API.
    pub fn is_conversation(&self) -> bool {
        matches!(
            self,
            Self::Conversations
                | Self::Conversation(_)
                | Self::ConversationItems(_)
                | Self::ConversationItem(..)
        )
    }

    /// Reads `tail`, the path after the surface prefix.
    fn parse(tail: &str) -> Option<(Api, Self)> {
        if let Some(api) = Api::from_path(tail) {
            let target = match api {
                Api::Files => Self::Files,
                Api::Batches => Self::Batches,
                _ => Self::Create,
            };
            return Some((api, target));
        }
        if let Some(rest) = tail.strip_prefix("conversations") {
            let responses = Api::Model(ModelApi::Responses);
            return Some((responses, Self::parse_conversation(rest)?));
        }
        if let Some(rest) = tail.strip_prefix("files/") {
            let target = match id_and_action(rest)? {
                (id, None) => Self::File(id),
                (id, Some("content")) => Self::FileContent(id),
                _ => return None,
            };
            return Some((Api::Files, target));
        }
        if let Some(rest) = tail.strip_prefix("batches/") {
            let target = match id_and_action(rest)? {
                (id, None) => Self::Batch(id),
                (id, Some("cancel")) => Self::BatchCancel(id),
                _ => return None,
            };
            return Some((Api::Batches, target));
        }
        let rest = tail.strip_prefix("responses/")?.trim_end_matches('/');
        let target = match rest.split_once('/') {
            None if rest.is_empty() => return None,
            None if rest == "input_tokens" => Self::InputTokens,
            None => Self::Response(percent_decode(rest)),
            Some((id, "input_items")) if !id.is_empty() => Self::InputItems(percent_decode(id)),
            Some((id, "cancel")) if !id.is_empty() => Self::Cancel(percent_decode(id)),
            Some(_) => return None,
        };
        Some((Api::Model(ModelApi::Responses), target))
    }

    /// Reads `rest`, the path after `conversations`.
    fn parse_conversation(rest: &str) -> Option<Self> {
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() {
            return Some(Self::Conversations);
        }
        let mut parts = rest.strip_prefix('/')?.split('/');
        let parts = [parts.next(), parts.next(), parts.next(), parts.next()];
        let target = match parts {
            [Some(id), None, ..] if !id.is_empty() => Self::Conversation(percent_decode(id)),
            [Some(id), Some("items"), None, _] if !id.is_empty() => {
                Self::ConversationItems(percent_decode(id))
            }
            [Some(id), Some("items"), Some(item), None] if !id.is_empty() && !item.is_empty() => {
                Self::ConversationItem(percent_decode(id), percent_decode(item))
            }
            _ => return None,
        };
        Some(target)
    }
}

/// `{id}` or `{id}/{action}` (a trailing `/` ignored), the id percent-decoded.
fn id_and_action(rest: &str) -> Option<(String, Option<&str>)> {
    let rest = rest.trim_end_matches('/');
    let (id, action) = match rest.split_once('/') {
        None => (rest, None),
        Some((_, action)) if action.contains('/') => return None,
        Some((id, action)) => (id, Some(action)),
    };
    (!id.is_empty()).then(|| (percent_decode(id), action))
}

/// A parsed route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Dialect.
    pub flavour: Flavour,
    /// The deployment named in an Azure classic path.
    pub deployment: Option<String>,
    /// The operation.
    pub api: Api,
    /// What under the operation.
    pub target: Target,
    /// The `api-version` query parameter, if any.
    pub api_version: Option<String>,
}

/// Parses `path` (without query) and `query` into a route.
pub fn parse(path: &str, query: Option<&str>) -> Option<Route> {
    let api_version = query.and_then(|q| query_param(q, "api-version"));
    let (flavour, deployment, tail) = if let Some(rest) = path.strip_prefix("/openai/v1/") {
        (Flavour::AzureV1, None, rest)
    } else if let Some(rest) = path.strip_prefix("/openai/deployments/") {
        let (deployment, tail) = rest.split_once('/')?;
        if deployment.is_empty() {
            return None;
        }
        (
            Flavour::AzureClassic,
            Some(percent_decode(deployment)),
            tail,
        )
    } else if let Some(rest) = path.strip_prefix("/openai/") {
        (Flavour::AzureClassic, None, rest)
    } else if let Some(rest) = path.strip_prefix("/v1/") {
        (Flavour::OpenAi, None, rest)
    } else {
        return None;
    };
    let (api, target) = Target::parse(tail)?;
    let placed = match (flavour, &deployment) {
        (Flavour::AzureClassic, None) => api.at_top_level(),
        (_, Some(_)) => api.under_deployment() && !target.is_conversation(),
        (_, None) => true,
    };
    placed.then_some(Route {
        flavour,
        deployment,
        api,
        target,
        api_version,
    })
}

/// The first value of `name` in a query string, percent-decoded.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then(|| percent_decode(value))
    })
}

fn percent_decode(text: &str) -> String {
    if !text.contains('%') && !text.contains('+') {
        return text.to_owned();
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An Azure `api-version` such as `2024-10-21` or `2024-09-01-preview`, ordered by date,
/// a preview sorting before the GA version of the same date.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion {
    date: (u16, u8, u8),
    ga: bool,
}

impl ApiVersion {
    /// Parses `YYYY-MM-DD` with an optional `-preview` suffix.
    pub fn parse(text: &str) -> Option<Self> {
        let (date, ga) = match text.strip_suffix("-preview") {
            Some(date) => (date, false),
            None => (text, true),
        };
        let mut parts = date.splitn(3, '-');
        let year = parts.next()?.parse().ok()?;
        let month = parts.next()?.parse().ok()?;
        let day = parts.next()?.parse().ok()?;
        if date.len() != 10 || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
            return None;
        }
        Some(Self {
            date: (year, month, day),
            ga,
        })
    }
}

#[cfg(test)]
mod tests;
