//! Admission: a `Plan` orders the candidates (route targets × usable accounts) by strategy and
//! health; `Plan::next` checks and reserves quota for one candidate under the pool's lock; the
//! `Attempt` it returns settles with the real usage on `report`, or releases on drop.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use serde::Serialize;

use crate::config::{Limits, Price, ProviderAuth, RateScope, Strategy};
use crate::dialect::Dialect;

use super::failure::Failure;
use super::headers::quota_headers;
use super::state::{CooldownKind, Health, KeyState};
use super::window::{Block, Est, Mark};
use super::{model_key, Inner, Pool, PoolError, Resolved, State, Target};

/// What admission needs to know about a request (after folding).
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestFacts {
    /// Estimated input tokens.
    pub est_tokens: u64,
    /// The output the request allows (`max_tokens` and its equivalents), if it says.
    pub max_output: Option<u64>,
    pub has_tools: bool,
    pub has_images: bool,
}

/// Output tokens reserved for a request that does not say how many it allows; the real usage
/// replaces the reservation when the answer ends.
pub const DEFAULT_OUTPUT_ALLOWANCE: u64 = 1024;

impl RequestFacts {
    /// What the request counts against token windows, with `input` tokens.
    fn est_with(&self, input: u64) -> Est {
        Est {
            hard: input + self.max_output.unwrap_or(0),
            reserve: input + self.max_output.unwrap_or(DEFAULT_OUTPUT_ALLOWANCE),
        }
    }
}

/// Token usage from the provider's response. `input_tokens` includes cached input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
}

impl Usage {
    fn counted(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }
}

#[derive(Debug, Clone)]
pub enum Outcome {
    /// The response was relayed; usage as reported by the provider, if it said.
    Success(Option<Usage>),
    Failed(Failure),
}

/// What the request path does after a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Done,
    /// Try the plan's next attempt (only possible before the first byte reached the client).
    TryNext,
    /// Return the provider's answer to the client as it is.
    ReturnToClient,
}

#[derive(Debug, Clone)]
struct Candidate {
    acct: usize,
    target: Resolved,
    context: Option<u64>,
}

/// The ordered candidates of one request. Quota is reserved only as each is tried.
pub struct Plan {
    inner: Arc<Inner>,
    label: String,
    cands: Vec<Candidate>,
    pos: usize,
    facts: RequestFacts,
    need_context: Arc<AtomicU64>,
    skipped: Vec<String>,
    earliest_free_ms: Option<i64>,
}

/// One try at one account of one target, holding its quota reservation.
pub struct Attempt {
    inner: Arc<Inner>,
    target: Target,
    acct: usize,
    model: String,
    send_model: Option<String>,
    context: Option<u64>,
    /// Input tokens the request was admitted with, and the tokens reserved for it.
    est: u64,
    reserved: u64,
    marks: Option<(Mark, Mark)>,
    /// Reserved before a reload took this pool's state over: reports go to the successor.
    carried: bool,
    probe: bool,
    started: tokio::time::Instant,
    first_byte: Option<Duration>,
    need_context: Arc<AtomicU64>,
}

