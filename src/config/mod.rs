//! Config: the file (`file.rs`) validated into runtime types. Secrets are `${ENV_VAR}` references
//! resolved here; they never appear in the file itself and are never printed.

mod file;
mod pool;
mod render;
mod server;
mod team;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use file::{AuthMode, ProviderKind};
use file::{ConfigFile, ProviderSection};
pub use pool::{
    resolve_target, Account, Limits, ModelSpec, PoolSettings, RateScope, Route, RouteTarget, StoreLocation, Strategy,
};
pub use server::{normalize_origin, ServerSettings};
pub use team::{ServiceUrl, SharedStateSettings, DEFAULT_POOL_NAME};
use toml::Spanned;

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
    pub day_zone: crate::pool::zone::DayZone,
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
            day_zone: crate::pool::zone::DayZone::utc(),
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
    /// Finds and loads the config: an explicit path, else `$TOKENFOLD_CONFIG`, else
    /// `./config/tokenfold.toml`, else `$XDG_CONFIG_HOME/tokenfold/tokenfold.toml`, else the built-in copy.
    pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        match find_config_file(explicit) {
            Some(path) => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
                Config::parse(&text, &path.display().to_string(), &|v| std::env::var(v).ok())
            }
            None => Config::parse(SHIPPED_CONFIG, SHIPPED_NAME, &|v| std::env::var(v).ok()),
        }
    }

    /// A config without a file: every request goes to `base` with the caller's own credentials:
    /// to the same path under it, or, when `speaks` is given, translated into that dialect.
    pub fn single_upstream(base: &str, speaks: Option<Dialect>) -> Result<Config, ConfigError> {
        Config::upstreams(&[base], speaks)
    }

    /// A config without a file from repeated `--upstream URL`: each dialect goes to the first base
    /// URL, then falls back to the next ones in order (the caller's own credentials everywhere),
    /// with the pool's failure classes and cooldowns. With `speaks`, every base URL speaks that
    /// one dialect and requests in the others are translated.
    pub fn upstreams(bases: &[&str], speaks: Option<Dialect>) -> Result<Config, ConfigError> {
        if bases.is_empty() {
            return Err(ConfigError::Invalid("--upstream: give at least one base URL".into()));
        }
        let mut cfg = Config::parse("", "--upstream", &|_| None)?;
        let mut shown = Vec::new();
        for (n, raw) in bases.iter().enumerate() {
            let base = normalize_base(raw, true).map_err(|m| ConfigError::Invalid(format!("--upstream: {m}")))?;
            let provider_dialects = match speaks {
                Some(d) => vec![d],
                None => Dialect::ALL.to_vec(),
            };
            for dialect in provider_dialects {
                // Gemini's API is versioned `v1beta`: its base gets that segment instead.
                let base = match dialect {
                    Dialect::Gemini => crate::dialect::gemini::base_url(raw),
                    _ => base.clone(),
                };
                let name = match n {
                    0 => format!("upstream-{}", dialect.name()),
                    _ => format!("upstream{}-{}", n + 1, dialect.name()),
                };
                cfg.providers.push(Provider::client_passthrough(name, dialect, base));
                let i = cfg.providers.len() - 1;
                // Without `speaks` each ingress dialect has its own provider; with it, all share one.
                let ingresses = if speaks.is_some() { Dialect::ALL.to_vec() } else { vec![dialect] };
                for ingress in ingresses {
                    if n == 0 {
                        cfg.default_upstream.insert(ingress, i);
                    } else {
                        cfg.default_fallbacks.entry(ingress).or_default().push(i);
                    }
                }
            }
            shown.push(base);
        }
        cfg.source = format!("--upstream {}", shown.join(" --upstream "));
        Ok(cfg)
    }

    /// Parses and validates config text. `env` looks up `${VAR}` references.
    pub fn parse(text: &str, source: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let file: ConfigFile = serde_path_to_error::deserialize(toml::Deserializer::new(text)).map_err(|e| {
            let key = key_path(e.path());
            let e = e.into_inner();
            let message = e.message().trim();
            let Some(span) = e.span() else { return ConfigError::Invalid(format!("{source}: {message}")) };
            let at = location(text, source, span.start);
            match key {
                Some(key) => ConfigError::Invalid(format!("{at}: `{key}`: {message}")),
                None => ConfigError::Invalid(format!("{at}: {message}")),
            }
        })?;
        let at = |span: std::ops::Range<usize>| location(text, source, span.start);
        let invalid = |span: std::ops::Range<usize>, key: &str, msg: String| {
            ConfigError::Invalid(format!("{}: `{key}`: {msg}", at(span)))
        };

        let listen_span = file.server.listen.span();
        let listen: SocketAddr = file.server.listen.get_ref().parse().map_err(|_| {
            invalid(
                listen_span,
                "server.listen",
                format!("`{}` is not an address like 127.0.0.1:8411", file.server.listen.get_ref()),
            )
        })?;

        let mut api_keys = Vec::new();
        for key in &file.server.api_keys {
            let var = env_reference(key).map_err(|m| invalid(key.span(), "server.api_keys", m))?;
            match env(&var).filter(|v| !v.is_empty()) {
                Some(v) => api_keys.push(Secret(v)),
                None => {
                    return Err(invalid(
                        key.span(),
                        "server.api_keys",
                        format!("environment variable {var} is not set"),
                    ))
                }
            }
        }
        if file.server.max_body_bytes == 0 {
            return Err(ConfigError::Invalid(format!("{source}: `server.max_body_bytes` must be above 0")));
        }

        let mut providers: Vec<Provider> = Vec::new();
        for p in &file.providers {
            let provider = validate_provider(p, &at, env)?;
            if providers.iter().any(|q| q.name == provider.name) {
                return Err(invalid(p.name.span(), "providers.name", format!("`{}` is defined twice", provider.name)));
            }
            providers.push(provider);
        }

        let mut default_upstream = HashMap::new();
        let du = &file.default_upstream;
        for (dialect, entry) in [
            (Dialect::Anthropic, &du.anthropic),
            (Dialect::OpenaiChat, &du.openai_chat),
            (Dialect::OpenaiResponses, &du.openai_responses),
            (Dialect::Gemini, &du.gemini),
        ] {
            let Some(name) = entry else { continue };
            let key = format!("default_upstream.{}", dialect.name());
            let idx = providers
                .iter()
                .position(|p| &p.name == name.get_ref())
                .ok_or_else(|| invalid(name.span(), &key, format!("no provider is named `{}`", name.get_ref())))?;
            if providers[idx].dialect != dialect {
                return Err(invalid(
                    name.span(),
                    &key,
                    format!(
                        "provider `{}` speaks {}, not {} (translation between dialects is configured per route)",
                        name.get_ref(),
                        providers[idx].dialect,
                        dialect
                    ),
                ));
            }
            default_upstream.insert(dialect, idx);
        }

        let routes = pool::validate_routes(&file.routes, &providers, &at)?;
        for r in &routes {
            if providers.iter().any(|p| p.name == r.name) {
                // `name/model` stays unambiguous only if route names are not provider names.
                return Err(ConfigError::Invalid(format!(
                    "{source}: `routes.{}`: a provider has the same name; rename the route",
                    r.name
                )));
            }
        }
        let pool = pool::validate_pool_section(&file.pool, &at)?;
        let retention = &file.ledger.retention_days;
        if *retention.get_ref() == 0 || *retention.get_ref() > 36_500 {
            return Err(invalid(
                retention.span(),
                "ledger.retention_days",
                "give a number of days from 1 to 36500".into(),
            ));
        }
        let (fold_level, originals) = validate_fold(&file.fold, &at)?;
        let cache = validate_cache(&file.cache, &at)?;
        let server = server::validate(&file.server, &at)?;
        let clear = validate_clear(&file.fold, &at)?;
        let state = team::validate_state(&file.state, &at, env)?;
        let ledger_url = team::validate_ledger_url(&file.ledger, &at, env)?;

        let t = &file.timeouts;
        Ok(Config {
            source: source.to_string(),
            listen,
            api_keys,
            max_body_bytes: file.server.max_body_bytes,
            server,
            timeouts: Timeouts {
                connect: Duration::from_millis(t.connect_ms.max(1)),
                first_byte: Duration::from_millis(t.first_byte_ms.max(1)),
                idle: Duration::from_millis(t.idle_ms.max(1)),
            },
            fold_enabled: file.fold.enabled,
            fold_level,
            originals,
            fold_cache_bytes: (file.fold.cache_mb.clamp(1, 1 << 20) as usize) << 20,
            clear,
            providers,
            default_upstream,
            default_fallbacks: HashMap::new(),
            routes,
            pool,
            ledger_retention: Duration::from_secs(*retention.get_ref() * 86_400),
            cache,
            state,
            ledger_url,
        })
    }

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

