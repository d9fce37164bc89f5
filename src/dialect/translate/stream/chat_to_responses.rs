//! Chat Completions stream (upstream) -> Responses events (client, e.g. Codex CLI).

use serde_json::{json, Value};

use super::chat_in::{ChatIn, Piece};
use super::{emit, Progress, Translate};
use crate::dialect::errors::ErrorClass;
use crate::dialect::sse::SseEvent;
use crate::dialect::translate::common::now_secs;
use crate::dialect::translate::response::to_responses::{
    call_item, custom_call_item, custom_input, item_id, message_item, output_text, reasoning_item, response_id,
    response_object, set_finish, summary_text,
};
use crate::dialect::translate::ReplyContext;
use crate::dialect::usage::Usage;

enum Body {
    Message(String),
    Reasoning(String),
    Call {
        call_id: String,
        name: String,
        args: String,
    },
    /// A call to a freeform tool: its arguments (`{"input": ...}`) are read whole at the end.
    Custom {
        call_id: String,
        name: String,
        args: String,
    },
}

struct Item {
    id: String,
    body: Body,
}

impl Item {
    /// The item as `output_item.done` and the final response show it.
    fn finished(&self) -> Value {
        match &self.body {
            Body::Message(text) => message_item(&self.id, text, "completed"),
            Body::Reasoning(text) => reasoning_item(&self.id, text),
            Body::Call { call_id, name, args } => call_item(&self.id, call_id, name, args, "completed"),
            Body::Custom { call_id, name, args } => custom_call_item(&self.id, call_id, name, &custom_input(args)),
        }
    }
}

pub(super) struct ChatToResponses {
    input: ChatIn,
    reply: ReplyContext,
    id: String,
    model: String,
    created_at: u64,
    seq: u64,
    started: bool,
    items: Vec<Item>,
    /// Output index of the item being written (one at a time).
    open: Option<usize>,
    /// Output index of each tool-call slot.
    call_items: Vec<usize>,
    finish: Option<Option<String>>,
    usage: Usage,
    done: bool,
}

impl ChatToResponses {
    pub fn new(model: &str, reply: ReplyContext) -> Self {
        ChatToResponses {
            input: ChatIn::default(),
            reply,
            id: response_id(None),
            model: model.to_string(),
            created_at: now_secs(),
            seq: 0,
            started: false,
            items: Vec::new(),
            open: None,
            call_items: Vec::new(),
            finish: None,
            usage: Usage::default(),
            done: false,
        }
    }

    /// Writes one event with its type and sequence number.
    fn send(&mut self, out: &mut Vec<u8>, ty: &str, mut ev: Value) {
        ev["type"] = json!(ty);
        ev["sequence_number"] = json!(self.seq);
        self.seq += 1;
        emit(out, Some(ty), &ev);
    }

