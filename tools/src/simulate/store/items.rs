//! Input items: what a create's `input` becomes (each item with an id), and the pages
//! `GET …/responses/{id}/input_items` lists them in (`order`, `limit`, `after`).
//!
//! Input: a create body's `input`, or stored items and a query string. Output: items, or a
//! page `{"object":"list","data","first_id","last_id","has_more"}`.

use serde_json::{Map, Value, json};

use crate::simulate::route::query_param;
use crate::simulate::text;

/// Input items listed per page without `limit`.
pub const DEFAULT_PAGE: usize = 20;
/// Largest `limit` of an input-item page.
pub const MAX_PAGE: usize = 100;

/// An input-item page request: `order`, `limit`, `after`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemsQuery {
    /// `order=asc` (oldest first); the default is `desc`.
    pub ascending: bool,
    /// Items per page, 1..=[`MAX_PAGE`].
    pub limit: usize,
    /// List the items after this id.
    pub after: Option<String>,
}

/// A query parameter out of range: the message for a 400 and the parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidQuery {
    /// What was wrong.
    pub message: &'static str,
    /// The parameter at fault.
    pub param: &'static str,
}

impl ItemsQuery {
    /// Reads `order`, `limit` and `after` from a query string.
    ///
    /// # Errors
    /// An `order` other than `asc`/`desc`, or a `limit` outside 1..=100.
    pub fn parse(query: Option<&str>) -> Result<Self, InvalidQuery> {
        let param = |name| query.and_then(|q| query_param(q, name));
        let ascending = match param("order").as_deref() {
            None | Some("desc") => false,
            Some("asc") => true,
            Some(_) => {
                return Err(InvalidQuery {
                    message: "Invalid value for 'order': expected 'asc' or 'desc'.",
                    param: "order",
                });
            }
        };
        let limit = match param("limit") {
            None => DEFAULT_PAGE,
            Some(text) => text
                .parse()
                .ok()
                .filter(|n| (1..=MAX_PAGE).contains(n))
                .ok_or(InvalidQuery {
                    message: "Invalid value for 'limit': expected an integer between 1 and 100.",
                    param: "limit",
                })?,
        };
        Ok(Self {
            ascending,
            limit,
            after: param("after").filter(|a| !a.is_empty()),
        })
    }

    /// The page of `items` (stored oldest first) this query asks for.
    pub fn page(&self, items: &[Value]) -> Value {
        let ordered: Vec<&Value> = if self.ascending {
            items.iter().collect()
        } else {
            items.iter().rev().collect()
        };
        let start = match &self.after {
            None => 0,
            Some(after) => ordered
                .iter()
                .position(|item| item.get("id").and_then(Value::as_str) == Some(after))
                .map_or(ordered.len(), |at| at + 1),
        };
        let end = (start + self.limit).min(ordered.len());
        let data = &ordered[start..end];
        let id_of = |item: Option<&&Value>| item.and_then(|i| i.get("id")).cloned();
        json!({
            "object": "list",
            "data": data,
            "first_id": id_of(data.first()),
            "last_id": id_of(data.last()),
            "has_more": end < ordered.len()
        })
    }
}

/// The input items of a create body: a string is one user message; each element of an array
/// is an item (a message given as `{role, content}` gets `type: message` and content parts).
/// Items without an `id` get one (`msg_…`).
pub fn items_of(input: Option<&Value>) -> Vec<Value> {
    match input {
        Some(Value::String(text)) => vec![item(&Value::String(text.clone()))],
        Some(Value::Array(items)) => items.iter().map(item).collect(),
        _ => Vec::new(),
    }
}

fn item(value: &Value) -> Value {
    let mut item = match value {
        Value::Object(map) => map.clone(),
        other => {
            let text = other
                .as_str()
                .map_or_else(|| other.to_string(), str::to_owned);
            let mut map = Map::new();
            map.insert("role".into(), "user".into());
            map.insert("content".into(), text.into());
            map
        }
    };
    if !item.contains_key("type") && item.contains_key("role") {
        item.insert("type".into(), "message".into());
    }
    if item.get("type").and_then(Value::as_str) == Some("message")
        && let Some(Value::String(text)) = item.get("content")
    {
        let kind = match item.get("role").and_then(Value::as_str) {
            Some("assistant") => "output_text",
            _ => "input_text",
        };
        let parts = json!([{"type": kind, "text": text}]);
        item.insert("content".into(), parts);
    }
    if !item.contains_key("id") {
        item.insert("id".into(), text::object_id("msg_").into());
    }
    Value::Object(item)
}
