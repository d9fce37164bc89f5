//! Anthropic Messages events (upstream) -> Chat Completions chunks (client).

use serde_json::{json, Value};

use super::chat_out::ChatChunks;
use super::{error_of, Progress, Translate};
use crate::dialect::errors::{error_event, ErrorClass};
use crate::dialect::sse::SseEvent;
use crate::dialect::translate::common::{chat_finish, merge_anthropic_usage};
use crate::dialect::translate::json::Get;
use crate::dialect::usage::Usage;
use crate::dialect::Dialect;

pub(super) struct AnthropicToChat {
    chunks: ChatChunks,
    /// `(block index, tool-call index)` of each tool_use block.
    tools: Vec<(u64, usize)>,
    finish: Option<&'static str>,
    usage: Usage,
    include_usage: bool,
    done: bool,
}

impl AnthropicToChat {
    pub fn new(model: &str) -> Self {
        AnthropicToChat {
            chunks: ChatChunks::new(model),
            tools: Vec::new(),
            finish: None,
            usage: Usage::default(),
            include_usage: true,
            done: false,
        }
    }

    fn chunk(&self, out: &mut Vec<u8>, delta: Value, finish: Option<&str>) {
        self.chunks.chunk(out, delta, finish);
    }

    fn tool_delta(&self, out: &mut Vec<u8>, call: Value) {
        self.chunk(out, json!({ "tool_calls": [call] }), None);
    }

    fn handle(&mut self, ev: &Value, out: &mut Vec<u8>) {
        match ev.str_of("type").unwrap_or("") {
            "message_start" => {
                let msg = ev.get("message").unwrap_or(&Value::Null);
                if let Some(id) = msg.str_of("id") {
                    self.chunks.id = id.to_string();
                }
                if let Some(u) = msg.get("usage") {
                    merge_anthropic_usage(&mut self.usage, u);
                }
                self.chunk(out, json!({ "role": "assistant", "content": "" }), None);
            }
            "content_block_start" => {
                let block = ev.get("content_block").unwrap_or(&Value::Null);
                match block.str_of("type") {
                    Some("tool_use") => {
                        let index = self.tools.len();
                        self.tools.push((ev.u64_of("index").unwrap_or(0), index));
                        self.tool_delta(
                            out,
                            json!({
                                "index": index,
                                "id": block.str_of("id").unwrap_or(""),
                                "type": "function",
                                "function": { "name": block.str_of("name").unwrap_or(""), "arguments": "" },
                            }),
                        );
                    }
                    Some("text") => self.text(out, block.str_of("text")),
                    _ => {}
                }
            }
            "content_block_delta" => {
                let delta = ev.get("delta").unwrap_or(&Value::Null);
                match delta.str_of("type") {
                    Some("text_delta") => self.text(out, delta.str_of("text")),
                    Some("thinking_delta") => {
                        if let Some(t) = delta.str_of("thinking").filter(|t| !t.is_empty()) {
                            self.chunk(out, json!({ "reasoning_content": t }), None);
                        }
                    }
                    Some("input_json_delta") => {
                        let block = ev.u64_of("index").unwrap_or(0);
                        let tool = self.tools.iter().find(|t| t.0 == block).map(|t| t.1);
                        let args = delta.str_of("partial_json").filter(|a| !a.is_empty());
                        if let (Some(index), Some(args)) = (tool, args) {
                            self.tool_delta(out, json!({ "index": index, "function": { "arguments": args } }));
                        }
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(u) = ev.get("usage") {
                    merge_anthropic_usage(&mut self.usage, u);
                }
                let stop = ev.get("delta").and_then(|d| d.str_of("stop_reason"));
                let finish = chat_finish(stop);
                self.finish = Some(finish);
                self.chunk(out, json!({}), Some(finish));
            }
            "message_stop" => self.complete(out),
            "error" => {
                let (class, msg) = error_of(ev.get("error").unwrap_or(&Value::Null));
                self.fail(class, &msg, out);
            }
            _ => {}
        }
    }

    fn text(&self, out: &mut Vec<u8>, text: Option<&str>) {
        if let Some(t) = text.filter(|t| !t.is_empty()) {
            self.chunk(out, json!({ "content": t }), None);
        }
    }
}

impl Translate for AnthropicToChat {
    fn event(&mut self, ev: &SseEvent, out: &mut Vec<u8>) {
        if self.done || ev.data.is_empty() {
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
        self.chunks.complete(out, self.finish.is_some(), self.include_usage.then_some(&self.usage));
        self.done = true;
    }

    fn fail(&mut self, class: ErrorClass, msg: &str, out: &mut Vec<u8>) {
        out.extend(error_event(Dialect::OpenaiChat, class, msg));
        self.done = true;
    }
}
