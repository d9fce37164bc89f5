//! The config file as written: serde structs with `deny_unknown_fields`. Validation into runtime
//! types lives in `mod.rs`.

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub timeouts: TimeoutsSection,
    #[serde(default)]
    pub fold: FoldSection,
    #[serde(default)]
    pub providers: Vec<ProviderSection>,
    #[serde(default)]
    pub default_upstream: DefaultUpstreamSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    #[serde(default = "default_listen")]
    pub listen: Spanned<String>,
    #[serde(default)]
    pub api_keys: Vec<Spanned<String>>,
    #[serde(default = "default_max_body")]
    pub max_body_bytes: u64,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self { listen: default_listen(), api_keys: Vec::new(), max_body_bytes: default_max_body() }
    }
}

fn default_listen() -> Spanned<String> {
    Spanned::new(0..0, "127.0.0.1:8411".to_string())
}

fn default_max_body() -> u64 {
    32 * 1024 * 1024
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsSection {
    #[serde(default = "default_connect_ms")]
    pub connect_ms: u64,
    #[serde(default = "default_first_byte_ms")]
    pub first_byte_ms: u64,
    #[serde(default = "default_idle_ms")]
    pub idle_ms: u64,
}

impl Default for TimeoutsSection {
    fn default() -> Self {
        Self {
            connect_ms: default_connect_ms(),
            first_byte_ms: default_first_byte_ms(),
            idle_ms: default_idle_ms(),
        }
    }
}

fn default_connect_ms() -> u64 {
    10_000
}
fn default_first_byte_ms() -> u64 {
    300_000
}
fn default_idle_ms() -> u64 {
    300_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FoldSection {
    #[serde(default = "yes")]
    pub enabled: bool,
}

impl Default for FoldSection {
    fn default() -> Self {
        Self { enabled: true }
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    Anthropic,
    /// OpenAI Chat Completions, and every "OpenAI-compatible" endpoint.
    #[serde(alias = "openai-chat")]
    Openai,
    OpenaiResponses,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMode {
    /// The provider's key comes from `api_key` (an `${ENV_VAR}` reference).
    #[default]
    Key,
    /// The caller's own `x-api-key` / `Authorization` header is forwarded.
    Client,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSection {
    pub name: Spanned<String>,
    pub kind: ProviderKind,
    pub base_url: Spanned<String>,
    #[serde(default)]
    pub auth: AuthMode,
    #[serde(default)]
    pub api_key: Option<Spanned<String>>,
    #[serde(default)]
    pub models: Vec<String>,
}

/// Which provider receives a request of each ingress dialect when no route claims its model.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DefaultUpstreamSection {
    #[serde(default)]
    pub anthropic: Option<Spanned<String>>,
    #[serde(default, rename = "openai-chat")]
    pub openai_chat: Option<Spanned<String>>,
    #[serde(default, rename = "openai-responses")]
    pub openai_responses: Option<Spanned<String>>,
}
