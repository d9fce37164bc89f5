//! Translation between the four dialects, for an agent whose route ends at a provider that speaks
//! another one. Requests: Anthropic ⇄ Chat, Chat ⇄ Responses and Chat ⇄ Gemini directly; the
//! other pairs through Chat. Answers, streamed or not, go the opposite ways.
//!
//! Requests are parsed into `serde_json::Value` (sorted keys) and written anew, so the same input
//! always gives the same bytes: prefix caching upstream survives translation.

mod common;
mod error_body;
mod gemini_common;
mod json;
mod request;
mod response;
mod stream;

pub use error_body::translate_error;
pub use stream::StreamTranslator;

use serde_json::Value;

use super::Dialect;

/// Why a body could not be translated. The message says what in the input was wrong.
#[derive(Debug, thiserror::Error)]
pub enum TranslateError {
    #[error("body is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("body is not a JSON object")]
    NotAnObject,
    #[error("invalid `{field}`: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("`{field}` cannot be translated to {to}: {reason}")]
    Untranslatable { field: &'static str, to: Dialect, reason: &'static str },
    #[error("no translation from {from} to {to}")]
    Unsupported { from: Dialect, to: Dialect },
}

impl TranslateError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        TranslateError::Invalid { field, reason: reason.into() }
    }

    /// True when the client's body is at fault (render as 400); false when the proxy lacks the
    /// translation (a route to another target could still serve it).
    pub fn is_client_error(&self) -> bool {
        !matches!(self, TranslateError::Unsupported { .. })
    }
}

/// Knobs for a request translation beyond the two dialects.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestOptions<'a> {
    /// Replaces the model name when set.
    pub model: Option<&'a str>,
    /// The target accepts reasoning settings (`reasoning_effort` on Chat, `thinking` on
    /// Anthropic). When false they are dropped: many Chat providers reject unknown fields.
    pub target_reasoning: bool,
    /// The target refuses OpenAI's `prompt_cache_key` (Groq, Cerebras, NVIDIA, ...): a client's
    /// key is not carried. By default it is carried between the OpenAI dialects.
    pub drop_prompt_cache_key: bool,
    /// A Gemini request's URL: its model and whether it streams are there, not in the body.
    pub gemini: Option<&'a crate::dialect::gemini::Call>,
}

/// What translating the answer needs to know about the request it answers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplyContext {
    /// The client's freeform (`custom`) Responses tools. The target got each as a function tool
    /// with one string parameter; its calls to them go back as `custom_tool_call` items.
    pub custom_tools: Vec<String>,
    /// A Gemini client asked for `streamGenerateContent` without `alt=sse`: it reads a JSON
    /// array of answers, so the target is asked for one whole answer, sent as a one-element array.
    pub gemini_array: bool,
}

impl ReplyContext {
    pub(crate) fn is_custom_tool(&self, name: &str) -> bool {
        self.custom_tools.iter().any(|t| t == name)
    }
}

/// A translated request body and what its answer's translation needs.
#[derive(Debug, Clone)]
pub struct TranslatedRequest {
    pub body: Vec<u8>,
    pub reply: ReplyContext,
}

/// Request body of dialect `from` -> body of dialect `to`. Deterministic (same input, same bytes).
/// `model` replaces the model name when Some.
pub fn translate_request(
    from: Dialect,
    to: Dialect,
    body: &[u8],
    model: Option<&str>,
) -> Result<Vec<u8>, TranslateError> {
    translate_request_with(from, to, body, &RequestOptions { model, ..RequestOptions::default() })
}

/// `translate_request` with all options.
pub fn translate_request_with(
    from: Dialect,
    to: Dialect,
    body: &[u8],
    opts: &RequestOptions<'_>,
) -> Result<Vec<u8>, TranslateError> {
    translate_request_for_reply(from, to, body, opts).map(|t| t.body)
}

