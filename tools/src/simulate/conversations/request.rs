//! What a conversations-API request asks for, read from its target, method, query and body,
//! with OpenAI's limits: `metadata` at most 16 string values (keys up to 64 characters, values
//! up to 512), at most 20 `items` per request, each an object with a `type` or a `role`.
//!
//! Input: a conversations [`Target`], the method (one it allows), the query string and, for a
//! POST, the JSON body (an object). Output: a [`ConversationCall`] whose items carry ids, or an
//! [`Invalid`] for a 400.

use http::Method;
use serde_json::{Map, Value};

use crate::simulate::route::Target;
use crate::simulate::store::{ItemsQuery, items_of};

/// Metadata pairs a conversation holds.
pub const MAX_METADATA_PAIRS: usize = 16;
/// Longest metadata key.
pub const MAX_METADATA_KEY: usize = 64;
/// Longest metadata value.
pub const MAX_METADATA_VALUE: usize = 512;
/// Items one request may add.
pub const MAX_ITEMS_PER_REQUEST: usize = 20;

/// One conversations-API request.
#[derive(Clone, Debug, PartialEq)]
pub enum ConversationCall<'a> {
    /// `POST …/conversations`.
    Create {
        /// Its metadata (empty when not given).
        metadata: Map<String, Value>,
        /// Its first items, each with an `id`.
        items: Vec<Value>,
    },
    /// `GET …/conversations/{id}`.
    Retrieve(&'a str),
    /// `POST …/conversations/{id}`: the new metadata.
    Update(&'a str, Map<String, Value>),
    /// `DELETE …/conversations/{id}`.
    Delete(&'a str),
    /// `GET …/conversations/{id}/items`.
    ListItems(&'a str, ItemsQuery),
    /// `POST …/conversations/{id}/items`: the items, each with an `id`.
    AddItems(&'a str, Vec<Value>),
    /// `GET …/conversations/{id}/items/{item}`.
    RetrieveItem(&'a str, &'a str),
    /// `DELETE …/conversations/{id}/items/{item}`.
    DeleteItem(&'a str, &'a str),
}

/// A request refused with a 400: what was wrong and the parameter at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// What was wrong and what to do.
    pub message: String,
    /// The parameter at fault.
    pub param: String,
}

impl Invalid {
    fn new(message: impl Into<String>, param: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            param: param.into(),
        }
    }
}

impl<'a> ConversationCall<'a> {
    /// The call `method` makes on `target` (`None` when `target` is not a conversations
    /// route or does not take `method`).
    ///
    /// # Errors
    /// An invalid query or body.
    pub fn read(
        target: &'a Target,
        method: &Method,
        query: Option<&str>,
        body: Option<&Value>,
    ) -> Option<Result<Self, Invalid>> {
        let null = Value::Null;
        let field = |name: &str| body.unwrap_or(&null).get(name);
        let post = method == Method::POST;
        let delete = method == Method::DELETE;
        let call = match target {
            Target::Conversations if post => metadata(field("metadata")).and_then(|metadata| {
                let items = match field("items") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(items) => items_to_add(items, false)?,
                };
                Ok(Self::Create { metadata, items })
            }),
            Target::Conversation(id) if post => match field("metadata") {
                None => Err(Invalid::new(
                    "Missing required parameter: 'metadata'.",
                    "metadata",
                )),
                given => metadata(given).map(|metadata| Self::Update(id, metadata)),
            },
            Target::Conversation(id) if delete => Ok(Self::Delete(id)),
            Target::Conversation(id) => Ok(Self::Retrieve(id)),
            Target::ConversationItems(id) if post => match field("items") {
                None => Err(Invalid::new(
                    "Missing required parameter: 'items'.",
                    "items",
                )),
                Some(items) => items_to_add(items, true).map(|items| Self::AddItems(id, items)),
            },
            Target::ConversationItems(id) => ItemsQuery::parse(query)
                .map(|query| Self::ListItems(id, query))
                .map_err(|invalid| Invalid::new(invalid.message, invalid.param)),
            Target::ConversationItem(id, item) if delete => Ok(Self::DeleteItem(id, item)),
            Target::ConversationItem(id, item) => Ok(Self::RetrieveItem(id, item)),
            _ => return None,
        };
        Some(call)
    }
}

/// `metadata`: absent or null is empty; else an object of at most 16 short strings.
fn metadata(value: Option<&Value>) -> Result<Map<String, Value>, Invalid> {
    let map = match value {
        None | Some(Value::Null) => return Ok(Map::new()),
        Some(Value::Object(map)) => map,
        Some(other) => {
            let message = format!(
                "Invalid type for 'metadata': expected an object, but got {} instead.",
                kind(other)
            );
            return Err(Invalid::new(message, "metadata"));
        }
    };
    if map.len() > MAX_METADATA_PAIRS {
        let message = format!(
            "Invalid 'metadata': too many properties. Expected an object with at most {MAX_METADATA_PAIRS} properties, but got an object with {} properties instead.",
            map.len()
        );
        return Err(Invalid::new(message, "metadata"));
    }
    for (key, value) in map {
        let length = key.chars().count();
        if length > MAX_METADATA_KEY {
            let message = format!(
                "Invalid 'metadata': string too long. Expected a key with maximum length {MAX_METADATA_KEY}, but got a key with length {length} instead."
            );
            return Err(Invalid::new(message, "metadata"));
        }
        let param = format!("metadata.{key}");
        let Value::String(text) = value else {
            let message = format!(
                "Invalid type for '{param}': expected a string, but got {} instead.",
                kind(value)
            );
            return Err(Invalid::new(message, param));
        };
        let length = text.chars().count();
        if length > MAX_METADATA_VALUE {
            let message = format!(
                "Invalid '{param}': string too long. Expected a string with maximum length {MAX_METADATA_VALUE}, but got a string with length {length} instead."
            );
            return Err(Invalid::new(message, param));
        }
    }
    Ok(map.clone())
}

/// `items`: an array of at most 20 objects, each with a `type` or a `role` (at least one when
/// `required`); returned as stored items, each with an `id`.
fn items_to_add(value: &Value, required: bool) -> Result<Vec<Value>, Invalid> {
    let Value::Array(items) = value else {
        let message = format!(
            "Invalid type for 'items': expected an array, but got {} instead.",
            kind(value)
        );
        return Err(Invalid::new(message, "items"));
    };
    if required && items.is_empty() {
        return Err(Invalid::new(
            "Invalid 'items': empty array. Expected an array with minimum length 1, but got an empty array instead.",
            "items",
        ));
    }
    if items.len() > MAX_ITEMS_PER_REQUEST {
        let message = format!(
            "Invalid 'items': array too long. Expected an array with maximum length {MAX_ITEMS_PER_REQUEST}, but got an array with length {} instead.",
            items.len()
        );
        return Err(Invalid::new(message, "items"));
    }
    for (at, item) in items.iter().enumerate() {
        let Value::Object(fields) = item else {
            let message = format!(
                "Invalid type for 'items[{at}]': expected an object, but got {} instead.",
                kind(item)
            );
            return Err(Invalid::new(message, format!("items[{at}]")));
        };
        if !fields.contains_key("type") && !fields.contains_key("role") {
            let param = format!("items[{at}].type");
            return Err(Invalid::new(
                format!("Missing required parameter: '{param}'."),
                param,
            ));
        }
    }
    Ok(items_of(Some(value)))
}

/// How OpenAI names a JSON value's type in its messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
