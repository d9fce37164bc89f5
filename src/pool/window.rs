//! Quota windows of one key (an account, or an account's model): a rolling minute in one-second
//! buckets, a calendar day in the provider's zone, concurrency, and what the provider's own
//! headers last said (remaining, reset, and the limit itself). All times are unix milliseconds
//! from the pool's clock.

use serde::{Deserialize, Serialize};

use crate::config::Limits;

use super::headers::{HeaderWindow, Span, WindowKind};

/// Seconds kept for the rolling minute. A request counts until its whole second has
/// left the minute: 61 buckets, so it is counted for at least 60 s after it was sent whatever
/// the fraction of the second it was sent at (a provider's rolling minute never sees more).
const SLOTS: usize = 61;

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
struct Bucket {
    sec: i64,
    requests: u32,
    tokens: u64,
}

/// Only buckets that count something are saved: a full ring is ~2 KB of JSON per key.
fn busy_buckets<S: serde::Serializer>(minute: &[Bucket], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(minute.iter().filter(|b| b.requests > 0 || b.tokens > 0))
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
    /// The seconds of the last `SLOTS` that counted something (see `slot`); one that has left
    /// the window is stale until the next `slot` drops it.
    #[serde(serialize_with = "busy_buckets")]
    minute: Vec<Bucket>,
    pub day: i64,
    pub day_requests: u64,
    pub day_tokens: u64,
    /// In flight now; a restart ends them, so it is not persisted.
    #[serde(skip)]
    pub concurrent: u32,
    pub provider_requests: Option<ProviderWindow>,
    pub provider_tokens: Option<ProviderWindow>,
    /// Limits the provider's headers reported; each replaces the configured one of its window.
    #[serde(default)]
    pub learned: Learned,
}

/// Limits read from a provider's rate-limit headers (`x-ratelimit-limit-*`,
/// `anthropic-ratelimit-*-limit`), per window.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Learned {
    pub rpm: Option<u64>,
    pub rpd: Option<u64>,
    pub tpm: Option<u64>,
    pub tpd: Option<u64>,
}

/// The tokens one request is admitted with: `reserve` is counted against the windows until the
/// real usage settles it (input estimate plus the output the request allows, or a default);
/// `hard` is what the provider itself counts when judging the request alone (input plus an
/// explicit `max_tokens`), so a request is refused outright only when that cannot fit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Est {
    pub hard: u64,
    pub reserve: u64,
}

