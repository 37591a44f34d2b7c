//! Fault injection: what a fault looks like in config and on `/_sim/faults`, and which fault
//! (if any) the next request gets.
//!
//! Input: [`FaultSpec`]s (YAML or JSON), then per request whether it streams and a random
//! roll. Output: the [`FaultAction`] to apply. Faults are tried in the order they were added;
//! a fault that cannot affect the request (a stream fault on a non-streaming request, or the
//! reverse) is skipped without being used up.

use std::collections::BTreeMap;
use std::time::Duration;

use http::{HeaderName, HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};

/// What a fault does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FaultMode {
    /// Answer with `status` (+ `headers`) and an OpenAI-shaped error body.
    Status,
    /// Stream `afterChunks` SSE events, then reset the TCP connection.
    ResetMidStream,
    /// 200 with a truncated JSON body (non-streaming requests).
    MalformedJson,
    /// A garbage line and an event with broken JSON after `afterChunks` events (streams).
    MalformedSse,
    /// Wait `delayMs` before the response headers.
    SlowFirstByte,
    /// Read the request, then close the connection without a response.
    ConnectionClose,
}

/// A fault as written in config or posted to `/_sim/faults`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultSpec {
    /// What to do.
    pub mode: FaultMode,
    /// Apply to this many matching requests, then expire; absent = until cleared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Apply to each matching request with this probability (0–1); absent = always.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
    /// `status` mode: the HTTP status (400–599).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// `status` mode: extra response headers, e.g. `{"retry-after-ms": "1500"}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// `status` mode: the error message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `resetMidStream` / `malformedSse`: SSE events sent first (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_chunks: Option<u32>,
    /// `slowFirstByte`: the delay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
}

/// A fault ready to apply to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultAction {
    /// Answer with this status, headers and message.
    Status {
        /// Status code.
        status: StatusCode,
        /// Extra headers.
        headers: Vec<(HeaderName, HeaderValue)>,
        /// Error message, if configured.
        message: Option<String>,
    },
    /// Reset the connection after this many SSE events.
    ResetMidStream {
        /// Events sent before the reset.
        after_chunks: u32,
    },
    /// Truncated JSON body.
    MalformedJson,
    /// Broken SSE after this many events.
    MalformedSse {
        /// Events sent before the broken ones.
        after_chunks: u32,
    },
    /// Delay before headers.
    SlowFirstByte {
        /// The delay.
        delay: Duration,
    },
    /// Close without a response.
    ConnectionClose,
}

impl FaultAction {
    /// The mode name, as recorded in the ledger.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Status { .. } => "status",
            Self::ResetMidStream { .. } => "resetMidStream",
            Self::MalformedJson => "malformedJson",
            Self::MalformedSse { .. } => "malformedSse",
            Self::SlowFirstByte { .. } => "slowFirstByte",
            Self::ConnectionClose => "connectionClose",
        }
    }

    fn applies_to(&self, stream: bool) -> bool {
        match self {
            Self::ResetMidStream { .. } | Self::MalformedSse { .. } => stream,
            Self::MalformedJson => !stream,
            _ => true,
        }
    }
}

impl FaultSpec {
    /// A fault of `mode` with no other settings.
    pub fn new(mode: FaultMode) -> Self {
        Self {
            mode,
            count: None,
            probability: None,
            status: None,
            headers: BTreeMap::new(),
            message: None,
            after_chunks: None,
            delay_ms: None,
        }
    }

    /// Checks the fields against the mode.
    ///
    /// # Errors
    /// A missing or out-of-range field for the mode, a field the mode does not use, a zero
    /// `count`, a probability outside 0–1, or an invalid header.
    pub fn validate(&self) -> Result<(), String> {
        self.action().map(|_| ())
    }

    /// The action this spec applies.
    ///
    /// # Errors
    /// As [`FaultSpec::validate`].
    pub fn action(&self) -> Result<FaultAction, String> {
        if self.count == Some(0) {
            return Err("count must be at least 1 (omit it for until cleared)".into());
        }
        if let Some(p) = self.probability
            && !(0.0..=1.0).contains(&p)
        {
            return Err(format!("probability must be within 0..=1, got {p}"));
        }
        let mode = self.mode;
        let only = |field: &str, present: bool, modes: &str| {
            if present {
                Err(format!(
                    "`{field}` applies only to {modes}, not to {mode:?}"
                ))
            } else {
                Ok(())
            }
        };
        let is = |m: FaultMode| mode == m;
        let is_status = is(FaultMode::Status);
        only("status", self.status.is_some() && !is_status, "status")?;
        only("headers", !self.headers.is_empty() && !is_status, "status")?;
        only("message", self.message.is_some() && !is_status, "status")?;
        let chunked = is(FaultMode::ResetMidStream) || is(FaultMode::MalformedSse);
        only(
            "afterChunks",
            self.after_chunks.is_some() && !chunked,
            "resetMidStream and malformedSse",
        )?;
        only(
            "delayMs",
            self.delay_ms.is_some() && !is(FaultMode::SlowFirstByte),
            "slowFirstByte",
        )?;
        let after_chunks = self.after_chunks.unwrap_or(1);
        Ok(match mode {
            FaultMode::Status => self.status_action()?,
            FaultMode::ResetMidStream => FaultAction::ResetMidStream { after_chunks },
            FaultMode::MalformedJson => FaultAction::MalformedJson,
            FaultMode::MalformedSse => FaultAction::MalformedSse { after_chunks },
            FaultMode::SlowFirstByte => FaultAction::SlowFirstByte {
                delay: Duration::from_millis(
                    self.delay_ms
                        .ok_or("slowFirstByte needs `delayMs` (milliseconds)")?,
                ),
            },
            FaultMode::ConnectionClose => FaultAction::ConnectionClose,
        })
    }

