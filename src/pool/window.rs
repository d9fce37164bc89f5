//! Quota windows of one key (an account, or an account's model): a rolling minute in one-second
//! buckets, a calendar day in the provider's zone, concurrency, and what the provider's own
//! headers last said. All times are unix milliseconds from the pool's clock.

use serde::{Deserialize, Serialize};

use crate::config::Limits;

use super::headers::{HeaderWindow, WindowKind};

const SLOTS: usize = 60;

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
struct Bucket {
    sec: i64,
    requests: u32,
    tokens: u64,
}

/// What the provider's headers said about one of its windows.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProviderWindow {
    pub limit: Option<u64>,
    pub remaining: u64,
    pub reset_at_ms: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Counters {
    /// Ring indexed by `sec % 60`; a slot whose `sec` is older than a minute is stale.
    minute: Vec<Bucket>,
    pub day: i64,
    pub day_requests: u64,
    pub day_tokens: u64,
    /// In flight now; a restart ends them, so it is not persisted.
    #[serde(skip)]
    pub concurrent: u32,
    pub provider_requests: Option<ProviderWindow>,
    pub provider_tokens: Option<ProviderWindow>,
}

/// What one reservation added, so settling can correct exactly that.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    sec: i64,
    day: i64,
    tokens: u64,
}

/// Why a key cannot take a request now, and when it can again (if that is known).
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub reason: String,
    pub free_at_ms: Option<i64>,
}

/// Used and limit of one window, for the status table.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct WindowUse {
    pub used: u64,
    pub limit: Option<u64>,
    pub resets_at_ms: Option<i64>,
}

impl Counters {
    fn slot(&mut self, sec: i64) -> &mut Bucket {
        if self.minute.len() != SLOTS {
            self.minute = vec![Bucket::default(); SLOTS];
        }
        let b = &mut self.minute[sec.rem_euclid(SLOTS as i64) as usize];
        if b.sec != sec {
            *b = Bucket { sec, requests: 0, tokens: 0 };
        }
        b
    }

    fn live(&self, now_ms: i64) -> impl Iterator<Item = &Bucket> {
        let now_sec = now_ms.div_euclid(1000);
        self.minute.iter().filter(move |b| b.sec > now_sec - SLOTS as i64 && b.sec <= now_sec)
    }

    /// Requests and tokens in the last minute.
    pub fn minute_use(&self, now_ms: i64) -> (u64, u64) {
        self.live(now_ms).fold((0, 0), |(r, t), b| (r + b.requests as u64, t + b.tokens))
    }

    /// When the oldest bucket matching `pred` leaves the rolling minute.
    fn minute_frees_at(&self, now_ms: i64, pred: impl Fn(&Bucket) -> bool) -> Option<i64> {
        self.live(now_ms).filter(|b| pred(b)).map(|b| (b.sec + SLOTS as i64) * 1000).min()
    }

    /// Starts a new daily window when `day` moved on.
    pub fn roll(&mut self, day: i64) {
        if day != self.day {
            self.day = day;
            self.day_requests = 0;
            self.day_tokens = 0;
        }
    }

    /// Whether one more request of `est` tokens fits every window. `next_day_ms` is when the
    /// current daily window ends.
    pub fn check(&mut self, limits: &Limits, est: u64, now_ms: i64, day: i64, next_day_ms: i64) -> Result<(), Block> {
        self.roll(day);
        let block = |reason: String, free_at_ms: Option<i64>| Err(Block { reason, free_at_ms });
        if let Some(c) = limits.concurrent.filter(|&c| self.concurrent >= c) {
            return block(format!("{c} concurrent requests in flight"), None);
        }
        let (m_req, m_tok) = self.minute_use(now_ms);
        if let Some(rpm) = limits.rpm.filter(|&l| m_req + 1 > l) {
            return block(format!("RPM {m_req}/{rpm}"), self.minute_frees_at(now_ms, |b| b.requests > 0));
        }
        if let Some(tpm) = limits.tpm {
            if est > tpm {
                return block(format!("request of ~{est} tokens exceeds TPM {tpm}"), None);
            }
            if m_tok + est > tpm {
                return block(format!("TPM {m_tok}+{est}/{tpm}"), self.minute_frees_at(now_ms, |b| b.tokens > 0));
            }
        }
        if let Some(rpd) = limits.rpd.filter(|&l| self.day_requests + 1 > l) {
            return block(format!("RPD {}/{rpd}", self.day_requests), Some(next_day_ms));
        }
        if let Some(tpd) = limits.tpd {
            if est > tpd {
                return block(format!("request of ~{est} tokens exceeds TPD {tpd}"), None);
            }
            if self.day_tokens + est > tpd {
                return block(format!("TPD {}+{est}/{tpd}", self.day_tokens), Some(next_day_ms));
            }
        }
        self.expire_provider_windows(now_ms);
        if let Some(w) = self.provider_requests.filter(|w| w.remaining == 0) {
            return block("provider reports 0 requests left".into(), Some(w.reset_at_ms));
        }
        if let Some(w) = self.provider_tokens.filter(|w| w.remaining < est) {
            return block(format!("provider reports {} tokens left", w.remaining), Some(w.reset_at_ms));
        }
        Ok(())
    }

