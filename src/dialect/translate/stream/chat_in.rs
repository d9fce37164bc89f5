//! Reads a Chat Completions stream into dialect-neutral pieces, resolving tool-call slots once
//! for the translators that write Anthropic and Responses events.

use serde::Deserialize;
use serde_json::Value;

use super::order::Orderer;
use crate::dialect::errors::ErrorClass;
use crate::dialect::sse::SseEvent;
use crate::dialect::translate::common::usage_from_chat;
use crate::dialect::usage::Usage;

/// One thing a Chat chunk said, in stream order.
pub(super) enum Piece<'a> {
    /// The first chunk, with the upstream completion id when it has one.
    Start {
        id: Option<&'a str>,
    },
    Reasoning(&'a str),
    Text(&'a str),
    /// A tool call seen for the first time; `slot` numbers calls 0, 1, … in order of appearance.
    ToolStart {
        slot: usize,
        id: String,
        name: &'a str,
    },
    ToolArgs {
        slot: usize,
        args: &'a str,
    },
    Finish {
        reason: Option<&'a str>,
        matched: Option<&'a str>,
        tool_calls: bool,
    },
    Usage(Usage),
    Error(ErrorClass, String),
    /// `data: [DONE]`
    Done,
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Value>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
    /// vLLM: the stop string matched (or a token id).
    #[serde(default)]
    stop_reason: Option<Value>,
}

#[derive(Deserialize, Default)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    reasoning_content: Option<String>,
    /// OpenRouter and others; an object on some, so not typed as a string.
    #[serde(default)]
    reasoning: Option<Value>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolDelta>>,
}

#[derive(Deserialize)]
struct ToolDelta {
    #[serde(default)]
    index: Option<usize>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FnDelta>,
}

#[derive(Deserialize)]
struct FnDelta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Default)]
pub(super) struct ChatIn {
    /// The upstream completion id, from the first chunk.
    id: Option<String>,
    /// `(chat tool index, slot)` for each call seen.
    calls: Vec<(usize, usize)>,
    saw_tool_calls: bool,
    started: bool,
    order: Orderer,
}

impl ChatIn {
    /// Calls `f` with each piece of one upstream event, in an order where each tool call's
    /// arguments sit between its start and the next block (see `order`). Events that are not
    /// Chat chunks (comments, keep-alives, unparsable data) give nothing.
    pub fn read(&mut self, ev: &SseEvent, mut f: impl FnMut(Piece<'_>)) {
        let mut order = std::mem::take(&mut self.order);
        self.read_in_arrival_order(ev, |p| order.push(p, &mut f));
        self.order = order;
    }

    fn read_in_arrival_order(&mut self, ev: &SseEvent, mut f: impl FnMut(Piece<'_>)) {
        let data = ev.data.trim();
        if data == "[DONE]" {
            return f(Piece::Done);
        }
        if data.is_empty() {
            return;
        }
        let Ok(chunk) = serde_json::from_str::<Chunk>(data) else {
            return;
        };
        if let Some(err) = &chunk.error {
            let (class, msg) = super::error_of(err);
            return f(Piece::Error(class, msg));
        }
        if !self.started {
            self.started = true;
            self.id = chunk.id.clone();
            f(Piece::Start { id: chunk.id.as_deref() });
        }
        for choice in chunk.choices.iter().take(1) {
            if let Some(d) = &choice.delta {
                self.delta(d, &mut f);
            }
            if let Some(reason) = &choice.finish_reason {
                let matched = choice.stop_reason.as_ref().and_then(Value::as_str);
                let tool_calls = self.saw_tool_calls;
                f(Piece::Finish { reason: Some(reason), matched, tool_calls });
            }
        }
        if let Some(u) = chunk.usage.as_ref().filter(|u| u.is_object()) {
            f(Piece::Usage(usage_from_chat(u)));
        }
    }

    fn delta<'a>(&mut self, d: &'a Delta, f: &mut impl FnMut(Piece<'a>)) {
        let reasoning = d.reasoning_content.as_deref().or_else(|| d.reasoning.as_ref().and_then(Value::as_str));
        if let Some(r) = reasoning.filter(|r| !r.is_empty()) {
            f(Piece::Reasoning(r));
        }
        for text in [&d.content, &d.refusal].into_iter().flatten() {
            if !text.is_empty() {
                f(Piece::Text(text));
            }
        }
        for call in d.tool_calls.iter().flatten() {
            let slot = self.slot(call, f);
            let args = call.function.as_ref().and_then(|fd| fd.arguments.as_deref());
            if let (Some(slot), Some(args)) = (slot, args.filter(|a| !a.is_empty())) {
                f(Piece::ToolArgs { slot, args });
            }
        }
    }

    /// The slot of a call delta, announcing the call when it is new. Providers that omit
    /// `index` send whole calls: a delta with an id is then a new call.
    fn slot<'a>(&mut self, call: &'a ToolDelta, f: &mut impl FnMut(Piece<'a>)) -> Option<usize> {
        let index = match call.index {
            Some(i) => i,
            // A key no indexed call uses.
            None if call.id.is_some() => usize::MAX - self.calls.len(),
            None => return self.calls.last().map(|c| c.1),
        };
        if let Some(&(_, slot)) = self.calls.iter().find(|c| c.0 == index) {
            return Some(slot);
        }
        let slot = self.calls.len();
        self.calls.push((index, slot));
        self.saw_tool_calls = true;
        let id = match &call.id {
            Some(id) if !id.is_empty() => id.clone(),
            _ => format!("call_{}_{slot}", self.id.as_deref().unwrap_or("tokenfold")),
        };
        let name = call.function.as_ref().and_then(|fd| fd.name.as_deref()).unwrap_or("");
        f(Piece::ToolStart { slot, id, name });
        Some(slot)
    }
}
