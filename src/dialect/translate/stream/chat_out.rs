//! The Chat Completions chunks every translator into Chat writes: one id, model and creation
//! time per stream, the end of the stream the same way whatever the upstream spoke.

use serde_json::{json, Value};

use super::emit;
use crate::dialect::sse::write_event;
use crate::dialect::translate::common::{chat_usage_json, now_secs};
use crate::dialect::usage::Usage;

pub(super) struct ChatChunks {
    /// Replaced by the upstream's own message id once it is known.
    pub id: String,
    pub model: String,
    pub created: u64,
}

impl ChatChunks {
    pub fn new(model: &str) -> Self {
        ChatChunks { id: "chatcmpl-tokenfold".to_string(), model: model.to_string(), created: now_secs() }
    }

    pub fn chunk(&self, out: &mut Vec<u8>, delta: Value, finish: Option<&str>) {
        let ev = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }],
        });
        emit(out, None, &ev);
    }

    /// The finish chunk if none came (`finished` false), the usage chunk when the client asked
    /// for one, and `[DONE]`.
    pub fn complete(&self, out: &mut Vec<u8>, finished: bool, usage: Option<&Usage>) {
        if !finished {
            self.chunk(out, json!({}), Some("stop"));
        }
        if let Some(u) = usage {
            let ev = json!({
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [],
                "usage": chat_usage_json(u),
            });
            emit(out, None, &ev);
        }
        write_event(out, None, "[DONE]");
    }
}
