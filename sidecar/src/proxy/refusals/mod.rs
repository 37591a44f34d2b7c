//! hyper answers a request head it cannot parse by itself, before any handler runs — 400 for a
//! malformed head, 414 for a request target that is too long, 431 for too many or too large
//! headers — and those answers have empty bodies. [`JsonRefusals`] wraps a connection's socket
//! and replaces exactly those answers, as hyper writes them, with the OpenAI-shaped JSON error
//! every other refusal of the gateway has (the SDKs then raise their usual exception with a
//! message). Everything else is passed through untouched.
//!
//! An answer is hyper's own when its head is a 400/414/431 status line followed only by
//! `content-length: 0`, `date` and `connection` headers and nothing else: the gateway's own
//! answers always carry a content type or request id, and hyper closes the connection after
//! writing it, so replacing the whole answer cannot desynchronise a keep-alive connection.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::{HeadRefusal, ProxyError};

/// A hyper auto-answer is at most this long (status line, content-length, date, connection).
const MAX_AUTO_ANSWER: usize = 256;

/// A socket whose hyper-made refusals are rewritten to JSON (see the module docs).
#[derive(Debug)]
pub struct JsonRefusals<S> {
    inner: S,
    /// A replacement answer being written, and how much of it is written.
    replacing: Option<(Bytes, usize)>,
}

impl<S> JsonRefusals<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            replacing: None,
        }
    }
}

/// Which refusal `head` is, if it is an answer hyper made by itself.
pub fn hyper_refusal(head: &[u8]) -> Option<HeadRefusal> {
    if head.len() > MAX_AUTO_ANSWER || !head.ends_with(b"\r\n\r\n") {
        return None;
    }
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text[..text.len() - 4].split("\r\n");
    let status = lines.next()?.strip_prefix("HTTP/1.1 ")?;
    let refusal = match status.get(..4)? {
        "400 " => HeadRefusal::Malformed,
        "414 " => HeadRefusal::UriTooLong,
        "431 " => HeadRefusal::HeadersTooLarge,
        _ => return None,
    };
    let mut empty = false;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        match name.to_ascii_lowercase().as_str() {
            "content-length" if value.trim() == "0" => empty = true,
            "date" | "connection" => {}
            _ => return None,
        }
    }
    empty.then_some(refusal)
}

/// The JSON answer that replaces hyper's `head`, keeping its `date`.
fn json_answer(refusal: HeadRefusal, head: &[u8]) -> Bytes {
    let error = ProxyError::BadHead(refusal);
    let response = error.to_response();
    let status = response.status();
    let body = response.body();
    let date = std::str::from_utf8(head)
        .ok()
        .and_then(|text| {
            text.split("\r\n")
                .find(|line| line.to_ascii_lowercase().starts_with("date:"))
        })
        .map(|line| format!("{line}\r\n"))
        .unwrap_or_default();
    let mut answer = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n{date}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len(),
    )
    .into_bytes();
    answer.extend_from_slice(body);
    Bytes::from(answer)
}

impl<S: AsyncWrite + Unpin> JsonRefusals<S> {
    /// Writes what is left of a replacement answer; ready once it is all written.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((answer, written)) = &mut self.replacing {
            if *written == answer.len() {
                self.replacing = None;
                break;
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &answer[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Poll::Ready(Ok(()))
    }

    /// Starts replacing `buf` if it is one of hyper's refusals; `true` if so.
    fn intercept(&mut self, buf: &[u8]) -> bool {
        match hyper_refusal(buf) {
            Some(refusal) => {
                tracing::debug!(?refusal, "request head refused by the HTTP parser");
                self.replacing = Some((json_answer(refusal, buf), 0));
                true
            }
            None => false,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for JsonRefusals<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for JsonRefusals<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_replacement(cx))?;
        if self.intercept(buf) {
            // hyper's answer counts as written; ours goes out now or on the next flush.
            let _ = self.poll_replacement(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_replacement(cx))?;
        let mut filled = bufs.iter().filter(|buf| !buf.is_empty());
        if let (Some(only), None) = (filled.next(), filled.next())
            && self.intercept(only)
        {
            let _ = self.poll_replacement(cx)?;
            return Poll::Ready(Ok(only.len()));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_replacement(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_replacement(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