impl Pool {
    /// Admission for a request of `ingress` dialect asking for `model`: the candidates that can
    /// take it, in the route's strategy order (healthy first). Errors when none can.
    pub fn plan(&self, ingress: Dialect, model: Option<&str>, facts: &RequestFacts) -> Result<Plan, PoolError> {
        let inner = &self.inner;
        let routing = inner.resolve(ingress, model)?;
        let mut cands = Vec::new();
        let mut reasons = Vec::new();
        let mut missing = None;
        for r in &routing.targets {
            let p = &inner.providers[r.provider];
            let spec = p.model_spec(&r.model);
            let name = format!("{}/{}", p.name, r.model);
            if let Some(s) = spec {
                if facts.has_tools && !s.tools {
                    reasons.push(format!("{name}: no tool use"));
                    continue;
                }
                if facts.has_images && !s.images {
                    reasons.push(format!("{name}: no images"));
                    continue;
                }
                if let Some(ctx) = s.context.filter(|&c| facts.est_tokens > c) {
                    reasons.push(format!("{name}: ~{} tokens exceed its {ctx}-token window", facts.est_tokens));
                    continue;
                }
            }
            let accts = inner.accounts_of(r.provider);
            if accts.is_empty() {
                missing = missing.or_else(|| inner.key_missing(r.provider));
                reasons.push(format!("{name}: no key"));
            }
            for acct in accts {
                cands.push(Candidate { acct, target: r.clone(), context: spec.and_then(|s| s.context) });
            }
        }
        if cands.is_empty() {
            let only_keys = reasons.iter().all(|r| r.ends_with(": no key"));
            return Err(match missing {
                Some(e) if only_keys => e,
                _ => PoolError::NoCapableTarget { model: routing.label, reasons: reasons.join("; ") },
            });
        }

        let now = inner.clock.now_ms();
        let mut st = inner.lock();
        if routing.strategy == Strategy::RoundRobin {
            let n = st.round_robin.entry(routing.label.clone()).or_insert(0);
            let k = *n % cands.len();
            *n = n.wrapping_add(1);
            cands.rotate_left(k);
        }
        let mut ranked = Vec::with_capacity(cands.len());
        let mut earliest: Option<i64> = None;
        for c in cands {
            let (rank, metric) = match inner.admit(&mut st, &c, facts.est_with(facts.est_tokens), now) {
                Ok((demoted, _)) => (u8::from(demoted), inner.metric(&mut st, &c, routing.strategy, now)),
                Err(b) => {
                    reasons.push(format!("{}: {}", inner.describe(&c), b.reason));
                    earliest = min_opt(earliest, b.free_at_ms);
                    (2, 0.0)
                }
            };
            ranked.push((rank, metric, c));
        }
        drop(st);
        // Stable: ties keep route (or rotated) order.
        ranked.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
        if ranked.iter().all(|(rank, _, _)| *rank == 2) {
            return Err(PoolError::Exhausted {
                model: routing.label,
                retry_after: earliest.map(|t| Duration::from_millis((t - now).max(0) as u64)),
                reasons: reasons.join("; "),
            });
        }
        Ok(Plan {
            inner: inner.clone(),
            label: routing.label,
            cands: ranked.into_iter().map(|(_, _, c)| c).collect(),
            pos: 0,
            facts: *facts,
            need_context: Arc::new(AtomicU64::new(0)),
            skipped: reasons,
            earliest_free_ms: earliest,
        })
    }
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

impl Inner {
    fn describe(&self, c: &Candidate) -> String {
        let a = &self.accounts[c.acct];
        let p = &self.providers[a.provider];
        format!("{}[{}]/{}", p.name, p.accounts[a.account].label, c.target.model)
    }

    fn limits(&self, c: &Candidate) -> (Limits, Limits) {
        let a = &self.accounts[c.acct];
        let p = &self.providers[a.provider];
        let model = p.model_spec(&c.target.model).map(|s| s.limits).unwrap_or_default();
        (p.accounts[a.account].limits, model)
    }

    /// Whether the candidate can take `est` tokens now: `(demoted, probe)` or why not.
    fn admit(&self, st: &mut State, c: &Candidate, est: Est, now: i64) -> Result<(bool, bool), Block> {
        let a = &self.accounts[c.acct];
        let zone = self.providers[a.provider].day_zone;
        let (day, next_day) = (zone.day_index(now), zone.next_reset_ms(now));
        let (acct_limits, model_limits) = self.limits(c);
        let health = |k: &KeyState| match k.health(now) {
            Health::Ready { demoted, probe } => Ok((demoted, probe)),
            Health::Blocked { reason, free_at_ms } => Err(Block { reason, free_at_ms }),
        };
        let (d1, probe) = health(&st.accounts[c.acct])?;
        st.accounts[c.acct].counters.check(&acct_limits, est, now, day, next_day)?;
        let m = st.model(c.acct, &a.key, &c.target.model);
        let (d2, _) = health(m)?;
        m.counters.check(&model_limits, est, now, day, next_day)?;
        Ok((d1 || d2, probe))
    }