    fn expire_provider_windows(&mut self, now_ms: i64) {
        for w in [&mut self.provider_requests, &mut self.provider_tokens] {
            if w.is_some_and(|x| x.reset_at_ms <= now_ms) {
                *w = None;
            }
        }
    }

    /// Counts one request of `est` tokens now.
    pub fn reserve(&mut self, est: u64, now_ms: i64, day: i64) -> Mark {
        self.roll(day);
        let sec = now_ms.div_euclid(1000);
        let b = self.slot(sec);
        b.requests += 1;
        b.tokens += est;
        self.day_requests += 1;
        self.day_tokens += est;
        self.concurrent += 1;
        if let Some(w) = &mut self.provider_requests {
            w.remaining = w.remaining.saturating_sub(1);
        }
        if let Some(w) = &mut self.provider_tokens {
            w.remaining = w.remaining.saturating_sub(est);
        }
        Mark { sec, day, tokens: est }
    }

    /// Replaces the reserved estimate with `tokens` (`keep_request = false` also uncounts the
    /// request, for an attempt that was never sent).
    pub fn settle(&mut self, mark: Mark, tokens: u64, keep_request: bool) {
        self.concurrent = self.concurrent.saturating_sub(1);
        let undo = u32::from(!keep_request);
        if let Some(b) = self.minute.get_mut(mark.sec.rem_euclid(SLOTS as i64) as usize).filter(|b| b.sec == mark.sec) {
            b.tokens = b.tokens.saturating_sub(mark.tokens) + tokens;
            b.requests = b.requests.saturating_sub(undo);
        }
        if self.day == mark.day {
            self.day_tokens = self.day_tokens.saturating_sub(mark.tokens) + tokens;
            self.day_requests = self.day_requests.saturating_sub(undo as u64);
        }
    }

    /// Takes what the provider's headers say as the truth about its windows.
    pub fn observe(&mut self, windows: &[HeaderWindow], now_ms: i64) {
        for kind in [WindowKind::Requests, WindowKind::Tokens] {
            // Several windows of one kind (per minute, per day): the tightest one binds.
            let tightest = windows
                .iter()
                .filter(|w| w.kind == kind)
                .filter_map(|w| Some((w.remaining?, w)))
                .min_by_key(|(r, _)| *r);
            let Some((remaining, w)) = tightest else {
                continue;
            };
            let reset_at_ms = now_ms + w.reset_in.map(|d| d.as_millis() as i64).unwrap_or(60_000);
            let pw = Some(ProviderWindow { limit: w.limit, remaining, reset_at_ms });
            match kind {
                WindowKind::Requests => self.provider_requests = pw,
                WindowKind::Tokens => self.provider_tokens = pw,
            }
        }
    }

    /// Marks the daily window spent (the provider said so) until it resets.
    pub fn exhaust_day(&mut self, limits: &Limits) {
        if let Some(rpd) = limits.rpd {
            self.day_requests = self.day_requests.max(rpd);
        }
        if let Some(tpd) = limits.tpd {
            self.day_tokens = self.day_tokens.max(tpd);
        }
    }

