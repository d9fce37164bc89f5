//! A serializable snapshot of the pool for `tokenfold pool [--json]` and the dashboard: per
//! provider, account and model, used/left per window, resets, cooldowns and health.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::{Limits, ProviderAuth};

use super::state::KeyState;
use super::window::{ProviderWindow, WindowUse};
use super::{model_key, Pool};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PoolStatus {
    pub now_ms: i64,
    /// What this snapshot was read from: the running proxy, or the saved store (set by the
    /// reader; `tokenfold pool` says it).
    #[serde(default)]
    pub source: String,
    pub store: Option<String>,
    pub providers: Vec<ProviderStatus>,
    pub routes: Vec<RouteStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProviderStatus {
    pub name: String,
    pub dialect: String,
    pub base_url: String,
    pub day_reset_tz: String,
    /// Why the provider is off (a key not set), if it is.
    pub off: Option<String>,
    pub accounts: Vec<AccountStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountStatus {
    pub label: String,
    /// ok, degraded, rate-limited, quota-exhausted, breaker-open, half-open, disabled, off.
    pub health: String,
    pub cooldown: Option<CooldownStatus>,
    pub windows: Windows,
    pub in_flight: u32,
    pub concurrent_limit: Option<u32>,
    pub consecutive_failures: u32,
    pub last_error: Option<String>,
    pub last_error_ago_s: Option<u64>,
    /// On an account that forwards callers' own keys: whose lane this row is (a hash of the
    /// caller's credential, never the key). The account's own row has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    pub models: Vec<ModelStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelStatus {
    pub name: String,
    pub health: String,
    pub cooldown: Option<CooldownStatus>,
    pub windows: Windows,
    pub in_flight: u32,
    pub concurrent_limit: Option<u32>,
    /// What the provider's headers last said: (remaining, limit, resets in s).
    pub provider_requests_left: Option<u64>,
    pub provider_tokens_left: Option<u64>,
    pub latency_ms: Option<f64>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CooldownStatus {
    pub kind: String,
    pub reason: String,
    pub until_ms: i64,
    pub remaining_s: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Windows {
    pub rpm: WindowStatus,
    pub tpm: WindowStatus,
    pub rpd: WindowStatus,
    pub tpd: WindowStatus,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WindowStatus {
    pub used: u64,
    pub limit: Option<u64>,
    pub left: Option<u64>,
    pub resets_in_s: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RouteStatus {
    pub name: String,
    pub strategy: String,
    pub targets: Vec<String>,
}

fn secs_until(at_ms: i64, now_ms: i64) -> u64 {
    ((at_ms - now_ms).max(0) as u64).div_ceil(1000)
}

fn windows(k: &KeyState, limits: &Limits, now: i64, day: i64, next_day: i64) -> Windows {
    let w = |u: WindowUse| WindowStatus {
        used: u.used,
        limit: u.limit,
        left: u.limit.map(|l| l.saturating_sub(u.used)),
        resets_in_s: u.resets_at_ms.map(|t| secs_until(t, now)),
    };
    let [rpm, tpm, rpd, tpd] = k.counters.usage(limits, now, day, next_day);
    Windows { rpm: w(rpm), tpm: w(tpm), rpd: w(rpd), tpd: w(tpd) }
}

fn cooldown(k: &KeyState, now: i64) -> Option<CooldownStatus> {
    let c = k.cooldown.as_ref()?;
    let kind = serde_json::to_value(c.kind).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    (c.until_ms > now).then(|| CooldownStatus {
        kind,
        reason: c.reason.clone(),
        until_ms: c.until_ms,
        remaining_s: secs_until(c.until_ms, now),
    })
}

/// The tracked states under one account's store key, in one pass: models of its own lane
/// (`KEY|m|NAME`) and its callers' lanes (`KEY|c|HASH`) with theirs (`KEY|c|HASH|m|NAME`), each
/// sorted by name.
struct TrackedOf<'a> {
    models: Named<'a>,
    /// By caller hash.
    callers: BTreeMap<&'a str, CallerKeys<'a>>,
}

/// (model name, store key) pairs.
type Named<'a> = Vec<(&'a str, &'a String)>;

/// A caller lane's own store key (if it has a state) and its models'.
#[derive(Default)]
struct CallerKeys<'a> {
    own: Option<&'a String>,
    models: Named<'a>,
}

impl<'a> TrackedOf<'a> {
    fn sorted(account_key: &str, keys: impl Iterator<Item = &'a String>) -> TrackedOf<'a> {
        let mut models = Vec::new();
        let mut callers: BTreeMap<&str, CallerKeys> = BTreeMap::new();
        for k in keys {
            let Some(rest) = k.strip_prefix(account_key) else { continue };
            if let Some(name) = rest.strip_prefix("|m|") {
                models.push((name, k));
            } else if let Some(rest) = rest.strip_prefix("|c|") {
                match rest.split_once("|m|") {
                    Some((hash, name)) => callers.entry(hash).or_default().models.push((name, k)),
                    None => callers.entry(rest).or_default().own = Some(k),
                }
            }
        }
        models.sort_unstable();
        for c in callers.values_mut() {
            c.models.sort_unstable();
        }
        TrackedOf { models, callers }
    }
}

/// What the rows of one account are read with.
struct View<'a> {
    p: &'a crate::config::Provider,
    limits: &'a Limits,
    now: i64,
    day: i64,
    next_day: i64,
}

impl View<'_> {
    fn model(&self, name: &str, state: Option<&KeyState>) -> ModelStatus {
        let unused = KeyState::default();
        let m = state.unwrap_or(&unused);
        let now = self.now;
        let limits = self.p.model_spec(name).map(|s| s.limits).unwrap_or_default();
        let live = |w: Option<ProviderWindow>| w.filter(|w| w.reset_at_ms > now).map(|w| w.remaining);
        ModelStatus {
            name: name.to_string(),
            health: m.state_word(now).into(),
            cooldown: cooldown(m, now),
            windows: windows(m, &limits, now, self.day, self.next_day),
            in_flight: m.counters.concurrent,
            concurrent_limit: limits.concurrent,
            provider_requests_left: live(m.counters.provider_requests),
            provider_tokens_left: live(m.counters.provider_tokens),
            latency_ms: m.ewma_ms,
            last_error: m.last_error.clone(),
        }
    }

    fn account(&self, label: &str, caller: Option<&str>, k: &KeyState, models: Vec<ModelStatus>) -> AccountStatus {
        let now = self.now;
        AccountStatus {
            label: label.to_string(),
            health: k.state_word(now).into(),
            cooldown: cooldown(k, now),
            windows: windows(k, self.limits, now, self.day, self.next_day),
            in_flight: k.counters.concurrent,
            concurrent_limit: self.limits.concurrent,
            consecutive_failures: k.consecutive_failures,
            last_error: k.last_error.clone(),
            last_error_ago_s: k.last_error_at_ms.map(|t| ((now - t).max(0) / 1000) as u64),
            caller: caller.map(str::to_string),
            models,
        }
    }
}

impl Pool {
    pub fn pool_status(&self) -> PoolStatus {
        let inner = &self.inner;
        let now = inner.clock.now_ms();
        let st = inner.lock();
        let unused = KeyState::default();
        let mut providers = Vec::new();
        for (pi, p) in inner.providers.iter().enumerate() {
            let (day, next_day) = (p.day_zone.day_index(now), p.day_zone.next_reset_ms(now));
            let mut accounts = Vec::new();
            for (ai, acct) in p.accounts.iter().enumerate() {
                let idx = inner.accounts.iter().position(|a| a.provider == pi && a.account == ai);
                let Some(idx) = idx else {
                    let off = match &acct.auth {
                        ProviderAuth::MissingKey { var, .. } => format!("set {var}"),
                        _ => String::new(),
                    };
                    accounts.push(AccountStatus {
                        label: acct.label.clone(),
                        health: "off".into(),
                        cooldown: None,
                        windows: windows(&KeyState::default(), &acct.limits, now, day, next_day),
                        in_flight: 0,
                        concurrent_limit: acct.limits.concurrent,
                        consecutive_failures: 0,
                        last_error: Some(off),
                        last_error_ago_s: None,
                        caller: None,
                        models: Vec::new(),
                    });
                    continue;
                };
                let key = &inner.accounts[idx].key;
                let seen = TrackedOf::sorted(key, st.tracked.keys());
                let view = View { p, limits: &acct.limits, now, day, next_day };
                // Every configured model, used or not, then models seen only in traffic.
                let mut models: Vec<ModelStatus> = p
                    .model_specs
                    .iter()
                    .map(|spec| view.model(&spec.name, st.fixed.get(&model_key(key, &spec.name))))
                    .collect();
                models.extend(seen.models.iter().map(|(name, k)| view.model(name, st.tracked.get(*k))));
                accounts.push(view.account(&acct.label, None, &st.accounts[idx], models));
                // Each caller of an account that forwards callers' keys, with the models it used.
                for (caller, keys) in &seen.callers {
                    let state = keys.own.and_then(|k| st.tracked.get(k)).unwrap_or(&unused);
                    let models = keys.models.iter().map(|(name, mk)| view.model(name, st.tracked.get(*mk))).collect();
                    accounts.push(view.account(&acct.label, Some(caller), state, models));
                }
            }
            let off = (!p.is_usable()).then(|| match &p.auth {
                ProviderAuth::MissingKey { var, .. } => format!("set {var} to enable it"),
                _ => "no usable account".to_string(),
            });
            providers.push(ProviderStatus {
                name: p.name.clone(),
                dialect: p.dialect.name().into(),
                base_url: p.base_url.clone(),
                day_reset_tz: p.day_zone.name().to_string(),
                off,
                accounts,
            });
        }
        let routes = inner
            .routes
            .iter()
            .map(|r| RouteStatus {
                name: r.name.clone(),
                strategy: r.strategy.name().to_string(),
                targets: r
                    .targets
                    .iter()
                    .map(|t| format!("{}/{}", inner.providers[t.provider].name, t.model))
                    .collect(),
            })
            .collect();
        let source = match &inner.store {
            Some(_) => "pool state in this process".to_string(),
            None => "pool state in this process (memory only)".to_string(),
        };
        PoolStatus {
            now_ms: now,
            source,
            store: inner.store.as_ref().map(|s| s.path().display().to_string()),
            providers,
            routes,
        }
    }
}
