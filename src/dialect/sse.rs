//! Server-sent events: split a byte stream into whole events as they arrive, and read their fields.

use bytes::{Buf, Bytes, BytesMut};

/// The largest event held whole (16 MiB: a Responses `response.completed` echoes the whole
/// answer, instructions and tools, and stays far below). A longer one is skipped by whoever only
/// watches the stream (usage, in-band errors) and ends a translated stream with an error; one
/// 200 MB event without a blank line used to be buffered whole, once per watcher.
pub const MAX_EVENT_BYTES: usize = 16 << 20;

/// Splits an SSE byte stream into complete events (each including its terminating blank line),
/// however the network cut the chunks. An event over the size limit is dropped as it arrives.
pub struct SseSplitter {
    buf: BytesMut,
    /// How far `buf` has been scanned for a terminator without finding one.
    scanned: usize,
    max_event: usize,
    /// Inside an event over the limit: `buf` keeps only the last bytes, where a terminator may start.
    skipping: bool,
    oversized: u64,
}

impl Default for SseSplitter {
    fn default() -> Self {
        SseSplitter::with_limit(MAX_EVENT_BYTES)
    }
}

impl SseSplitter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_limit(max_event: usize) -> Self {
        SseSplitter { buf: BytesMut::new(), scanned: 0, max_event, skipping: false, oversized: 0 }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete event, if the buffer holds one.
    pub fn next_event(&mut self) -> Option<Bytes> {
        if self.skipping && !self.skip() {
            return None;
        }
        let start = self.scanned.saturating_sub(3);
        let end = find_event_end(&self.buf[start..]).map(|e| e + start);
        match end {
            Some(end) => {
                self.scanned = 0;
                Some(self.buf.split_to(end).freeze())
            }
            None if self.buf.len() > self.max_event => {
                self.oversized += 1;
                self.skipping = true;
                self.keep_tail();
                None
            }
            None => {
                self.scanned = self.buf.len();
                None
            }
        }
    }

    /// Drops the oversized event's bytes up to its end; true once past it.
    fn skip(&mut self) -> bool {
        match find_event_end(&self.buf) {
            Some(end) => {
                self.buf.advance(end);
                self.skipping = false;
                self.scanned = 0;
                true
            }
            None => {
                self.keep_tail();
                false
            }
        }
    }

    /// Keeps the last three bytes: a blank line may straddle the next chunk.
    fn keep_tail(&mut self) {
        let drop = self.buf.len().saturating_sub(3);
        self.buf.advance(drop);
    }

    /// Events dropped so far for being over the size limit.
    pub fn oversized(&self) -> u64 {
        self.oversized
    }

    /// Bytes received after the last complete event (a stream cut mid-event).
    pub fn remainder(&self) -> &[u8] {
        if self.skipping {
            return &[];
        }
        &self.buf
    }
}

/// Index just past the first blank line (`\n\n`, `\r\n\r\n` or `\r\r`).
pub fn find_event_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(pos) = memchr::memchr2(b'\n', b'\r', &buf[i..]) {
        let p = i + pos;
        let rest = &buf[p..];
        if rest.starts_with(b"\n\n") || rest.starts_with(b"\r\r") {
            return Some(p + 2);
        }
        if rest.starts_with(b"\r\n\r\n") {
            return Some(p + 4);
        }
        if rest.starts_with(b"\n\r\n") {
            return Some(p + 3);
        }
        i = p + 1;
    }
    None
}

/// The fields of one event.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

impl SseEvent {
    pub fn parse(raw: &[u8]) -> SseEvent {
        let text = String::from_utf8_lossy(raw);
        let mut ev = SseEvent::default();
        let mut data_lines: Vec<&str> = Vec::new();
        for line in text.split(['\n']) {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.is_empty() || line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line, ""),
            };
            match field {
                "event" => ev.event = Some(value.to_string()),
                "data" => data_lines.push(value),
                _ => {}
            }
        }
        ev.data = data_lines.join("\n");
        ev
    }
}

/// Writes one event in the canonical form (`event:` line when named, then `data:`, blank line).
pub fn write_event(out: &mut Vec<u8>, event: Option<&str>, data: &str) {
    if let Some(name) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    for line in data.split('\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_events_across_arbitrary_chunks() {
        let stream = b"event: a\ndata: {\"x\":1}\n\nevent: b\r\ndata: 2\r\n\r\ndata: 3\n\n";
        for cut in 1..stream.len() {
            let mut s = SseSplitter::new();
            let mut got = Vec::new();
            for chunk in stream.chunks(cut) {
                s.push(chunk);
                while let Some(ev) = s.next_event() {
                    got.push(SseEvent::parse(&ev));
                }
            }
            assert_eq!(got.len(), 3, "cut {cut}");
            assert_eq!(got[0].event.as_deref(), Some("a"));
            assert_eq!(got[0].data, "{\"x\":1}");
            assert_eq!(got[1].event.as_deref(), Some("b"));
            assert_eq!(got[1].data, "2");
            assert_eq!(got[2].event, None);
            assert!(s.remainder().is_empty());
        }
    }

    #[test]
    fn an_event_over_the_limit_is_dropped_as_it_arrives() {
        for cut in [1, 2, 3, 7, 64, 1000] {
            let mut s = SseSplitter::with_limit(100);
            let stream = [b"data: small\n\ndata: ".as_slice(), &[b'x'; 1000], b"\r\n\r\ndata: after\n\n"].concat();
            let mut got = Vec::new();
            let mut held = 0;
            for chunk in stream.chunks(cut) {
                s.push(chunk);
                while let Some(ev) = s.next_event() {
                    got.push(SseEvent::parse(&ev).data);
                }
                held = held.max(s.buf.len());
            }
            assert_eq!(got, ["small", "after"], "cut {cut}");
            assert_eq!(s.oversized(), 1);
            assert!(held <= 100 + cut + 3, "cut {cut}: held {held} bytes");
            assert!(s.remainder().is_empty());
        }
    }

    #[test]
    fn multi_line_data_and_comments() {
        let ev = SseEvent::parse(b": ping\ndata: a\ndata: b\n\n");
        assert_eq!(ev.data, "a\nb");
        let mut out = Vec::new();
        write_event(&mut out, Some("x"), "a\nb");
        assert_eq!(out, b"event: x\ndata: a\ndata: b\n\n");
    }
}
