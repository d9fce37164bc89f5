//! Reads the provider's reported token usage out of a response, JSON or SSE, in any dialect,
//! as the bytes go by (only events that mention `"usage"` are parsed).

use serde_json::Value;

use super::sse::SseSplitter;
use super::Dialect;

/// Token usage as the provider reported it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    /// Input tokens billed at the full rate (excluding cache reads and writes).
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    /// Every token written to the cache, whatever its TTL.
    pub cache_write: u64,
    /// Of `cache_write`, the tokens written to Anthropic's 1-hour cache (billed 2x input, the
    /// 5-minute writes 1.25x).
    pub cache_write_1h: u64,
}

impl Usage {
    /// Every input token, whatever rate it was billed at.
    pub fn total_input(&self) -> u64 {
        self.input + self.cache_read + self.cache_write
    }

    /// Reads a `usage` object of `dialect` (Gemini: `usageMetadata`). Anthropic reports cache
    /// reads/writes beside `input_tokens`; OpenAI and Gemini include cached tokens inside the
    /// prompt/input count.
    pub fn from_json(dialect: Dialect, usage: &Value) -> Option<Usage> {
        let n = |v: &Value| v.as_u64().unwrap_or(0);
        if !usage.is_object() {
            return None;
        }
        Some(match dialect {
            Dialect::Anthropic => {
                let cache_write = n(&usage["cache_creation_input_tokens"]);
                Usage {
                    input: n(&usage["input_tokens"]),
                    output: n(&usage["output_tokens"]),
                    cache_read: n(&usage["cache_read_input_tokens"]),
                    cache_write,
                    cache_write_1h: n(&usage["cache_creation"]["ephemeral_1h_input_tokens"]).min(cache_write),
                }
            }
            Dialect::OpenaiChat | Dialect::OpenaiResponses => {
                let (input, output, details) = if dialect == Dialect::OpenaiChat {
                    (n(&usage["prompt_tokens"]), n(&usage["completion_tokens"]), &usage["prompt_tokens_details"])
                } else {
                    (n(&usage["input_tokens"]), n(&usage["output_tokens"]), &usage["input_tokens_details"])
                };
                let cached = n(&details["cached_tokens"]).min(input);
                Usage { input: input - cached, output, cache_read: cached, cache_write: 0, cache_write_1h: 0 }
            }
            Dialect::Gemini => {
                let (prompt, cached, output) = super::gemini::usage_counts(usage);
                Usage { input: prompt - cached, output, cache_read: cached, cache_write: 0, cache_write_1h: 0 }
            }
        })
    }

    /// Later reports win field by field where they are non-zero (Anthropic's `message_delta`
    /// carries the final output count; `message_start` the input counts).
    fn merge(&mut self, later: Usage) {
        for (mine, theirs) in [
            (&mut self.input, later.input),
            (&mut self.output, later.output),
            (&mut self.cache_read, later.cache_read),
            (&mut self.cache_write, later.cache_write),
            (&mut self.cache_write_1h, later.cache_write_1h),
        ] {
            if theirs > 0 {
                *mine = theirs;
            }
        }
    }
}

/// Follows a response body chunk by chunk and keeps the latest usage it reported.
pub struct UsageSniffer {
    dialect: Dialect,
    sse: Option<SseSplitter>,
    /// Non-streaming bodies are read whole at the end; capped so a huge body cannot grow memory.
    whole: Vec<u8>,
    usage: Option<Usage>,
}

const WHOLE_BODY_CAP: usize = 8 * 1024 * 1024;

impl UsageSniffer {
    pub fn new(dialect: Dialect, is_sse: bool) -> UsageSniffer {
        UsageSniffer { dialect, sse: is_sse.then(SseSplitter::new), whole: Vec::new(), usage: None }
    }

    /// A sniffer for a body already read (see `of_whole_body`): it reports `usage`.
    pub fn settled(dialect: Dialect, usage: Option<Usage>) -> UsageSniffer {
        UsageSniffer { dialect, sse: None, whole: Vec::new(), usage }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        match &mut self.sse {
            Some(splitter) => {
                splitter.push(chunk);
                while let Some(event) = splitter.next_event() {
                    // `"usage"`, and Gemini's `"usageMetadata"`.
                    if memchr::memmem::find(&event, b"\"usage").is_some() {
                        let parsed = super::sse::SseEvent::parse(&event);
                        observe(self.dialect, &mut self.usage, parsed.data.as_bytes());
                    }
                }
            }
            None => {
                if self.whole.len() + chunk.len() <= WHOLE_BODY_CAP {
                    self.whole.extend_from_slice(chunk);
                }
            }
        }
    }

