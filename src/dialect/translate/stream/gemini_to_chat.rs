//! Gemini `streamGenerateContent?alt=sse` events (upstream) -> Chat Completions chunks (client;
//! and, through `chat_to_anthropic` / `chat_to_responses`, Anthropic and Responses events).
//!
//! Each Gemini event is a whole `GenerateContentResponse`: text and thought parts are deltas,
//! function calls come whole. The stream has no end marker: the event with a `finishReason` is
//! the last one with content (usage may follow), and the connection closes.

use serde_json::{json, Value};

use super::chat_out::ChatChunks;
use super::{error_of, Progress, Translate};
use crate::dialect::errors::{error_event, ErrorClass};
use crate::dialect::gemini::{error_object, USAGE_FIELD};
use crate::dialect::sse::SseEvent;
use crate::dialect::translate::common::usage_from_gemini;
use crate::dialect::translate::gemini_common::{chat_finish, client_call_id};
use crate::dialect::translate::json::{to_string, Get};
use crate::dialect::usage::Usage;
use crate::dialect::Dialect;

pub(super) struct GeminiToChat {
    chunks: ChatChunks,
    started: bool,
    response_id: String,
    calls: usize,
    finish: Option<&'static str>,
    usage: Usage,
    include_usage: bool,
    done: bool,
}

impl GeminiToChat {
    pub fn new(model: &str) -> Self {
        GeminiToChat {
            chunks: ChatChunks::new(model),
            started: false,
            response_id: String::new(),
            calls: 0,
            finish: None,
            usage: Usage::default(),
            include_usage: true,
            done: false,
        }
    }

    fn chunk(&mut self, out: &mut Vec<u8>, delta: Value, finish: Option<&str>) {
        self.start(out);
        self.chunks.chunk(out, delta, finish);
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            self.started = true;
            self.chunks.chunk(out, json!({ "role": "assistant", "content": "" }), None);
        }
    }

    fn handle(&mut self, ev: &Value, out: &mut Vec<u8>) {
        if let Some(err) = error_object(ev) {
            let (class, msg) = error_of(err);
            return self.fail(class, &msg, out);
        }
        if !self.started {
            if let Some(id) = ev.str_of("responseId").filter(|i| !i.is_empty()) {
                self.response_id = id.to_string();
                self.chunks.id = id.to_string();
            }
        }
        if let Some(u) = ev.some(USAGE_FIELD) {
            self.usage = usage_from_gemini(u);
        }
        let candidate = ev.arr_of("candidates").first().unwrap_or(&Value::Null);
        for part in candidate.get("content").map(|c| c.arr_of("parts")).unwrap_or(&[]) {
            if let Some(f) = part.get("functionCall") {
                let id = client_call_id(f.str_of("id"), &self.response_id, self.calls, part.str_of("thoughtSignature"));
                let call = json!({
                    "index": self.calls,
                    "id": id,
                    "type": "function",
                    "function": { "name": f.str_of("name").unwrap_or(""), "arguments": to_string(f.get("args").unwrap_or(&json!({}))) },
                });
                self.calls += 1;
                self.chunk(out, json!({ "tool_calls": [call] }), None);
            } else if let Some(t) = part.str_of("text").filter(|t| !t.is_empty()) {
                let key = if part.bool_of("thought") { "reasoning_content" } else { "content" };
                self.chunk(out, json!({ key: t }), None);
            }
        }
        let blocked = ev.get("promptFeedback").and_then(|f| f.some("blockReason")).is_some();
        let reason = candidate.str_of("finishReason");
        if self.finish.is_none() && (reason.is_some() || blocked) {
            let finish = if reason.is_none() { "content_filter" } else { chat_finish(reason, self.calls > 0) };
            self.finish = Some(finish);
            self.chunk(out, json!({}), Some(finish));
        }
    }
}

impl Translate for GeminiToChat {
    fn event(&mut self, ev: &SseEvent, out: &mut Vec<u8>) {
        if self.done || ev.data.trim().is_empty() {
            return;
        }
        if let Ok(v) = serde_json::from_str::<Value>(&ev.data) {
            self.handle(&v, out);
        }
    }

    fn usage(&self) -> Usage {
        self.usage
    }

    fn progress(&self) -> Progress {
        Progress::of(self.done, self.finish.is_some())
    }

    fn set_include_usage(&mut self, include: bool) {
        self.include_usage = include;
    }

    fn complete(&mut self, out: &mut Vec<u8>) {
        self.start(out);
        self.chunks.complete(out, self.finish.is_some(), self.include_usage.then_some(&self.usage));
        self.done = true;
    }

    fn fail(&mut self, class: ErrorClass, msg: &str, out: &mut Vec<u8>) {
        out.extend(error_event(Dialect::OpenaiChat, class, msg));
        self.done = true;
    }
}