    fn piece(&mut self, p: Piece<'_>, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        match p {
            Piece::Start { id } => {
                self.id = response_id(id);
                self.start(out);
            }
            Piece::Reasoning(t) => {
                let i = self.open_item(out, false);
                self.append(i, t);
                let ev = json!({ "item_id": self.items[i].id, "output_index": i, "summary_index": 0, "delta": t });
                self.send(out, "response.reasoning_summary_text.delta", ev);
            }
            Piece::Text(t) => {
                let i = self.open_item(out, true);
                self.append(i, t);
                let ev = json!({
                    "item_id": self.items[i].id, "output_index": i, "content_index": 0,
                    "delta": t, "logprobs": [],
                });
                self.send(out, "response.output_text.delta", ev);
            }
            Piece::ToolStart { id: call_id, name, .. } => {
                self.start(out);
                self.close_item(out);
                let i = self.items.len();
                let (id, item, body) = if self.reply.is_custom_tool(name) {
                    let id = item_id("ctc", &self.id, i);
                    let item = custom_call_item(&id, &call_id, name, "");
                    (id, item, Body::Custom { call_id, name: name.to_string(), args: String::new() })
                } else {
                    let id = item_id("fc", &self.id, i);
                    let item = call_item(&id, &call_id, name, "", "in_progress");
                    (id, item, Body::Call { call_id, name: name.to_string(), args: String::new() })
                };
                self.items.push(Item { id, body });
                self.call_items.push(i);
                self.open = Some(i);
                self.send(out, "response.output_item.added", json!({ "output_index": i, "item": item }));
            }
            Piece::ToolArgs { slot, args } => {
                // `ChatIn` sends a call's arguments only while its item is the open one.
                if let Some(&i) = self.call_items.get(slot).filter(|&&i| self.open == Some(i)) {
                    self.append(i, args);
                    // A freeform call's raw input is known only once its JSON arguments are whole.
                    if matches!(self.items[i].body, Body::Call { .. }) {
                        let ev = json!({ "item_id": self.items[i].id, "output_index": i, "delta": args });
                        self.send(out, "response.function_call_arguments.delta", ev);
                    }
                }
            }
            Piece::Finish { reason, .. } => {
                self.start(out);
                self.close_item(out);
                self.finish = Some(reason.map(str::to_string));
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
        let resp = response_object(&self.id, &self.model, self.created_at, "in_progress", vec![], None);
        self.send(out, "response.created", json!({ "response": resp.clone() }));
        self.send(out, "response.in_progress", json!({ "response": resp }));
    }

    /// Makes a message (or reasoning) item the open one, adding it if the open item is of
    /// another kind. Returns its output index.
    fn open_item(&mut self, out: &mut Vec<u8>, message: bool) -> usize {
        self.start(out);
        if let Some(i) = self.open {
            if matches!((&self.items[i].body, message), (Body::Message(_), true) | (Body::Reasoning(_), false)) {
                return i;
            }
        }
        self.close_item(out);
        let i = self.items.len();
        let id = item_id(if message { "msg" } else { "rs" }, &self.id, i);
        let (body, item, part_event, part) = if message {
            let part = json!({ "content_index": 0, "part": output_text("") });
            let item = message_item(&id, "", "in_progress");
            (Body::Message(String::new()), item, "response.content_part.added", part)
        } else {
            let part = json!({ "summary_index": 0, "part": summary_text("") });
            let item = reasoning_item(&id, "");
            (Body::Reasoning(String::new()), item, "response.reasoning_summary_part.added", part)
        };
        self.items.push(Item { id: id.clone(), body });
        self.open = Some(i);
        self.send(out, "response.output_item.added", json!({ "output_index": i, "item": item }));
        let mut ev = part;
        ev["item_id"] = json!(id);
        ev["output_index"] = json!(i);
        self.send(out, part_event, ev);
        i
    }

    fn append(&mut self, i: usize, piece: &str) {
        match &mut self.items[i].body {
            Body::Message(s) | Body::Reasoning(s) | Body::Call { args: s, .. } | Body::Custom { args: s, .. } => {
                s.push_str(piece)
            }
        }
    }

    /// The `done` events of the open item.
    fn close_item(&mut self, out: &mut Vec<u8>) {
        let Some(i) = self.open.take() else { return };
        let id = self.items[i].id.clone();
        match &self.items[i].body {
            Body::Message(text) => {
                let text = text.clone();
                let ev = json!({ "item_id": id, "output_index": i, "content_index": 0, "text": text, "logprobs": [] });
                self.send(out, "response.output_text.done", ev);
                let ev = json!({ "item_id": id, "output_index": i, "content_index": 0, "part": output_text(&text) });
                self.send(out, "response.content_part.done", ev);
            }
            Body::Reasoning(text) => {
                let text = text.clone();
                let ev = json!({ "item_id": id, "output_index": i, "summary_index": 0, "text": text });
                self.send(out, "response.reasoning_summary_text.done", ev);
                let ev = json!({ "item_id": id, "output_index": i, "summary_index": 0, "part": summary_text(&text) });
                self.send(out, "response.reasoning_summary_part.done", ev);
            }
            Body::Call { name, args, .. } => {
                let ev = json!({ "item_id": id, "output_index": i, "name": name, "arguments": args });
                self.send(out, "response.function_call_arguments.done", ev);
            }
            Body::Custom { args, .. } => {
                let input = custom_input(args);
                if !input.is_empty() {
                    let ev = json!({ "item_id": id, "output_index": i, "delta": input });
                    self.send(out, "response.custom_tool_call_input.delta", ev);
                }
                let ev = json!({ "item_id": id, "output_index": i, "input": input });
                self.send(out, "response.custom_tool_call_input.done", ev);
            }
        }
        let item = self.items[i].finished();
        self.send(out, "response.output_item.done", json!({ "output_index": i, "item": item }));
    }

    fn final_response(&self, status: &str) -> Value {
        let output = self.items.iter().map(Item::finished).collect();
        response_object(&self.id, &self.model, self.created_at, status, output, Some(&self.usage))
    }
}

impl Translate for ChatToResponses {
    fn event(&mut self, ev: &SseEvent, out: &mut Vec<u8>) {
        let mut input = std::mem::take(&mut self.input);
        input.read(ev, |p| self.piece(p, out));
        self.input = input;
    }

    fn usage(&self) -> Usage {
        self.usage
    }

    fn progress(&self) -> Progress {
        Progress::of(self.done, self.finish.is_some())
    }

    /// `response.completed`, or `response.incomplete` when the turn hit a limit.
    fn complete(&mut self, out: &mut Vec<u8>) {
        self.start(out);
        self.close_item(out);
        let mut resp = self.final_response("completed");
        let finish = self.finish.take().flatten();
        let ty = match set_finish(&mut resp, finish.as_deref()) {
            "incomplete" => "response.incomplete",
            _ => "response.completed",
        };
        self.send(out, ty, json!({ "response": resp }));
        self.done = true;
    }

    /// `response.failed`, the terminal error event of a Responses stream.
    fn fail(&mut self, class: ErrorClass, msg: &str, out: &mut Vec<u8>) {
        self.start(out);
        let code = match class {
            ErrorClass::RateLimit => "rate_limit_exceeded",
            ErrorClass::InvalidRequest => "invalid_prompt",
            _ => "server_error",
        };
        let mut resp = self.final_response("failed");
        resp["error"] = json!({ "code": code, "message": msg });
        self.send(out, "response.failed", json!({ "response": resp }));
        self.done = true;
    }
}
