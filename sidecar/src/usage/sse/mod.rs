//! Incremental SSE scanning, and the rewriter that hides the usage the gateway asked for.
//!
//! Input: upstream body chunks of a streamed chat/completions, completions or responses call,
//! split anywhere. Output: the chunks to send to the client (pushed to a caller-owned vector)
//! and, at the end, a [`StreamSummary`]: backend-reported usage, model, generated text (for
//! the tokenizer when no usage came), whether `[DONE]` arrived, event and malformed counts.
//!
//! Events are parsed per the WHATWG rules: LF, CRLF or CR line ends, `:` comments, `event:`,
//! `id:`, `retry:`, multi-line `data:` joined with `\n`, `data:` with or without the space, a
//! blank line ending an event. Two leniencies real backends need: a bare `[DONE]` line counts
//! as `data: [DONE]`, and a last event with no blank line after it is still read at the end.
//!
//! With [`ScanOptions::strip_injected_usage`] off, every chunk is forwarded as it arrives,
//! untouched, and scanned on the side. With it on (the gateway injected
//! `stream_options.include_usage` the client did not ask for), the usage-only event
//! (`"choices": []` + a usage object) is removed and the `"usage": null` member is cut out of
//! every other event, so the client receives the bytes the backend sends without the option.
//! Complete events are forwarded as soon as their chunk is scanned, as slices of the input
//! (the chunk itself when nothing was cut); only an event still incomplete at the end of a
//! chunk is held back, and only up to [`HOLD_LIMIT`] bytes, after which it is forwarded
//! unmodified.

use bytes::Bytes;

use super::Usage;

mod block;
mod emit;
mod event;

use block::{EventBlock, MAX_EVENT_DATA};
use emit::Pending;
use event::{Facts, Verdict};

/// The most bytes of one incomplete event held back while stripping.
pub const HOLD_LIMIT: u64 = 1 << 20;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// How a [`StreamScanner`] treats the stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScanOptions {
    /// Remove the usage chunk and the `"usage": null` members: true when the gateway asked
    /// the backend for usage and the client did not.
    pub strip_injected_usage: bool,
}

/// What a finished stream said.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamSummary {
    /// The last usage the backend reported (usage chunk, or `response.usage` of
    /// `response.completed` / `response.incomplete` / `response.failed`).
    pub usage: Option<Usage>,
    /// The first non-empty model any event named.
    pub model: Option<String>,
    /// The generated text: chat `delta.content`/`refusal`/`reasoning_content`, tool and
    /// function call names and arguments, completions `text`, Responses API text deltas.
    pub text: String,
    /// A `[DONE]` event arrived.
    pub saw_done: bool,
    /// Events with data (`[DONE]` included).
    pub events: u64,
    /// Events whose data was not a JSON object, or larger than the scanner reads (8 MiB).
    pub malformed: u64,
}

/// Scans one SSE response stream; see the module docs.
#[derive(Debug)]
pub struct StreamScanner {
    strip: bool,
    finished: bool,
    /// Stream offset of the next chunk.
    pos: u64,
    line: PartialLine,
    event: EventBlock,
    pending: Pending,
    /// A removed event ended with CR at this offset, the end of a chunk: an LF right after
    /// belongs to it.
    drop_lf_at: Option<u64>,
    facts: Facts,
}

/// A complete line, without its line end.
struct Line<'a> {
    bytes: &'a [u8],
    /// Stream offset of its first byte.
    at: u64,
    /// Its index in the current chunk, when it lies inside it.
    in_chunk: Option<usize>,
    /// It was longer than the scanner keeps; `bytes` holds only its start.
    truncated: bool,
    /// Stream offset after its line end.
    end: u64,
}

/// A line that began in an earlier chunk.
#[derive(Debug)]
struct PartialLine {
    bytes: Vec<u8>,
    start: Option<u64>,
    truncated: bool,
    /// The previous chunk ended with CR: a leading LF finishes that line end.
    after_cr: bool,
    /// No line was read yet (a BOM may open the stream).
    first: bool,
}

