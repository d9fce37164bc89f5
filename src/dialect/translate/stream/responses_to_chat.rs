//! OpenAI Responses events (upstream) -> Chat Completions chunks (client; and, through
//! `chat_to_anthropic`, Anthropic events).

use serde_json::{json, Value};

use super::chat_out::ChatChunks;
use super::{error_of, Progress, Translate};
use crate::dialect::errors::{error_event, ErrorClass};
use crate::dialect::sse::SseEvent;
use crate::dialect::translate::common::usage_from_responses;
use crate::dialect::translate::json::Get;
use crate::dialect::translate::response::to_chat::responses_finish;
use crate::dialect::usage::Usage;
use crate::dialect::Dialect;

/// A function call item being streamed.
struct Call {
    output_index: u64,
    item_id: String,
    /// Its Chat `tool_calls` index.
    index: usize,
    /// Whether any argument text has gone out (some servers send arguments only when done).
    sent_args: bool,
}

pub(super) struct ResponsesToChat {
    chunks: ChatChunks,
    started: bool,
    calls: Vec<Call>,
    /// The summary part last written to, to separate summary parts with a blank line.
    reasoning_part: Option<(u64, u64)>,
    finish: Option<&'static str>,
    usage: Usage,
    include_usage: bool,
    done: bool,
}

impl ResponsesToChat {
    pub fn new(model: &str) -> Self {
        ResponsesToChat {
            chunks: ChatChunks::new(model),
            started: false,
            calls: Vec::new(),
            reasoning_part: None,
            finish: None,
            usage: Usage::default(),
            include_usage: true,
            done: false,
        }
    }

    fn chunk(&mut self, out: &mut Vec<u8>, delta: Value, finish: Option<&str>) {
        self.start(out);
        self.write_chunk(out, delta, finish);
    }

    fn write_chunk(&self, out: &mut Vec<u8>, delta: Value, finish: Option<&str>) {
        self.chunks.chunk(out, delta, finish);
    }

    /// The first chunk, carrying the role.
    fn start(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            self.started = true;
            self.write_chunk(out, json!({ "role": "assistant", "content": "" }), None);
        }
    }

    fn call_of(&self, ev: &Value) -> Option<usize> {
        let by_index = ev.u64_of("output_index");
        let by_id = ev.str_of("item_id");
        self.calls.iter().position(|c| by_index == Some(c.output_index) || by_id == Some(c.item_id.as_str()))
    }

    fn args(&mut self, out: &mut Vec<u8>, call: usize, args: &str) {
        if args.is_empty() {
            return;
        }
        self.calls[call].sent_args = true;
        let index = self.calls[call].index;
        self.chunk(out, json!({ "tool_calls": [{ "index": index, "function": { "arguments": args } }] }), None);
    }

    /// Arguments given only whole (in `.done` or the finished item) when none were streamed.
    fn whole_args(&mut self, out: &mut Vec<u8>, ev: &Value, args: Option<&str>) {
        if let (Some(call), Some(args)) = (self.call_of(ev), args) {
            if !self.calls[call].sent_args {
                self.args(out, call, args);
            }
        }
    }

    fn handle(&mut self, ty: &str, ev: &Value, out: &mut Vec<u8>) {
        match ty {
            "response.created" | "response.in_progress" => {
                if !self.started {
                    if let Some(id) = ev.get("response").and_then(|r| r.str_of("id")) {
                        self.chunks.id = id.to_string();
                    }
                }
                self.start(out);
            }
            "response.output_item.added" => {
                let item = ev.get("item").unwrap_or(&Value::Null);
                if item.str_of("type") == Some("function_call") {
                    let index = self.calls.len();
                    self.calls.push(Call {
                        output_index: ev.u64_of("output_index").unwrap_or(u64::MAX),
                        item_id: item.str_of("id").unwrap_or("").to_string(),
                        index,
                        sent_args: false,
                    });
                    let call = json!({
                        "index": index,
                        "id": item.str_of("call_id").unwrap_or(""),
                        "type": "function",
                        "function": { "name": item.str_of("name").unwrap_or(""), "arguments": "" },
                    });
                    self.chunk(out, json!({ "tool_calls": [call] }), None);
                    self.args(out, index, item.str_of("arguments").unwrap_or(""));
                }
            }
            "response.output_text.delta" => self.text(out, "content", ev.str_of("delta")),
            "response.refusal.delta" => self.text(out, "refusal", ev.str_of("delta")),
            "response.reasoning_summary_text.delta" | "response.reasoning_text.delta" => {
                let part = (ev.u64_of("output_index").unwrap_or(0), ev.u64_of("summary_index").unwrap_or(0));
                if self.reasoning_part.is_some_and(|p| p != part) {
                    self.text(out, "reasoning_content", Some("\n\n"));
                }
                self.reasoning_part = Some(part);
                self.text(out, "reasoning_content", ev.str_of("delta"));
            }
            "response.function_call_arguments.delta" => {
                if let (Some(call), Some(delta)) = (self.call_of(ev), ev.str_of("delta")) {
                    self.args(out, call, delta);
                }
            }
            "response.function_call_arguments.done" => self.whole_args(out, ev, ev.str_of("arguments")),
            "response.output_item.done" => {
                let item = ev.get("item").unwrap_or(&Value::Null);
                if item.str_of("type") == Some("function_call") {
                    self.whole_args(out, ev, item.str_of("arguments"));
                }
            }
            "response.completed" | "response.incomplete" => {
                let resp = ev.get("response").unwrap_or(&Value::Null);
                if let Some(u) = resp.some("usage") {
                    self.usage = usage_from_responses(u);
                }
                let finish = responses_finish(resp, !self.calls.is_empty());
                self.finish = Some(finish);
                self.chunk(out, json!({}), Some(finish));
                self.complete(out);
            }
            "response.failed" => {
                let err = ev.get("response").and_then(|r| r.some("error")).unwrap_or(&Value::Null);
                let (class, msg) = error_of(err);
                self.fail(class, &msg, out);
            }
            // `{"type": "error", "code", "message"}`, or the error nested under `error`.
            "error" => {
                let (class, msg) = error_of(ev.get("error").filter(|e| e.is_object()).unwrap_or(ev));
                self.fail(class, &msg, out);
            }
            _ => {}
        }
    }

    fn text(&mut self, out: &mut Vec<u8>, key: &str, text: Option<&str>) {
        if let Some(t) = text.filter(|t| !t.is_empty()) {
            self.chunk(out, json!({ key: t }), None);
        }
    }
}

impl Translate for ResponsesToChat {
    fn event(&mut self, ev: &SseEvent, out: &mut Vec<u8>) {
        if self.done || ev.data.is_empty() {
            return;
        }
        let Ok(v) = serde_json::from_str::<Value>(&ev.data) else { return };
        let ty = v.str_of("type").or(ev.event.as_deref()).unwrap_or("");
        self.handle(ty, &v, out);
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

    /// The finish chunk if none came, the usage chunk (when asked for) and `[DONE]`.
    fn complete(&mut self, out: &mut Vec<u8>) {
        if self.finish.is_none() {
            // A stream that ends before any content still opens with the role chunk.
            self.start(out);
        }
        self.chunks.complete(out, self.finish.is_some(), self.include_usage.then_some(&self.usage));
        self.done = true;
    }

    fn fail(&mut self, class: ErrorClass, msg: &str, out: &mut Vec<u8>) {
        out.extend(error_event(Dialect::OpenaiChat, class, msg));
        self.done = true;
    }
}
