//! Config: the file (`file.rs`) read (`parse.rs`), validated into these runtime types
//! (`validate.rs`, with `pool.rs`, `server.rs` and `team.rs` for their sections) and shown
//! masked (`render.rs`). Secrets are `${ENV_VAR}` references resolved at validation; they never
//! appear in the file itself and are never printed.

mod file;
mod fold;
mod parse;
mod pool;
mod render;
mod server;
mod team;
mod validate;
mod zone;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use file::{AuthMode, ProviderKind};
pub use pool::{
    resolve_target, Account, Limits, ModelSpec, PoolSettings, RateScope, Route, RouteTarget, StoreLocation, Strategy,
};
pub use server::{normalize_origin, ServerSettings};
pub use team::{ServiceUrl, SharedStateSettings, DEFAULT_POOL_NAME};
use validate::{env_reference, is_openai_api};
pub use zone::DayZone;

use crate::dialect::breakpoints::CacheTtl;
use crate::dialect::Dialect;

/// The config shipped with the project; used when no file is found so the binary works anywhere.
pub const SHIPPED_CONFIG: &str = include_str!("../../config/tokenfold.toml");
const SHIPPED_NAME: &str = "<built-in config/tokenfold.toml>";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{0}")]
    Invalid(String),
}

/// A secret value. Its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("****")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("****")
    }
}

#[derive(Debug, Clone)]
pub enum ProviderAuth {
    /// Forward the caller's own credentials.
    Client,
    Key {
        var: String,
        secret: Secret,
    },
    /// The key's env var is not set: the provider is unusable until it is.
    MissingKey {
        var: String,
        location: String,
    },
}

#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    pub dialect: Dialect,
    /// Base URL including the API version segment (e.g. `https://api.anthropic.com/v1`); the part
    /// of the request path after `/v1` is appended to it.
    pub base_url: String,
    /// The first usable account's auth (the provider's only one unless `accounts` is given).
    pub auth: ProviderAuth,
    /// Model names (for `/v1/models`); `model_specs` has what the pool knows about each.
    pub models: Vec<String>,
    /// One or more accounts; `auth = "client"` is one account using the caller's credentials.
    pub accounts: Vec<Account>,
    pub model_specs: Vec<ModelSpec>,
    /// Zone whose midnight resets this provider's daily windows.
    pub day_zone: DayZone,
    pub rate_scope: RateScope,
    /// Accepts OpenAI's `prompt_cache_key`: a derived one is added when the client sends none,
    /// and translation carries the client's own. Strict OpenAI-compatible APIs refuse the field.
    pub takes_prompt_cache_key: bool,
}

impl Provider {
    pub fn is_usable(&self) -> bool {
        self.accounts.iter().any(|a| !matches!(a.auth, ProviderAuth::MissingKey { .. }))
    }

    /// A provider reached with the caller's own credentials (no limits known), as `--upstream` makes.
    pub fn client_passthrough(name: String, dialect: Dialect, base_url: String) -> Provider {
        Provider {
            name,
            dialect,
            auth: ProviderAuth::Client,
            models: Vec::new(),
            accounts: vec![Account {
                label: "client".into(),
                auth: ProviderAuth::Client,
                limits: Limits::default(),
                free_tier: false,
            }],
            model_specs: Vec::new(),
            day_zone: DayZone::utc(),
            rate_scope: RateScope::Account,
            takes_prompt_cache_key: dialect != Dialect::Anthropic && is_openai_api(&base_url),
            base_url,
        }
    }

    pub fn model_spec(&self, name: &str) -> Option<&ModelSpec> {
        self.model_specs.iter().find(|s| s.answers_to(name))
    }
}

/// Where filtered outputs' originals are kept.
#[derive(Debug, Clone)]
pub struct OriginalsSettings {
    /// `None`: `originals_dir = "off"` (or no home directory): filters are off, only dedup runs.
    pub dir: Option<PathBuf>,
    pub max_bytes: u64,
    pub max_age: Duration,
    pub public_url: Option<String>,
}

/// `[cache]`: how requests are prepared for the provider's prompt cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    /// Add Anthropic breakpoints to requests that carry none (`x-tokenfold-cache: off` skips one).
    pub auto_breakpoints: bool,
    /// TTL of the breakpoints added.
    pub anthropic_ttl: CacheTtl,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings { auto_breakpoints: true, anthropic_ttl: CacheTtl::FiveMinutes }
    }
}

