//! The SSE event being assembled: where its block of lines starts, its data and its name.
//!
//! Input: the fields of each line, with their absolute stream offsets. Output: the event's
//! data as one contiguous slice (borrowed from the chunk when it is a single line inside it,
//! copied otherwise), and the map from data offsets back to stream offsets that the rewriter
//! needs to cut a member out of the original bytes.

/// The most data one event may carry before it is given up on (counted as malformed).
pub(super) const MAX_EVENT_DATA: usize = 8 << 20;

/// Longest `event:` name kept.
const MAX_NAME: usize = 256;

#[derive(Debug, Default)]
enum Data {
    #[default]
    None,
    /// One data line, inside the current chunk (byte range of its value).
    InChunk(usize, usize),
    /// In `buf`: several lines joined with `\n`, or a line that spanned chunks.
    Buffered,
}

/// The event whose lines are being read.
#[derive(Debug, Default)]
pub(super) struct EventBlock {
    /// Stream offset of the event's first line (its block runs to the blank line after it).
    pub start: Option<u64>,
    /// Bytes of this event were already forwarded unmodified (it grew past the hold limit).
    pub passthrough: bool,
    /// The `event:` field.
    pub name: String,
    data: Data,
    buf: Vec<u8>,
    /// Stream offset and length of each data line's value, in order.
    spans: Vec<(u64, usize)>,
    oversize: bool,
}

impl EventBlock {
    /// Adds a data line's value: `value` at stream offset `at`, found at `in_chunk` in
    /// `chunk` when the line lies inside the current chunk.
    pub fn push_data(&mut self, chunk: &[u8], value: &[u8], at: u64, in_chunk: Option<usize>) {
        if self.oversize {
            return;
        }
        let held = match self.data {
            Data::None => 0,
            Data::InChunk(start, end) => end - start,
            Data::Buffered => self.buf.len(),
        };
        if held + 1 + value.len() > MAX_EVENT_DATA {
            self.mark_oversize();
            return;
        }
        self.spans.push((at, value.len()));
        match (&self.data, in_chunk) {
            (Data::None, Some(start)) => self.data = Data::InChunk(start, start + value.len()),
            (Data::None, None) => {
                self.buf.extend_from_slice(value);
                self.data = Data::Buffered;
            }
            (Data::InChunk(start, end), _) => {
                self.buf
                    .extend_from_slice(chunk.get(*start..*end).unwrap_or_default());
                self.buf.push(b'\n');
                self.buf.extend_from_slice(value);
                self.data = Data::Buffered;
            }
            (Data::Buffered, _) => {
                self.buf.push(b'\n');
                self.buf.extend_from_slice(value);
            }
        }
    }

    /// Sets the `event:` name (a name that is not UTF-8 or too long is dropped).
    pub fn set_name(&mut self, value: &[u8]) {
        self.name.clear();
        if value.len() <= MAX_NAME
            && let Ok(name) = std::str::from_utf8(value)
        {
            self.name.push_str(name);
        }
    }

    /// The event's data ran past [`MAX_EVENT_DATA`]: it will not be read.
    pub fn mark_oversize(&mut self) {
        self.oversize = true;
    }

    /// Whether the event's data was given up on.
    pub fn is_oversize(&self) -> bool {
        self.oversize
    }

    /// Copies data that lives in `chunk` before the chunk goes away.
    pub fn detach(&mut self, chunk: &[u8]) {
        if let Data::InChunk(start, end) = self.data {
            self.buf
                .extend_from_slice(chunk.get(start..end).unwrap_or_default());
            self.data = Data::Buffered;
        }
    }

    /// The data, lines joined with `\n`; `None` when the event has no data line.
    pub fn data<'a>(&'a self, chunk: &'a [u8]) -> Option<&'a [u8]> {
        match self.data {
            Data::None => None,
            Data::InChunk(start, end) => Some(chunk.get(start..end).unwrap_or_default()),
            Data::Buffered => Some(&self.buf),
        }
    }

    /// Calls `cut(from, to)` with the stream ranges that hold data range `start..end`, in
    /// order. Where the range crosses a line break, the break and the next line's `data:`
    /// prefix are cut too, joining the two lines.
    pub fn map_range(&self, start: usize, end: usize, mut cut: impl FnMut(u64, u64)) {
        let mut line_start = 0;
        for (i, &(at, len)) in self.spans.iter().enumerate() {
            let line_end = line_start + len;
            let (from, to) = (start.max(line_start), end.min(line_end));
            if from < to {
                cut(
                    at + (from - line_start) as u64,
                    at + (to - line_start) as u64,
                );
            }
            let next = self.spans.get(i + 1);
            if let Some(&(next_at, _)) = next
                && start <= line_end
                && line_end < end
            {
                cut(at + len as u64, next_at);
            }
            line_start = line_end + 1;
        }
    }

    /// Forgets the event (after dispatch); buffers keep their capacity.
    pub fn reset(&mut self) {
        self.start = None;
        self.passthrough = false;
        self.name.clear();
        self.data = Data::None;
        self.buf.clear();
        self.spans.clear();
        self.oversize = false;
    }
}
