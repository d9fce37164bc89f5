//! The config file as written: serde structs with `deny_unknown_fields`. Validation into runtime
//! types lives in `mod.rs`.

use std::collections::BTreeMap;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
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
    #[serde(default)]
    pub routes: BTreeMap<String, RouteSection>,
    #[serde(default)]
    pub pool: PoolSection,
    #[serde(default)]
    pub ledger: LedgerSection,
    #[serde(default)]
    pub cache: CacheSection,
    #[serde(default)]
    pub state: StateSection,
}

/// `[state]`: where the pool's state is shared between instances (a team gateway).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StateSection {
    /// `redis://host:port/db`, or a `${VAR}` reference when it carries a password.
    pub redis_url: Option<Spanned<String>>,
    /// The pool's name in the keys (`tokenfold:<name>:…`), so several teams can share one Redis.
    pub name: Option<Spanned<String>>,
}

/// `[cache]`: prompt-cache planning.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSection {
    /// Add Anthropic breakpoints to requests that carry none.
    #[serde(default = "yes")]
    pub auto_breakpoints: bool,
    /// `"5m"` (default) or `"1h"`.
    #[serde(default)]
    pub anthropic_ttl: Option<Spanned<String>>,
}

impl Default for CacheSection {
    fn default() -> Self {
        Self { auto_breakpoints: true, anthropic_ttl: None }
    }
}

/// `[ledger]`: the savings ledger.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerSection {
    /// Requests older than this many days are compacted into daily aggregates.
    #[serde(default = "default_retention_days")]
    pub retention_days: Spanned<u64>,
    /// `postgres://…` (or a `${VAR}` reference): the records go to PostgreSQL too.
    pub url: Option<Spanned<String>>,
}

impl Default for LedgerSection {
    fn default() -> Self {
        Self { retention_days: default_retention_days(), url: None }
    }
}

fn default_retention_days() -> Spanned<u64> {
    Spanned::new(0..0, 30)
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
    /// Defaults for the ones below are in `server.rs`.
    pub header_timeout_ms: Option<Spanned<u64>>,
    pub body_timeout_ms: Option<Spanned<u64>>,
    pub keepalive_timeout_ms: Option<Spanned<u64>>,
    pub max_connections: Option<Spanned<u64>>,
    pub shutdown_timeout_ms: Option<Spanned<u64>>,
    /// Browser origins (`https://app.example.com`) allowed besides loopback ones.
    #[serde(default)]
    pub allowed_origins: Vec<Spanned<String>>,
    /// Host names allowed besides loopback ones when `api_keys` is empty.
    #[serde(default)]
    pub allowed_hosts: Vec<Spanned<String>>,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            api_keys: Vec::new(),
            max_body_bytes: default_max_body(),
            header_timeout_ms: None,
            body_timeout_ms: None,
            keepalive_timeout_ms: None,
            max_connections: None,
            shutdown_timeout_ms: None,
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
        }
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
        Self { connect_ms: default_connect_ms(), first_byte_ms: default_first_byte_ms(), idle_ms: default_idle_ms() }
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
    /// `lossless`, `balanced` (default) or `aggressive`.
    #[serde(default)]
    pub level: Option<Spanned<String>>,
    /// Where originals of filtered command output are kept: a path, `default` or `off`.
    #[serde(default)]
    pub originals_dir: Option<Spanned<String>>,
    #[serde(default = "default_originals_mb")]
    pub originals_max_mb: u64,
    #[serde(default = "default_originals_days")]
    pub originals_max_age_days: u64,
    /// Memory for the per-conversation fold index (turn N+1 only does the new work).
    #[serde(default = "default_cache_mb")]
    pub cache_mb: u64,
    /// The URL agents on other machines reach this proxy at (markers then say `curl URL/o/ID`).
    #[serde(default)]
    pub public_url: Option<Spanned<String>>,
    /// Clearing: the newest tool outputs never cleared.
    #[serde(default)]
    pub keep_recent: Option<Spanned<i64>>,
    /// Clearing on a quota-bound target: the fewest tokens a step clears.
    #[serde(default)]
    pub clear_at_least: Option<Spanned<i64>>,
    /// Clearing: tools whose output is never cleared (replaces the default list).
    #[serde(default)]
    pub exclude_tools: Option<Vec<String>>,
}

impl Default for FoldSection {
    fn default() -> Self {
        Self {
            enabled: true,
            level: None,
            originals_dir: None,
            originals_max_mb: default_originals_mb(),
            originals_max_age_days: default_originals_days(),
            cache_mb: default_cache_mb(),
            public_url: None,
            keep_recent: None,
            clear_at_least: None,
            exclude_tools: None,
        }
    }
}

fn default_cache_mb() -> u64 {
    64
}

fn default_originals_mb() -> u64 {
    256
}