#[derive(Debug, Clone)]
pub struct Timeouts {
    pub connect: Duration,
    pub first_byte: Duration,
    pub idle: Duration,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Where the config came from (a path, or the built-in copy).
    pub source: String,
    pub listen: SocketAddr,
    pub api_keys: Vec<Secret>,
    pub max_body_bytes: u64,
    /// `[server]` client timeouts, connection cap, stop deadline, allowed origins and hosts.
    pub server: ServerSettings,
    pub timeouts: Timeouts,
    pub fold_enabled: bool,
    /// `[fold] level`: how hard command output is compressed when a request does not say.
    pub fold_level: crate::fold::Level,
    /// `[fold] originals_*`, `public_url`: the store that makes every elision recoverable.
    pub originals: OriginalsSettings,
    /// `[fold] cache_mb`: memory for the per-conversation fold index, in bytes.
    pub fold_cache_bytes: usize,
    /// `[fold] keep_recent`, `clear_at_least`, `exclude_tools`: clearing stale tool output.
    pub clear: crate::fold::clear::Settings,
    pub providers: Vec<Provider>,
    /// Index into `providers` for each ingress dialect.
    pub default_upstream: HashMap<Dialect, usize>,
    /// Further providers tried in order after the default upstream (repeated `--upstream`).
    pub default_fallbacks: HashMap<Dialect, Vec<usize>>,
    /// `[routes.NAME]`, by name.
    pub routes: Vec<Route>,
    pub pool: PoolSettings,
    /// `[ledger] retention_days`: older records are compacted into daily aggregates.
    pub ledger_retention: Duration,
    /// `[cache]`.
    pub cache: CacheSettings,
    /// `[state] redis_url`, `name`: the pool's state and the originals shared through Redis.
    pub state: Option<SharedStateSettings>,
    /// `[ledger] url`: the records go to PostgreSQL too.
    pub ledger_url: Option<ServiceUrl>,
}

impl Config {
    /// One line per thing the user should know at start-up (providers waiting for a key, ...).
    pub fn notices(&self) -> Vec<String> {
        let mut out = Vec::new();
        for p in &self.providers {
            match &p.auth {
                ProviderAuth::MissingKey { var, location } if !p.is_usable() => {
                    out.push(format!("provider `{}` is off: set {var} to enable it (`api_key` at {location})", p.name))
                }
                ProviderAuth::MissingKey { .. } => {}
                ProviderAuth::Client => {
                    let header = match p.dialect {
                        Dialect::Anthropic => "x-api-key or Authorization (ANTHROPIC_API_KEY / your Claude login)",
                        Dialect::Gemini => "x-goog-api-key or ?key= (GEMINI_API_KEY)",
                        _ => "Authorization: Bearer (OPENAI_API_KEY)",
                    };
                    out.push(format!("provider `{}` uses each client's own key: the agent must send {header}", p.name))
                }
                ProviderAuth::Key { .. } => {}
            }
            if p.is_usable() {
                for a in &p.accounts {
                    if let ProviderAuth::MissingKey { var, location } = &a.auth {
                        out.push(format!(
                            "account `{}` of provider `{}` is off: set {var} to enable it (`accounts.api_key` at {location})",
                            a.label, p.name
                        ));
                    }
                }
            }
        }
        for d in Dialect::ALL {
            if !self.default_upstream.contains_key(&d) {
                out.push(format!("no upstream for {d} requests: they are answered with 404"));
            }
        }
        out
    }

    /// The file this config was read from, when there is one to reload (not the built-in copy,
    /// not `--upstream`).
    pub fn file_path(&self) -> Option<PathBuf> {
        (self.source != SHIPPED_NAME && !self.source.starts_with("--upstream")).then(|| PathBuf::from(&self.source))
    }

    /// The provider a request of `dialect` goes to when nothing more specific claims it.
    pub fn upstream_for(&self, dialect: Dialect) -> Option<&Provider> {
        self.default_upstream.get(&dialect).map(|&i| &self.providers[i])
    }
}

#[cfg(test)]
mod pool_tests;
#[cfg(test)]
mod tests;