    /// The smallest fraction left over the limited windows (1.0 when nothing is limited).
    pub fn fraction_left(&self, limits: &Limits, now_ms: i64, day: i64) -> f64 {
        let (m_req, m_tok) = self.minute_use(now_ms);
        let (d_req, d_tok) = if self.day == day { (self.day_requests, self.day_tokens) } else { (0, 0) };
        let mut pairs = vec![(m_req, limits.rpm), (m_tok, limits.tpm), (d_req, limits.rpd), (d_tok, limits.tpd)];
        for w in [self.provider_requests, self.provider_tokens].into_iter().flatten() {
            if w.reset_at_ms > now_ms {
                if let Some(l) = w.limit {
                    pairs.push((l.saturating_sub(w.remaining), Some(l)));
                }
            }
        }
        pairs
            .into_iter()
            .filter_map(|(used, limit)| limit.map(|l| if l == 0 { 0.0 } else { 1.0 - used.min(l) as f64 / l as f64 }))
            .fold(1.0, f64::min)
    }

    /// Use per window for the status table: rpm, tpm, rpd, tpd.
    pub fn usage(&self, limits: &Limits, now_ms: i64, day: i64, next_day_ms: i64) -> [WindowUse; 4] {
        let (m_req, m_tok) = self.minute_use(now_ms);
        let (d_req, d_tok) = if self.day == day { (self.day_requests, self.day_tokens) } else { (0, 0) };
        let minute_reset = self.minute_frees_at(now_ms, |b| b.requests > 0 || b.tokens > 0);
        [
            WindowUse { used: m_req, limit: limits.rpm, resets_at_ms: minute_reset },
            WindowUse { used: m_tok, limit: limits.tpm, resets_at_ms: minute_reset },
            WindowUse { used: d_req, limit: limits.rpd, resets_at_ms: Some(next_day_ms) },
            WindowUse { used: d_tok, limit: limits.tpd, resets_at_ms: Some(next_day_ms) },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits(rpm: u64, tpm: u64, rpd: u64) -> Limits {
        Limits { rpm: Some(rpm), tpm: Some(tpm), rpd: Some(rpd), ..Limits::default() }
    }

    #[test]
    fn rolling_minute_frees_as_buckets_age() {
        let l = limits(2, 1000, 100);
        let mut c = Counters::default();
        let t0 = 1_000_000;
        c.check(&l, 10, t0, 0, i64::MAX).unwrap();
        let m1 = c.reserve(10, t0, 0);
        c.settle(m1, 10, true);
        c.reserve(10, t0 + 30_000, 0);
        let b = c.check(&l, 10, t0 + 31_000, 0, i64::MAX).unwrap_err();
        assert!(b.reason.contains("RPM 2/2"), "{b:?}");
        assert_eq!(b.free_at_ms, Some(t0 + 60_000));
        assert!(c.check(&l, 10, t0 + 60_000, 0, i64::MAX).is_ok());
    }

    #[test]
    fn settle_replaces_the_estimate_and_release_uncounts() {
        let l = limits(100, 1000, 100);
        let mut c = Counters::default();
        let m = c.reserve(900, 5_000, 0);
        assert!(c.check(&l, 200, 5_000, 0, i64::MAX).is_err());
        c.settle(m, 100, true);
        assert!(c.check(&l, 200, 5_000, 0, i64::MAX).is_ok());
        assert_eq!((c.day_requests, c.day_tokens, c.concurrent), (1, 100, 0));
        let m = c.reserve(50, 6_000, 0);
        c.settle(m, 0, false);
        assert_eq!((c.day_requests, c.day_tokens), (1, 100));
    }

    #[test]
    fn day_window_rolls_and_concurrency_blocks() {
        let l = Limits { rpd: Some(1), concurrent: Some(1), ..Limits::default() };
        let mut c = Counters::default();
        c.reserve(1, 0, 7);
        assert!(c.check(&l, 1, 0, 7, 99).unwrap_err().reason.contains("concurrent"));
        c.concurrent = 0;
        assert_eq!(c.check(&l, 1, 0, 7, 99).unwrap_err().free_at_ms, Some(99));
        assert!(c.check(&l, 1, 0, 8, 99).is_ok());
    }

    #[test]
    fn provider_headers_bind_until_their_reset() {
        let mut c = Counters::default();
        let w = HeaderWindow {
            kind: WindowKind::Requests,
            limit: Some(30),
            remaining: Some(1),
            reset_in: Some(Duration::from_secs(5)),
        };
        c.observe(&[w], 0);
        let none = Limits::default();
        assert!(c.check(&none, 1, 0, 0, i64::MAX).is_ok());
        c.reserve(1, 0, 0);
        assert_eq!(c.check(&none, 1, 1000, 0, i64::MAX).unwrap_err().free_at_ms, Some(5000));
        assert!(c.check(&none, 1, 5000, 0, i64::MAX).is_ok());
    }
}
