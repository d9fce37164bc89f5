//! Validating the file's sections into the runtime config: names, URLs, secrets from the
//! environment, ranges. Every error names `file:line:column` and the key.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::file::{self, ConfigFile, ProviderKind, ProviderSection};
use super::parse::location;
use super::{pool, server, team};
use super::{CacheSettings, Config, ConfigError, OriginalsSettings, Provider, Secret, Timeouts};
use crate::dialect::breakpoints::CacheTtl;
use crate::dialect::Dialect;

/// The runtime config from the file's sections; `env` looks up `${VAR}` references.
pub(super) fn config(
    file: &ConfigFile,
    text: &str,
    source: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
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
                return Err(invalid(key.span(), "server.api_keys", format!("environment variable {var} is not set")))
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
        return Err(invalid(retention.span(), "ledger.retention_days", "give a number of days from 1 to 36500".into()));
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
pub(super) fn is_openai_api(base_url: &str) -> bool {
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
pub(super) fn env_reference(value: &Spanned<String>) -> Result<String, String> {
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
pub(super) fn normalize_base(url: &str, add_v1: bool) -> Result<String, String> {
    let url = url.trim().trim_end_matches('/');
    if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < "http://x".len() {
        return Err(format!("`{url}` is not an http:// or https:// URL"));
    }
    if add_v1 && !url.ends_with("/v1") {
        return Ok(format!("{url}/v1"));
    }
    Ok(url.to_string())
}
