//! Same dialect on both ends: bytes pass untouched; this only reads usage and notices a stream
//! that ends before its terminal event.

use serde_json::Value;

use super::{Progress, Translate};
use crate::dialect::errors::{error_event, ErrorClass};
use crate::dialect::sse::SseEvent;
use crate::dialect::translate::common::{
    merge_anthropic_usage, usage_from_chat, usage_from_gemini, usage_from_responses,
};
use crate::dialect::translate::json::Get;
use crate::dialect::usage::Usage;
use crate::dialect::Dialect;

pub(super) struct Tap {
    dialect: Dialect,
    usage: Usage,
    terminal: bool,
}

impl Tap {
    pub fn new(dialect: Dialect) -> Self {
        Tap { dialect, usage: Usage::default(), terminal: false }
    }
}

impl Translate for Tap {
    fn event(&mut self, ev: &SseEvent, _out: &mut Vec<u8>) {
        let data = ev.data.trim();
        if data == "[DONE]" {
            self.terminal = true;
            return;
        }
        // Cheap filter: only events that can carry usage or end the stream are parsed.
        let interesting = ["usage", "error", "finish_reason", "finishReason", "message_stop", "response."]
            .iter()
            .any(|k| data.contains(k));
        if !interesting {
            return;
        }
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            return;
        };
        if v.get("error").is_some_and(|e| !e.is_null()) {
            self.terminal = true;
        }
        match self.dialect {
            Dialect::OpenaiChat => {
                if let Some(u) = v.some("usage") {
                    self.usage = usage_from_chat(u);
                }
                let finished = v.arr_of("choices").iter().any(|c| c.some("finish_reason").is_some());
                self.terminal |= finished;
            }
            Dialect::Anthropic => {
                let ty = v.str_of("type").unwrap_or("");
                let u =
                    if ty == "message_start" { v.get("message").and_then(|m| m.get("usage")) } else { v.get("usage") };
                if let Some(u) = u {
                    merge_anthropic_usage(&mut self.usage, u);
                }
                self.terminal |= matches!(ty, "message_stop" | "message_delta" | "error");
            }
            Dialect::OpenaiResponses => {
                let ty = v.str_of("type").unwrap_or("");
                if let Some(u) = v.get("response").and_then(|r| r.some("usage")) {
                    self.usage = usage_from_responses(u);
                }
                self.terminal |=
                    matches!(ty, "response.completed" | "response.incomplete" | "response.failed" | "error");
            }
            Dialect::Gemini => {
                if let Some(u) = v.some(crate::dialect::gemini::USAGE_FIELD) {
                    self.usage = usage_from_gemini(u);
                }
                // Gemini streams have no end marker: the chunk that gives a finish reason is the last.
                self.terminal |= v.arr_of("candidates").iter().any(|c| c.some("finishReason").is_some());
            }
        }
    }

    fn progress(&self) -> Progress {
        if self.terminal {
            Progress::Done
        } else {
            Progress::Open
        }
    }

    /// Nothing to add: the upstream's own closing events passed through.
    fn complete(&mut self, _out: &mut Vec<u8>) {}

    fn fail(&mut self, class: ErrorClass, msg: &str, out: &mut Vec<u8>) {
        out.extend(error_event(self.dialect, class, msg));
        self.terminal = true;
    }

    fn usage(&self) -> Usage {
        self.usage
    }
}