impl StreamScanner {
    /// A scanner for one response stream.
    pub fn new(options: ScanOptions) -> Self {
        Self {
            strip: options.strip_injected_usage,
            finished: false,
            pos: 0,
            line: PartialLine {
                bytes: Vec::new(),
                start: None,
                truncated: false,
                after_cr: false,
                first: true,
            },
            event: EventBlock::default(),
            pending: Pending::default(),
            drop_lf_at: None,
            facts: Facts::default(),
        }
    }

    /// Scans the next upstream chunk and pushes what to send to the client onto `out`.
    ///
    /// Without stripping, `out` receives `chunk` itself, always. With stripping it receives
    /// zero or more slices of this and earlier chunks. Returns true when the stream's first
    /// generated content was seen in this chunk (for time-to-first-token). Feeding after
    /// [`finish`](Self::finish) forwards the chunk unscanned.
    pub fn feed(&mut self, chunk: Bytes, out: &mut Vec<Bytes>) -> bool {
        if chunk.is_empty() {
            return false;
        }
        if self.finished {
            out.push(chunk);
            return false;
        }
        let started = self.facts.content_started;
        if self.strip {
            self.pending.push(chunk.clone());
        }
        self.scan(&chunk, out);
        self.event.detach(&chunk);
        let end = self.pos + chunk.len() as u64;
        self.pos = end;
        if self.strip {
            self.release(end, out);
        } else {
            out.push(chunk);
        }
        !started && self.facts.content_started
    }

    /// Ends the stream: reads a last line or event left without its line end or blank line,
    /// pushes anything still held onto `out`, and returns the summary (the text and model
    /// are moved out; call once).
    pub fn finish(&mut self, out: &mut Vec<Bytes>) -> StreamSummary {
        if !self.finished {
            self.finished = true;
            let end = self.pos;
            if let Some(start) = self.line.start {
                self.complete_partial(&[], start, &[], end, out);
            }
            self.dispatch(&[], end, out);
            if self.strip {
                self.pending.emit_to(end, out);
            }
        }
        let facts = &mut self.facts;
        StreamSummary {
            usage: facts.usage,
            model: facts.model.take(),
            text: std::mem::take(&mut facts.text),
            saw_done: facts.saw_done,
            events: facts.events,
            malformed: facts.malformed,
        }
    }

    /// The last usage reported so far.
    pub fn usage(&self) -> Option<Usage> {
        self.facts.usage
    }

    /// The model named so far.
    pub fn model(&self) -> Option<&str> {
        self.facts.model.as_deref()
    }

    /// Generated content has been seen.
    pub fn content_started(&self) -> bool {
        self.facts.content_started
    }

    /// `[DONE]` has been seen.
    pub fn saw_done(&self) -> bool {
        self.facts.saw_done
    }

    /// Splits `chunk` into lines, joining a line begun in an earlier chunk.
    fn scan(&mut self, chunk: &[u8], out: &mut Vec<Bytes>) {
        let base = self.pos;
        let mut i = 0;
        if std::mem::take(&mut self.line.after_cr) && chunk.first() == Some(&b'\n') {
            if self.drop_lf_at == Some(base) {
                self.pending.drop_to(base + 1);
            }
            i = 1;
        }
        self.drop_lf_at = None;
        while i < chunk.len() {
            let Some(found) = memchr::memchr2(b'\n', b'\r', &chunk[i..]) else {
                self.line.append(base + i as u64, &chunk[i..]);
                self.event.start = self.event.start.or(self.line.start);
                return;
            };
            let eol = i + found;
            let next = match chunk.get(eol..eol + 2) {
                Some(b"\r\n") => eol + 2,
                None if chunk[eol] == b'\r' => {
                    self.line.after_cr = true;
                    eol + 1
                }
                _ => eol + 1,
            };
            let end = base + next as u64;
            if let Some(start) = self.line.start {
                self.complete_partial(chunk, start, &chunk[i..eol], end, out);
            } else {
                let line = Line {
                    bytes: &chunk[i..eol],
                    at: base + i as u64,
                    in_chunk: Some(i),
                    truncated: false,
                    end,
                };
                self.line_found(chunk, line, out);
            }
            i = next;
        }
    }

