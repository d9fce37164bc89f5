//! Streaming translation: upstream SSE bytes in, client-dialect SSE bytes out, one complete
//! client event per complete upstream event (so the server can flush per event).

mod anthropic_to_chat;
mod chat_in;
mod chat_to_anthropic;
mod chat_to_responses;
mod tap;

use serde_json::Value;

use super::json::to_string;
use super::Usage;
use crate::dialect::errors::{error_event, ErrorClass};
use crate::dialect::sse::{write_event, SseEvent, SseSplitter};
use crate::dialect::Dialect;

use anthropic_to_chat::AnthropicToChat;
use chat_to_anthropic::ChatToAnthropic;
use chat_to_responses::ChatToResponses;
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
struct Framed<T> {
    splitter: SseSplitter,
    inner: T,
    ended: bool,
}

impl<T: Translate> Framed<T> {
    fn new(inner: T) -> Self {
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

enum Kind {
    Pass(Framed<Tap>),
    ToAnthropic(Framed<ChatToAnthropic>),
    ToChat(Framed<AnthropicToChat>),
    ToResponses(Framed<ChatToResponses>),
    /// Anthropic upstream, Responses client: through Chat.
    ViaChat(Box<(Framed<AnthropicToChat>, Framed<ChatToResponses>)>),
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
}

impl StreamTranslator {
    /// `model` is the name the client asked for; translated events carry it.
    pub fn new(upstream: Dialect, client: Dialect, model: &str) -> Self {
        use Dialect::*;
        let kind = match (upstream, client) {
            _ if upstream == client => Kind::Pass(Framed::new(Tap::new(upstream))),
            (OpenaiChat, Anthropic) => Kind::ToAnthropic(Framed::new(ChatToAnthropic::new(model))),
            (Anthropic, OpenaiChat) => Kind::ToChat(Framed::new(AnthropicToChat::new(model))),
            (OpenaiChat, OpenaiResponses) => Kind::ToResponses(Framed::new(ChatToResponses::new(model))),
            (Anthropic, OpenaiResponses) => Kind::ViaChat(Box::new((
                Framed::new(AnthropicToChat::new(model)),
                Framed::new(ChatToResponses::new(model)),
            ))),
            _ => Kind::Unsupported { upstream, client, reported: false },
        };
        StreamTranslator { kind, client }
    }

    /// Whether a Chat client gets the final usage chunk (`choices: []`). On by default; turn it
    /// off when the client did not ask for `stream_options.include_usage`.
    pub fn set_include_usage(&mut self, include: bool) {
        if let Kind::ToChat(f) = &mut self.kind {
            f.inner.include_usage = include;
        }
    }

    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match &mut self.kind {
            Kind::Pass(f) => {
                f.push(chunk, &mut Vec::new());
                out.extend_from_slice(chunk);
            }
            Kind::ToAnthropic(f) => f.push(chunk, &mut out),
            Kind::ToChat(f) => f.push(chunk, &mut out),
            Kind::ToResponses(f) => f.push(chunk, &mut out),
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
            Kind::Pass(f) => f.finish(&mut out),
            Kind::ToAnthropic(f) => f.finish(&mut out),
            Kind::ToChat(f) => f.finish(&mut out),
            Kind::ToResponses(f) => f.finish(&mut out),
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

    /// Usage seen so far (input, output, cache read, cache write tokens) for accounting.
    pub fn usage(&self) -> Usage {
        match &self.kind {
            Kind::Pass(f) => f.inner.usage(),
            Kind::ToAnthropic(f) => f.inner.usage(),
            Kind::ToChat(f) => f.inner.usage(),
            Kind::ToResponses(f) => f.inner.usage(),
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
