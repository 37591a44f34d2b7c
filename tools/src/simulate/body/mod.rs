//! Response bodies: a whole buffer, or an SSE stream that paces its deltas, can reset the
//! connection mid-stream, and writes its ledger entry when it ends.
//!
//! Input: precomputed [`SseEvent`]s, pacing, an optional reset point, the ledger entry draft
//! (none when something else bills the call, as a background response's job does) and an
//! optional [`EndHook`]. Output: body frames for hyper. The hook runs and the entry is recorded
//! before the last frame is handed over (so a client that saw the end of the stream finds it
//! in the ledger and the store), before the reset error, or on drop when the client went away
//! (`aborted`). A stream cut short bills its reasoning tokens (generated before the first
//! visible token) plus the visible tokens of the deltas actually sent.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Response};
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::ledger::{Ledger, LedgerEntry, RAW_STREAM_CAP};
use super::sse::SseEvent;
use spillway_sidecar::clock::Clock;
use spillway_sidecar::usage::tokenizer;

/// Time given to the socket to flush the events before a simulated reset.
const RESET_FLUSH_DELAY: Duration = Duration::from_millis(20);

/// Asks the connection that carries a response to end with a TCP reset.
#[derive(Clone, Debug, Default)]
pub struct ConnControl(Arc<AtomicBool>);

impl ConnControl {
    /// Marks the connection for reset when it closes.
    pub fn request_reset(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether a reset was requested.
    pub fn reset_requested(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// The error a stream ends with when it simulates a reset.
#[derive(Debug, thiserror::Error)]
#[error("simulated connection reset mid-stream")]
pub struct SimulatedReset;

/// A response body.
pub enum SimBody {
    /// A complete buffer (taken on first poll).
    Full(Option<Bytes>),
    /// A paced SSE stream.
    Stream(Box<SseStream>),
}

impl SimBody {
    /// A buffered body.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        Self::Full(Some(bytes.into()))
    }

    /// A 200 response carrying this body as `content_type`.
    pub fn into_ok(self, content_type: &'static str) -> Response<Self> {
        let mut response = Response::new(self);
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        response
    }
}

impl Body for SimBody {
    type Data = Bytes;
    type Error = SimulatedReset;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, SimulatedReset>>> {
        match self.get_mut() {
            Self::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Self::Stream(stream) => stream.poll_next(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Full(bytes) => bytes.is_none(),
            Self::Stream(stream) => stream.finished,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            Self::Full(None) => SizeHint::with_exact(0),
            Self::Stream(_) => SizeHint::default(),
        }
    }
}

/// Where a stream's ledger entry goes when it ends.
pub struct StreamRecord {
    /// The shared ledger.
    pub ledger: Arc<Ledger>,
    /// The entry, complete except for completion tokens, raw bytes and duration.
    pub entry: LedgerEntry,
    /// Model used to count the tokens of a partial completion.
    pub model: String,
    /// Billed completion tokens when the stream completes (reasoning included).
    pub full_tokens: u64,
    /// Reasoning tokens, all generated before the first visible token: billed however the
    /// stream ends.
    pub reasoning_tokens: u64,
    /// Clock for the duration.
    pub clock: Arc<dyn Clock>,
    /// When the request arrived.
    pub started: std::time::Instant,
    /// Bills `full_tokens` however the stream ends (generated audio), instead of the
    /// reasoning plus the visible tokens sent.
    pub bills_in_full: bool,
    /// Keeps the bytes sent as the entry's `rawStream` (text streams; not binary audio).
    pub keeps_raw: bool,
}

/// How a stream ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// Every event was handed over.
    Complete,
    /// An injected reset cut it.
    Reset,
    /// The client went away first.
    ClientGone,
}

/// Runs once when a stream ends, with how it ended.
pub type EndHook = Box<dyn FnOnce(Ending) + Send>;

/// One hook running `first`, then `second` (either may be absent).
pub fn join_hooks(first: Option<EndHook>, second: Option<EndHook>) -> Option<EndHook> {
    match (first, second) {
        (Some(first), Some(second)) => Some(Box::new(move |ending| {
            first(ending);
            second(ending);
        })),
        (first, second) => first.or(second),
    }
}

/// An SSE body: events in order, deltas `interval` apart.
pub struct SseStream {
    events: Vec<SseEvent>,
    next: usize,
    interval: Option<Duration>,
    deltas_sent: u32,
    first_poll: Option<Instant>,
    sleep: Option<Pin<Box<Sleep>>>,
    reset_sleep: Option<Pin<Box<Sleep>>>,
    reset_after: Option<usize>,
    conn: ConnControl,
    raw: Vec<u8>,
    raw_truncated: bool,
    record: Option<StreamRecord>,
    on_end: Option<EndHook>,
    finished: bool,
}

impl SseStream {
    /// A stream of `events`; `tokens_per_second` 0 sends all at once; `reset_after` ends with
    /// a reset of `conn` after that many events; `record` is its ledger entry, if it bills.
    pub fn new(
        events: Vec<SseEvent>,
        tokens_per_second: u32,
        reset_after: Option<usize>,
        conn: ConnControl,
        record: Option<StreamRecord>,
    ) -> Self {
        let interval = (tokens_per_second > 0)
            .then(|| Duration::from_secs_f64(1.0 / f64::from(tokens_per_second)));
        Self {
            events,
            next: 0,
            interval,
            deltas_sent: 0,
            first_poll: None,
            sleep: None,
            reset_sleep: None,
            reset_after: reset_after.map(|n| n.min(usize::MAX - 1)),
            conn,
            raw: Vec::new(),
            raw_truncated: false,
            record,
            on_end: None,
            finished: false,
        }
    }

    /// Runs `hook` when the stream ends.
    pub fn on_end(mut self, hook: EndHook) -> Self {
        self.on_end = Some(hook);
        self
    }

    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, SimulatedReset>>> {
        if self.finished {
            return Poll::Ready(None);
        }
        let start = *self.first_poll.get_or_insert_with(Instant::now);
        if self.reset_after.is_some_and(|n| self.next >= n) {
            // Let the events already written reach the client, then reset.
            let sleep = self
                .reset_sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(RESET_FLUSH_DELAY)));
            ready!(sleep.as_mut().poll(cx));
            self.conn.request_reset();
            self.finish(Ending::Reset);
            return Poll::Ready(Some(Err(SimulatedReset)));
        }
        let end_limit = self
            .reset_after
            .unwrap_or(usize::MAX)
            .min(self.events.len());
        let end = match self.interval {
            None => end_limit,
            Some(interval) => {
                if self.events[self.next].delta.is_some() && self.deltas_sent > 0 {
                    let due = start + interval * self.deltas_sent;
                    if Instant::now() < due {
                        let sleep = self
                            .sleep
                            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
                        sleep.as_mut().reset(due);
                        ready!(sleep.as_mut().poll(cx));
                    }
                }
                self.next + 1
            }
        };
        let frame = self.take(end);
        if self.next == self.events.len() {
            self.finish(Ending::Complete);
        }
        Poll::Ready(Some(Ok(Frame::data(frame))))
    }

