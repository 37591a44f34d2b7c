//! Client request bodies: what the gateway reads from them and the few edits it makes.
//!
//! Input: the raw body of a chat/completions, completions, embeddings or responses call.
//! [`inspect`] validates that it is one JSON object and reads only the members the gateway
//! acts on (model, stream, `stream_options`, output token limit, `n`), skipping everything
//! else without allocating it; it also remembers where those members sit in the body.
//! [`rewrite`] then applies the gateway's [`Edits`] as byte splices at those places — the rest
//! of the body (messages, images, tools) is copied once, never re-serialised — or returns the
//! body itself, zero-copy, when nothing changes. Errors ([`InspectError`]) are client errors
//! (HTTP 400) with messages that say what to fix.

use bytes::{BufMut, Bytes, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;

mod members;

use members::{Members, Span, scan_object};

const BOM: &[u8] = b"\xEF\xBB\xBF";

const TOP_KEYS: [&str; 14] = [
    "model",
    "stream",
    "stream_options",
    "max_completion_tokens",
    "max_tokens",
    "max_output_tokens",
    "n",
    "previous_response_id",
    "background",
    "prompt_cache_key",
    "user",
    "conversation",
    "size",
    "quality",
];

const STREAM_OPTIONS_KEYS: [&str; 1] = ["include_usage"];

/// What the gateway needs to know about a request, read by [`inspect`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestInfo {
    /// `model`; `None` when absent or null (Azure deployment paths need none).
    pub model: Option<String>,
    /// `stream`; false when absent or null.
    pub stream: bool,
    /// The client's `stream_options.include_usage`, when it set one (not null).
    pub include_usage: Option<bool>,
    /// The body has a `stream_options` member (object or null).
    pub has_stream_options: bool,
    /// The first present, non-null of `max_completion_tokens`, `max_tokens`,
    /// `max_output_tokens` (responses API).
    pub max_tokens: Option<u64>,
    /// `n` (number of choices), when set.
    pub n: Option<u64>,
    /// `previous_response_id` (Responses API): the stored response this one continues.
    pub previous_response_id: Option<String>,
    /// `conversation` (Responses API; a string or `{"id": …}`): the conversation this
    /// response adds to.
    pub conversation: Option<String>,
    /// `background` (Responses API): the response runs on after the call returns.
    pub background: bool,
    /// `prompt_cache_key`, when set.
    pub prompt_cache_key: Option<String>,
    /// `user`, when set.
    pub user: Option<String>,
    /// `size` (images), when a string.
    pub size: Option<String>,
    /// `quality` (images), when a string.
    pub quality: Option<String>,
    layout: Layout,
}

impl RequestInfo {
    /// True when the client itself asked for usage in the stream.
    pub fn client_wants_usage(&self) -> bool {
        self.include_usage == Some(true)
    }
}

/// Where the edited members sit in the body; offsets are absolute byte positions.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Layout {
    len: usize,
    /// The top-level `{`.
    open: usize,
    /// Top-level member count.
    members: usize,
    model: Option<Span>,
    stream_options: Option<StreamOptionsLayout>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StreamOptionsLayout {
    Null(Span),
    Object {
        open: usize,
        members: usize,
        include_usage: Option<Span>,
    },
}

/// Why a request body was refused; every variant is a client error (HTTP 400).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InspectError {
    /// No body, or only whitespace.
    #[error("the request body is empty; send a JSON object")]
    Empty,
    /// Not JSON; `message` carries serde's description with line and column.
    #[error("the request body is not valid JSON: {message}")]
    Syntax {
        /// 1-based line of the fault.
        line: usize,
        /// 1-based column of the fault.
        column: usize,
        /// What was wrong, with its position.
        message: String,
    },
    /// Valid JSON, but not an object.
    #[error("the request body must be a JSON object, not {found}")]
    NotObject {
        /// What it is instead ("an array", "a string", …).
        found: &'static str,
    },
    /// A member the gateway reads has the wrong type.
    #[error("`{field}` must be {expected}")]
    WrongType {
        /// The member, dotted for nested ones (`stream_options.include_usage`).
        field: &'static str,
        /// The expected type, with an article ("a boolean").
        expected: &'static str,
    },
    /// A member the gateway reads appears twice; refused so that the gateway and the backend
    /// cannot disagree about which one counts.
    #[error("`{field}` appears more than once in the request body")]
    DuplicateField {
        /// The repeated member.
        field: &'static str,
    },
    /// Bytes that are not UTF-8 (JSON text must be), e.g. inside a string.
    #[error("the request body is not valid UTF-8 (at byte {at}); JSON text must be UTF-8")]
    NotUtf8 {
        /// Offset of the first invalid byte.
        at: usize,
    },
    /// Arrays and objects nested deeper than any API accepts.
    #[error("the request body nests arrays and objects more than {limit} levels deep")]
    TooDeep {
        /// The deepest nesting accepted.
        limit: usize,
    },
}

/// Deepest nesting of arrays and objects accepted in a request body (serde_json's own limit
/// when it builds values; tool schemas stay far below it).
pub const MAX_DEPTH: usize = 128;

