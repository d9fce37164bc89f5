//! Server-sent events: split a byte stream into whole events as they arrive, and read their fields.

use bytes::{Bytes, BytesMut};

/// Splits an SSE byte stream into complete events (each including its terminating blank line),
/// however the network cut the chunks.
#[derive(Default)]
pub struct SseSplitter {
    buf: BytesMut,
    /// How far `buf` has been scanned for a terminator without finding one.
    scanned: usize,
}

impl SseSplitter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete event, if the buffer holds one.
    pub fn next_event(&mut self) -> Option<Bytes> {
        let start = self.scanned.saturating_sub(3);
        let end = find_event_end(&self.buf[start..]).map(|e| e + start);
        match end {
            Some(end) => {
                self.scanned = 0;
                Some(self.buf.split_to(end).freeze())
            }
            None => {
                self.scanned = self.buf.len();
                None
            }
        }
    }

    /// Bytes received after the last complete event (a stream cut mid-event).
    pub fn remainder(&self) -> &[u8] {
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
    fn multi_line_data_and_comments() {
        let ev = SseEvent::parse(b": ping\ndata: a\ndata: b\n\n");
        assert_eq!(ev.data, "a\nb");
        let mut out = Vec::new();
        write_event(&mut out, Some("x"), "a\nb");
        assert_eq!(out, b"event: x\ndata: a\ndata: b\n\n");
    }
}
