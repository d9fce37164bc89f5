//! Translation between the three dialects, for an agent whose route ends at a provider that speaks
//! another one. Requests: Anthropic ⇄ Chat and Responses → Chat (→ Anthropic by composition).
//! Responses, streamed or not, go the opposite ways.
//!
//! Requests are parsed into `serde_json::Value` (sorted keys) and written anew, so the same input
//! always gives the same bytes: prefix caching upstream survives translation.

mod common;
mod error_body;
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

/// Token counts in Anthropic's convention: `input_tokens` excludes cache reads and writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
}

impl Usage {
    /// Every prompt token, cached or not (OpenAI's `prompt_tokens`).
    pub fn prompt_total(&self) -> u64 {
        self.input_tokens + self.cache_read_tokens + self.cache_write_tokens
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
}

/// Request body of dialect `from` -> body of dialect `to`. Deterministic (same input, same bytes).
/// `model` replaces the model name when Some.
pub fn translate_request(
    from: Dialect,
    to: Dialect,
    body: &[u8],
    model: Option<&str>,
) -> Result<Vec<u8>, TranslateError> {
    translate_request_with(from, to, body, &RequestOptions { model, target_reasoning: false })
}

/// `translate_request` with all options.
pub fn translate_request_with(
    from: Dialect,
    to: Dialect,
    body: &[u8],
    opts: &RequestOptions<'_>,
) -> Result<Vec<u8>, TranslateError> {
    use Dialect::*;
    if from == to && opts.model.is_none() {
        return Ok(body.to_vec());
    }
    let req = parse_object(body)?;
    let out = match (from, to) {
        (Anthropic, OpenaiChat) => request::from_anthropic::to_chat(&req, opts)?,
        (OpenaiChat, Anthropic) => request::from_chat::to_anthropic(&req, opts)?,
        (OpenaiResponses, OpenaiChat) => request::from_responses::to_chat(&req, opts)?,
        (OpenaiResponses, Anthropic) => {
            let chat = request::from_responses::to_chat(&req, opts)?;
            request::from_chat::to_anthropic(&chat, opts)?
        }
        _ if from == to => request::with_model(req, opts.model),
        _ => return Err(TranslateError::Unsupported { from, to }),
    };
    Ok(serde_json::to_vec(&out)?)
}

/// Non-streaming response body of upstream dialect -> client dialect.
pub fn translate_response(upstream: Dialect, client: Dialect, body: &[u8]) -> Result<Vec<u8>, TranslateError> {
    use Dialect::*;
    if upstream == client {
        return Ok(body.to_vec());
    }
    let resp = parse_object(body)?;
    let out = match (upstream, client) {
        (OpenaiChat, Anthropic) => response::to_anthropic::from_chat(&resp),
        (Anthropic, OpenaiChat) => response::to_chat::from_anthropic(&resp),
        (OpenaiChat, OpenaiResponses) => response::to_responses::from_chat(&resp),
        (Anthropic, OpenaiResponses) => response::to_responses::from_chat(&response::to_chat::from_anthropic(&resp)),
        _ => return Err(TranslateError::Unsupported { from: upstream, to: client }),
    };
    Ok(serde_json::to_vec(&out)?)
}

/// True when `translate_request`/`translate_response`/`StreamTranslator` can serve a client of
/// dialect `client` through a target of dialect `target`.
pub fn supports(client: Dialect, target: Dialect) -> bool {
    use Dialect::*;
    client == target
        || matches!(
            (client, target),
            (Anthropic, OpenaiChat)
                | (OpenaiChat, Anthropic)
                | (OpenaiResponses, OpenaiChat)
                | (OpenaiResponses, Anthropic)
        )
}

fn parse_object(body: &[u8]) -> Result<Value, TranslateError> {
    let v: Value = serde_json::from_slice(body)?;
    if v.is_object() {
        Ok(v)
    } else {
        Err(TranslateError::NotAnObject)
    }
}
