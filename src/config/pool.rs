//! The pool's part of the config: accounts, models, limits, routes and pool settings, validated
//! from the file sections into runtime types.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::file::{
    AccountSection, LimitsSection, ModelEntry, PoolSection, PriceSection, ProviderKind, ProviderSection, RateScopeName,
    RouteSection, StrategyName,
};
use super::DayZone;
use super::{env_reference, AuthMode, ConfigError, Provider, ProviderAuth, Secret};
use crate::price::Price;

/// Quota limits of one window set; `None` means the provider does not limit (or we do not know).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub rpm: Option<u64>,
    pub rpd: Option<u64>,
    pub tpm: Option<u64>,
    pub tpd: Option<u64>,
    pub concurrent: Option<u32>,
}

impl From<LimitsSection> for Limits {
    fn from(s: LimitsSection) -> Self {
        Limits { rpm: s.rpm, rpd: s.rpd, tpm: s.tpm, tpd: s.tpd, concurrent: s.concurrent }
    }
}

#[derive(Debug, Clone)]
pub struct Account {
    pub label: String,
    pub auth: ProviderAuth,
    /// Counted across all the account's models.
    pub limits: Limits,
    /// A free tier: the ledger records cost 0 and what the request is worth at list price.
    pub free_tier: bool,
}

/// The prices of a `price` section. Anthropic bills cache writes at 1.25x input (5 minutes) and
/// 2x (1 hour); OpenAI-style providers cache automatically and bill the written tokens as
/// ordinary input.
fn price_of(p: PriceSection, kind: ProviderKind) -> Price {
    let (write, write_1h) = if kind == ProviderKind::Anthropic { (1.25, 2.0) } else { (1.0, 1.0) };
    let cache_write = p.cache_write.unwrap_or(p.input * write);
    let cache_write_1h = p.cache_write_1h.unwrap_or(p.input * write_1h);
    Price { input: p.input, output: p.output, cached_input: p.cached_input, cache_write, cache_write_1h }
}

#[derive(Debug, Clone)]
pub struct ModelSpec {
    pub name: String,
    pub aliases: Vec<String>,
    /// Context window in tokens, when known.
    pub context: Option<u64>,
    /// Input tokens one request may carry, when the provider caps it below the window.
    pub max_input_tokens: Option<u64>,
    pub tools: bool,
    pub images: bool,
    /// Takes reasoning settings: translation maps `thinking` / `reasoning_effort` for it and
    /// drops them for models without (many providers reject the unknown field).
    pub reasoning: bool,
    pub price: Price,
    /// Per account, for this model.
    pub limits: Limits,
    /// The provider's shortest cacheable prefix for this model, when the config gives it.
    pub cache_min_tokens: Option<u64>,
}