fn default_originals_days() -> u64 {
    14
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
    /// The native Gemini API (`generativelanguage.googleapis.com/v1beta`).
    Gemini,
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
    /// Several keys for one provider, each with its own quota.
    #[serde(default)]
    pub accounts: Vec<AccountSection>,
    #[serde(default)]
    pub models: Vec<ModelEntry>,
    /// Limits per account, counted across all its models.
    #[serde(default)]
    pub limits: Option<LimitsSection>,
    /// Zone whose midnight resets the daily windows (`UTC` when absent).
    #[serde(default)]
    pub day_reset_tz: Option<Spanned<String>>,
    /// Whether a 429 cools the whole account or only the model it was for.
    #[serde(default)]
    pub rate_limit_scope: Option<RateScopeName>,
    /// Requests cost nothing here: the ledger records cost 0 and the list-price value.
    #[serde(default)]
    pub free_tier: bool,
    /// Whether the provider accepts OpenAI's `prompt_cache_key` (default: only api.openai.com;
    /// Groq, Cerebras and NVIDIA refuse the field).
    #[serde(default)]
    pub prompt_cache_key: Option<bool>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum RateScopeName {
    Account,
    Model,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSection {
    pub label: Spanned<String>,
    pub api_key: Spanned<String>,
    /// Replaces the provider's `limits` for this account (e.g. a paid tier).
    #[serde(default)]
    pub limits: Option<LimitsSection>,
    /// Replaces the provider's `free_tier` for this account.
    #[serde(default)]
    pub free_tier: Option<bool>,
}

#[derive(Debug, Deserialize, Clone, Copy, Default)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    pub rpm: Option<u64>,
    pub rpd: Option<u64>,
    pub tpm: Option<u64>,
    pub tpd: Option<u64>,
    pub concurrent: Option<u32>,
}

/// A model is a bare name, or a table with what the pool needs to know about it.
#[derive(Debug)]
pub enum ModelEntry {
    Name(String),
    Full(Box<ModelSection>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Context window in tokens.
    pub context: Option<u64>,
    /// Input tokens the provider takes in one request, below the window (GitHub Models: 8000).
    pub max_input_tokens: Option<u64>,
    pub tools: Option<bool>,
    pub images: Option<bool>,
    /// Accepts reasoning settings (translated `thinking` / `reasoning_effort`); default false.
    pub reasoning: Option<bool>,
    pub price: Option<PriceSection>,
    /// Limits per account for this model (providers that count per model).
    pub limits: Option<LimitsSection>,
    /// Shortest prefix the provider caches, in tokens (Anthropic: 1024 for Sonnet and Opus,
    /// 2048 for Haiku when not given).
    pub cache_min_tokens: Option<u64>,
}

/// USD per million tokens (list prices: on a free tier, what the same model costs on a paid plan).
#[derive(Debug, Deserialize, Clone, Copy, Default)]
#[serde(deny_unknown_fields)]
pub struct PriceSection {
    #[serde(default)]
    pub input: f64,
    #[serde(default)]
    pub output: f64,
    #[serde(default)]
    pub cached_input: f64,
    /// Writing the prompt cache. Unset: 1.25x `input` for `kind = "anthropic"` (its 5-minute
    /// cache), `input` for the others, which cache automatically at no extra charge.
    #[serde(default)]
    pub cache_write: Option<f64>,
    /// Writing the 1-hour cache (`[cache] anthropic_ttl = "1h"`). Unset: 2x `input` for
    /// `kind = "anthropic"`, `input` for the others.
    #[serde(default)]
    pub cache_write_1h: Option<f64>,
}

impl<'de> Deserialize<'de> for ModelEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ModelEntry;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a model name, or a table like { name = \"m\", context = 128000 }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ModelEntry, E> {
                Ok(ModelEntry::Name(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ModelEntry, A::Error> {
                ModelSection::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|m| ModelEntry::Full(Box::new(m)))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum StrategyName {
    #[default]
    Fallback,
    RoundRobin,
    MostRemaining,
    Fastest,
    Fit,
}

/// `[routes.NAME]`: the model name an agent asks for, mapped to ordered targets.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    /// `provider/model` entries.
    pub targets: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub strategy: StrategyName,
    /// How long a request may wait for a target's TPM window to free instead of being cut
    /// harder to fit what is left of it (default 0: never wait).
    #[serde(default)]
    pub max_wait_ms: u64,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PoolSection {
    /// `"default"` (the user's data dir), `"memory"`, or a path to the SQLite file.
    pub store: Option<Spanned<String>>,
    pub short_cooldown_ms: Option<u64>,
    pub breaker_failures: Option<u32>,
    pub breaker_open_ms: Option<u64>,
    pub backoff_base_ms: Option<u64>,
    pub backoff_max_ms: Option<u64>,
    pub max_tracked: Option<usize>,
    pub forget_idle_hours: Option<u64>,
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
    #[serde(default)]
    pub gemini: Option<Spanned<String>>,
}
