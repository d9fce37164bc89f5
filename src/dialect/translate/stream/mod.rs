//! Streaming translation: upstream SSE bytes in, client-dialect SSE bytes out, one complete
//! client event per complete upstream event (so the server can flush per event).

mod anthropic_to_chat;
mod chat_in;
mod chat_out;
mod chat_to_anthropic;
mod chat_to_gemini;
mod chat_to_responses;
mod gemini_to_chat;
mod order;
mod responses_to_chat;
mod tap;

use serde_json::Value;

use super::json::to_string;
use super::ReplyContext;
use crate::dialect::errors::{error_event, ErrorClass};
use crate::dialect::sse::{write_event, SseEvent, SseSplitter};
use crate::dialect::usage::Usage;
use crate::dialect::Dialect;

use anthropic_to_chat::AnthropicToChat;
use chat_to_anthropic::ChatToAnthropic;
use chat_to_gemini::ChatToGemini;
use chat_to_responses::ChatToResponses;
use gemini_to_chat::GeminiToChat;
use responses_to_chat::ResponsesToChat;
use tap::Tap;

/// What the upstream said when it ended without its terminal event.
const CUT_SHORT: &str = "upstream stream ended before its final event";

/// How far a stream has come.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Progress {
    /// Still expecting content.
    Open,
    /// The upstream gave its finish reason; only usage or the end marker may follow.
    Finished,
    /// The client has its terminal event (or an error event).
    Done,
}

impl Progress {
    fn of(done: bool, finished: bool) -> Progress {
        match (done, finished) {
            (true, _) => Progress::Done,
            (false, true) => Progress::Finished,
            (false, false) => Progress::Open,
        }
    }
}

/// One direction of event translation, fed whole upstream events.
trait Translate {
    fn event(&mut self, ev: &SseEvent, out: &mut Vec<u8>);
    fn usage(&self) -> Usage;
    fn progress(&self) -> Progress;
    /// Writes the client's closing events.
    fn complete(&mut self, out: &mut Vec<u8>);
    /// Writes the client's terminal error event.
    fn fail(&mut self, class: ErrorClass, msg: &str, out: &mut Vec<u8>);
    /// Chat clients only: whether the final usage chunk (`choices: []`) is written.
    fn set_include_usage(&mut self, _include: bool) {}

    /// The upstream ended. A stream cut after its finish reason lost only usage or the end
    /// marker, so it completes; one cut earlier is an error for the client.
    fn end(&mut self, out: &mut Vec<u8>) {
        match self.progress() {
            Progress::Done => {}
            Progress::Finished => self.complete(out),
            Progress::Open => self.fail(ErrorClass::Api, CUT_SHORT, out),
        }
    }
}

/// A translator behind an SSE splitter, so chunks may cut events (and UTF-8) anywhere.
struct Framed {
    splitter: SseSplitter,
    inner: Box<dyn Translate + Send>,
    ended: bool,
}

impl Framed {
    fn new(inner: Box<dyn Translate + Send>) -> Self {
        Framed { splitter: SseSplitter::new(), inner, ended: false }
    }

    fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        self.splitter.push(chunk);
        while let Some(raw) = self.splitter.next_event() {
            self.inner.event(&SseEvent::parse(&raw), out);
        }
        if self.splitter.oversized() > 0 {
            // An event cannot be translated from a part of it: the client gets an error event.
            let msg = format!(
                "the provider sent a stream event over {} MiB, which cannot be translated; the stream was ended",
                crate::dialect::sse::MAX_EVENT_BYTES >> 20
            );
            self.inner.fail(ErrorClass::Api, &msg, out);
            self.ended = true;
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        self.ended = true;
        // A last event without its blank line still counts when it is whole; a cut one fails
        // to parse and is ignored.
        let rest = self.splitter.remainder();
        if !rest.iter().all(u8::is_ascii_whitespace) {
            let ev = SseEvent::parse(rest);
            self.inner.event(&ev, out);
        }
        self.inner.end(out);
    }
}

fn stage(t: impl Translate + Send + 'static) -> Framed {
    Framed::new(Box::new(t))
}

enum Kind {
    /// One translator (or the pass-through tap) between upstream and client.
    One(Framed),
    /// Two translators through Chat: Anthropic ⇄ Responses.
    ViaChat(Box<(Framed, Framed)>),
    Unsupported {
        upstream: Dialect,
        client: Dialect,
        reported: bool,
    },
}

/// Streaming: fed the raw upstream SSE bytes chunk by chunk as they arrive from the network;
/// returns client-dialect SSE bytes to send now.
pub struct StreamTranslator {
    kind: Kind,
    client: Dialect,
    passthrough: bool,
}

impl StreamTranslator {
    /// `model` is the name the client asked for; translated events carry it.
    pub fn new(upstream: Dialect, client: Dialect, model: &str) -> Self {
        StreamTranslator::with_reply(upstream, client, model, &ReplyContext::default())
    }