    /// Takes events `next..end` as one buffer, noting deltas and raw bytes.
    fn take(&mut self, end: usize) -> Bytes {
        let slice = &self.events[self.next..end];
        let bytes = if let [one] = slice {
            one.bytes.clone()
        } else {
            let mut buf = BytesMut::with_capacity(slice.iter().map(|e| e.bytes.len()).sum());
            for event in slice {
                buf.extend_from_slice(&event.bytes);
            }
            buf.freeze()
        };
        self.deltas_sent += slice.iter().filter(|e| e.delta.is_some()).count() as u32;
        if self.record.as_ref().is_some_and(|r| r.keeps_raw) {
            let room = RAW_STREAM_CAP.saturating_sub(self.raw.len());
            if bytes.len() > room {
                self.raw_truncated = true;
            }
            self.raw.extend_from_slice(&bytes[..bytes.len().min(room)]);
        }
        self.next = end;
        bytes
    }

    fn finish(&mut self, ending: Ending) {
        self.finished = true;
        if let Some(hook) = self.on_end.take() {
            hook(ending);
        }
        let Some(mut record) = self.record.take() else {
            return;
        };
        let entry = &mut record.entry;
        entry.completion_tokens = if ending == Ending::Complete || record.bills_in_full {
            record.full_tokens
        } else {
            let sent: String = self.events[..self.next]
                .iter()
                .filter_map(|e| e.delta)
                .collect();
            record.reasoning_tokens + tokenizer::count_text(&record.model, &sent)
        };
        entry.aborted = ending == Ending::ClientGone;
        let raw = std::mem::take(&mut self.raw);
        if record.keeps_raw {
            entry.raw_stream = Some(String::from_utf8_lossy(&raw).into_owned());
            entry.raw_stream_truncated = self.raw_truncated;
        }
        entry.duration_ms = record
            .clock
            .now()
            .saturating_duration_since(record.started)
            .as_millis() as u64;
        record.ledger.record(std::mem::take(entry));
    }
}

impl Drop for SseStream {
    fn drop(&mut self) {
        if !self.finished {
            self.finish(Ending::ClientGone);
        }
    }
}

#[cfg(test)]
mod tests;