    fn status_action(&self) -> Result<FaultAction, String> {
        let code = self
            .status
            .ok_or("status mode needs `status` (e.g. 429, 500, 503)")?;
        let status = StatusCode::from_u16(code)
            .ok()
            .filter(|s| s.is_client_error() || s.is_server_error())
            .ok_or_else(|| format!("status must be within 400..=599, got {code}"))?;
        let mut headers = Vec::with_capacity(self.headers.len());
        for (name, value) in &self.headers {
            let name = HeaderName::try_from(name.as_str())
                .map_err(|_| format!("`{name}` is not a valid header name"))?;
            let value = HeaderValue::try_from(value.as_str())
                .map_err(|_| format!("header `{name}`: `{value}` is not a valid value"))?;
            headers.push((name, value));
        }
        Ok(FaultAction::Status {
            status,
            headers,
            message: self.message.clone(),
        })
    }
}

/// Parses the body of `POST /_sim/faults`: one fault, an array, or `{"faults": [...]}`.
///
/// # Errors
/// Invalid JSON or an invalid fault, with its index.
pub fn parse_posted(body: &[u8]) -> Result<Vec<FaultSpec>, String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not valid JSON: {e}"))?;
    let items = match value {
        serde_json::Value::Array(items) => items,
        serde_json::Value::Object(mut map) if map.contains_key("faults") => {
            match map.remove("faults") {
                Some(serde_json::Value::Array(items)) if map.is_empty() => items,
                _ => return Err("`faults` must be the only key and hold an array".into()),
            }
        }
        single => vec![single],
    };
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            let spec: FaultSpec =
                serde_json::from_value(item).map_err(|e| format!("faults[{index}]: {e}"))?;
            spec.validate()
                .map_err(|e| format!("faults[{index}]: {e}"))?;
            Ok(spec)
        })
        .collect()
}

#[derive(Clone, Debug)]
struct ActiveFault {
    spec: FaultSpec,
    action: FaultAction,
    remaining: Option<u64>,
}

/// The faults in force on one backend.
#[derive(Clone, Debug, Default)]
pub struct FaultSet {
    active: Vec<ActiveFault>,
}

/// A fault as listed by `GET /_sim/faults`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultView {
    /// The fault as configured.
    #[serde(flatten)]
    pub spec: FaultSpec,
    /// Requests it still applies to; absent = until cleared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remaining: Option<u64>,
}

impl FaultSet {
    /// Appends faults after the ones in force.
    ///
    /// # Errors
    /// The first invalid spec; nothing is added then.
    pub fn add(&mut self, specs: &[FaultSpec]) -> Result<(), String> {
        let mut added = Vec::with_capacity(specs.len());
        for spec in specs {
            added.push(ActiveFault {
                action: spec.action()?,
                remaining: spec.count,
                spec: spec.clone(),
            });
        }
        self.active.extend(added);
        Ok(())
    }

    /// Removes every fault.
    pub fn clear(&mut self) {
        self.active.clear();
    }

    /// The faults in force, in order.
    pub fn list(&self) -> Vec<FaultView> {
        self.active
            .iter()
            .map(|f| FaultView {
                spec: f.spec.clone(),
                remaining: f.remaining,
            })
            .collect()
    }

    /// Picks the fault for a request: the first that applies to it and whose probability
    /// roll (`roll()` in `0..1`) succeeds; counts it down and drops it when used up.
    pub fn select(&mut self, stream: bool, mut roll: impl FnMut() -> f64) -> Option<FaultAction> {
        let index = self.active.iter().position(|fault| {
            fault.action.applies_to(stream) && fault.spec.probability.is_none_or(|p| roll() < p)
        })?;
        let fault = &mut self.active[index];
        let action = fault.action.clone();
        if let Some(remaining) = fault.remaining.as_mut() {
            *remaining -= 1;
            if *remaining == 0 {
                self.active.remove(index);
            }
        }
        Some(action)
    }
}

#[cfg(test)]
mod tests;
