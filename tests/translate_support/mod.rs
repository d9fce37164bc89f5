//! Helpers shared by the translate_* tests (included with `#[path]`).
#![allow(dead_code)]

use std::path::PathBuf;

use serde_json::{json, Value};
use tokenfold::dialect::sse::{SseEvent, SseSplitter};
use tokenfold::dialect::translate::StreamTranslator;

pub fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/translate").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)))
}

/// Compares `bytes` (JSON) with the golden file, pretty-printed. `UPDATE_GOLDEN=1` rewrites it.
pub fn golden(name: &str, bytes: &[u8]) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/translate/golden").join(name);
    let pretty = serde_json::to_string_pretty(&json(bytes)).unwrap() + "\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &pretty).unwrap();
        return;
    }
    let want =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", path.display()));
    assert_eq!(pretty, want, "golden {name} differs (UPDATE_GOLDEN=1 to accept)");
}

/// One client event: its `event:` name and its data (`[DONE]` as a JSON string).
#[derive(Debug, Clone, PartialEq)]
pub struct Ev {
    pub name: Option<String>,
    pub data: Value,
}

impl Ev {
    pub fn ty(&self) -> &str {
        self.data.get("type").and_then(Value::as_str).unwrap_or("")
    }
}

/// Parses client output into events, checking each is a whole SSE event with JSON data.
pub fn events(bytes: &[u8]) -> Vec<Ev> {
    let mut s = SseSplitter::new();
    s.push(bytes);
    let mut out = Vec::new();
    while let Some(raw) = s.next_event() {
        let ev = SseEvent::parse(&raw);
        let data = if ev.data == "[DONE]" { Value::String("[DONE]".into()) } else { json(ev.data.as_bytes()) };
        out.push(Ev { name: ev.event, data });
    }
    assert!(s.remainder().is_empty(), "trailing partial event: {:?}", String::from_utf8_lossy(s.remainder()));
    out
}

/// Feeds `chunks` then finishes.
pub fn run(mut t: StreamTranslator, chunks: &[&[u8]]) -> (Vec<u8>, StreamTranslator) {
    let mut out = Vec::new();
    for c in chunks {
        out.extend(t.push(c));
    }
    out.extend(t.finish());
    (out, t)
}

/// Drops wall-clock fields so outputs of two runs compare equal.
pub fn normalize(mut v: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.remove("created");
                m.remove("created_at");
                m.values_mut().for_each(walk);
            }
            Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut v);
    v
}

pub fn normalized(bytes: &[u8]) -> Vec<Ev> {
    events(bytes).into_iter().map(|e| Ev { name: e.name, data: normalize(e.data) }).collect()
}

/// Chat SSE bytes (`data:` lines) from chunk values, ending with `[DONE]` when `done`.
pub fn chat_sse(chunks: &[Value], done: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for c in chunks {
        out.extend_from_slice(format!("data: {c}\n\n").as_bytes());
    }
    if done {
        out.extend_from_slice(b"data: [DONE]\n\n");
    }
    out
}

/// Anthropic SSE bytes (`event:` named by `type`) from event values.
pub fn anthropic_sse(events: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in events {
        let ty = e["type"].as_str().unwrap();
        out.extend_from_slice(format!("event: {ty}\ndata: {e}\n\n").as_bytes());
    }
    out
}

pub fn chunk(delta: Value, finish: Option<&str>) -> Value {
    json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
}

pub fn call(index: u64, id: Option<&str>, name: Option<&str>, args: &str) -> Value {
    let mut f = json!({"arguments": args});
    if let Some(n) = name {
        f["name"] = json!(n);
    }
    let mut c = json!({"index": index, "function": f});
    if let Some(id) = id {
        c["id"] = json!(id);
        c["type"] = json!("function");
    }
    json!({"tool_calls": [c]})
}

/// A Chat stream with reasoning, text, a tool call, more text, a second tool call with
/// arguments in pieces, empty deltas, multi-byte text, and usage only in a last empty chunk.
pub fn chat_stream() -> Vec<u8> {
    chat_sse(
        &[
            chunk(json!({"role": "assistant", "content": ""}), None),
            chunk(json!({"reasoning_content": "Think ü"}), None),
            chunk(json!({"content": "Héllo "}), None),
            chunk(json!({}), None),
            chunk(json!({"content": null}), None),
            chunk(json!({"content": "wörld 🚀"}), None),
            chunk(call(0, Some("call_A"), Some("Read"), ""), None),
            chunk(call(0, None, None, "{\"path\":"), None),
            chunk(call(0, None, None, "\"ä.rs\"}"), None),
            chunk(json!({"content": "and "}), None),
            chunk(call(1, Some("call_B"), Some("Bash"), "{\"cmd\""), None),
            chunk(call(1, None, None, ":\"ls\"}"), None),
            chunk(json!({}), Some("tool_calls")),
            json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                   "choices": [],
                   "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120,
                             "prompt_tokens_details": {"cached_tokens": 60}}}),
        ],
        true,
    )
}

pub fn anthropic_stream() -> Vec<u8> {
    anthropic_sse(&[
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
               "model": "claude", "content": [], "stop_reason": null, "stop_sequence": null,
               "usage": {"input_tokens": 10, "output_tokens": 1, "cache_read_input_tokens": 30,
                         "cache_creation_input_tokens": 5}}}),
        json!({"type": "ping"}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hmm"}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "abc"}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Zwei Aufrufe: "}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": ""}}),
        json!({"type": "content_block_stop", "index": 1}),
        json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {}}}),
        json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": ""}}),
        json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{\"p\":"}}),
        json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "\"é\"}"}}),
        json!({"type": "content_block_stop", "index": 2}),
        json!({"type": "content_block_start", "index": 3, "content_block": {"type": "tool_use", "id": "toolu_2", "name": "Bash", "input": {}}}),
        json!({"type": "content_block_delta", "index": 3, "delta": {"type": "input_json_delta", "partial_json": "{}"}}),
        json!({"type": "content_block_stop", "index": 3}),
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 42}}),
        json!({"type": "message_stop"}),
    ])
}
