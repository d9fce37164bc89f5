//! A serializable snapshot of the pool for `tokenfold pool [--json]` and the dashboard: per
//! provider, account and model, used/left per window, resets, cooldowns and health.

use serde::{Deserialize, Serialize};

use crate::config::{Limits, ProviderAuth};

use super::state::KeyState;
use super::window::WindowUse;
use super::Pool;

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

impl Pool {
    pub fn pool_status(&self) -> PoolStatus {
        let inner = &self.inner;
        let now = inner.clock.now_ms();
        let st = inner.lock();
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
                        models: Vec::new(),
                    });
                    continue;
                };
                let k = &st.accounts[idx];
                // Every configured model, used or not, then models seen only in traffic.
                let unused = KeyState::default();
                let mut names: Vec<&String> = p.model_specs.iter().map(|s| &s.name).collect();
                for (a, name) in st.models.keys() {
                    if *a == idx && !names.contains(&name) {
                        names.push(name);
                    }
                }
                let models: Vec<ModelStatus> = names
                    .into_iter()
                    .map(|name| (name, st.models.get(&(idx, name.clone())).unwrap_or(&unused)))
                    .map(|(name, m)| {
                        let limits = p.model_spec(name).map(|s| s.limits).unwrap_or_default();
                        let live = |w: Option<super::window::ProviderWindow>| {
                            w.filter(|w| w.reset_at_ms > now).map(|w| w.remaining)
                        };
                        ModelStatus {
                            name: name.clone(),
                            health: m.state_word(now).into(),
                            cooldown: cooldown(m, now),
                            windows: windows(m, &limits, now, day, next_day),
                            in_flight: m.counters.concurrent,
                            concurrent_limit: limits.concurrent,
                            provider_requests_left: live(m.counters.provider_requests),
                            provider_tokens_left: live(m.counters.provider_tokens),
                            latency_ms: m.ewma_ms,
                            last_error: m.last_error.clone(),
                        }
                    })
                    .collect();
                accounts.push(AccountStatus {
                    label: acct.label.clone(),
                    health: k.state_word(now).into(),
                    cooldown: cooldown(k, now),
                    windows: windows(k, &acct.limits, now, day, next_day),
                    in_flight: k.counters.concurrent,
                    concurrent_limit: acct.limits.concurrent,
                    consecutive_failures: k.consecutive_failures,
                    last_error: k.last_error.clone(),
                    last_error_ago_s: k.last_error_at_ms.map(|t| ((now - t).max(0) / 1000) as u64),
                    models,
                });
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