/// `[cache]`: the TTL must be one the API knows.
fn validate_cache(
    c: &file::CacheSection,
    at: &dyn Fn(std::ops::Range<usize>) -> String,
) -> Result<CacheSettings, ConfigError> {
    let anthropic_ttl = match &c.anthropic_ttl {
        None => CacheTtl::default(),
        Some(t) => CacheTtl::parse(t.get_ref().trim()).ok_or_else(|| {
            ConfigError::Invalid(format!(
                "{}: `cache.anthropic_ttl`: `{}` is not \"5m\" or \"1h\"",
                at(t.span()),
                t.get_ref()
            ))
        })?,
    };
    Ok(CacheSettings { auto_breakpoints: c.auto_breakpoints, anthropic_ttl })
}

/// Whether `base_url` is OpenAI's own API (`api.openai.com` or a regional `*.api.openai.com`),
/// the one place `prompt_cache_key` is known to be accepted.
fn is_openai_api(base_url: &str) -> bool {
    let rest = base_url.split_once("://").map_or(base_url, |(_, r)| r);
    let host = rest.split(['/', ':']).next().unwrap_or("").to_ascii_lowercase();
    host == "api.openai.com" || host.ends_with(".api.openai.com")
}

/// `[fold]`: the level and the store of originals.
fn validate_fold(
    f: &file::FoldSection,
    at: &dyn Fn(std::ops::Range<usize>) -> String,
) -> Result<(crate::fold::Level, OriginalsSettings), ConfigError> {
    let invalid = |span: std::ops::Range<usize>, key: &str, msg: String| {
        ConfigError::Invalid(format!("{}: `fold.{key}`: {msg}", at(span)))
    };
    let level = match &f.level {
        None => crate::fold::Level::default(),
        Some(l) => crate::fold::Level::parse(l.get_ref()).ok_or_else(|| {
            invalid(l.span(), "level", format!("`{}` is not one of lossless, balanced, aggressive", l.get_ref()))
        })?,
    };
    let dir = match f.originals_dir.as_ref().map(|d| (d.get_ref().trim(), d.span())) {
        None | Some(("default", _)) => crate::fold::originals::default_dir(),
        Some(("off", _)) => None,
        Some(("", span)) => return Err(invalid(span, "originals_dir", "give a path, \"default\" or \"off\"".into())),
        Some((p, _)) => Some(match p.strip_prefix("~/") {
            Some(rest) => std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default().join(rest),
            None => PathBuf::from(p),
        }),
    };
    if f.originals_max_mb == 0 {
        return Err(ConfigError::Invalid("`fold.originals_max_mb` must be above 0".into()));
    }
    let public_url = match &f.public_url {
        None => None,
        Some(u) => Some(normalize_base(u.get_ref(), false).map_err(|m| invalid(u.span(), "public_url", m))?),
    };
    Ok((
        level,
        OriginalsSettings {
            dir,
            max_bytes: f.originals_max_mb << 20,
            max_age: Duration::from_secs(f.originals_max_age_days.max(1) * 86_400),
            public_url,
        },
    ))
}

