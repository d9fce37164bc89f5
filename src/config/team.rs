//! `[state]` and `[ledger] url`: what a team gateway shares between its instances (the pool's
//! state in Redis, the ledger in PostgreSQL), validated from the file sections.

use toml::Spanned;

use super::file::{LedgerSection, StateSection};
use super::{env_reference, ConfigError, Secret};

/// A service URL from the config: the URL itself (a secret when it carries a password) and how
/// `config check` shows it.
#[derive(Debug, Clone)]
pub struct ServiceUrl {
    pub url: Secret,
    /// `${VAR}` when it came from the environment, else the URL as written (it has no password).
    pub shown: String,
}

/// `[state]` with `redis_url` set: quota windows, cooldowns, breakers and originals in Redis.
#[derive(Debug, Clone)]
pub struct SharedStateSettings {
    pub redis: ServiceUrl,
    /// The pool's name in every key (`tokenfold:<name>:…`).
    pub name: String,
}

/// The name used when `[state] name` is not given.
pub const DEFAULT_POOL_NAME: &str = "default";

pub(super) fn validate_state(
    s: &StateSection,
    at: &dyn Fn(std::ops::Range<usize>) -> String,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<SharedStateSettings>, ConfigError> {
    let name = match &s.name {
        None => DEFAULT_POOL_NAME.to_string(),
        Some(n) => {
            let v = n.get_ref().trim();
            let ok =
                !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !ok {
                return Err(ConfigError::Invalid(format!(
                    "{}: `state.name`: `{v}` is not a name of 1 to 64 letters, digits, `-`, `_` or `.`",
                    at(n.span())
                )));
            }
            v.to_string()
        }
    };
    let Some(url) = &s.redis_url else {
        if let Some(n) = &s.name {
            return Err(ConfigError::Invalid(format!(
                "{}: `state.name` is set but `state.redis_url` is not: the name only prefixes keys in Redis",
                at(n.span())
            )));
        }
        return Ok(None);
    };
    let redis = service_url(url, "state.redis_url", &["redis://", "rediss://"], "redis://127.0.0.1:6379", at, env)?;
    Ok(Some(SharedStateSettings { redis, name }))
}

pub(super) fn validate_ledger_url(
    l: &LedgerSection,
    at: &dyn Fn(std::ops::Range<usize>) -> String,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<ServiceUrl>, ConfigError> {
    l.url
        .as_ref()
        .map(|u| {
            let example = "postgres://tokenfold@db.internal/tokenfold";
            service_url(u, "ledger.url", &["postgres://", "postgresql://"], example, at, env)
        })
        .transpose()
}

/// A URL written as it is (no password in the file) or as a `${VAR}` reference.
fn service_url(
    value: &Spanned<String>,
    key: &str,
    schemes: &[&str],
    example: &str,
    at: &dyn Fn(std::ops::Range<usize>) -> String,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ServiceUrl, ConfigError> {
    let invalid = |msg: String| ConfigError::Invalid(format!("{}: `{key}`: {msg}", at(value.span())));
    let raw = value.get_ref().trim();
    let (url, shown) = if raw.starts_with("${") {
        let var = env_reference(value).map_err(invalid)?;
        let url = env(&var).filter(|v| !v.trim().is_empty()).ok_or_else(|| {
            invalid(format!("environment variable {var} is not set (it should hold a URL like {example})"))
        })?;
        (url.trim().to_string(), format!("${{{var}}}"))
    } else {
        if has_password(raw) {
            return Err(invalid(
                "the URL carries a password, which is never written in the config: put the URL in an environment \
                 variable and write \"${VAR}\""
                    .into(),
            ));
        }
        (raw.to_string(), raw.to_string())
    };
    if !schemes.iter().any(|s| url.starts_with(s)) || url.len() <= schemes[0].len() {
        let shown_url = if shown.starts_with("${") { format!("the value of {shown}") } else { format!("`{url}`") };
        return Err(invalid(format!("{shown_url} is not a URL like {example}")));
    }
    Ok(ServiceUrl { url: Secret::new(url), shown })
}

/// Whether `scheme://user:password@host` carries a password.
fn has_password(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    authority.rsplit_once('@').is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn env(v: &str) -> Option<String> {
        match v {
            "REDIS_URL" => Some("redis://:hunter2@10.0.0.7:6379/0".into()),
            "PG_URL" => Some("postgres://tf:pw@db/tokenfold".into()),
            "WRONG" => Some("http://nope".into()),
            _ => None,
        }
    }

    #[test]
    fn state_and_ledger_urls_from_the_file_or_the_environment() {
        let cfg =
            Config::parse("[state]\nredis_url = \"redis://127.0.0.1:6379\"\nname = \"team-a\"\n", "t", &env).unwrap();
        let s = cfg.state.unwrap();
        assert_eq!((s.redis.url.expose(), s.name.as_str()), ("redis://127.0.0.1:6379", "team-a"));
        let text = "[state]\nredis_url = \"${REDIS_URL}\"\n[ledger]\nurl = \"${PG_URL}\"\n";
        let cfg = Config::parse(text, "t", &env).unwrap();
        assert_eq!(cfg.state.as_ref().unwrap().name, "default");
        assert_eq!(cfg.ledger_url.as_ref().unwrap().url.expose(), "postgres://tf:pw@db/tokenfold");
        let shown = cfg.render_masked();
        assert!(shown.contains("redis_url = \"${REDIS_URL}\"") && shown.contains("url = \"${PG_URL}\""), "{shown}");
        assert!(!shown.contains("hunter2") && !shown.contains(":pw@"), "{shown}");
        assert!(Config::parse("", "t", &env).unwrap().state.is_none());
    }

    #[test]
    fn bad_state_and_ledger_settings_are_refused_with_the_key() {
        let cases = [
            ("[state]\nredis_url = \"redis://:secret@host\"\n", "state.redis_url", "password"),
            ("[state]\nredis_url = \"${MISSING}\"\n", "state.redis_url", "MISSING is not set"),
            ("[state]\nredis_url = \"${WRONG}\"\n", "state.redis_url", "not a URL like redis://"),
            ("[state]\nredis_url = \"localhost:6379\"\n", "state.redis_url", "not a URL like"),
            ("[state]\nredis_url = \"redis://h\"\nname = \"a b\"\n", "state.name", "letters"),
            ("[state]\nname = \"team\"\n", "state.name", "redis_url"),
            ("[ledger]\nurl = \"postgres://u:p@h/db\"\n", "ledger.url", "password"),
            ("[ledger]\nurl = \"mysql://h/db\"\n", "ledger.url", "postgres://"),
            ("[state]\nredis = \"x\"\n", "state.redis", "unknown field"),
        ];
        for (text, key, words) in cases {
            let err = Config::parse(text, "t.toml", &env).unwrap_err().to_string();
            assert!(err.starts_with("t.toml:") && err.contains(key) && err.contains(words), "{text}: {err}");
        }
    }
}