impl ModelSpec {
    pub fn answers_to(&self, name: &str) -> bool {
        self.name == name || self.aliases.iter().any(|a| a == name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RateScope {
    #[default]
    Account,
    Model,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    #[default]
    Fallback,
    RoundRobin,
    MostRemaining,
    Fastest,
    /// The target that needs the least reduction to fit this request.
    Fit,
}

impl Strategy {
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Fallback => "fallback",
            Strategy::RoundRobin => "round-robin",
            Strategy::MostRemaining => "most-remaining",
            Strategy::Fastest => "fastest",
            Strategy::Fit => "fit",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTarget {
    /// Index into `Config::providers`.
    pub provider: usize,
    /// The model name sent to the provider.
    pub model: String,
}

#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub strategy: Strategy,
    pub targets: Vec<RouteTarget>,
    /// How long a request may wait for a TPM window rather than be cut harder (0: never).
    pub max_wait_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// `$XDG_DATA_HOME/tokenfold/tokenfold.db` (or `~/.local/share/...`).
    Default,
    Memory,
    Path(PathBuf),
}

impl StoreLocation {
    /// The file to open, if any.
    pub fn path(&self) -> Option<PathBuf> {
        match self {
            StoreLocation::Memory => None,
            StoreLocation::Path(p) => Some(p.clone()),
            StoreLocation::Default => {
                let base = std::env::var_os("XDG_DATA_HOME")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
                    .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))?;
                Some(base.join("tokenfold/tokenfold.db"))
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub store: StoreLocation,
    /// First cooldown after a 5xx/connect error/timeout; grows with consecutive failures.
    pub short_cooldown: Duration,
    /// Consecutive failures that open the circuit breaker.
    pub breaker_failures: u32,
    /// How long an open breaker refuses before a half-open probe.
    pub breaker_open: Duration,
    /// Exponential backoff after a 429 without a reset hint: base * 2^n, capped.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Most key states kept beyond those the config fixes: models seen only in traffic and
    /// callers' own lanes on `auth = "client"` accounts (the least recently used go first).
    pub max_tracked: usize,
    /// Such a state unused this long is forgotten (memory and store).
    pub forget_idle: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            store: StoreLocation::Default,
            short_cooldown: Duration::from_secs(2),
            breaker_failures: 3,
            breaker_open: Duration::from_secs(30),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            max_tracked: 4096,
            forget_idle: Duration::from_secs(48 * 3600),
        }
    }
}

pub(super) fn validate_pool_section(
    p: &PoolSection,
    at: &dyn Fn(std::ops::Range<usize>) -> String,
) -> Result<PoolSettings, ConfigError> {
    let d = PoolSettings::default();
    let store = match &p.store {
        None => d.store,
        Some(s) => match s.get_ref().trim() {
            "" => {
                return Err(ConfigError::Invalid(format!(
                    "{}: `pool.store`: give \"default\", \"memory\" or a file path",
                    at(s.span())
                )))
            }
            "default" => StoreLocation::Default,
            "memory" | ":memory:" => StoreLocation::Memory,
            path => StoreLocation::Path(PathBuf::from(path)),
        },
    };
    let ms = |v: Option<u64>, default: Duration| v.map(|v| Duration::from_millis(v.max(1))).unwrap_or(default);
    Ok(PoolSettings {
        store,
        short_cooldown: ms(p.short_cooldown_ms, d.short_cooldown),
        breaker_failures: p.breaker_failures.unwrap_or(d.breaker_failures).max(1),
        breaker_open: ms(p.breaker_open_ms, d.breaker_open),
        backoff_base: ms(p.backoff_base_ms, d.backoff_base),
        backoff_max: ms(p.backoff_max_ms, d.backoff_max),
        max_tracked: p.max_tracked.unwrap_or(d.max_tracked).max(1),
        forget_idle: p.forget_idle_hours.map(|h| Duration::from_secs(h.max(1) * 3600)).unwrap_or(d.forget_idle),
    })
}

/// The pool fields of one provider: accounts, model specs, day zone, rate-limit scope.
pub(super) struct ProviderPoolParts {
    pub auth: ProviderAuth,
    pub accounts: Vec<Account>,
    pub model_specs: Vec<ModelSpec>,
    pub day_zone: DayZone,
    pub rate_scope: RateScope,
}

pub(super) fn validate_provider_pool(
    p: &ProviderSection,
    name: &str,
    at: &dyn Fn(std::ops::Range<usize>) -> String,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ProviderPoolParts, ConfigError> {
    let invalid = |span: std::ops::Range<usize>, key: &str, msg: String| {
        ConfigError::Invalid(format!("{}: `providers.{key}` of `{name}`: {msg}", at(span)))
    };
    let provider_limits: Limits = p.limits.map(Limits::from).unwrap_or_default();
    let resolve = |k: &Spanned<String>, key: &str| -> Result<ProviderAuth, ConfigError> {
        let var = env_reference(k).map_err(|m| invalid(k.span(), key, m))?;
        Ok(match env(&var).filter(|v| !v.is_empty()) {
            Some(v) => ProviderAuth::Key { var, secret: Secret(v) },
            None => ProviderAuth::MissingKey { location: at(k.span()), var },
        })
    };
    let mut accounts = Vec::new();
    match (p.auth, &p.api_key, p.accounts.first()) {
        (AuthMode::Client, Some(k), _) => {
            return Err(invalid(k.span(), "api_key", "set either `auth = \"client\"` or `api_key`, not both".into()))
        }
        (_, Some(_), Some(a)) | (AuthMode::Client, None, Some(a)) => {
            return Err(invalid(
                a.label.span(),
                "accounts",
                "give `accounts` alone: not with `api_key` or `auth = \"client\"`".into(),
            ))
        }
        (AuthMode::Client, None, None) => accounts.push(Account {
            label: "client".into(),
            auth: ProviderAuth::Client,
            limits: provider_limits,
            free_tier: p.free_tier,
        }),
        (AuthMode::Key, Some(k), None) => accounts.push(Account {
            label: "default".into(),
            auth: resolve(k, "api_key")?,
            limits: provider_limits,
            free_tier: p.free_tier,
        }),
        (AuthMode::Key, None, None) => {
            return Err(invalid(
                p.name.span(),
                "api_key",
                "missing: give `api_key = \"${ENV_VAR}\"`, `accounts = [...]` or `auth = \"client\"`".into(),
            ))
        }
        (AuthMode::Key, None, Some(_)) => {
            for a in &p.accounts {
                let mut account = validate_account(a, &resolve, provider_limits, &invalid, &accounts)?;
                account.free_tier = a.free_tier.unwrap_or(p.free_tier);
                accounts.push(account);
            }
        }
    }
    let auth = accounts
        .iter()
        .find(|a| !matches!(a.auth, ProviderAuth::MissingKey { .. }))
        .or(accounts.first())
        .map(|a| a.auth.clone())
        .unwrap_or(ProviderAuth::Client);

    let mut model_specs: Vec<ModelSpec> = Vec::new();
    for m in &p.models {
        let spec = match m {
            ModelEntry::Name(n) => ModelSpec {
                name: n.trim().to_string(),
                aliases: Vec::new(),
                context: None,
                max_input_tokens: None,
                tools: true,
                images: true,
                reasoning: false,
                price: Price::default(),
                limits: Limits::default(),
                cache_min_tokens: None,
            },
            ModelEntry::Full(s) => ModelSpec {
                name: s.name.trim().to_string(),
                aliases: s.aliases.clone(),
                context: s.context,
                max_input_tokens: s.max_input_tokens,
                tools: s.tools.unwrap_or(true),
                images: s.images.unwrap_or(true),
                reasoning: s.reasoning.unwrap_or(false),
                price: s.price.map(|pr| price_of(pr, p.kind)).unwrap_or_default(),
                limits: s.limits.map(Limits::from).unwrap_or_default(),
                cache_min_tokens: s.cache_min_tokens,
            },
        };
        if spec.name.is_empty() {
            return Err(invalid(p.name.span(), "models", "a model has an empty name".into()));
        }
        let clash = |n: &String| model_specs.iter().any(|o| o.answers_to(n));
        if let Some(n) = std::iter::once(&spec.name).chain(&spec.aliases).find(|n| clash(n)) {
            return Err(invalid(p.name.span(), "models", format!("model name or alias `{n}` is given twice")));
        }
        if let Some(cap) = spec.max_input_tokens {
            if cap == 0 || spec.context.is_some_and(|c| cap > c) {
                let msg =
                    format!("model `{}`: `max_input_tokens = {cap}` must be above 0 and within `context`", spec.name);
                return Err(invalid(p.name.span(), "models", msg));
            }
        }
        model_specs.push(spec);
    }

    let day_zone = match &p.day_reset_tz {
        None => DayZone::utc(),
        Some(z) => DayZone::parse(z.get_ref()).ok_or_else(|| {
            invalid(
                z.span(),
                "day_reset_tz",
                format!("unknown time zone `{}`: give an IANA zone name like UTC or America/Los_Angeles", z.get_ref()),
            )
        })?,
    };
    let rate_scope = match p.rate_limit_scope {
        None | Some(RateScopeName::Account) => RateScope::Account,
        Some(RateScopeName::Model) => RateScope::Model,
    };
    Ok(ProviderPoolParts { auth, accounts, model_specs, day_zone, rate_scope })
}

/// Turns an `api_key` reference into the account's auth.
type Resolver<'a> = dyn Fn(&Spanned<String>, &str) -> Result<ProviderAuth, ConfigError> + 'a;

fn validate_account(
    a: &AccountSection,
    resolve: &Resolver,
    provider_limits: Limits,
    invalid: &dyn Fn(std::ops::Range<usize>, &str, String) -> ConfigError,
    earlier: &[Account],
) -> Result<Account, ConfigError> {
    let label = a.label.get_ref().trim().to_string();
    if label.is_empty() || label.contains('|') {
        return Err(invalid(a.label.span(), "accounts.label", "must be a non-empty name without `|`".into()));
    }
    if earlier.iter().any(|e| e.label == label) {
        return Err(invalid(a.label.span(), "accounts.label", format!("`{label}` is used twice")));
    }
    Ok(Account {
        label,
        auth: resolve(&a.api_key, "accounts.api_key")?,
        limits: a.limits.map(Limits::from).unwrap_or(provider_limits),
        free_tier: false,
    })
}

/// A rolling minute frees within a minute (61 s as the pool counts it): waiting longer never helps.
const MAX_WAIT_MS: u64 = 120_000;

pub(super) fn validate_routes(
    routes: &BTreeMap<String, RouteSection>,
    providers: &[Provider],
    at: &dyn Fn(std::ops::Range<usize>) -> String,
) -> Result<Vec<Route>, ConfigError> {
    let mut out = Vec::new();
    for (name, r) in routes {
        let invalid = |span: std::ops::Range<usize>, msg: String| {
            ConfigError::Invalid(format!("{}: `routes.{name}.targets`: {msg}", at(span)))
        };
        if r.targets.get_ref().is_empty() {
            return Err(invalid(r.targets.span(), "a route needs at least one `provider/model` target".into()));
        }
        let mut targets = Vec::new();
        for t in r.targets.get_ref() {
            let target = resolve_target(t.get_ref(), providers).map_err(|m| invalid(t.span(), m))?;
            targets.push(target);
        }
        let strategy = match r.strategy {
            StrategyName::Fallback => Strategy::Fallback,
            StrategyName::RoundRobin => Strategy::RoundRobin,
            StrategyName::MostRemaining => Strategy::MostRemaining,
            StrategyName::Fastest => Strategy::Fastest,
            StrategyName::Fit => Strategy::Fit,
        };
        if r.max_wait_ms > MAX_WAIT_MS {
            return Err(ConfigError::Invalid(format!(
                "{}: `routes.{name}.max_wait_ms`: {} is over two minutes; a TPM window frees within one",
                at(r.targets.span()),
                r.max_wait_ms
            )));
        }
        out.push(Route { name: name.clone(), strategy, targets, max_wait_ms: r.max_wait_ms });
    }
    Ok(out)
}

/// `provider/model` (the model may itself contain `/`, as OpenRouter's do), model by name or alias.
pub fn resolve_target<P: std::borrow::Borrow<Provider>>(text: &str, providers: &[P]) -> Result<RouteTarget, String> {
    let (p, m) = text
        .trim()
        .split_once('/')
        .filter(|(p, m)| !p.is_empty() && !m.is_empty())
        .ok_or_else(|| format!("`{text}` is not `provider/model`"))?;
    let provider =
        providers.iter().position(|x| x.borrow().name == p).ok_or_else(|| format!("no provider is named `{p}`"))?;
    let specs = &providers[provider].borrow().model_specs;
    if specs.is_empty() {
        return Ok(RouteTarget { provider, model: m.to_string() });
    }
    let spec = specs.iter().find(|s| s.answers_to(m)).ok_or_else(|| {
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        format!("provider `{p}` has no model `{m}` (it lists: {})", names.join(", "))
    })?;
    Ok(RouteTarget { provider, model: spec.name.clone() })
}
