//! Wire dialects the proxy speaks. This folder is the only place wire field names are spelled,
//! and holds the one raw-JSON scanner (`json`: value ranges for byte-exact splicing, and its
//! strict mode that reads a request's envelope as serde would).

pub mod blocks;
pub mod breakpoints;
pub mod cache_key;
pub mod envelope;
pub mod errors;
pub mod fit_parts;
pub mod gemini;
pub mod json;
pub mod sse;
mod text;
pub mod translate;
pub mod usage;

use serde::{Deserialize, Serialize};

/// The four request dialects agents use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dialect {
    /// Anthropic Messages (`POST /v1/messages`): Claude Code, the `anthropic` SDKs.
    Anthropic,
    /// OpenAI Chat Completions (`POST /v1/chat/completions`): most SDKs, Aider, OpenCode.
    OpenaiChat,
    /// OpenAI Responses (`POST /v1/responses`): Codex CLI.
    OpenaiResponses,
    /// Google Gemini API (`POST /v1beta/models/{model}:generateContent`): Gemini CLI, the
    /// `google-genai` SDKs. The model and streaming are in the URL, not the body.
    Gemini,
}

impl Dialect {
    pub const ALL: [Dialect; 4] = [Dialect::Anthropic, Dialect::OpenaiChat, Dialect::OpenaiResponses, Dialect::Gemini];

    /// The name used in config files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Anthropic => "anthropic",
            Dialect::OpenaiChat => "openai-chat",
            Dialect::OpenaiResponses => "openai-responses",
            Dialect::Gemini => "gemini",
        }
    }

    pub fn parse(s: &str) -> Option<Dialect> {
        Dialect::ALL.into_iter().find(|d| d.name() == s)
    }

    /// The path (under the base URL) a request of this dialect is sent to. Gemini's path goes on
    /// with the model and the method (`gemini::Call::upstream_path`).
    pub fn endpoint_path(self) -> &'static str {
        match self {
            Dialect::Anthropic => "/v1/messages",
            Dialect::OpenaiChat => "/v1/chat/completions",
            Dialect::OpenaiResponses => "/v1/responses",
            Dialect::Gemini => "/v1beta/models",
        }
    }

    /// Errors are rendered in one of two families of shapes.
    pub fn is_anthropic(self) -> bool {
        matches!(self, Dialect::Anthropic)
    }
}

impl std::fmt::Display for Dialect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The few envelope fields the proxy needs from a request body. Everything else is left to the
/// raw bytes; parsing this also validates that the body is JSON.
#[derive(Debug, Default, Deserialize)]
pub struct RequestEnvelope {
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub stream: Option<bool>,
    /// OpenAI Chat: whether a streaming client asked for the final usage chunk.
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    /// The output the request allows (Anthropic and Chat `max_tokens`, Chat
    /// `max_completion_tokens`, Responses `max_output_tokens`). Kept loose: a value of another
    /// type is the provider's to refuse, not a reason to reject the body here.
    #[serde(default)]
    pub max_tokens: Option<serde_json::Value>,
    #[serde(default)]
    pub max_completion_tokens: Option<serde_json::Value>,
    #[serde(default)]
    pub max_output_tokens: Option<serde_json::Value>,
    /// Gemini: `generationConfig`, for its `maxOutputTokens`. Loose, like the fields above.
    #[serde(default, rename = "generationConfig")]
    pub generation_config: Option<serde_json::Value>,
}

impl RequestEnvelope {
    /// The most output tokens the request allows, if it says.
    pub fn max_output(&self) -> Option<u64> {
        let gemini = self.generation_config.as_ref().and_then(|g| g.get("maxOutputTokens"));
        [self.max_completion_tokens.as_ref(), self.max_output_tokens.as_ref(), self.max_tokens.as_ref(), gemini]
            .into_iter()
            .flatten()
            .find_map(|v| v.as_u64().or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)))
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// Request header names with meaning to the proxy.
pub mod headers {
    pub const ANTHROPIC_VERSION: &str = "anthropic-version";
    pub const X_API_KEY: &str = "x-api-key";
    pub const AUTHORIZATION: &str = "authorization";
    /// Gemini API keys (the query parameter `key=` is the other way to send one).
    pub const X_GOOG_API_KEY: &str = "x-goog-api-key";
    /// Every header starting with this prefix is the proxy's own and never goes upstream.
    pub const TOKENFOLD_PREFIX: &str = "x-tokenfold";
    /// `x-tokenfold: off` forwards one request as the client sent it: no folding, no cache planning.
    pub const TOKENFOLD: &str = "x-tokenfold";
    /// `x-tokenfold-level: lossless|balanced|aggressive` sets one request's fold level.
    pub const TOKENFOLD_LEVEL: &str = "x-tokenfold-level";
    /// `x-tokenfold-cache: off` adds no prompt-cache breakpoints and no derived
    /// `prompt_cache_key` to one request.
    pub const TOKENFOLD_CACHE: &str = "x-tokenfold-cache";
    /// `x-tokenfold-clear: off` keeps every old tool output for one request (folding still runs).
    pub const TOKENFOLD_CLEAR: &str = "x-tokenfold-clear";
    /// The proxy's own key when `server.api_keys` is set.
    pub const TOKENFOLD_KEY: &str = "x-tokenfold-key";
    pub const SAVED_TOKENS: &str = "x-tokenfold-saved-tokens";
}