/// Whether `json` nests arrays and objects deeper than `limit`, in one pass that skips
/// strings (and the escapes in them). Bounded work: linear in the body, no allocation.
fn nests_deeper_than(json: &[u8], limit: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in json {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Reads what the gateway needs from a request body.
///
/// Accepts a leading UTF-8 byte order mark and JSON whitespace; a member set to `null` counts
/// as absent.
///
/// # Errors
/// [`InspectError`] when the body is empty, not JSON, not an object, or a member the gateway
/// reads has the wrong type or is repeated.
pub fn inspect(body: &[u8]) -> Result<RequestInfo, InspectError> {
    let bom = if body.starts_with(BOM) { BOM.len() } else { 0 };
    let json = &body[bom..];
    let Some(first) = json.iter().position(|b| !is_json_space(*b)) else {
        return Err(InspectError::Empty);
    };
    if json[first] != b'{' {
        return Err(not_an_object(json));
    }
    if let Err(e) = std::str::from_utf8(json) {
        return Err(InspectError::NotUtf8 {
            at: bom + e.valid_up_to(),
        });
    }
    if nests_deeper_than(json, MAX_DEPTH) {
        return Err(InspectError::TooDeep { limit: MAX_DEPTH });
    }
    let found = scan_object(json, &TOP_KEYS).map_err(|e| match e.duplicate {
        Some(i) => InspectError::DuplicateField { field: TOP_KEYS[i] },
        None => syntax(&e.error),
    })?;
    let [
        model,
        stream,
        stream_options,
        max_completion,
        max_tokens,
        max_output,
        n,
        previous_response_id,
        background,
        prompt_cache_key,
        user,
        conversation,
        size,
        quality,
    ] = found.values;
    // Read only when they are strings: other operations may use these names differently.
    let text =
        |raw: Option<&RawValue>| raw.and_then(|r| serde_json::from_str::<String>(r.get()).ok());
    let (stream_options_layout, include_usage) = stream_options_of(body, stream_options)?;
    let count = "a non-negative integer";
    let max_completion = typed::<u64>(max_completion, "max_completion_tokens", count)?;
    let max_tokens = typed::<u64>(max_tokens, "max_tokens", count)?;
    let max_output = typed::<u64>(max_output, "max_output_tokens", count)?;
    Ok(RequestInfo {
        model: typed::<String>(model, "model", "a string")?,
        stream: typed::<bool>(stream, "stream", "a boolean")?.unwrap_or(false),
        include_usage,
        has_stream_options: stream_options.is_some(),
        max_tokens: max_completion.or(max_tokens).or(max_output),
        n: typed::<u64>(n, "n", count)?,
        previous_response_id: typed::<String>(
            previous_response_id,
            "previous_response_id",
            "a string",
        )?,
        background: typed::<bool>(background, "background", "a boolean")?.unwrap_or(false),
        conversation: conversation_id(conversation)?,
        prompt_cache_key: typed::<String>(prompt_cache_key, "prompt_cache_key", "a string")?,
        user: typed::<String>(user, "user", "a string")?,
        size: text(size),
        quality: text(quality),
        layout: Layout {
            len: body.len(),
            open: bom + first,
            members: found.count,
            model: model.map(|raw| Span::of(body, raw)),
            stream_options: stream_options_layout,
        },
    })
}

/// `conversation`: a conversation id, or an object with one.
fn conversation_id(raw: Option<&RawValue>) -> Result<Option<String>, InspectError> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Conversation {
        Id(String),
        Object { id: String },
    }
    match raw.map(RawValue::get) {
        None | Some("null") => Ok(None),
        Some(text) => match serde_json::from_str::<Conversation>(text) {
            Ok(Conversation::Id(id) | Conversation::Object { id }) => Ok(Some(id)),
            Err(_) => Err(InspectError::WrongType {
                field: "conversation",
                expected: "a string or an object with an `id`",
            }),
        },
    }
}

/// `stream_options`: its layout and `include_usage`.
fn stream_options_of(
    body: &[u8],
    raw: Option<&RawValue>,
) -> Result<(Option<StreamOptionsLayout>, Option<bool>), InspectError> {
    let Some(raw) = raw else {
        return Ok((None, None));
    };
    let span = Span::of(body, raw);
    if raw.get() == "null" {
        return Ok((Some(StreamOptionsLayout::Null(span)), None));
    }
    let wrong = InspectError::WrongType {
        field: "stream_options",
        expected: "an object",
    };
    if !raw.get().starts_with('{') {
        return Err(wrong);
    }
    let found: Members<'_, 1> =
        scan_object(raw.get().as_bytes(), &STREAM_OPTIONS_KEYS).map_err(|e| match e.duplicate {
            Some(_) => InspectError::DuplicateField {
                field: "stream_options.include_usage",
            },
            None => wrong,
        })?;
    let [include_usage] = found.values;
    let expected = "a boolean";
    let value = typed::<bool>(include_usage, "stream_options.include_usage", expected)?;
    let layout = StreamOptionsLayout::Object {
        open: span.start,
        members: found.count,
        include_usage: include_usage.map(|raw| Span::of(body, raw)),
    };
    Ok((Some(layout), value))
}

/// A member's value as `T`; null is `None`.
fn typed<'de, T: Deserialize<'de>>(
    raw: Option<&'de RawValue>,
    field: &'static str,
    expected: &'static str,
) -> Result<Option<T>, InspectError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    serde_json::from_str::<Option<T>>(raw.get())
        .map_err(|_| InspectError::WrongType { field, expected })
}

