//! Upload bodies (`multipart/form-data`: images to edit, audio to transcribe, files), read
//! streaming: the body is handed to the multipart parser one chunk at a time and never held
//! whole, so a 50 MiB upload costs a few chunks of memory, not 50 MiB. While it is read the
//! body is metered — bytes, and when the first and last of them arrived after the request head
//! ([`UploadStats`], the ledger's `uploadBytes`, `firstByteMs`, `lastByteMs`) — and optionally
//! paced to the backend's `uploadRateBytesPerSec`, so tests can hold an upload open.
//!
//! Input: the request (its `content-type` boundary and body), the backend's clock and upload
//! rate, and [`FormRules`]: which parts are files, and how many of their bytes to keep (only
//! the files API keeps any). Output: a [`Form`] — its text fields, and per file part the
//! bytes counted (and kept) — with the stats; or a [`FormError`](form::FormError) with the stats so far.
//!
//! Bounds: at most [`MAX_UPLOAD_BYTES`] per body, [`MAX_TEXT_FIELD`] per text field, and at
//! most [`MAX_UNPARSED`] bytes handed to the parser without it yielding a part or part data
//! (a body with no boundary or endless part headers is malformed, not buffered).

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::Stream;
use http_body::Body;
use tokio::time::Sleep;

use spillway_sidecar::clock::Clock;

use super::backend::Backend;
use super::exchange::Exchange;
use super::reply::Reply;

pub mod form;

pub use form::{Form, FormRules, read_form};

/// Largest upload body read. (Far above the APIs' own limits, so a gateway test can push a
/// large body through; the simulator never holds it.)
pub const MAX_UPLOAD_BYTES: u64 = 1 << 30;
/// Largest text field of a form (a prompt, say).
pub const MAX_TEXT_FIELD: usize = 1 << 20;
/// Most bytes handed to the multipart parser before it yields a part or part data.
pub const MAX_UNPARSED: u64 = 4 << 20;

pub use super::exchange::UploadStats;

/// Reads the form of `request` by `rules` on `backend` (paced to its upload rate), noting
/// the upload in the exchange's ledger entry whatever the outcome.
///
/// # Errors
/// 400 for a body that is not a multipart form or does not parse, or a text field too long;
/// 413 for a body above [`MAX_UPLOAD_BYTES`] or files above what the backend can hold.
pub async fn read<B>(
    backend: &Backend,
    exchange: &mut Exchange,
    request: http::Request<B>,
    rules: FormRules<'_>,
) -> Result<Form, Reply>
where
    B: Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let clock = Arc::clone(&backend.shared.clock);
    let rate = backend.timing().upload_rate_bytes_per_sec;
    let (stats, form) = read_form(request, clock, exchange.started, rate, rules).await;
    exchange.note_upload(stats);
    form.map_err(|err| err.reply(backend.files.max_bytes()))
}

/// Why a body stopped before its end.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Above [`MAX_UPLOAD_BYTES`].
    #[error("the upload exceeds {0} bytes")]
    TooLarge(u64),
    /// The parser took [`MAX_UNPARSED`] bytes without finding a part.
    #[error("no multipart part boundary or part headers within {0} bytes")]
    Unparsed(u64),
    /// The connection failed.
    #[error("the upload could not be read: {0}")]
    Read(Box<dyn std::error::Error + Send + Sync>),
}

/// What the body stream and the form reader share.
#[derive(Debug, Default)]
struct Shared {
    stats: UploadStats,
    /// Bytes handed to the parser since it last yielded a part or part data.
    unparsed: u64,
}

/// The shared meter of one upload.
#[derive(Clone, Debug, Default)]
struct Meter(Arc<Mutex<Shared>>);

impl Meter {
    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn stats(&self) -> UploadStats {
        self.lock().stats
    }

    /// The parser made progress: what it was handed is no longer pending.
    fn parsed(&self) {
        self.lock().unparsed = 0;
    }
}

/// An upload body as the multipart parser's stream: metered, paced, one chunk per poll.
struct MeteredBody<B> {
    body: B,
    meter: Meter,
    clock: Arc<dyn Clock>,
    /// When the request head arrived.
    arrived: Instant,
    /// Bytes a second; 0 = unpaced.
    rate: u64,
    /// When reading started, for pacing.
    reading_since: Option<tokio::time::Instant>,
    sleep: Option<Pin<Box<Sleep>>>,
    /// A chunk was just handed out: the next poll yields first.
    yield_next: bool,
    /// What is left of a frame split into paced pieces.
    rest: Option<Bytes>,
}

impl<B> MeteredBody<B> {
    fn new(body: B, meter: Meter, clock: Arc<dyn Clock>, arrived: Instant, rate: u64) -> Self {
        Self {
            body,
            meter,
            clock,
            arrived,
            rate,
            reading_since: None,
            sleep: None,
            yield_next: false,
            rest: None,
        }
    }

    /// The largest piece handed out at once when paced: about 50 ms of reading, at most
    /// 16 KiB (so pacing shows within a frame, which may hold the whole body).
    fn piece(&self) -> usize {
        (self.rate / 20).clamp(1, 16 << 10) as usize
    }

    /// Waits until reading on is within the rate, if paced.
    fn poll_pace(&mut self, cx: &mut Context<'_>, read: u64) -> Poll<()> {
        if self.rate == 0 {
            return Poll::Ready(());
        }
        let since = *self
            .reading_since
            .get_or_insert_with(tokio::time::Instant::now);
        let due = since + Duration::from_secs_f64(read as f64 / self.rate as f64);
        if tokio::time::Instant::now() >= due {
            return Poll::Ready(());
        }
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
        sleep.as_mut().reset(due);
        sleep.as_mut().poll(cx)
    }

    /// Notes `len` bytes arriving now.
    fn count(&self, len: usize) -> Result<(), BodyError> {
        let at = self.clock.now().saturating_duration_since(self.arrived);
        let mut shared = self.meter.lock();
        let stats = &mut shared.stats;
        stats.bytes += len as u64;
        stats.first_byte.get_or_insert(at);
        stats.last_byte = Some(at);
        if stats.bytes > MAX_UPLOAD_BYTES {
            return Err(BodyError::TooLarge(MAX_UPLOAD_BYTES));
        }
        shared.unparsed += len as u64;
        if shared.unparsed > MAX_UNPARSED {
            return Err(BodyError::Unparsed(MAX_UNPARSED));
        }
        Ok(())
    }
}

impl<B> Stream for MeteredBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Item = Result<Bytes, BodyError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.yield_next {
            // The parser reads on while chunks are ready; yielding once per chunk keeps what
            // it holds to the chunk it is working on.
            this.yield_next = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let read = this.meter.stats().bytes;
        ready!(this.poll_pace(cx, read));
        let mut data = match this.rest.take() {
            Some(rest) => rest,
            None => loop {
                let Some(frame) = ready!(Pin::new(&mut this.body).poll_frame(cx)) else {
                    return Poll::Ready(None);
                };
                match frame.map(http_body::Frame::into_data) {
                    Ok(Ok(data)) if !data.is_empty() => break data,
                    Ok(_) => continue,
                    Err(err) => return Poll::Ready(Some(Err(BodyError::Read(err.into())))),
                }
            },
        };
        if this.rate > 0 && data.len() > this.piece() {
            this.rest = Some(data.split_off(this.piece()));
        }
        if let Err(err) = this.count(data.len()) {
            return Poll::Ready(Some(Err(err)));
        }
        this.yield_next = true;
        Poll::Ready(Some(Ok(data)))
    }
}

#[cfg(test)]
mod tests;