    /// Ends the line begun in an earlier chunk at `start` with `tail`; `end` is the stream
    /// offset after its line end.
    fn complete_partial(
        &mut self,
        chunk: &[u8],
        start: u64,
        tail: &[u8],
        end: u64,
        out: &mut Vec<Bytes>,
    ) {
        self.line.append(start, tail);
        self.line.start = None;
        let bytes = std::mem::take(&mut self.line.bytes);
        let line = Line {
            bytes: &bytes,
            at: start,
            in_chunk: None,
            truncated: std::mem::take(&mut self.line.truncated),
            end,
        };
        self.line_found(chunk, line, out);
        self.line.bytes = bytes;
        self.line.bytes.clear();
    }

    /// Handles one complete line of the current event.
    fn line_found(&mut self, chunk: &[u8], line: Line<'_>, out: &mut Vec<Bytes>) {
        let Line {
            bytes: mut line,
            mut at,
            mut in_chunk,
            truncated,
            end,
        } = line;
        let line_start = at;
        if std::mem::take(&mut self.line.first)
            && let Some(rest) = line.strip_prefix(BOM)
        {
            line = rest;
            at += BOM.len() as u64;
            in_chunk = in_chunk.map(|i| i + BOM.len());
        }
        if line.is_empty() {
            return self.dispatch(chunk, end, out);
        }
        // A byte order mark belongs to the first event's block, split or not.
        self.event.start = self.event.start.or(Some(line_start));
        let (field, value_at) = match memchr::memchr(b':', line) {
            Some(0) => return,
            Some(colon) if line.get(colon + 1) == Some(&b' ') => (&line[..colon], colon + 2),
            Some(colon) => (&line[..colon], colon + 1),
            None if line.trim_ascii() == b"[DONE]" => (&b"data"[..], 0),
            None => (line, line.len()),
        };
        let value = &line[value_at..];
        match field {
            b"data" if truncated => self.event.mark_oversize(),
            b"data" => {
                let value_in_chunk = in_chunk.map(|i| i + value_at);
                self.event
                    .push_data(chunk, value, at + value_at as u64, value_in_chunk);
            }
            b"event" => self.event.set_name(value),
            _ => {}
        }
    }

    /// The blank line (or the end of the stream) at `block_end` ends the current event.
    fn dispatch(&mut self, chunk: &[u8], block_end: u64, out: &mut Vec<Bytes>) {
        let start = self.event.start;
        let verdict = match self.event.data(chunk) {
            _ if self.event.is_oversize() => {
                self.facts.events += 1;
                self.facts.malformed += 1;
                Verdict::Keep
            }
            Some(data) => self.facts.learn(data, &self.event.name),
            None => Verdict::Keep,
        };
        if self.strip && !self.event.passthrough {
            let pending = &mut self.pending;
            match (verdict, start) {
                (Verdict::Remove, Some(start)) => {
                    pending.emit_to(start, out);
                    pending.drop_to(block_end);
                    self.drop_lf_at = Some(block_end);
                }
                (Verdict::Cut(from, to), _) => self.event.map_range(from, to, |from, to| {
                    pending.emit_to(from, out);
                    pending.drop_to(to);
                }),
                _ => {}
            }
        }
        self.event.reset();
    }

    /// End of a chunk while stripping: forwards everything but an incomplete event.
    fn release(&mut self, end: u64, out: &mut Vec<Bytes>) {
        let hold_from = match self.event.start {
            Some(start) if !self.event.passthrough => start,
            _ => end,
        };
        self.pending.emit_to(hold_from, out);
        if end - hold_from > HOLD_LIMIT {
            self.pending.emit_to(end, out);
            self.event.passthrough = true;
        }
    }
}

impl PartialLine {
    fn append(&mut self, start: u64, bytes: &[u8]) {
        self.start.get_or_insert(start);
        if self.truncated || self.bytes.len() + bytes.len() > MAX_EVENT_DATA {
            self.truncated = true;
            return;
        }
        self.bytes.extend_from_slice(bytes);
    }
}

#[cfg(test)]
mod golden;
#[cfg(test)]
mod tests;