    /// Sort key for the strategy (ascending = preferred).
    fn metric(&self, st: &mut State, c: &Candidate, strategy: Strategy, now: i64) -> f64 {
        let a = &self.accounts[c.acct];
        let day = self.providers[a.provider].day_zone.day_index(now);
        let (acct_limits, model_limits) = self.limits(c);
        match strategy {
            Strategy::Fallback | Strategy::RoundRobin => 0.0,
            Strategy::MostRemaining => {
                let fa = st.accounts[c.acct].counters.fraction_left(&acct_limits, now, day);
                let fm = st.model(c.acct, &a.key, &c.target.model).counters.fraction_left(&model_limits, now, day);
                -fa.min(fm)
            }
            // Unknown latency sorts first so every target gets measured.
            Strategy::Fastest => st.model(c.acct, &a.key, &c.target.model).ewma_ms.unwrap_or(0.0),
        }
    }
}

impl Plan {
    /// The next candidate that can take the request now, with its quota reserved.
    pub fn next_attempt(&mut self) -> Option<Attempt> {
        let inner = self.inner.clone();
        while self.pos < self.cands.len() {
            let c = self.cands[self.pos].clone();
            self.pos += 1;
            let need = self.need_context.load(Ordering::Relaxed);
            if need > 0 && c.context.is_some_and(|ctx| ctx < need) {
                self.skipped.push(format!("{}: window smaller than the prompt", inner.describe(&c)));
                continue;
            }
            let est = self.facts.est_tokens.max(need);
            let tokens = self.facts.est_with(est);
            let now = inner.clock.now_ms();
            let mut st = inner.lock();
            let probe = match inner.admit(&mut st, &c, tokens, now) {
                Ok((_, probe)) => probe,
                Err(b) => {
                    self.skipped.push(format!("{}: {}", inner.describe(&c), b.reason));
                    self.earliest_free_ms = min_opt(self.earliest_free_ms, b.free_at_ms);
                    continue;
                }
            };
            let a = &inner.accounts[c.acct];
            let day = inner.providers[a.provider].day_zone.day_index(now);
            let acct = &mut st.accounts[c.acct];
            acct.probing |= probe;
            let am = acct.counters.reserve(tokens.reserve, now, day);
            inner.persist(&a.key, acct);
            let m = st.model(c.acct, &a.key, &c.target.model);
            let mm = m.counters.reserve(tokens.reserve, now, day);
            inner.persist(&model_key(&a.key, &c.target.model), m);
            // Under the lock, like a reload's snapshot: either it saw this reservation or not.
            let carried = !inner.retired.load(Ordering::Relaxed);
            drop(st);
            return Some(Attempt {
                target: Target { dialect: a.view.dialect, provider: a.view.clone() },
                inner,
                acct: c.acct,
                model: c.target.model.clone(),
                send_model: c.target.send_model.clone(),
                context: c.context,
                est,
                reserved: tokens.reserve,
                marks: Some((am, mm)),
                carried,
                probe,
                started: tokio::time::Instant::now(),
                first_byte: None,
                need_context: self.need_context.clone(),
            });
        }
        None
    }

    /// The route or model name this plan serves.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// How many candidates the plan holds (tried or not).
    pub fn len(&self) -> usize {
        self.cands.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cands.is_empty()
    }

    /// Why candidates were passed over, for logs.
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }

    /// The error for the client once `next_attempt` returned `None` without any answer to relay.
    pub fn exhausted(&self) -> PoolError {
        let now = self.inner.clock.now_ms();
        PoolError::Exhausted {
            model: self.label.clone(),
            retry_after: self.earliest_free_ms.map(|t| Duration::from_millis((t - now).max(0) as u64)),
            reasons: self.skipped.join("; "),
        }
    }
}

impl Iterator for Plan {
    type Item = Attempt;
    fn next(&mut self) -> Option<Attempt> {
        self.next_attempt()
    }
}

impl Attempt {
    /// Where to send: the provider (with this account's credentials) and its dialect.
    pub fn target(&self) -> &Target {
        &self.target
    }

    pub fn provider(&self) -> &str {
        &self.target.provider.name
    }

    pub fn account(&self) -> &str {
        let a = &self.inner.accounts[self.acct];
        &self.inner.providers[a.provider].accounts[a.account].label
    }

    /// The model the quota is counted under.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The model name to write into the request body, when it differs from what the client sent.
    pub fn send_model(&self) -> Option<&str> {
        self.send_model.as_deref()
    }