fn not_an_object(json: &[u8]) -> InspectError {
    if let Err(error) = serde_json::from_slice::<serde::de::IgnoredAny>(json) {
        return syntax(&error);
    }
    let first = json.iter().find(|b| !is_json_space(**b)).copied();
    let found = match first {
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    };
    InspectError::NotObject { found }
}

fn syntax(error: &serde_json::Error) -> InspectError {
    InspectError::Syntax {
        line: error.line(),
        column: error.column(),
        message: error.to_string(),
    }
}

fn is_json_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// The gateway's changes to a request body.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Edits<'a> {
    /// Set the top-level `model` to this (replacing it, or inserting it when absent).
    pub model: Option<&'a str>,
    /// Make `stream_options.include_usage` true. Only applied to streaming requests
    /// (backends refuse `stream_options` without `stream: true`).
    pub include_usage: bool,
}

/// Why [`rewrite`] could not edit a body.
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    /// The [`RequestInfo`] was not read from this body.
    #[error("request info does not describe this body")]
    InfoMismatch,
    /// A value could not be encoded as JSON.
    #[error("cannot encode an edited value: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Applies `edits` to `body`, which `info` must have been read from by [`inspect`].
///
/// Returns `body` itself (zero-copy) when nothing changes; otherwise one new buffer where
/// only the edited members differ: the model value is replaced in place or `"model":…` is
/// inserted after the opening `{`; `"stream_options":{"include_usage":true}` is inserted
/// there when the body has no `stream_options`, a null `stream_options` is replaced by
/// `{"include_usage":true}`, and inside an existing object `include_usage` is set to `true`
/// or inserted. The result is valid JSON whenever the input was.
///
/// # Errors
/// [`RewriteError::InfoMismatch`] when `info` does not come from this body.
pub fn rewrite(body: &Bytes, info: &RequestInfo, edits: &Edits<'_>) -> Result<Bytes, RewriteError> {
    let layout = &info.layout;
    if layout.len != body.len() || body.get(layout.open) != Some(&b'{') {
        return Err(RewriteError::InfoMismatch);
    }
    let mut splices: Vec<(usize, usize, Vec<u8>)> = Vec::new();
    let mut inserted: Vec<u8> = Vec::new();
    if let Some(model) = edits.model.filter(|m| info.model.as_deref() != Some(*m)) {
        let encoded = serde_json::to_vec(model)?;
        match layout.model {
            Some(span) => splices.push((span.start, span.end, encoded)),
            None => push_member(&mut inserted, b"\"model\":", &encoded),
        }
    }
    if edits.include_usage && info.stream && !info.client_wants_usage() {
        const OPTIONS: &[u8] = b"{\"include_usage\":true}";
        match layout.stream_options {
            None => push_member(&mut inserted, b"\"stream_options\":", OPTIONS),
            Some(StreamOptionsLayout::Null(span)) => {
                splices.push((span.start, span.end, OPTIONS.to_vec()));
            }
            Some(StreamOptionsLayout::Object {
                include_usage: Some(span),
                ..
            }) => splices.push((span.start, span.end, b"true".to_vec())),
            Some(StreamOptionsLayout::Object { open, members, .. }) => {
                let mut member = b"\"include_usage\":true".to_vec();
                if members > 0 {
                    member.push(b',');
                }
                splices.push((open + 1, open + 1, member));
            }
        }
    }
    if !inserted.is_empty() {
        if layout.members > 0 {
            inserted.push(b',');
        }
        splices.push((layout.open + 1, layout.open + 1, inserted));
    }
    splice(body, splices)
}

fn push_member(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    if !out.is_empty() {
        out.push(b',');
    }
    out.extend_from_slice(key);
    out.extend_from_slice(value);
}

/// `body` with each `(start, end)` range replaced; ranges must not overlap.
fn splice(body: &Bytes, mut splices: Vec<(usize, usize, Vec<u8>)>) -> Result<Bytes, RewriteError> {
    if splices.is_empty() {
        return Ok(body.clone());
    }
    splices.sort_by_key(|(start, ..)| *start);
    let extra: usize = splices.iter().map(|(.., text)| text.len()).sum();
    let mut out = BytesMut::with_capacity(body.len() + extra);
    let mut pos = 0;
    for (start, end, text) in &splices {
        let kept = body.get(pos..*start).ok_or(RewriteError::InfoMismatch)?;
        out.put_slice(kept);
        out.put_slice(text);
        pos = *end;
    }
    out.put_slice(body.get(pos..).ok_or(RewriteError::InfoMismatch)?);
    Ok(out.freeze())
}

#[cfg(test)]
mod tests;