    /// The usage reported, once the body has ended.
    pub fn finish(&mut self) -> Option<Usage> {
        if self.sse.is_none() && !self.whole.is_empty() {
            observe(self.dialect, &mut self.usage, &self.whole);
            self.whole = Vec::new();
        }
        self.usage
    }

    /// The usage in a body that is already whole (a non-streamed answer), without copying it.
    pub fn of_whole_body(dialect: Dialect, body: &[u8]) -> Option<Usage> {
        let mut usage = None;
        observe(dialect, &mut usage, body);
        usage
    }
}

/// The first `usage` object found, where each dialect puts it: top level (JSON bodies, chat
/// chunks, message_delta), inside `message` (message_start) or inside `response` (Responses
/// events). Reads only those fields out of the raw document instead of building a tree of all of
/// it (content, tool arguments). `None` when the document is not a JSON object; the caller then
/// tries it as a whole tree.
fn find_usage(dialect: Dialect, doc: &[u8]) -> Option<Option<Usage>> {
    let escaped = |members: &[(&[u8], &[u8])]| members.iter().any(|(k, _)| k.contains(&b'\\'));
    // Like a tree's `doc[key]`: the last of duplicate keys counts.
    let field = |members: &[(&[u8], &[u8])], key: &[u8]| -> Option<Value> {
        let (_, raw) = members.iter().rev().find(|(k, _)| *k == key)?;
        serde_json::from_slice(raw).ok()
    };
    let nested = |members: &[(&[u8], &[u8])], key: &[u8]| -> Option<Usage> {
        let (_, raw) = members.iter().rev().find(|(k, _)| *k == key)?;
        let inner = super::json::strict::members(raw)?;
        if escaped(&inner) {
            let tree: Value = serde_json::from_slice(raw).ok()?;
            return Usage::from_json(dialect, &tree["usage"]);
        }
        Usage::from_json(dialect, &field(&inner, b"usage")?)
    };
    let top = super::json::strict::members(doc)?;
    if escaped(&top) {
        return None; // keys that only match once unescaped: the tree reading handles them
    }
    if dialect == Dialect::Gemini {
        return Some(field(&top, super::gemini::USAGE_FIELD.as_bytes()).and_then(|u| Usage::from_json(dialect, &u)));
    }
    let found = field(&top, b"usage")
        .and_then(|u| Usage::from_json(dialect, &u))
        .or_else(|| nested(&top, b"message"))
        .or_else(|| nested(&top, b"response"));
    Some(found)
}

fn find_in_tree(dialect: Dialect, doc: &Value) -> Option<Usage> {
    if dialect == Dialect::Gemini {
        // A stream without `alt=sse` is a JSON array of answers: the last report counts.
        let items = doc.as_array().map(Vec::as_slice).unwrap_or(std::slice::from_ref(doc));
        return items.iter().rev().find_map(|d| Usage::from_json(dialect, &d[super::gemini::USAGE_FIELD]));
    }
    [&doc["usage"], &doc["message"]["usage"], &doc["response"]["usage"]]
        .into_iter()
        .find_map(|u| Usage::from_json(dialect, u))
}

