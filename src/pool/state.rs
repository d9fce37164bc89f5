//! The state of one key (an account, or an account's model): counters, cooldown, circuit
//! breaker, latency. Times are unix milliseconds from `Clock`, so they persist as they are.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::PoolSettings;

use super::window::Counters;

/// Wall-clock time that advances with `tokio::time`, so paused-time tests move it too.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    wall_base_ms: i64,
    base: tokio::time::Instant,
}

impl Clock {
    pub fn system() -> Clock {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Clock::starting_at(wall)
    }

    /// A clock that reads `unix_ms` now (tests pick the date, e.g. just before midnight Pacific).
    pub fn starting_at(unix_ms: i64) -> Clock {
        Clock { wall_base_ms: unix_ms, base: tokio::time::Instant::now() }
    }

    pub fn now_ms(&self) -> i64 {
        self.wall_base_ms + self.base.elapsed().as_millis() as i64
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CooldownKind {
    RateLimited,
    QuotaExhausted,
    /// The circuit breaker is open; after `until_ms` one probe is let through (half-open).
    BreakerOpen,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cooldown {
    pub kind: CooldownKind,
    pub until_ms: i64,
    pub reason: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KeyState {
    pub counters: Counters,
    /// A hard block: nothing is sent before `until_ms` (except one half-open probe after it).
    pub cooldown: Option<Cooldown>,
    /// A soft block after a 5xx/timeout: tried only after healthy targets until then.
    pub demoted_until_ms: i64,
    pub consecutive_failures: u32,
    /// How many times the breaker opened in a row: each doubles the open period.
    pub breaker_opens: u32,
    /// 429s in a row without a reset hint: each doubles the backoff.
    pub rate_strikes: u32,
    /// Time to first byte, exponentially weighted, in ms.
    pub ewma_ms: Option<f64>,
    pub last_error: Option<String>,
    pub last_error_at_ms: Option<i64>,
    /// When a request last used this key (idle states made by traffic are forgotten).
    #[serde(default)]
    pub last_used_ms: i64,
    /// A half-open probe is in flight.
    #[serde(skip)]
    pub probing: bool,
    /// 401/403: off until the config is reloaded (so not persisted).
    #[serde(skip)]
    pub disabled: Option<String>,
    /// With a shared state: what Redis said at this instance's last admission on the key (the
    /// share of each limit this instance takes while Redis is away starts from it).
    #[serde(skip)]
    pub seen: Option<super::redis::Seen>,
}

/// Whether a key can be tried now.
#[derive(Debug, Clone, PartialEq)]
pub enum Health {
    Ready { demoted: bool, probe: bool },
    Blocked { reason: String, free_at_ms: Option<i64> },
}

const EWMA_ALPHA: f64 = 0.3;

impl KeyState {
    pub fn health(&self, now_ms: i64) -> Health {
        if let Some(why) = &self.disabled {
            return Health::Blocked { reason: why.clone(), free_at_ms: None };
        }
        if let Some(c) = &self.cooldown {
            if c.until_ms > now_ms {
                return Health::Blocked { reason: c.reason.clone(), free_at_ms: Some(c.until_ms) };
            }
            if c.kind == CooldownKind::BreakerOpen {
                if self.probing {
                    return Health::Blocked { reason: "half-open: a probe is in flight".into(), free_at_ms: None };
                }
                // The probe takes the target's usual place: demoted, a recovered preferred
                // target would never be probed while a later one is healthy.
                return Health::Ready { demoted: false, probe: true };
            }
        }
        Health::Ready { demoted: self.demoted_until_ms > now_ms, probe: false }
    }

    /// A short word for the status table.
    pub fn state_word(&self, now_ms: i64) -> &'static str {
        if self.disabled.is_some() {
            return "disabled";
        }
        match &self.cooldown {
            Some(c) if c.until_ms > now_ms => match c.kind {
                CooldownKind::RateLimited => "rate-limited",
                CooldownKind::QuotaExhausted => "quota-exhausted",
                CooldownKind::BreakerOpen => "breaker-open",
            },
            Some(c) if c.kind == CooldownKind::BreakerOpen => "half-open",
            _ if self.demoted_until_ms > now_ms => "degraded",
            _ => "ok",
        }
    }

    pub fn succeeded(&mut self, latency: Option<Duration>) {
        self.consecutive_failures = 0;
        self.breaker_opens = 0;
        self.rate_strikes = 0;
        self.demoted_until_ms = 0;
        self.probing = false;
        if self.cooldown.as_ref().is_some_and(|c| c.kind == CooldownKind::BreakerOpen) {
            self.cooldown = None;
        }
        if let Some(l) = latency {
            let ms = l.as_secs_f64() * 1000.0;
            self.ewma_ms = Some(match self.ewma_ms {
                Some(e) => e + EWMA_ALPHA * (ms - e),
                None => ms,
            });
        }
    }

    pub fn note_error(&mut self, msg: String, now_ms: i64) {
        self.last_error = Some(msg);
        self.last_error_at_ms = Some(now_ms);
    }

    /// 429: until the provider's reset, else exponential backoff.
    pub fn rate_limited(&mut self, retry_after: Option<Duration>, s: &PoolSettings, now_ms: i64, reason: String) {
        let wait = retry_after.unwrap_or_else(|| backoff(s.backoff_base, self.rate_strikes, s.backoff_max));
        self.rate_strikes = self.rate_strikes.saturating_add(1);
        self.cool(CooldownKind::RateLimited, now_ms + wait.as_millis() as i64, reason);
    }

    /// Sets a cooldown, keeping a longer one already in place.
    pub fn cool(&mut self, kind: CooldownKind, until_ms: i64, reason: String) {
        if self.cooldown.as_ref().is_some_and(|c| c.until_ms > until_ms) {
            return;
        }
        self.cooldown = Some(Cooldown { kind, until_ms, reason });
    }

    /// 5xx / connect error / timeout / reset: demote briefly; N in a row open the breaker.
    /// Returns true when this failure opened it.
    pub fn unavailable(&mut self, s: &PoolSettings, now_ms: i64, reason: String) -> bool {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let was_probe = self.probing;
        self.probing = false;
        let demote = backoff(s.short_cooldown, self.consecutive_failures - 1, s.breaker_open);
        self.demoted_until_ms = now_ms + demote.as_millis() as i64;
        if was_probe || self.consecutive_failures >= s.breaker_failures {
            let open = backoff(s.breaker_open, self.breaker_opens, s.backoff_max.max(s.breaker_open));
            self.breaker_opens = self.breaker_opens.saturating_add(1);
            let until = now_ms + open.as_millis() as i64;
            self.cooldown = Some(Cooldown {
                kind: CooldownKind::BreakerOpen,
                until_ms: until,
                reason: format!("{} failures in a row, last: {reason}", self.consecutive_failures),
            });
            return true;
        }
        false
    }
}

/// `base * 2^n`, capped.
pub fn backoff(base: Duration, n: u32, cap: Duration) -> Duration {
    base.saturating_mul(1u32 << n.min(20)).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_opens_after_n_then_half_opens_for_one_probe() {
        let s = PoolSettings::default();
        let mut k = KeyState::default();
        assert!(!k.unavailable(&s, 0, "503".into()));
        assert_eq!(k.health(1), Health::Ready { demoted: true, probe: false });
        assert!(!k.unavailable(&s, 0, "503".into()));
        assert!(k.unavailable(&s, 0, "503".into()));
        assert!(matches!(k.health(29_999), Health::Blocked { free_at_ms: Some(30_000), .. }));
        assert_eq!(k.health(30_000), Health::Ready { demoted: false, probe: true });
        k.probing = true;
        assert!(matches!(k.health(30_001), Health::Blocked { .. }));
        // A failed probe opens it again for twice as long.
        assert!(k.unavailable(&s, 30_001, "503".into()));
        assert!(matches!(k.health(30_001 + 59_999), Health::Blocked { .. }));
        k.succeeded(Some(Duration::from_millis(100)));
        assert_eq!(k.health(0), Health::Ready { demoted: false, probe: false });
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let (b, cap) = (Duration::from_secs(1), Duration::from_secs(300));
        assert_eq!(backoff(b, 0, cap), Duration::from_secs(1));
        assert_eq!(backoff(b, 3, cap), Duration::from_secs(8));
        assert_eq!(backoff(b, 30, cap), cap);
    }
}
