//! The effective config as TOML with every secret masked, for `tokenfold config check`: a masked
//! view of the validated config, serialized by `toml`. A key is shown as `****` with the name of
//! the variable it came from; the value itself never enters the view.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Config, ProviderAuth};
use crate::dialect::Dialect;

#[derive(Serialize)]
struct Masked<'a> {
    server: Server<'a>,
    timeouts: Timeouts,
    fold: Fold<'a>,
    providers: Vec<Provider<'a>>,
    routes: BTreeMap<&'a str, Route>,
    ledger: Ledger<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<State<'a>>,
    cache: Cache,
    default_upstream: BTreeMap<&'static str, &'a str>,
}

#[derive(Serialize)]
struct Server<'a> {
    listen: String,
    api_keys: Vec<&'static str>,
    max_body_bytes: u64,
    header_timeout_ms: u64,
    body_timeout_ms: u64,
    keepalive_timeout_ms: u64,
    max_connections: u64,
    shutdown_timeout_ms: u64,
    allowed_origins: &'a [String],
    allowed_hosts: &'a [String],
}

#[derive(Serialize)]
struct Timeouts {
    connect_ms: u64,
    first_byte_ms: u64,
    idle_ms: u64,
}

#[derive(Serialize)]
struct Fold<'a> {
    enabled: bool,
    level: &'static str,
    cache_mb: u64,
    /// A path, or `off` (filters off: dedup only).
    originals_dir: String,
    originals_max_mb: u64,
    originals_max_age_days: u64,
    public_url: Option<&'a str>,
    keep_recent: u64,
    clear_at_least: u64,
    exclude_tools: &'a [String],
}

#[derive(Serialize)]
struct Provider<'a> {
    name: &'a str,
    kind: &'static str,
    base_url: &'a str,
    auth: Option<&'static str>,
    api_key: Option<String>,
    free_tier: Option<bool>,
    accounts: Option<Vec<&'a str>>,
    models: Option<&'a [String]>,
}

#[derive(Serialize)]
struct Route {
    strategy: &'static str,
    targets: Vec<String>,
    #[serde(skip_serializing_if = "is_zero")]
    max_wait_ms: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Serialize)]
struct Ledger<'a> {
    retention_days: u64,
    /// `${VAR}` when the URL came from the environment (it may carry a password).
    url: Option<&'a str>,
}

#[derive(Serialize)]
struct State<'a> {
    redis_url: &'a str,
    name: &'a str,
}

#[derive(Serialize)]
struct Cache {
    auto_breakpoints: bool,
    anthropic_ttl: &'static str,
}

impl Config {
    /// The effective config as TOML with every secret masked.
    pub fn render_masked(&self) -> String {
        let view = self.masked();
        let body = toml::to_string(&view).unwrap_or_else(|e| format!("# cannot render the config: {e}\n"));
        format!("# effective config from {}\n\n{body}", self.source)
    }

    fn masked(&self) -> Masked<'_> {
        let s = &self.server;
        let ms = |d: std::time::Duration| d.as_millis() as u64;
        let o = &self.originals;
        let providers = self
            .providers
            .iter()
            .map(|p| Provider {
                name: &p.name,
                kind: p.dialect.name(),
                base_url: &p.base_url,
                auth: matches!(p.auth, ProviderAuth::Client).then_some("client"),
                api_key: match &p.auth {
                    ProviderAuth::Client => None,
                    ProviderAuth::Key { var, .. } => Some(format!("**** (${{{var}}})")),
                    ProviderAuth::MissingKey { var, .. } => Some(format!("(${{{var}}} is not set: provider off)")),
                },
                free_tier: p.accounts.iter().all(|a| a.free_tier).then_some(true),
                accounts: (p.accounts.len() > 1).then(|| p.accounts.iter().map(|a| a.label.as_str()).collect()),
                models: (!p.models.is_empty()).then_some(p.models.as_slice()),
            })
            .collect();
        let routes = self
            .routes
            .iter()
            .map(|r| {
                let targets =
                    r.targets.iter().map(|t| format!("{}/{}", self.providers[t.provider].name, t.model)).collect();
                (r.name.as_str(), Route { strategy: r.strategy.name(), targets, max_wait_ms: r.max_wait_ms })
            })
            .collect();
        let default_upstream =
            Dialect::ALL.iter().filter_map(|d| self.upstream_for(*d).map(|p| (d.name(), p.name.as_str()))).collect();
        Masked {
            server: Server {
                listen: self.listen.to_string(),
                api_keys: self.api_keys.iter().map(|_| "****").collect(),
                max_body_bytes: self.max_body_bytes,
                header_timeout_ms: ms(s.header_timeout),
                body_timeout_ms: ms(s.body_timeout),
                keepalive_timeout_ms: ms(s.keepalive_timeout),
                max_connections: s.max_connections as u64,
                shutdown_timeout_ms: ms(s.shutdown_timeout),
                allowed_origins: &s.allowed_origins,
                allowed_hosts: &s.allowed_hosts,
            },
            timeouts: Timeouts {
                connect_ms: ms(self.timeouts.connect),
                first_byte_ms: ms(self.timeouts.first_byte),
                idle_ms: ms(self.timeouts.idle),
            },
            fold: Fold {
                enabled: self.fold_enabled,
                level: self.fold_level.name(),
                cache_mb: (self.fold_cache_bytes >> 20) as u64,
                originals_dir: o.dir.as_ref().map_or_else(|| "off".to_string(), |d| d.display().to_string()),
                originals_max_mb: o.max_bytes >> 20,
                originals_max_age_days: o.max_age.as_secs() / 86_400,
                public_url: o.public_url.as_deref(),
                keep_recent: self.clear.keep_recent as u64,
                clear_at_least: self.clear.clear_at_least,
                exclude_tools: &self.clear.exclude_tools,
            },
            providers,
            routes,
            ledger: Ledger {
                retention_days: self.ledger_retention.as_secs() / 86_400,
                url: self.ledger_url.as_ref().map(|u| u.shown.as_str()),
            },
            state: self.state.as_ref().map(|s| State { redis_url: &s.redis.shown, name: &s.name }),
            cache: Cache {
                auto_breakpoints: self.cache.auto_breakpoints,
                anthropic_ttl: self.cache.anthropic_ttl.name(),
            },
            default_upstream,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    #[test]
    fn the_masked_config_is_toml_that_loads_again() {
        let text = "[server]\napi_keys = [\"${TF_KEY}\"]\n[[providers]]\nname = \"g\"\nkind = \"openai\"\n\
                    base_url = \"http://x/v1\"\napi_key = \"${G_KEY}\"\nmodels = [\"m\"]\n\
                    [routes.fast]\ntargets = [\"g/m\"]\n";
        let env = |v: &str| Some(format!("secret-of-{v}"));
        let cfg = Config::parse(text, "t.toml", &env).unwrap();
        let shown = cfg.render_masked();
        assert!(!shown.contains("secret-of"), "{shown}");
        assert!(shown.contains("api_key = \"**** (${G_KEY})\""), "{shown}");
        assert!(shown.contains("[routes.fast]\nstrategy = \"fallback\"\ntargets = [\"g/m\"]"), "{shown}");
        // Every value but the masked keys reads back as the same config.
        let unmasked = shown.replace("\"**** (${G_KEY})\"", "\"${G_KEY}\"").replace("[\"****\"]", "[\"${TF_KEY}\"]");
        let again = Config::parse(&unmasked, "shown.toml", &env).unwrap();
        assert_eq!(again.render_masked().replace("shown.toml", "t.toml"), shown);
    }
}
