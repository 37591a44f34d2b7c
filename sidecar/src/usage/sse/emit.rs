//! The rewriter's output side: input chunks not yet forwarded, cut into zero-copy slices.
//!
//! Input: upstream chunks (in order) and instructions "forward up to stream offset X" /
//! "drop up to stream offset X". Output: `Bytes` pieces of the input pushed to the caller's
//! vector — whole chunks when nothing is cut, `Bytes` slices around what is.

use std::collections::VecDeque;

use bytes::Bytes;

/// Chunks received but not yet forwarded or dropped.
#[derive(Debug, Default)]
pub(super) struct Pending {
    chunks: VecDeque<Bytes>,
    /// Stream offset of the first byte of `chunks`.
    start: u64,
}

impl Pending {
    /// Queues the next upstream chunk.
    pub fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.chunks.push_back(chunk);
        }
    }

    /// Forwards everything before stream offset `to`.
    pub fn emit_to(&mut self, to: u64, out: &mut Vec<Bytes>) {
        self.advance(to, Some(out));
    }

    /// Drops everything before stream offset `to`.
    pub fn drop_to(&mut self, to: u64) {
        self.advance(to, None);
    }

    fn advance(&mut self, to: u64, mut out: Option<&mut Vec<Bytes>>) {
        while self.start < to {
            let Some(front) = self.chunks.front_mut() else {
                // Nothing queued that far: the offsets agree with what was pushed.
                self.start = to;
                return;
            };
            let wanted = usize::try_from(to - self.start).unwrap_or(usize::MAX);
            let piece = if wanted >= front.len() {
                self.chunks.pop_front().unwrap_or_default()
            } else {
                front.split_to(wanted)
            };
            self.start += piece.len() as u64;
            if let Some(out) = out.as_deref_mut() {
                out.push(piece);
            }
        }
    }
}
