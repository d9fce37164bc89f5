//! Reading the config: where the file is found, TOML into the file's sections (errors carry
//! `file:line:column` and the key path), and the configs made without a file (`--upstream`).

use std::path::{Path, PathBuf};

use super::file::ConfigFile;
use super::validate::normalize_base;
use super::{validate, Config, ConfigError, Provider, SHIPPED_CONFIG, SHIPPED_NAME};
use crate::dialect::Dialect;

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
        validate::config(&file, text, source, env)
    }
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
pub(super) fn location(text: &str, source: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map(|i| offset - i).unwrap_or(offset + 1);
    format!("{source}:{line}:{col}")
}