/// `[fold]` clearing settings: `keep_recent` 0-1000, `clear_at_least` 1 or more, `exclude_tools`.
fn validate_clear(
    f: &file::FoldSection,
    at: &dyn Fn(std::ops::Range<usize>) -> String,
) -> Result<crate::fold::clear::Settings, ConfigError> {
    let mut out = crate::fold::clear::Settings::default();
    if let Some(k) = &f.keep_recent {
        let n = *k.get_ref();
        if !(0..=1000).contains(&n) {
            return Err(ConfigError::Invalid(format!(
                "{}: `fold.keep_recent`: {n} is not a number of tool outputs from 0 to 1000",
                at(k.span())
            )));
        }
        out.keep_recent = n as usize;
    }
    if let Some(c) = &f.clear_at_least {
        let n = *c.get_ref();
        if n < 1 {
            return Err(ConfigError::Invalid(format!(
                "{}: `fold.clear_at_least`: {n} is not a number of tokens above 0",
                at(c.span())
            )));
        }
        out.clear_at_least = n as u64;
    }
    if let Some(t) = &f.exclude_tools {
        out.exclude_tools = t.iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    }
    Ok(out)
}

fn find_config_file(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("TOKENFOLD_CONFIG") {
        return Some(PathBuf::from(p));
    }
    let local = PathBuf::from("config/tokenfold.toml");
    if local.is_file() {
        return Some(local);
    }
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    let user = xdg.join("tokenfold/tokenfold.toml");
    user.is_file().then_some(user)
}