fn observe(dialect: Dialect, usage: &mut Option<Usage>, doc: &[u8]) {
    let found = match find_usage(dialect, doc) {
        Some(found) => found,
        None => {
            // Not a plain object (an array, duplicate keys): the whole tree, as before.
            let Ok(tree) = serde_json::from_slice::<Value>(doc) else { return };
            find_in_tree(dialect, &tree)
        }
    };
    if let Some(u) = found {
        match usage {
            Some(seen) => seen.merge(u),
            None => *usage = Some(u),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anthropic_stream_combines_start_and_delta() {
        let body = concat!(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":10,\"cache_read_input_tokens\":90,\"cache_creation_input_tokens\":5,\"output_tokens\":1}}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"text\":\"usage\"}}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":42}}\n\n",
        );
        for cut in [1, 7, 64, body.len()] {
            let mut s = UsageSniffer::new(Dialect::Anthropic, true);
            for c in body.as_bytes().chunks(cut) {
                s.push(c);
            }
            assert_eq!(
                s.finish(),
                Some(Usage { input: 10, output: 42, cache_read: 90, cache_write: 5, cache_write_1h: 0 })
            );
        }
    }

    #[test]
    fn one_hour_writes_are_told_apart() {
        let body = br#"{"usage":{"input_tokens":4,"output_tokens":2,"cache_read_input_tokens":0,
            "cache_creation_input_tokens":1500,"cache_creation":{"ephemeral_5m_input_tokens":500,"ephemeral_1h_input_tokens":1000}}}"#;
        let u = UsageSniffer::of_whole_body(Dialect::Anthropic, body).unwrap();
        assert_eq!((u.cache_write, u.cache_write_1h), (1500, 1000));
    }

    #[test]
    fn openai_counts_cached_inside_prompt() {
        let mut s = UsageSniffer::new(Dialect::OpenaiChat, false);
        s.push(br#"{"choices":[],"usage":{"prompt_tokens":100,"completion_tokens":7,"prompt_tokens_details":{"cached_tokens":60}}}"#);
        let u = s.finish().unwrap();
        assert_eq!(u, Usage { input: 40, output: 7, cache_read: 60, cache_write: 0, cache_write_1h: 0 });
        assert_eq!(u.total_input(), 100);
    }

    #[test]
    fn responses_completed_event() {
        let mut s = UsageSniffer::new(Dialect::OpenaiResponses, true);
        s.push(b"event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":20,\"output_tokens\":8,\"input_tokens_details\":{\"cached_tokens\":0}}}}\n\n");
        assert_eq!(s.finish(), Some(Usage { input: 20, output: 8, cache_read: 0, cache_write: 0, cache_write_1h: 0 }));
    }

    #[test]
    fn usage_is_found_past_odd_fields_and_shapes() {
        let read = |body: &str| UsageSniffer::of_whole_body(Dialect::Anthropic, body.as_bytes());
        let want = Some(Usage { input: 3, output: 4, cache_read: 0, cache_write: 0, cache_write_1h: 0 });
        assert_eq!(read(r#"{"message":"text, not an object","usage":{"input_tokens":3,"output_tokens":4}}"#), want);
        assert_eq!(read(r#"{"message":"text","response":{"usage":{"input_tokens":3,"output_tokens":4}}}"#), want);
        assert_eq!(read(r#"{"usage":null,"message":{"usage":{"input_tokens":3,"output_tokens":4}}}"#), want);
        // Duplicate keys: the tree reading keeps the last one.
        assert_eq!(read(r#"{"usage":{"input_tokens":9},"usage":{"input_tokens":3,"output_tokens":4}}"#), want);
        assert_eq!(read(r#"[{"usage":{"input_tokens":3}}]"#), None);
        assert_eq!(read(r#"{"us\u0061ge":{"input_tokens":3,"output_tokens":4}}"#), want);
        assert_eq!(read(r#"{"message":{"us\u0061ge":{"input_tokens":3,"output_tokens":4}}}"#), want);
        assert_eq!(read(r#"{"usage":{"input_tokens":3,"output_tokens":4}"#), None, "cut off");
        assert_eq!(
            read(r#"{"usage":{"input_tokens":3.5,"output_tokens":4}}"#),
            Some(Usage { input: 0, output: 4, cache_read: 0, cache_write: 0, cache_write_1h: 0 })
        );
    }

    #[test]
    fn gemini_usage_metadata_in_events_and_arrays() {
        let body = concat!(
            "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"hi\"}],\"role\":\"model\"}}],\"usageMetadata\":{\"promptTokenCount\":120,\"totalTokenCount\":121}}\r\n\r\n",
            "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"!\"}],\"role\":\"model\"},\"finishReason\":\"STOP\"}],\"usageMetadata\":{\"promptTokenCount\":120,\"cachedContentTokenCount\":100,\"candidatesTokenCount\":5,\"thoughtsTokenCount\":9,\"totalTokenCount\":134}}\r\n\r\n",
        );
        let mut s = UsageSniffer::new(Dialect::Gemini, true);
        s.push(body.as_bytes());
        assert_eq!(
            s.finish(),
            Some(Usage { input: 20, output: 14, cache_read: 100, cache_write: 0, cache_write_1h: 0 })
        );
        let array = br#"[{"candidates":[],"usageMetadata":{"promptTokenCount":3}},{"candidates":[],"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":4}}]"#;
        assert_eq!(
            UsageSniffer::of_whole_body(Dialect::Gemini, array),
            Some(Usage { input: 3, output: 4, cache_read: 0, cache_write: 0, cache_write_1h: 0 })
        );
    }

    #[test]
    fn no_usage_is_none() {
        let mut s = UsageSniffer::new(Dialect::OpenaiChat, false);
        s.push(b"{\"error\":{}}");
        assert_eq!(s.finish(), None);
    }
}
