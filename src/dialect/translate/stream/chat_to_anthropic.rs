//! Chat Completions stream (upstream) -> Anthropic Messages events (client).

use serde_json::{json, Value};

use super::chat_in::{ChatIn, Piece};
use super::{emit, Progress, Translate};
use crate::dialect::errors::{error_event, ErrorClass};
use crate::dialect::sse::SseEvent;
use crate::dialect::translate::common::{anthropic_stop, anthropic_usage_json};
use crate::dialect::usage::Usage;
use crate::dialect::Dialect;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Open {
    Text,
    Thinking,
    Tool(usize),
}

pub(super) struct ChatToAnthropic {
    input: ChatIn,
    id: Option<String>,
    model: String,
    started: bool,
    /// The block being written and its index. One at a time, as Anthropic streams them.
    open: Option<(Open, usize)>,
    next_block: usize,
    stop: Option<(&'static str, Option<String>)>,
    usage: Usage,
    done: bool,
}

impl ChatToAnthropic {
    pub fn new(model: &str) -> Self {
        ChatToAnthropic {
            input: ChatIn::default(),
            id: None,
            model: model.to_string(),
            started: false,
            open: None,
            next_block: 0,
            stop: None,
            usage: Usage::default(),
            done: false,
        }
    }

    fn piece(&mut self, p: Piece<'_>, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        match p {
            Piece::Reasoning(t) => {
                self.open_block(Open::Thinking, out);
                self.delta(json!({ "type": "thinking_delta", "thinking": t }), out);
            }
            Piece::Text(t) => {
                self.open_block(Open::Text, out);
                self.delta(json!({ "type": "text_delta", "text": t }), out);
            }
            Piece::ToolStart { slot, id, name } => {
                self.start(out);
                self.close_block(out);
                let index = self.next_block;
                self.next_block += 1;
                self.open = Some((Open::Tool(slot), index));
                let block = json!({ "type": "tool_use", "id": id, "name": name, "input": {} });
                self.block_start(index, block, out);
            }
            Piece::ToolArgs { slot, args } => {
                // `ChatIn` sends a call's arguments only while its block is the open one.
                if self.open.is_some_and(|(kind, _)| kind == Open::Tool(slot)) {
                    self.delta(json!({ "type": "input_json_delta", "partial_json": args }), out);
                }
            }
            Piece::Start { id } => {
                self.id = id.map(str::to_string);
                self.start(out);
            }
            Piece::Finish { reason, matched, tool_calls } => {
                self.start(out);
                self.close_block(out);
                self.stop = Some(anthropic_stop(reason, tool_calls, matched));
            }
            Piece::Usage(u) => self.usage = u,
            Piece::Error(class, msg) => self.fail(class, &msg, out),
            Piece::Done => self.complete(out),
        }
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let id = match self.id.as_deref() {
            Some(id) if id.starts_with("msg_") => id.to_string(),
            Some(id) => format!("msg_{id}"),
            None => "msg_tokenfold".to_string(),
        };
        let ev = json!({
            "type": "message_start",
            "message": {
                "id": id,
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                // Chat streams report usage at the end; message_delta carries it.
                "usage": anthropic_usage_json(&self.usage),
            },
        });
        emit(out, Some("message_start"), &ev);
    }

    /// Makes a text or thinking block the open one, starting it if needed.
    fn open_block(&mut self, kind: Open, out: &mut Vec<u8>) {
        self.start(out);
        if matches!(self.open, Some((k, _)) if k == kind) {
            return;
        }
        self.close_block(out);
        let index = self.next_block;
        self.next_block += 1;
        self.open = Some((kind, index));
        let block = match kind {
            Open::Thinking => json!({ "type": "thinking", "thinking": "", "signature": "" }),
            _ => json!({ "type": "text", "text": "" }),
        };
        self.block_start(index, block, out);
    }

    fn block_start(&self, index: usize, block: Value, out: &mut Vec<u8>) {
        let ev = json!({ "type": "content_block_start", "index": index, "content_block": block });
        emit(out, Some("content_block_start"), &ev);
    }

    fn delta(&self, delta: Value, out: &mut Vec<u8>) {
        if let Some((_, index)) = self.open {
            let ev = json!({ "type": "content_block_delta", "index": index, "delta": delta });
            emit(out, Some("content_block_delta"), &ev);
        }
    }

    fn close_block(&mut self, out: &mut Vec<u8>) {
        if let Some((_, index)) = self.open.take() {
            let ev = json!({ "type": "content_block_stop", "index": index });
            emit(out, Some("content_block_stop"), &ev);
        }
    }
}

impl Translate for ChatToAnthropic {
    fn event(&mut self, ev: &SseEvent, out: &mut Vec<u8>) {
        let mut input = std::mem::take(&mut self.input);
        input.read(ev, |p| self.piece(p, out));
        self.input = input;
    }

    fn usage(&self) -> Usage {
        self.usage
    }

    fn progress(&self) -> Progress {
        Progress::of(self.done, self.stop.is_some())
    }

    /// The closing `message_delta` (stop reason, final usage) and `message_stop`.
    fn complete(&mut self, out: &mut Vec<u8>) {
        self.start(out);
        self.close_block(out);
        let (stop_reason, stop_sequence) = self.stop.take().unwrap_or(("end_turn", None));
        let ev = json!({
            "type": "message_delta",
            "delta": { "stop_reason": stop_reason, "stop_sequence": stop_sequence },
            "usage": anthropic_usage_json(&self.usage),
        });
        emit(out, Some("message_delta"), &ev);
        emit(out, Some("message_stop"), &json!({ "type": "message_stop" }));
        self.done = true;
    }

    fn fail(&mut self, class: ErrorClass, msg: &str, out: &mut Vec<u8>) {
        out.extend(error_event(Dialect::Anthropic, class, msg));
        self.done = true;
    }
}