    /// For a request translated with `translate_request_for_reply`.
    pub fn with_reply(upstream: Dialect, client: Dialect, model: &str, reply: &ReplyContext) -> Self {
        use Dialect::*;
        let to_responses = || stage(ChatToResponses::new(model, reply.clone()));
        let kind = match (upstream, client) {
            _ if upstream == client => Kind::One(stage(Tap::new(upstream))),
            (OpenaiChat, Anthropic) => Kind::One(stage(ChatToAnthropic::new(model))),
            (Anthropic, OpenaiChat) => Kind::One(stage(AnthropicToChat::new(model))),
            (OpenaiChat, OpenaiResponses) => Kind::One(to_responses()),
            (OpenaiResponses, OpenaiChat) => Kind::One(stage(ResponsesToChat::new(model))),
            (Anthropic, OpenaiResponses) => {
                Kind::ViaChat(Box::new((stage(AnthropicToChat::new(model)), to_responses())))
            }
            (OpenaiResponses, Anthropic) => {
                Kind::ViaChat(Box::new((stage(ResponsesToChat::new(model)), stage(ChatToAnthropic::new(model)))))
            }
            (Gemini, OpenaiChat) => Kind::One(stage(GeminiToChat::new(model))),
            (OpenaiChat, Gemini) => Kind::One(stage(ChatToGemini::new(model))),
            (Gemini, Anthropic) => {
                Kind::ViaChat(Box::new((stage(GeminiToChat::new(model)), stage(ChatToAnthropic::new(model)))))
            }
            (Gemini, OpenaiResponses) => Kind::ViaChat(Box::new((stage(GeminiToChat::new(model)), to_responses()))),
            (Anthropic, Gemini) => {
                Kind::ViaChat(Box::new((stage(AnthropicToChat::new(model)), stage(ChatToGemini::new(model)))))
            }
            (OpenaiResponses, Gemini) => {
                Kind::ViaChat(Box::new((stage(ResponsesToChat::new(model)), stage(ChatToGemini::new(model)))))
            }
            _ => Kind::Unsupported { upstream, client, reported: false },
        };
        StreamTranslator { kind, client, passthrough: upstream == client }
    }

    /// Whether a Chat client gets the final usage chunk (`choices: []`). On by default; turn it
    /// off when the client did not ask for `stream_options.include_usage`.
    pub fn set_include_usage(&mut self, include: bool) {
        if let Kind::One(f) = &mut self.kind {
            f.inner.set_include_usage(include);
        }
    }

    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match &mut self.kind {
            Kind::One(f) if self.passthrough => {
                f.push(chunk, &mut Vec::new());
                out.extend_from_slice(chunk);
            }
            Kind::One(f) => f.push(chunk, &mut out),
            Kind::ViaChat(pair) => {
                let mut chat = Vec::new();
                pair.0.push(chunk, &mut chat);
                pair.1.push(&chat, &mut out);
            }
            Kind::Unsupported { .. } => self.report_unsupported(&mut out),
        }
        out
    }

    /// Upstream ended (cleanly or not): close open blocks / emit the final events, or an error
    /// event in the client's dialect if the upstream stopped before its terminal event.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        match &mut self.kind {
            Kind::One(f) => f.finish(&mut out),
            Kind::ViaChat(pair) => {
                let mut chat = Vec::new();
                pair.0.finish(&mut chat);
                pair.1.push(&chat, &mut out);
                pair.1.finish(&mut out);
            }
            Kind::Unsupported { .. } => self.report_unsupported(&mut out),
        }
        out
    }

    /// Whether the translation ended before the upstream did (an event over the size limit):
    /// the client has its error event and the rest of the upstream stream is of no use.
    pub fn gave_up(&self) -> bool {
        match &self.kind {
            Kind::One(f) => !self.passthrough && f.ended,
            Kind::ViaChat(pair) => pair.0.ended || pair.1.ended,
            Kind::Unsupported { .. } => false,
        }
    }

    /// Usage seen so far (input, output, cache read, cache write tokens) for accounting.
    pub fn usage(&self) -> Usage {
        match &self.kind {
            Kind::One(f) => f.inner.usage(),
            Kind::ViaChat(pair) => pair.0.inner.usage(),
            Kind::Unsupported { .. } => Usage::default(),
        }
    }

    pub fn client(&self) -> Dialect {
        self.client
    }

    fn report_unsupported(&mut self, out: &mut Vec<u8>) {
        if let Kind::Unsupported { upstream, client, reported } = &mut self.kind {
            if !*reported {
                *reported = true;
                let msg = format!("no stream translation from {upstream} to {client}");
                out.extend(error_event(*client, ErrorClass::Api, &msg));
            }
        }
    }
}

/// Writes one JSON event (named for Anthropic and Responses clients).
fn emit(out: &mut Vec<u8>, name: Option<&str>, v: &Value) {
    write_event(out, name, &to_string(v));
}

/// Class and message of an upstream error object, with fallbacks.
fn error_of(err: &Value) -> (ErrorClass, String) {
    let (class, message) = super::common::error_parts(err);
    (class.unwrap_or(ErrorClass::Api), message.unwrap_or_else(|| "upstream reported an error".to_string()))
}