/// `translate_request_with`, also returning what the answer's translation needs
/// (`StreamTranslator::with_reply`, `translate_response_with`).
pub fn translate_request_for_reply(
    from: Dialect,
    to: Dialect,
    body: &[u8],
    opts: &RequestOptions<'_>,
) -> Result<TranslatedRequest, TranslateError> {
    use Dialect::*;
    let mut reply = ReplyContext::default();
    // A Gemini body names no model (the URL does): same dialect, nothing to change.
    if from == to && (opts.model.is_none() || from == Gemini) {
        return Ok(TranslatedRequest { body: body.to_vec(), reply });
    }
    let req = parse_object(body)?;
    let out = match (from, to) {
        _ if from == to => request::with_model(req, opts.model),
        (Anthropic, OpenaiChat) => request::from_anthropic::to_chat(&req, opts)?,
        (OpenaiChat, Anthropic) => request::from_chat::to_anthropic(&req, opts)?,
        (OpenaiResponses, OpenaiChat) => request::from_responses::to_chat(&req, opts, &mut reply)?,
        (OpenaiChat, OpenaiResponses) => request::to_responses::from_chat(&req, opts)?,
        (OpenaiResponses, Anthropic) => {
            let chat = request::from_responses::to_chat(&req, opts, &mut reply)?;
            request::from_chat::to_anthropic(&chat, opts)?
        }
        (Anthropic, OpenaiResponses) => {
            let chat = request::from_anthropic::to_chat(&req, opts)?;
            request::to_responses::from_chat(&chat, opts)?
        }
        (Gemini, _) => {
            reply.gemini_array = opts.gemini.is_some_and(|c| c.streams() && !c.sse);
            let chat = request::from_gemini::to_chat(&req, opts)?;
            match to {
                OpenaiChat => chat,
                Anthropic => request::from_chat::to_anthropic(&chat, opts)?,
                _ => request::to_responses::from_chat(&chat, opts)?,
            }
        }
        (_, Gemini) => {
            let chat = match from {
                OpenaiChat => req,
                Anthropic => request::from_anthropic::to_chat(&req, opts)?,
                _ => request::from_responses::to_chat(&req, opts, &mut reply)?,
            };
            request::to_gemini::from_chat(&chat, opts)?
        }
        _ => return Err(TranslateError::Unsupported { from, to }),
    };
    Ok(TranslatedRequest { body: serde_json::to_vec(&out)?, reply })
}

/// Non-streaming response body of upstream dialect -> client dialect.
pub fn translate_response(upstream: Dialect, client: Dialect, body: &[u8]) -> Result<Vec<u8>, TranslateError> {
    translate_response_with(upstream, client, body, &ReplyContext::default())
}

/// `translate_response` for a request translated with `translate_request_for_reply`.
pub fn translate_response_with(
    upstream: Dialect,
    client: Dialect,
    body: &[u8],
    reply: &ReplyContext,
) -> Result<Vec<u8>, TranslateError> {
    use response::{to_anthropic, to_chat, to_gemini, to_responses};
    use Dialect::*;
    if upstream == client {
        return Ok(body.to_vec());
    }
    let resp = parse_object(body)?;
    let out = match (upstream, client) {
        (OpenaiChat, Anthropic) => to_anthropic::from_chat(&resp),
        (Anthropic, OpenaiChat) => to_chat::from_anthropic(&resp),
        (OpenaiChat, OpenaiResponses) => to_responses::from_chat(&resp, reply),
        (Anthropic, OpenaiResponses) => to_responses::from_chat(&to_chat::from_anthropic(&resp), reply),
        (OpenaiResponses, OpenaiChat) => to_chat::from_responses(&resp),
        (OpenaiResponses, Anthropic) => to_anthropic::from_chat(&to_chat::from_responses(&resp)),
        (Gemini, _) => {
            let chat = to_chat::from_gemini(&resp);
            match client {
                OpenaiChat => chat,
                Anthropic => to_anthropic::from_chat(&chat),
                _ => to_responses::from_chat(&chat, reply),
            }
        }
        (_, Gemini) => {
            let chat = match upstream {
                OpenaiChat => resp,
                Anthropic => to_chat::from_anthropic(&resp),
                _ => to_chat::from_responses(&resp),
            };
            to_gemini::from_chat(&chat, reply)
        }
        _ => return Err(TranslateError::Unsupported { from: upstream, to: client }),
    };
    Ok(serde_json::to_vec(&out)?)
}

/// True when `translate_request`/`translate_response`/`StreamTranslator` can serve a client of
/// dialect `client` through a target of dialect `target`.
pub fn supports(client: Dialect, target: Dialect) -> bool {
    use Dialect::*;
    match (client, target) {
        _ if client == target => true,
        (Anthropic, OpenaiChat) | (Anthropic, OpenaiResponses) => true,
        (OpenaiChat, Anthropic) | (OpenaiChat, OpenaiResponses) => true,
        (OpenaiResponses, OpenaiChat) | (OpenaiResponses, Anthropic) => true,
        // Gemini to and from each of the others, through Chat where needed.
        (Gemini, _) | (_, Gemini) => true,
        _ => false,
    }
}

fn parse_object(body: &[u8]) -> Result<Value, TranslateError> {
    let v: Value = serde_json::from_slice(body)?;
    if v.is_object() {
        Ok(v)
    } else {
        Err(TranslateError::NotAnObject)
    }
}
