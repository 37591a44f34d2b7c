//! What the gateway reads from Responses API answers to route later calls: the id (and
//! whether it runs in the background) of a response just created, from its JSON answer or
//! the `response.created` event that opens its stream, and whether a retrieved response has
//! finished.
//!
//! Input: answer bytes. Output: plain values; `None`/`false` for anything unreadable (never
//! an error: routing then falls back to searching the backends).

use serde::Deserialize;

/// A response the backend just created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Created {
    /// Its id (`resp_…`).
    pub id: String,
    /// Created with `background: true`.
    pub background: bool,
}

#[derive(Deserialize)]
struct Object {
    id: Option<String>,
    #[serde(default)]
    background: Option<bool>,
    status: Option<String>,
}

#[derive(Deserialize)]
struct Event {
    response: Option<Object>,
}

/// The created response of a create answer: the JSON object, or (`stream`) the first
/// `data:` event of the stream that carries a `response`.
pub fn created(body: &[u8], stream: bool) -> Option<Created> {
    let object = if stream {
        first_event_response(body)?
    } else {
        serde_json::from_slice::<Object>(body).ok()?
    };
    let id = object.id.filter(|id| !id.is_empty())?;
    Some(Created {
        id,
        background: object.background.unwrap_or(false),
    })
}

fn first_event_response(body: &[u8]) -> Option<Object> {
    let text = std::str::from_utf8(body).ok().or_else(|| {
        // The first chunk may end inside a character; read what is complete.
        let valid = std::str::from_utf8(body).err()?.valid_up_to();
        std::str::from_utf8(&body[..valid]).ok()
    })?;
    text.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .find_map(|data| serde_json::from_str::<Event>(data.trim()).ok()?.response)
}

/// Whether a retrieved response object has finished (completed, failed, incomplete or
/// cancelled), so its usage is final.
pub fn finished(body: &[u8]) -> bool {
    serde_json::from_slice::<Object>(body)
        .ok()
        .and_then(|object| object.status)
        .is_some_and(|status| is_final(&status))
}

fn is_final(status: &str) -> bool {
    matches!(status, "completed" | "failed" | "incomplete" | "cancelled")
}

/// The finished response object in a retrieve's answer: the JSON object itself, or — a
/// resumed stream (`GET responses/{id}?stream=true`) — the `response` of its last event
/// whose status is final. `None` while it has not finished.
pub fn finished_object(body: &[u8]) -> Option<Vec<u8>> {
    if finished(body) {
        return Some(body.to_vec());
    }
    #[derive(Deserialize)]
    struct RawEvent<'a> {
        #[serde(borrow)]
        response: Option<&'a serde_json::value::RawValue>,
    }
    let text = std::str::from_utf8(body).ok()?;
    text.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .filter_map(|data| {
            serde_json::from_str::<RawEvent<'_>>(data.trim())
                .ok()?
                .response
        })
        .map(|raw| raw.get().as_bytes())
        .rfind(|object| finished(object))
        .map(<[u8]>::to_vec)
}

#[cfg(test)]
mod tests;
