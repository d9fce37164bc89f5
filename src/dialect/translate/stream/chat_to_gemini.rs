//! Chat Completions stream (upstream; and, through `anthropic_to_chat` / `responses_to_chat`,
//! Anthropic and Responses streams) -> Gemini `streamGenerateContent?alt=sse` events (client).
//!
//! Text and thoughts go out as they arrive; a function call goes out whole once its arguments
//! are complete (Gemini clients read calls whole). The last event carries the finish reason and
//! the usage, as Gemini's does.

use serde_json::Value;

use super::chat_in::{ChatIn, Piece};
use super::{emit, Progress, Translate};
use crate::dialect::errors::{error_event, ErrorClass};
use crate::dialect::sse::SseEvent;
use crate::dialect::translate::gemini_common::gemini_finish;
use crate::dialect::translate::response::to_gemini::{answer, call_part, thought_part};
use crate::dialect::usage::Usage;
use crate::dialect::Dialect;

/// A call whose arguments are still arriving.
struct Pending {
    id: String,
    name: String,
    args: String,
}

pub(super) struct ChatToGemini {
    input: ChatIn,
    model: String,
    id: Option<String>,
    call: Option<Pending>,
    finish: Option<&'static str>,
    usage: Usage,
    done: bool,
}

impl ChatToGemini {
    pub fn new(model: &str) -> Self {
        ChatToGemini {
            input: ChatIn::default(),
            model: model.to_string(),
            id: None,
            call: None,
            finish: None,
            usage: Usage::default(),
            done: false,
        }
    }

    /// One event with these parts.
    fn send(&self, out: &mut Vec<u8>, parts: Vec<Value>) {
        emit(out, None, &answer(self.id.as_deref(), &self.model, parts, None, None));
    }

    fn flush_call(&mut self, out: &mut Vec<u8>) {
        if let Some(c) = self.call.take() {
            self.send(out, vec![call_part(Some(&c.id), &c.name, &c.args)]);
        }
    }

    fn piece(&mut self, p: Piece<'_>, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if !matches!(p, Piece::ToolArgs { .. } | Piece::Usage(_)) {
            self.flush_call(out);
        }
        match p {
            Piece::Start { id } => self.id = id.map(str::to_string),
            Piece::Reasoning(t) => self.send(out, vec![thought_part(t)]),
            Piece::Text(t) => self.send(out, vec![serde_json::json!({ "text": t })]),
            Piece::ToolStart { id, name, .. } => {
                self.call = Some(Pending { id, name: name.to_string(), args: String::new() });
            }
            Piece::ToolArgs { args, .. } => {
                if let Some(c) = &mut self.call {
                    c.args.push_str(args);
                }
            }
            Piece::Finish { reason, .. } => self.finish = Some(gemini_finish(reason)),
            Piece::Usage(u) => self.usage = u,
            Piece::Error(class, msg) => self.fail(class, &msg, out),
            Piece::Done => self.complete(out),
        }
    }
}

impl Translate for ChatToGemini {
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

    /// The last event: an empty text part with the finish reason and the usage.
    fn complete(&mut self, out: &mut Vec<u8>) {
        self.flush_call(out);
        let finish = self.finish.unwrap_or("STOP");
        let parts = vec![serde_json::json!({ "text": "" })];
        emit(out, None, &answer(self.id.as_deref(), &self.model, parts, Some(finish), Some((&self.usage, 0))));
        self.done = true;
    }

    fn fail(&mut self, class: ErrorClass, msg: &str, out: &mut Vec<u8>) {
        out.extend(error_event(Dialect::Gemini, class, msg));
        self.done = true;
    }
}