    pub fn dialect(&self) -> Dialect {
        self.target.dialect
    }

    /// Prices of the target model, when the config gives them.
    pub fn price(&self) -> Option<Price> {
        self.target.provider.model_spec(&self.model).map(|s| s.price)
    }

    /// Records time to first byte now (feeds the `fastest` strategy).
    pub fn mark_first_byte(&mut self) {
        self.first_byte.get_or_insert(self.started.elapsed());
    }

    /// Corrects quota state from the provider's rate-limit headers (any response, any status):
    /// the model's counters, and the account's too when the provider counts per account
    /// (`rate_limit_scope = "account"`: OpenRouter's key limits, Anthropic's organization
    /// limits). A limit the headers give replaces the configured one of that window.
    pub fn observe_headers(&self, headers: &HeaderMap) {
        let now = self.inner.clock.now_ms();
        let windows = quota_headers(headers, now);
        if windows.is_empty() {
            return;
        }
        let inner = self.home();
        let (inner, acct) = (&inner.0, inner.1);
        let a = &inner.accounts[acct];
        let p = &inner.providers[a.provider];
        let account_limits = p.accounts[a.account].limits;
        let model_limits = p.model_spec(&self.model).map(|s| s.limits).unwrap_or_default();
        let mut st = inner.lock();
        if p.rate_scope == RateScope::Account {
            let k = &mut st.accounts[acct];
            k.counters.observe(&windows, &account_limits, now);
            inner.persist(&a.key, k);
        }
        let m = st.model(acct, &a.key, &self.model);
        m.counters.observe(&windows, &model_limits, now);
        inner.persist(&model_key(&a.key, &self.model), m);
    }

    /// The pool and account this attempt's state lives in now: after a reload, the successor
    /// that took over the reservation (the same provider, base URL and account label).
    fn home(&self) -> (Arc<Inner>, usize) {
        let mut inner = self.inner.clone();
        let mut acct = self.acct;
        if !self.carried {
            return (inner, acct);
        }
        while let Some(next) = inner.successor() {
            let key = &inner.accounts[acct].key;
            match next.accounts.iter().position(|a| &a.key == key) {
                Some(i) => {
                    acct = i;
                    inner = next;
                }
                None => break,
            }
        }
        (inner, acct)
    }

    /// Whether a reload has taken this attempt's reservation over from the pool it points at.
    fn moved_on(&self) -> bool {
        let key = &self.inner.accounts[self.acct].key;
        self.carried && self.inner.successor().is_some_and(|n| n.accounts.iter().any(|a| &a.key == key))
    }

    /// Moves the attempt to where its reservation lives now (see `home`).
    fn rehome(&mut self) {
        let (inner, acct) = self.home();
        if !Arc::ptr_eq(&inner, &self.inner) {
            self.inner = inner;
            self.acct = acct;
            // The successor started with no probe in flight; this one is not its probe.
            self.probe = false;
        }
    }