impl Est {
    pub fn flat(tokens: u64) -> Est {
        Est { hard: tokens, reserve: tokens }
    }
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
    /// The bucket of second `sec`, made if new. Only seconds that count something in the last
    /// `SLOTS` are kept: a key used once holds one bucket, not a ring of 61 (the pool may track
    /// thousands of keys that traffic made).
    fn slot(&mut self, sec: i64) -> &mut Bucket {
        self.minute.retain(|b| b.sec > sec - SLOTS as i64 && (b.requests > 0 || b.tokens > 0));
        let i = match self.minute.iter().position(|b| b.sec == sec) {
            Some(i) => i,
            None => {
                self.minute.push(Bucket { sec, requests: 0, tokens: 0 });
                self.minute.len() - 1
            }
        };
        &mut self.minute[i]
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

    /// Input tokens one more request may carry in the minute window now, when it also reserves
    /// `out` (as `check` counts it: an empty window takes anything up to the limit less the
    /// explicit output; a busy one what is left less the reservation). `None`: no token limit
    /// binds this minute. The provider's own count, when its headers gave one, binds too.
    pub fn tpm_input_left(&mut self, configured: &Limits, out: Est, now_ms: i64) -> Option<u64> {
        let mut left = self.effective(configured).tpm.map(|tpm| {
            let (_, used) = self.minute_use(now_ms);
            if used == 0 {
                tpm.saturating_sub(out.hard)
            } else {
                tpm.saturating_sub(used + out.reserve)
            }
        });
        self.expire_provider_windows(now_ms);
        if let Some(w) = self.provider_tokens {
            let provider = w.remaining.saturating_sub(out.hard);
            left = Some(left.map_or(provider, |l| l.min(provider)));
        }
        left
    }

    /// Input tokens an empty minute window takes besides `out` (`None`: no token limit).
    pub fn tpm_input_full(&self, configured: &Limits, out: Est) -> Option<u64> {
        self.effective(configured).tpm.map(|tpm| tpm.saturating_sub(out.hard))
    }

    /// When the minute window will have let enough tokens go for a request of `input` tokens
    /// that reserves `out`: now when it fits already, `None` when it never will (over the limit)
    /// or no token limit applies.
    pub fn tpm_fits_at(&self, configured: &Limits, input: u64, out: Est, now_ms: i64) -> Option<i64> {
        let tpm = self.effective(configured).tpm?;
        if input + out.hard > tpm {
            return None;
        }
        // What the provider last said binds until its reset.
        let provider = self
            .provider_tokens
            .filter(|w| w.reset_at_ms > now_ms && w.remaining < input + out.hard)
            .map_or(now_ms, |w| w.reset_at_ms);
        let need = input + out.reserve;
        let mut live: Vec<&Bucket> = self.live(now_ms).filter(|b| b.tokens > 0).collect();
        live.sort_by_key(|b| b.sec);
        let mut used: u64 = live.iter().map(|b| b.tokens).sum();
        if used == 0 || used + need.min(tpm) <= tpm {
            return Some(provider);
        }
        for b in live {
            used -= b.tokens;
            if used == 0 || used + need.min(tpm) <= tpm {
                return Some(provider.max((b.sec + SLOTS as i64) * 1000));
            }
        }
        None
    }

    /// Starts a new daily window when `day` moved on.
    pub fn roll(&mut self, day: i64) {
        if day != self.day {
            self.day = day;
            self.day_requests = 0;
            self.day_tokens = 0;
        }
    }

    /// The limits in force: each configured window, replaced by what the provider's headers
    /// reported for it. A window the config does not limit stays unlimited.
    pub fn effective(&self, configured: &Limits) -> Limits {
        let l = &self.learned;
        Limits {
            rpm: configured.rpm.map(|c| l.rpm.unwrap_or(c)),
            rpd: configured.rpd.map(|c| l.rpd.unwrap_or(c)),
            tpm: configured.tpm.map(|c| l.tpm.unwrap_or(c)),
            tpd: configured.tpd.map(|c| l.tpd.unwrap_or(c)),
            concurrent: configured.concurrent,
        }
    }

    /// Whether one more request fits every window (`configured` corrected by what the provider
    /// reported). `next_day_ms` is when the current daily window ends.
    pub fn check(
        &mut self,
        configured: &Limits,
        est: Est,
        now_ms: i64,
        day: i64,
        next_day_ms: i64,
    ) -> Result<(), Block> {
        let limits = self.effective(configured);
        self.check_within(&limits, est, now_ms, day, next_day_ms)
    }

    /// Whether one more request fits `limits` as they are (already corrected by the headers; a
    /// share of them while the shared state is out of reach).
    pub fn check_within(
        &mut self,
        limits: &Limits,
        est: Est,
        now_ms: i64,
        day: i64,
        next_day_ms: i64,
    ) -> Result<(), Block> {
        self.roll(day);
        let block = |reason: String, free_at_ms: Option<i64>| Err(Block { reason, free_at_ms });
        if let Some(c) = limits.concurrent.filter(|&c| self.concurrent >= c) {
            return block(format!("{c} concurrent requests in flight"), None);
        }
        let (m_req, m_tok) = self.minute_use(now_ms);
        if let Some(rpm) = limits.rpm.filter(|&l| m_req + 1 > l) {
            return block(format!("RPM {m_req}/{rpm}"), self.minute_frees_at(now_ms, |b| b.requests > 0));
        }
        // A reservation larger than a whole window still fits an empty one: it is only an upper
        // bound, settled down to the real usage.
        let (hard, reserve) = (est.hard, est.reserve);
        if let Some(tpm) = limits.tpm {
            if hard > tpm {
                return block(format!("request of ~{hard} tokens exceeds TPM {tpm}"), None);
            }
            if m_tok + reserve.min(tpm) > tpm {
                return block(format!("TPM {m_tok}+{reserve}/{tpm}"), self.minute_frees_at(now_ms, |b| b.tokens > 0));
            }
        }
        if let Some(rpd) = limits.rpd.filter(|&l| self.day_requests + 1 > l) {
            return block(format!("RPD {}/{rpd}", self.day_requests), Some(next_day_ms));
        }
        if let Some(tpd) = limits.tpd {
            if hard > tpd {
                return block(format!("request of ~{hard} tokens exceeds TPD {tpd}"), None);
            }
            if self.day_tokens + reserve.min(tpd) > tpd {
                return block(format!("TPD {}+{reserve}/{tpd}", self.day_tokens), Some(next_day_ms));
            }
        }
        self.expire_provider_windows(now_ms);
        if let Some(w) = self.provider_requests.filter(|w| w.remaining == 0) {
            return block("provider reports 0 requests left".into(), Some(w.reset_at_ms));
        }
        if let Some(w) = self.provider_tokens.filter(|w| w.remaining < hard) {
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
        if let Some(b) = self.minute.iter_mut().find(|b| b.sec == mark.sec) {
            b.tokens = b.tokens.saturating_sub(mark.tokens) + tokens;
            b.requests = b.requests.saturating_sub(undo);
        }
        if self.day == mark.day {
            self.day_tokens = self.day_tokens.saturating_sub(mark.tokens) + tokens;
            self.day_requests = self.day_requests.saturating_sub(undo as u64);
        }
    }

    /// Takes what the provider's headers say as the truth about its windows: what is left
    /// until when, and each window's limit, which replaces the configured limit of that window
    /// (only windows the config limits; a window is told by the header's `-minute`/`-day`
    /// suffix, else by its reset: within a minute is the minute window).
    pub fn observe(&mut self, windows: &[HeaderWindow], configured: &Limits, now_ms: i64) {
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
        for w in windows {
            let Some(limit) = w.limit else { continue };
            let span = match w.span {
                Span::Minute | Span::Day => w.span,
                Span::Unknown => match w.reset_in {
                    Some(d) if d.as_secs() <= 60 => Span::Minute,
                    Some(_) => Span::Day,
                    None => continue,
                },
                Span::Other => continue,
            };
            let (slot, configured) = match (w.kind, span) {
                (WindowKind::Requests, Span::Minute) => (&mut self.learned.rpm, configured.rpm),
                (WindowKind::Requests, _) => (&mut self.learned.rpd, configured.rpd),
                (WindowKind::Tokens, Span::Minute) => (&mut self.learned.tpm, configured.tpm),
                (WindowKind::Tokens, _) => (&mut self.learned.tpd, configured.tpd),
            };
            if configured.is_some() {
                *slot = Some(limit);
            }
        }
    }

    /// The seconds of the rolling minute that counted something: (second, requests, tokens).
    pub fn live_buckets(&self, now_ms: i64) -> Vec<(i64, u32, u64)> {
        self.live(now_ms).filter(|b| b.requests > 0 || b.tokens > 0).map(|b| (b.sec, b.requests, b.tokens)).collect()
    }

    /// Marks the daily window spent (the provider said so) until it resets.
    pub fn exhaust_day(&mut self, configured: &Limits) {
        let limits = self.effective(configured);
        if let Some(rpd) = limits.rpd {
            self.day_requests = self.day_requests.max(rpd);
        }
        if let Some(tpd) = limits.tpd {
            self.day_tokens = self.day_tokens.max(tpd);
        }
    }

    /// The smallest fraction left over the limited windows (1.0 when nothing is limited).
    pub fn fraction_left(&self, configured: &Limits, now_ms: i64, day: i64) -> f64 {
        self.fraction_left_with(configured, 0, now_ms, day)
    }

    /// The smallest fraction left once one more request of `tokens` is counted.
    pub fn fraction_left_with(&self, configured: &Limits, tokens: u64, now_ms: i64, day: i64) -> f64 {
        let limits = self.effective(configured);
        let (m_req, m_tok) = self.minute_use(now_ms);
        let (d_req, d_tok) = if self.day == day { (self.day_requests, self.day_tokens) } else { (0, 0) };
        let extra = u64::from(tokens > 0);
        let (m_req, m_tok, d_req, d_tok) = (m_req + extra, m_tok + tokens, d_req + extra, d_tok + tokens);
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
    pub fn usage(&self, configured: &Limits, now_ms: i64, day: i64, next_day_ms: i64) -> [WindowUse; 4] {
        let limits = self.effective(configured);
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
        c.check(&l, Est::flat(10), t0, 0, i64::MAX).unwrap();
        let m1 = c.reserve(10, t0, 0);
        c.settle(m1, 10, true);
        c.reserve(10, t0 + 30_000, 0);
        let b = c.check(&l, Est::flat(10), t0 + 31_000, 0, i64::MAX).unwrap_err();
        assert!(b.reason.contains("RPM 2/2"), "{b:?}");
        // Counted until its whole second has left the minute.
        assert_eq!(b.free_at_ms, Some(t0 + 61_000));
        assert!(c.check(&l, Est::flat(10), t0 + 60_999, 0, i64::MAX).is_err());
        assert!(c.check(&l, Est::flat(10), t0 + 61_000, 0, i64::MAX).is_ok());
    }

    #[test]
    fn settle_replaces_the_estimate_and_release_uncounts() {
        let l = limits(100, 1000, 100);
        let mut c = Counters::default();
        let m = c.reserve(900, 5_000, 0);
        assert!(c.check(&l, Est::flat(200), 5_000, 0, i64::MAX).is_err());
        c.settle(m, 100, true);
        assert!(c.check(&l, Est::flat(200), 5_000, 0, i64::MAX).is_ok());
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
        assert!(c.check(&l, Est::flat(1), 0, 7, 99).unwrap_err().reason.contains("concurrent"));
        c.concurrent = 0;
        assert_eq!(c.check(&l, Est::flat(1), 0, 7, 99).unwrap_err().free_at_ms, Some(99));
        assert!(c.check(&l, Est::flat(1), 0, 8, 99).is_ok());
    }

    #[test]
    fn provider_headers_bind_until_their_reset() {
        let mut c = Counters::default();
        let w = HeaderWindow {
            kind: WindowKind::Requests,
            limit: Some(30),
            remaining: Some(1),
            reset_in: Some(Duration::from_secs(5)),
            span: Span::Unknown,
        };
        c.observe(&[w], &Limits::default(), 0);
        let none = Limits::default();
        assert!(c.check(&none, Est::flat(1), 0, 0, i64::MAX).is_ok());
        c.reserve(1, 0, 0);
        assert_eq!(c.check(&none, Est::flat(1), 1000, 0, i64::MAX).unwrap_err().free_at_ms, Some(5000));
        assert!(c.check(&none, Est::flat(1), 5000, 0, i64::MAX).is_ok());
    }

    fn header(kind: WindowKind, limit: u64, remaining: u64, reset_s: u64, span: Span) -> HeaderWindow {
        HeaderWindow {
            kind,
            limit: Some(limit),
            remaining: Some(remaining),
            reset_in: Some(Duration::from_secs(reset_s)),
            span,
        }
    }

    #[test]
    fn a_limit_from_headers_replaces_the_configured_one_of_its_window() {
        let configured = Limits { rpm: Some(30), rpd: Some(1000), tpm: Some(10_000), ..Limits::default() };
        let mut c = Counters::default();
        // Groq-style: requests are the day window (reset in minutes), tokens the minute window.
        let hs = [
            header(WindowKind::Requests, 500, 499, 170, Span::Unknown),
            header(WindowKind::Tokens, 6000, 5900, 7, Span::Unknown),
        ];
        c.observe(&hs, &configured, 0);
        let e = c.effective(&configured);
        assert_eq!((e.rpm, e.rpd, e.tpm, e.tpd), (Some(30), Some(500), Some(6000), None));
        // Tighter than configured: a request the config would admit is refused.
        c.reserve(5000, 0, 0);
        let b = c.check(&configured, Est::flat(1500), 1000, 0, i64::MAX).unwrap_err();
        assert!(b.reason.contains("TPM 5000+1500/6000"), "{b:?}");
        // Cerebras-style suffixes name the window; an unconfigured window is not invented.
        let mut c = Counters::default();
        let only_rpd = Limits { rpd: Some(100), ..Limits::default() };
        c.observe(&[header(WindowKind::Requests, 14_400, 14_000, 30, Span::Day)], &only_rpd, 0);
        c.observe(&[header(WindowKind::Tokens, 60_000, 1, 30, Span::Minute)], &only_rpd, 0);
        assert_eq!(c.effective(&only_rpd), Limits { rpd: Some(14_400), ..Limits::default() });
        // A window we do not track (a month) teaches nothing.
        c.observe(&[header(WindowKind::Tokens, 9, 9, 30, Span::Other)], &configured, 0);
        assert_eq!(c.learned.tpm, None);
    }

    #[test]
    fn an_output_allowance_is_reserved_but_only_an_explicit_one_refuses_outright() {
        let l = Limits { tpm: Some(1000), ..Limits::default() };
        let mut c = Counters::default();
        // Input 300 plus an allowance of 1024: larger than the window, yet an empty one takes it.
        assert!(c.check(&l, Est { hard: 300, reserve: 1324 }, 0, 0, i64::MAX).is_ok());
        let m = c.reserve(1324, 0, 0);
        // Until it settles, nothing else fits in this minute.
        assert!(c.check(&l, Est::flat(10), 0, 0, i64::MAX).is_err());
        c.settle(m, 400, true);
        assert!(c.check(&l, Est { hard: 100, reserve: 600 }, 0, 0, i64::MAX).is_ok());
        // Input plus an explicit max_tokens above the window is refused whatever the window holds.
        let b = Counters::default().check(&l, Est { hard: 1200, reserve: 1200 }, 0, 0, i64::MAX).unwrap_err();
        assert!(b.reason.contains("exceeds TPM 1000") && b.free_at_ms.is_none(), "{b:?}");
    }
}