fn validate_provider(
    p: &ProviderSection,
    at: &dyn Fn(std::ops::Range<usize>) -> String,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Provider, ConfigError> {
    let name = p.name.get_ref().trim().to_string();
    let invalid = |span: std::ops::Range<usize>, key: &str, msg: String| {
        ConfigError::Invalid(format!("{}: `providers.{key}` of `{name}`: {msg}", at(span)))
    };
    if name.is_empty() {
        return Err(invalid(p.name.span(), "name", "must not be empty".into()));
    }
    let base_url =
        normalize_base(p.base_url.get_ref(), false).map_err(|m| invalid(p.base_url.span(), "base_url", m))?;
    let dialect = match p.kind {
        ProviderKind::Anthropic => Dialect::Anthropic,
        ProviderKind::Openai => Dialect::OpenaiChat,
        ProviderKind::OpenaiResponses => Dialect::OpenaiResponses,
        ProviderKind::Gemini => Dialect::Gemini,
    };
    let parts = pool::validate_provider_pool(p, &name, at, env)?;
    let models = parts.model_specs.iter().map(|m| m.name.clone()).collect();
    let takes_prompt_cache_key =
        dialect != Dialect::Anthropic && p.prompt_cache_key.unwrap_or(is_openai_api(&base_url));
    Ok(Provider {
        name,
        dialect,
        takes_prompt_cache_key,
        base_url,
        auth: parts.auth,
        models,
        accounts: parts.accounts,
        model_specs: parts.model_specs,
        day_zone: parts.day_zone,
        rate_scope: parts.rate_scope,
    })
}

/// The env var name in a `${NAME}` reference; a literal secret in the file is refused.
fn env_reference(value: &Spanned<String>) -> Result<String, String> {
    let v = value.get_ref().trim();
    match v.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
        Some(name) if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
            Ok(name.to_string())
        }
        _ => Err("secrets are not written in the config: use an environment variable reference like \"${MY_KEY}\""
            .to_string()),
    }
}

/// Trims a base URL; `add_v1` appends the `/v1` segment unless it is already there.
fn normalize_base(url: &str, add_v1: bool) -> Result<String, String> {
    let url = url.trim().trim_end_matches('/');
    if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < "http://x".len() {
        return Err(format!("`{url}` is not an http:// or https:// URL"));
    }
    if add_v1 && !url.ends_with("/v1") {
        return Ok(format!("{url}/v1"));
    }
    Ok(url.to_string())
}

/// The dotted key path (`providers[1].models[0].name`) of a value serde could not read, as
/// `serde_path_to_error` tracked it, less the fields `toml::Spanned` reads through.
fn key_path(path: &serde_path_to_error::Path) -> Option<String> {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } if key.starts_with("$__serde_spanned") => {}
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {}
        }
    }
    (!out.is_empty()).then_some(out)
}

/// `source:line:column` for a byte offset.
fn location(text: &str, source: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map(|i| offset - i).unwrap_or(offset + 1);
    format!("{source}:{line}:{col}")
}

#[cfg(test)]
mod pool_tests;
#[cfg(test)]
mod tests;
