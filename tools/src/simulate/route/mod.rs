//! Which simulated API a request addresses: Azure classic
//! (`/openai/deployments/{d}/{op}?api-version=…`, also `/openai/{op}?api-version=…`),
//! Azure v1 (`/openai/v1/{op}`) or OpenAI (`/v1/{op}`), what under it ([`Target`]: the
//! operation itself, or a stored response's `responses/{id}`, `…/input_items`, `…/cancel`,
//! `responses/input_tokens`, or the conversations API's `conversations`,
//! `conversations/{id}`, `…/items`, `…/items/{item}`) and which methods that takes; and
//! Azure `api-version` ordering. Conversations belong to the responses API (their operation
//! is [`Operation::Responses`]) and have no deployment path.
//!
//! Input: the request path and query. Output: a [`Route`], or `None` for an unknown route.

use http::Method;

use spillway_sidecar::usage::Operation;

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
}

impl Target {
    /// Whether `method` is served on this target (else 405).
    pub fn allows(&self, method: &Method) -> bool {
        match self {
            Self::Create | Self::InputTokens | Self::Cancel(_) | Self::Conversations => {
                method == Method::POST
            }
            Self::Response(_) | Self::ConversationItem(..) => {
                method == Method::GET || method == Method::DELETE
            }
            Self::InputItems(_) => method == Method::GET,
            Self::Conversation(_) => [Method::GET, Method::POST, Method::DELETE].contains(method),
            Self::ConversationItems(_) => method == Method::GET || method == Method::POST,
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
    fn parse(tail: &str) -> Option<(Operation, Self)> {
        if let Some(operation) = Operation::from_path(tail) {
            return Some((operation, Self::Create));
        }
        if let Some(rest) = tail.strip_prefix("conversations") {
            return Some((Operation::Responses, Self::parse_conversation(rest)?));
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
        Some((Operation::Responses, target))
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

/// A parsed model route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Dialect.
    pub flavour: Flavour,
    /// The deployment named in an Azure classic path.
    pub deployment: Option<String>,
    /// The operation.
    pub operation: Operation,
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
    let (operation, target) = Target::parse(tail)?;
    // Deployment-less classic paths exist only for the responses API, and conversations only
    // without a deployment.
    if flavour == Flavour::AzureClassic && deployment.is_none() && operation != Operation::Responses
    {
        return None;
    }
    if deployment.is_some() && target.is_conversation() {
        return None;
    }
    Some(Route {
        flavour,
        deployment,
        operation,
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
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_surfaces() {
        let classic = parse(
            "/openai/deployments/gpt-4o/chat/completions",
            Some("api-version=2024-10-21"),
        );
        assert_eq!(
            classic,
            Some(Route {
                flavour: Flavour::AzureClassic,
                deployment: Some("gpt-4o".into()),
                operation: Operation::ChatCompletions,
                target: Target::Create,
                api_version: Some("2024-10-21".into()),
            })
        );
        let v1 = parse("/openai/v1/responses", None).map(|r| (r.flavour, r.operation));
        assert_eq!(v1, Some((Flavour::AzureV1, Operation::Responses)));
        let openai = parse("/v1/embeddings", None).map(|r| (r.flavour, r.operation));
        assert_eq!(openai, Some((Flavour::OpenAi, Operation::Embeddings)));
        let responses = parse("/openai/responses", Some("api-version=2025-04-01-preview"));
        assert_eq!(responses.map(|r| r.deployment), Some(None));
    }

    #[test]
    fn rejects_unknown_routes() {
        for path in [
            "/",
            "/v1/models",
            "/openai/deployments//chat/completions",
            "/openai/deployments/x",
            "/openai/chat/completions",
            "/v2/chat/completions",
            "/v1/responses/resp_1/steps",
            "/v1/responses//cancel",
            "/v1/chat/completions/x",
        ] {
            assert_eq!(parse(path, None), None, "{path}");
        }
    }

    #[test]
    fn parses_stored_response_targets_and_their_methods() {
        let target = |path: &str| parse(path, None).map(|r| (r.operation, r.target));
        let id = || "resp_1".to_owned();
        assert_eq!(
            target("/v1/responses/resp_1"),
            Some((Operation::Responses, Target::Response(id())))
        );
        assert_eq!(
            target("/openai/v1/responses/resp_1/input_items"),
            Some((Operation::Responses, Target::InputItems(id())))
        );
        assert_eq!(
            target("/openai/responses/resp_1/cancel"),
            Some((Operation::Responses, Target::Cancel(id())))
        );
        assert_eq!(
            target("/v1/responses/input_tokens"),
            Some((Operation::Responses, Target::InputTokens))
        );
        assert_eq!(
            target("/v1/responses/"),
            Some((Operation::Responses, Target::Create))
        );
        assert!(Target::Create.allows(&Method::POST));
        assert!(!Target::Create.allows(&Method::GET));
        assert!(Target::Response(id()).allows(&Method::DELETE));
        assert!(!Target::Response(id()).allows(&Method::POST));
        assert!(Target::InputItems(id()).allows(&Method::GET));
        assert!(!Target::Cancel(id()).allows(&Method::GET));
        assert!(Target::InputTokens.allows(&Method::POST));
    }

    #[test]
    fn parses_conversation_targets_and_their_methods() {
        let target = |path: &str| parse(path, None).map(|r| (r.operation, r.target));
        let conv = || "conv_1".to_owned();
        let of = |t| Some((Operation::Responses, t));
        assert_eq!(target("/v1/conversations"), of(Target::Conversations));
        assert_eq!(
            target("/openai/v1/conversations/"),
            of(Target::Conversations)
        );
        assert_eq!(
            target("/openai/conversations/conv_1"),
            of(Target::Conversation(conv()))
        );
        assert_eq!(
            target("/v1/conversations/conv_1/items"),
            of(Target::ConversationItems(conv()))
        );
        assert_eq!(
            target("/v1/conversations/conv_1/items/msg%5F2"),
            of(Target::ConversationItem(conv(), "msg_2".into()))
        );
        for path in [
            "/v1/conversationsx",
            "/v1/conversations//items",
            "/v1/conversations/conv_1/steps",
            "/v1/conversations/conv_1/items/msg_1/x",
            "/openai/deployments/gpt-4o/conversations",
        ] {
            assert_eq!(parse(path, None), None, "{path}");
        }
        assert!(Target::Conversations.allows(&Method::POST));
        assert!(!Target::Conversations.allows(&Method::GET));
        for method in [Method::GET, Method::POST, Method::DELETE] {
            assert!(Target::Conversation(conv()).allows(&method));
        }
        assert!(!Target::Conversation(conv()).allows(&Method::PUT));
        assert!(Target::ConversationItems(conv()).allows(&Method::POST));
        assert!(!Target::ConversationItems(conv()).allows(&Method::DELETE));
        let item = Target::ConversationItem(conv(), "msg_1".into());
        assert!(item.allows(&Method::DELETE) && !item.allows(&Method::POST));
        assert!(item.is_conversation() && !Target::Create.is_conversation());
    }

    #[test]
    fn decodes_query_and_deployment() {
        assert_eq!(
            query_param("a=1&api-version=2024-06-01&b", "api-version").as_deref(),
            Some("2024-06-01")
        );
        assert_eq!(query_param("b", "b").as_deref(), Some(""));
        assert_eq!(query_param("x=%41%2", "x").as_deref(), Some("A%2"));
        let route = parse("/openai/deployments/my%20dep/completions", None);
        assert_eq!(route.and_then(|r| r.deployment).as_deref(), Some("my dep"));
    }

    #[test]
    fn orders_api_versions_with_preview_first() {
        let v = |s| ApiVersion::parse(s).expect(s);
        assert!(v("2024-06-01") < v("2024-09-01-preview"));
        assert!(v("2024-09-01-preview") < v("2024-09-01"));
        assert!(v("2024-10-21") > v("2024-09-01-preview"));
        assert_eq!(ApiVersion::parse("preview"), None);
        assert_eq!(ApiVersion::parse("2024-13-01"), None);
        assert_eq!(ApiVersion::parse("2024-1-01"), None);
    }
}
