//! Helpers shared by the translate_* tests (included with `#[path]`).
#![allow(dead_code)]

pub mod scenario;

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

/// Golden files are rewritten (instead of compared) when this env var is `1`.
pub const BLESS: &str = "TOKENFOLD_BLESS";

fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/translate/golden").join(name)
}

/// Compares `text` with the golden file byte for byte; `TOKENFOLD_BLESS=1` writes it instead.
pub fn golden_text(name: &str, text: &str) {
    let path = golden_path(name);
    if std::env::var(BLESS).is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        return;
    }
    let want =
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (run with {BLESS}=1 to create it)", path.display()));
    if want != text.as_bytes() {
        let want = String::from_utf8_lossy(&want);
        let line = want
            .lines()
            .zip(text.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(want.lines().count().min(text.lines().count()));
        panic!(
            "golden {name} differs at line {} ({BLESS}=1 to accept):\n  want: {:?}\n  got:  {:?}",
            line + 1,
            want.lines().nth(line).unwrap_or("<end>"),
            text.lines().nth(line).unwrap_or("<end>")
        );
    }
}

/// A JSON body against its golden file. The body must be exactly the compact serialization of
/// its own value (so the pretty-printed file stands for every byte of it); wall-clock
/// `created`/`created_at` fields are set to 0 first.
pub fn golden(name: &str, bytes: &[u8]) {
    let v = json(bytes);
    assert_eq!(
        String::from_utf8_lossy(bytes),
        serde_json::to_string(&v).unwrap(),
        "{name}: output is not in canonical compact form"
    );
    golden_text(name, &(serde_json::to_string_pretty(&zero_clocks(v)).unwrap() + "\n"));
}

/// An SSE stream against its golden file, byte for byte, with wall-clock fields set to 0.
pub fn golden_sse(name: &str, bytes: &[u8]) {
    let text = std::str::from_utf8(bytes).unwrap_or_else(|e| panic!("{name}: not UTF-8: {e}"));
    golden_text(name, &zero_clock_text(text));
}

/// `"created":N` and `"created_at":N` with N set to 0 in raw JSON text.
pub fn zero_clock_text(text: &str) -> String {
    let mut out = text.to_string();
    for key in ["\"created\":", "\"created_at\":"] {
        let mut from = 0;
        while let Some(at) = out[from..].find(key).map(|i| i + from + key.len()) {
            let digits = out[at..].bytes().take_while(u8::is_ascii_digit).count();
            if digits > 0 {
                out.replace_range(at..at + digits, "0");
            }
            from = at;
        }
    }
    out
}

fn zero_clocks(mut v: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(m) => {
                for key in ["created", "created_at"] {
                    if m.get(key).is_some_and(Value::is_u64) {
                        m.insert(key.to_string(), json!(0));
                    }
                }
                m.values_mut().for_each(walk);
            }
            Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut v);
    v
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

/// Anthropic events for a turn of text and two tool calls with text between them, ending
/// with `stop_reason` (and `stop_sequence`).
pub fn anthropic_parallel_stream(stop_reason: &str, stop_sequence: Option<&str>) -> Vec<u8> {
    let start = |i: u64, block: Value| json!({"type": "content_block_start", "index": i, "content_block": block});
    let delta = |i: u64, d: Value| json!({"type": "content_block_delta", "index": i, "delta": d});
    let stop = |i: u64| json!({"type": "content_block_stop", "index": i});
    anthropic_sse(&[
        json!({"type": "message_start", "message": {"id": "msg_par", "type": "message", "role": "assistant",
               "model": "claude", "content": [], "stop_reason": null, "stop_sequence": null,
               "usage": {"input_tokens": 20, "output_tokens": 1}}}),
        start(0, json!({"type": "text", "text": ""})),
        delta(0, json!({"type": "text_delta", "text": "Reading a.rs"})),
        stop(0),
        start(1, json!({"type": "tool_use", "id": "toolu_a", "name": "Read", "input": {}})),
        delta(1, json!({"type": "input_json_delta", "partial_json": "{\"path\":"})),
        delta(1, json!({"type": "input_json_delta", "partial_json": "\"a.rs\"}"})),
        stop(1),
        start(2, json!({"type": "text", "text": ""})),
        delta(2, json!({"type": "text_delta", "text": " and b.rs"})),
        stop(2),
        start(3, json!({"type": "tool_use", "id": "toolu_b", "name": "Read", "input": {}})),
        delta(3, json!({"type": "input_json_delta", "partial_json": "{\"path\":\"b.rs\"}"})),
        stop(3),
        json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
               "usage": {"output_tokens": 33}}),
        json!({"type": "message_stop"}),
    ])
}

