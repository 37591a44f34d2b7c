//! Per-request bookkeeping of a model-route request: the ledger entry being filled (recorded
//! at most once, here or handed to whatever ends the answer), the headers every answer carries
//! (`x-sim-backend`, `x-request-id`, rate limits) and the injected fault that applies.
//!
//! Input: the request head and the backend. Output: an [`Exchange`] the handlers fill in.

use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use hyper::body::Incoming;

use super::admin::X_SIM_BACKEND;
use super::backend::Backend;
use super::body::SimBody;
use super::faults::FaultAction;
use super::ledger::LedgerEntry;
use super::ratelimit::{self, Decision, Quota};
use super::reply::Reply;
use super::route::{self, Api, Flavour};
use super::text;

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What an injected fault leaves of a request.
#[derive(Debug)]
pub enum Faulted {
    /// Serve it; the fault, if any, still shapes the answer (malformed or cut-off bodies).
    Serve(Option<FaultAction>),
    /// Close the connection without an answer.
    Drop,
}

/// One request's ledger entry in the making, and its common response headers.
pub struct Exchange {
    /// The entry; filled in as the request is understood.
    pub entry: LedgerEntry,
    /// When the request arrived.
    pub started: Instant,
    /// The rate window state the answer reports.
    pub quota: Option<Quota>,
    request_id: HeaderValue,
    recorded: bool,
}

impl Exchange {
    /// Starts the entry of `request` on `backend`.
    pub fn begin(backend: &Backend, request: &Request<Incoming>) -> Self {
        let headers = request.headers();
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let request_id = headers
            .get(&X_REQUEST_ID)
            .filter(|v| !v.is_empty())
            .cloned()
            .or_else(|| HeaderValue::try_from(text::request_id()).ok())
            .unwrap_or_else(|| HeaderValue::from_static("sim"));
        let clock = &backend.shared.clock;
        let entry = LedgerEntry {
            timestamp_ms: clock
                .wall()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            request_id: String::from_utf8_lossy(request_id.as_bytes()).into_owned(),
            backend: backend.name.clone(),
            path: request.uri().path().to_owned(),
            api_version: request
                .uri()
                .query()
                .and_then(|q| route::query_param(q, "api-version")),
            api_key: header("api-key"),
            authorization: header("authorization"),
            traceparent: header("traceparent"),
            ..LedgerEntry::default()
        };
        Self {
            entry,
            request_id,
            started: clock.now(),
            quota: None,
            recorded: false,
        }
    }

    /// Records the entry with `status` now, unless it was recorded or handed over already.
    pub fn record(&mut self, backend: &Backend, status: u16) {
        if self.recorded {
            return;
        }
        self.recorded = true;
        self.entry.status = status;
        self.entry.duration_ms = backend
            .shared
            .clock
            .now()
            .saturating_duration_since(self.started)
            .as_millis() as u64;
        backend
            .shared
            .ledger
            .record(std::mem::take(&mut self.entry));
    }

    /// Hands the entry over to whatever records it later (a stream's end, a background
    /// job); this exchange records nothing more.
    pub fn take_entry(&mut self) -> LedgerEntry {
        self.recorded = true;
        std::mem::take(&mut self.entry)
    }

    /// Picks the request's fault, notes it in the entry and applies what acts before the
    /// answer: `slowFirstByte` waits, `connectionClose` drops.
    ///
    /// # Errors
    /// The error answer of a `status` fault.
    pub async fn fault(
        &mut self,
        backend: &Backend,
        flavour: Flavour,
        api: Api,
        stream: bool,
    ) -> Result<Faulted, Reply> {
        let fault = backend.select_fault(stream);
        self.entry.fault = fault.as_ref().map(|f| f.name().to_owned());
        match fault {
            Some(FaultAction::Status {
                status,
                headers,
                message,
            }) => Err(Reply::fault(
                flavour,
                api,
                status,
                headers,
                message.as_deref(),
            )),
            Some(FaultAction::ConnectionClose) => Ok(Faulted::Drop),
            Some(FaultAction::SlowFirstByte { delay }) => {
                tokio::time::sleep(delay).await;
                Ok(Faulted::Serve(None))
            }
            other => Ok(Faulted::Serve(other)),
        }
    }

    /// Admits a call of `api` costing `cost` tokens into the backend's rate window, noting
    /// the window for the answer's headers.
    ///
    /// # Errors
    /// 429 with Azure's message and retry headers when a limit is reached.
    pub fn admit(
        &mut self,
        backend: &Backend,
        api: Api,
        cost: u64,
        api_version: Option<&str>,
    ) -> Result<(), Reply> {
        match backend.admit(cost) {
            Decision::Admitted(quota) => {
                self.quota = Some(quota);
                Ok(())
            }
            Decision::Limited {
                quota,
                retry_after,
                exceeded,
            } => {
                self.quota = Some(quota);
                Err(Reply::rate_limited(
                    api,
                    api_version,
                    &quota,
                    retry_after,
                    exceeded,
                ))
            }
        }
    }

    /// Notes what arrived of an upload body, and when.
    pub fn note_upload(&mut self, stats: UploadStats) {
        self.entry.upload_bytes = Some(stats.bytes);
        self.entry.first_byte_ms = UploadStats::millis(stats.first_byte);
        self.entry.last_byte_ms = UploadStats::millis(stats.last_byte);
    }

    /// A 200 JSON answer (cut in half by a `malformedJson` fault), recorded with the tokens
    /// the entry was given (none, for a call that bills nothing).
    pub fn json_answer(
        &mut self,
        backend: &Backend,
        answer: &serde_json::Value,
        fault: Option<&FaultAction>,
    ) -> Response<SimBody> {
        let mut bytes = Bytes::from(answer.to_string());
        if fault == Some(&FaultAction::MalformedJson) {
            bytes = bytes.slice(..bytes.len() / 2);
        }
        self.record(backend, 200);
        SimBody::full(bytes).into_ok("application/json")
    }

    /// Adds `x-sim-backend`, `x-request-id` and the rate-limit headers the response does not
    /// already carry.
    pub fn decorate(
        &self,
        backend: &Backend,
        mut response: Response<SimBody>,
    ) -> Response<SimBody> {
        let headers = response.headers_mut();
        if let Ok(name) = HeaderValue::try_from(backend.name.as_str()) {
            headers.insert(X_SIM_BACKEND.clone(), name);
        }
        headers.insert(X_REQUEST_ID.clone(), self.request_id.clone());
        if let Some(quota) = self.quota.or_else(|| backend.quota()) {
            let mut limits = HeaderMap::new();
            ratelimit::write_headers(&mut limits, &quota, None);
            for (name, value) in limits.into_iter().filter_map(|(n, v)| Some((n?, v))) {
                headers.entry(name).or_insert(value);
            }
        }
        response
    }
}

/// How much of an upload arrived, and when.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UploadStats {
    /// Body bytes read.
    pub bytes: u64,
    /// When the first body bytes arrived, after the request head.
    pub first_byte: Option<Duration>,
    /// When the last body bytes arrived, after the request head.
    pub last_byte: Option<Duration>,
}

impl UploadStats {
    /// Milliseconds of a duration, for the ledger.
    pub fn millis(duration: Option<Duration>) -> Option<u64> {
        duration.map(|d| d.as_millis() as u64)
    }
}