    /// Settles the reservation and updates health from how the attempt went.
    pub fn report(mut self, outcome: Outcome) -> Verdict {
        if self.marks.is_none() {
            return Verdict::Done;
        }
        self.rehome();
        let inner = self.inner.clone();
        let mut st = inner.lock();
        // A reload sets the successor under this lock: seeing none while holding it means no
        // reload takes the state over before this report is written.
        if self.moved_on() {
            drop(st);
            return self.report(outcome);
        }
        let Some((am, mm)) = self.marks.take() else {
            return Verdict::Done;
        };
        let now = inner.clock.now_ms();
        let a = &inner.accounts[self.acct];
        let p = &inner.providers[a.provider];
        let label = &p.accounts[a.account].label;
        let mkey = model_key(&a.key, &self.model);
        let latency = self.first_byte.unwrap_or_else(|| self.started.elapsed());
        let (tokens, failure) = match outcome {
            Outcome::Success(usage) => (usage.map(|u| u.counted()).unwrap_or(self.reserved), None),
            // The provider saw the request; it billed no tokens.
            Outcome::Failed(f) => (0, Some(f)),
        };
        st.accounts[self.acct].counters.settle(am, tokens, true);
        st.model(self.acct, &a.key, &self.model).counters.settle(mm, tokens, true);
        let verdict = match failure {
            None => {
                st.accounts[self.acct].succeeded(None);
                st.model(self.acct, &a.key, &self.model).succeeded(Some(latency));
                Verdict::Done
            }
            Some(f) => {
                let msg = f.to_string();
                st.accounts[self.acct].note_error(msg.clone(), now);
                st.model(self.acct, &a.key, &self.model).note_error(msg.clone(), now);
                let who = format!("provider `{}` account `{label}` model `{}`", p.name, self.model);
                let scoped = match p.rate_scope {
                    RateScope::Account => &mut st.accounts[self.acct],
                    RateScope::Model => st.model(self.acct, &a.key, &self.model),
                };
                match f {
                    Failure::RateLimited { retry_after, .. } => {
                        scoped.rate_limited(retry_after, &inner.settings, now, msg);
                        tracing::info!("{who}: {}", scoped.cooldown.as_ref().map(|c| c.reason.as_str()).unwrap_or(""));
                        Verdict::TryNext
                    }
                    Failure::QuotaExhausted { retry_after, .. } => {
                        let reset = p.day_zone.next_reset_ms(now);
                        let hint = retry_after.map(|d| now + d.as_millis() as i64).unwrap_or(reset);
                        // Providers' short retry hints on a daily quota would re-hammer it.
                        scoped.cool(CooldownKind::QuotaExhausted, hint.max(reset), msg);
                        let (al, ml) = inner.limits(&Candidate {
                            acct: self.acct,
                            target: Resolved { provider: a.provider, send_model: None, model: self.model.clone() },
                            context: None,
                        });
                        scoped.counters.exhaust_day(if p.rate_scope == RateScope::Model { &ml } else { &al });
                        tracing::warn!("{who}: daily quota spent; out until {} ({})", reset, p.day_zone.name());
                        Verdict::TryNext
                    }
                    Failure::Unavailable { .. } => {
                        if st.accounts[self.acct].unavailable(&inner.settings, now, msg) {
                            tracing::warn!("{who}: circuit breaker open after repeated failures");
                        }
                        Verdict::TryNext
                    }
                    // With the caller's own credentials the refusal is about that caller's key:
                    // it goes back to them, and other callers are not affected.
                    Failure::AuthRejected { .. } if matches!(self.target.provider.auth, ProviderAuth::Client) => {
                        Verdict::ReturnToClient
                    }
                    Failure::AuthRejected { status, .. } => {
                        tracing::error!(
                            "provider `{}` account `{label}`: key refused (HTTP {status}); the account is off until the config is reloaded",
                            p.name
                        );
                        st.accounts[self.acct].disabled = Some(format!("key refused (HTTP {status})"));
                        Verdict::TryNext
                    }
                    Failure::ContextTooLong { .. } => {
                        let need = self.context.map(|c| c + 1).unwrap_or(self.est + 1).max(self.est + 1);
                        self.need_context.fetch_max(need, Ordering::Relaxed);
                        Verdict::TryNext
                    }
                    Failure::BadRequest { .. } => Verdict::ReturnToClient,
                }
            }
        };
        if self.probe {
            st.accounts[self.acct].probing = false;
        }
        inner.persist(&a.key, &st.accounts[self.acct]);
        let m = st.model(self.acct, &a.key, &self.model).clone();
        inner.persist(&mkey, &m);
        verdict
    }
}

impl Drop for Attempt {
    /// Never reported (cancelled, never sent): the reservation is released as if not made.
    fn drop(&mut self) {
        if self.marks.is_none() {
            return;
        }
        loop {
            self.rehome();
            let inner = self.inner.clone();
            let mut st = inner.lock();
            if self.moved_on() {
                continue;
            }
            let Some((am, mm)) = self.marks.take() else {
                return;
            };
            let a = &inner.accounts[self.acct];
            let acct = &mut st.accounts[self.acct];
            acct.counters.settle(am, 0, false);
            if self.probe {
                acct.probing = false;
            }
            inner.persist(&a.key, acct);
            let m = st.model(self.acct, &a.key, &self.model);
            m.counters.settle(mm, 0, false);
            inner.persist(&model_key(&a.key, &self.model), m);
            return;
        }
    }
}