/// Anthropic events for a text-only turn ending with `stop_reason` (and `stop_sequence`).
pub fn anthropic_text_stream(text: &str, stop_reason: &str, stop_sequence: Option<&str>) -> Vec<u8> {
    anthropic_sse(&[
        json!({"type": "message_start", "message": {"id": "msg_txt", "type": "message", "role": "assistant",
               "model": "claude", "content": [], "stop_reason": null, "stop_sequence": null,
               "usage": {"input_tokens": 8, "output_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
               "usage": {"output_tokens": 4}}),
        json!({"type": "message_stop"}),
    ])
}

/// A Chat stream whose two parallel calls interleave their argument pieces: call 0 gets more
/// arguments after call 1 has started (some providers stream calls side by side).
pub fn chat_interleaved_calls() -> Vec<u8> {
    chat_sse(
        &[
            chunk(json!({"role": "assistant", "content": ""}), None),
            chunk(json!({"content": "Two reads."}), None),
            chunk(call(0, Some("call_X"), Some("Read"), "{\"path\":"), None),
            chunk(call(1, Some("call_Y"), Some("Read"), "{\"pa"), None),
            chunk(call(0, None, None, "\"x.rs\"}"), None),
            chunk(call(1, None, None, "th\":\"y.rs\"}"), None),
            chunk(json!({}), Some("tool_calls")),
        ],
        true,
    )
}

/// Checks an Anthropic event sequence is one a client accepts: `message_start` first,
/// `message_stop` last, blocks numbered 0, 1, … in order, one open at a time, every delta inside
/// its own block's start and stop, and `message_delta` after the last block closed.
pub fn assert_anthropic_sequence(evs: &[Ev]) {
    let tys: Vec<&str> = evs.iter().map(Ev::ty).collect();
    assert_eq!(tys.first(), Some(&"message_start"), "{tys:?}");
    assert_eq!(tys.last(), Some(&"message_stop"), "{tys:?}");
    let mut open: Option<u64> = None;
    let mut next = 0;
    let mut delta_seen = false;
    for e in evs {
        let index = e.data["index"].as_u64();
        match e.ty() {
            "content_block_start" => {
                assert!(open.is_none(), "block {index:?} starts while {open:?} is open");
                assert_eq!(index, Some(next), "blocks are numbered in order");
                open = index;
                next += 1;
            }
            "content_block_delta" => assert_eq!(index, open, "delta outside its open block: {}", e.data),
            "content_block_stop" => {
                assert_eq!(index, open, "stop of a block that is not open");
                open = None;
            }
            "message_delta" => {
                assert!(open.is_none(), "message_delta while a block is open");
                delta_seen = true;
            }
            "message_stop" => assert!(delta_seen, "message_stop without message_delta"),
            _ => {}
        }
    }
}

/// Checks a Responses event sequence: sequence numbers 0, 1, …; items added in output order,
/// one open at a time; every item event between its item's `added` and `done`.
pub fn assert_responses_sequence(evs: &[Ev]) {
    let mut open: Option<u64> = None;
    let mut next = 0;
    for (n, e) in evs.iter().enumerate() {
        assert_eq!(e.data["sequence_number"].as_u64(), Some(n as u64), "{}", e.data);
        let index = e.data["output_index"].as_u64();
        match e.ty() {
            "response.output_item.added" => {
                assert!(open.is_none(), "item {index:?} added while {open:?} is open");
                assert_eq!(index, Some(next));
                open = index;
                next += 1;
            }
            "response.output_item.done" => {
                assert_eq!(index, open, "done for an item that is not open");
                open = None;
            }
            _ if index.is_some() => assert_eq!(index, open, "{} outside its item", e.ty()),
            _ => {}
        }
    }
    let last = evs.last().map(Ev::ty).unwrap_or("");
    assert!(matches!(last, "response.completed" | "response.incomplete" | "response.failed"), "{last}");
}

/// Chat chunks put back together.
#[derive(Debug, Default)]
pub struct ChatTotals {
    pub text: String,
    pub reasoning: String,
    /// `(id, name, arguments)` per tool-call index.
    pub calls: Vec<(String, String, String)>,
    pub finish: Vec<String>,
}

pub fn chat_totals(evs: &[Ev]) -> ChatTotals {
    let mut t = ChatTotals::default();
    for e in evs {
        let Some(choice) = e.data.get("choices").and_then(|c| c.get(0)) else { continue };
        let d = &choice["delta"];
        t.text.push_str(d["content"].as_str().unwrap_or(""));
        t.reasoning.push_str(d["reasoning_content"].as_str().unwrap_or(""));
        for c in d["tool_calls"].as_array().into_iter().flatten() {
            let i = c["index"].as_u64().unwrap() as usize;
            if i == t.calls.len() {
                t.calls.push((String::new(), String::new(), String::new()));
            }
            let call = &mut t.calls[i];
            call.0.push_str(c["id"].as_str().unwrap_or(""));
            call.1.push_str(c["function"]["name"].as_str().unwrap_or(""));
            call.2.push_str(c["function"]["arguments"].as_str().unwrap_or(""));
        }
        if let Some(f) = choice["finish_reason"].as_str() {
            t.finish.push(f.to_string());
        }
    }
    t
}
