//! Admission: a `Plan` orders the candidates (route targets × usable accounts) by strategy and
//! health; `Plan::next` checks and reserves quota for one candidate under the pool's lock; the
//! `Attempt` it returns settles with the real usage on `report`, or releases on drop.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;

use crate::config::{Limits, ProviderAuth, RateScope, Strategy};
use crate::dialect::usage::Usage;
use crate::dialect::Dialect;
use crate::price::Price;

use super::caller::Caller;
use super::failure::Failure;
use super::headers::quota_headers;
use super::slots::{Lane, Slot, State};
use super::state::{CooldownKind, Health, KeyState};
use super::window::{Block, Est, Mark};
use super::{Inner, Pool, PoolError, Resolved, Target};

/// What admission needs to know about a request (after folding).
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestFacts {
    /// Estimated input tokens.
    pub est_tokens: u64,
    /// The output the request allows (`max_tokens` and its equivalents), if it says.
    pub max_output: Option<u64>,
    pub has_tools: bool,
    pub has_images: bool,
    /// Who sent it, for accounts that forward the caller's own key (their state is per caller).
    pub caller: Option<Caller>,
    /// The request is fitted to each target's budget before it is sent: its size alone rules
    /// no target out when the plan is made (each attempt checks its fitted size).
    pub fitted: bool,
}

/// Output tokens reserved for a request that does not say how many it allows; the real usage
/// replaces the reservation when the answer ends.
pub const DEFAULT_OUTPUT_ALLOWANCE: u64 = 1024;

impl RequestFacts {
    /// What the request counts against token windows, with `input` tokens.
    pub(super) fn est_with(&self, input: u64) -> Est {
        Est {
            hard: input + self.max_output.unwrap_or(0),
            reserve: input + self.max_output.unwrap_or(DEFAULT_OUTPUT_ALLOWANCE),
        }
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
pub(super) struct Candidate {
    pub acct: usize,
    pub target: Resolved,
    pub context: Option<u64>,
    /// Where the state of the account (or the caller's lane on it) and of the model live.
    pub acct_slot: Slot,
    pub model_slot: Slot,
    /// Healthy (0), demoted after a recent failure (1), or blocked when the plan was made (2).
    pub rank: u8,
}

/// The ordered candidates of one request. Quota is reserved only as each is tried.
pub struct Plan {
    pub(super) inner: Arc<Inner>,
    label: String,
    pub(super) strategy: Strategy,
    /// How long a request may wait for a TPM window (the route's `max_wait_ms`).
    pub(super) max_wait_ms: u64,
    pub(super) cands: Vec<Candidate>,
    pub(super) pos: usize,
    pub(super) facts: RequestFacts,
    need_context: Arc<AtomicU64>,
    pub(super) skipped: Vec<String>,
    earliest_free_ms: Option<i64>,
}

/// One try at one account of one target, holding its quota reservation.
pub struct Attempt {
    inner: Arc<Inner>,
    target: Target,
    acct: usize,
    caller: Option<Caller>,
    acct_slot: Slot,
    model_slot: Slot,
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
                if let Some(ctx) = s.context.filter(|&c| !facts.fitted && facts.est_tokens > c) {
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
                let lane = inner.lane(acct, facts.caller);
                cands.push(Candidate {
                    acct,
                    target: r.clone(),
                    context: spec.and_then(|s| s.context),
                    acct_slot: inner.account_slot(lane),
                    model_slot: inner.model_slot(lane, &r.model),
                    rank: 0,
                });
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
        let forgotten = st.tidy(&inner.settings, now);
        if !forgotten.is_empty() {
            inner.forget(forgotten);
        }
        if routing.strategy == Strategy::RoundRobin {
            let n = st.round_robin.entry(routing.label.clone()).or_insert(0);
            let k = *n % cands.len();
            *n = n.wrapping_add(1);
            cands.rotate_left(k);
        }
        let mut ranked = Vec::with_capacity(cands.len());
        let mut earliest: Option<i64> = None;
        for c in cands {
            // A request fitted per attempt is ranked by what it cannot shrink: its output.
            let input = if facts.fitted { 0 } else { facts.est_tokens };
            let (rank, metric) = match inner.admit(&mut st, &c, facts.est_with(input), now) {
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
            strategy: routing.strategy,
            max_wait_ms: routing.max_wait_ms,
            cands: ranked.into_iter().map(|(rank, _, c)| Candidate { rank, ..c }).collect(),
            pos: 0,
            facts: *facts,
            need_context: Arc::new(AtomicU64::new(0)),
            skipped: reasons,
            earliest_free_ms: earliest,
        })
    }
}

pub(super) fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

impl Inner {
    pub(super) fn describe(&self, c: &Candidate) -> String {
        let a = &self.accounts[c.acct];
        let p = &self.providers[a.provider];
        format!("{}[{}]/{}", p.name, p.accounts[a.account].label, c.target.model)
    }

    /// The configured limits of account `acct` (for each caller, on one that forwards callers'
    /// keys) and of its `model`.
    pub(super) fn limits(&self, acct: usize, model: &str) -> (Limits, Limits) {
        let a = &self.accounts[acct];
        let p = &self.providers[a.provider];
        let model = p.model_spec(model).map(|s| s.limits).unwrap_or_default();
        (p.accounts[a.account].limits, model)
    }

    /// Whether the candidate can take `est` tokens now: `(demoted, probe)` or why not.
    fn admit(&self, st: &mut State, c: &Candidate, est: Est, now: i64) -> Result<(bool, bool), Block> {
        let a = &self.accounts[c.acct];
        let zone = self.providers[a.provider].day_zone;
        let (day, next_day) = (zone.day_index(now), zone.next_reset_ms(now));
        let (acct_limits, model_limits) = self.limits(c.acct, &c.target.model);
        let health = |k: &KeyState| match k.health(now) {
            Health::Ready { demoted, probe } => Ok((demoted, probe)),
            Health::Blocked { reason, free_at_ms } => Err(Block { reason, free_at_ms }),
        };
        let k = st.get(&c.acct_slot, now);
        let (d1, probe) = health(k)?;
        k.counters.check(&acct_limits, est, now, day, next_day)?;
        let m = st.get(&c.model_slot, now);
        let (d2, _) = health(m)?;
        m.counters.check(&model_limits, est, now, day, next_day)?;
        Ok((d1 || d2, probe))
    }

    /// Sort key for the strategy (ascending = preferred).
    fn metric(&self, st: &mut State, c: &Candidate, strategy: Strategy, now: i64) -> f64 {
        let a = &self.accounts[c.acct];
        let day = self.providers[a.provider].day_zone.day_index(now);
        let (acct_limits, model_limits) = self.limits(c.acct, &c.target.model);
        match strategy {
            Strategy::Fallback | Strategy::RoundRobin => 0.0,
            Strategy::MostRemaining => {
                let fa = st.get(&c.acct_slot, now).counters.fraction_left(&acct_limits, now, day);
                let fm = st.get(&c.model_slot, now).counters.fraction_left(&model_limits, now, day);
                -fa.min(fm)
            }
            // Unknown latency sorts first so every target gets measured.
            Strategy::Fastest => st.get(&c.model_slot, now).ewma_ms.unwrap_or(0.0),
            // Ordered once each candidate's fitted size is known (`Plan::rank_fitted`).
            Strategy::Fit => 0.0,
        }
    }
}

impl Plan {
    /// The next candidate that can take the request now, with its quota reserved for the
    /// request's own estimate (no fitting).
    pub fn next_attempt(&mut self) -> Option<Attempt> {
        while let Some(c) = self.next_candidate() {
            let est = self.facts.est_tokens.max(self.need_context.load(Ordering::Relaxed));
            if let Some(a) = self.reserve(c, est) {
                return Some(a);
            }
        }
        None
    }

    /// The next candidate not ruled out by a window a provider found too small.
    pub(super) fn next_candidate(&mut self) -> Option<Candidate> {
        while self.pos < self.cands.len() {
            let c = self.cands[self.pos].clone();
            self.pos += 1;
            let need = self.need_context.load(Ordering::Relaxed);
            if need > 0 && c.context.is_some_and(|ctx| ctx < need) {
                self.skipped.push(format!("{}: window smaller than the prompt", self.inner.describe(&c)));
                continue;
            }
            return Some(c);
        }
        None
    }

    /// Checks and reserves `c` for a request of `input` tokens (and the output it allows);
    /// `None`, with the reason noted, when the candidate cannot take it now.
    pub(super) fn reserve(&mut self, c: Candidate, input: u64) -> Option<Attempt> {
        let inner = self.inner.clone();
        let tokens = self.facts.est_with(input);
        let now = inner.clock.now_ms();
        let mut st = inner.lock();
        let probe = match inner.admit(&mut st, &c, tokens, now) {
            Ok((_, probe)) => probe,
            Err(b) => {
                self.skipped.push(format!("{}: {}", inner.describe(&c), b.reason));
                self.earliest_free_ms = min_opt(self.earliest_free_ms, b.free_at_ms);
                return None;
            }
        };
        let a = &inner.accounts[c.acct];
        let day = inner.providers[a.provider].day_zone.day_index(now);
        let acct = st.get(&c.acct_slot, now);
        acct.probing |= probe;
        let am = acct.counters.reserve(tokens.reserve, now, day);
        inner.persist(&c.acct_slot, acct);
        let m = st.get(&c.model_slot, now);
        let mm = m.counters.reserve(tokens.reserve, now, day);
        inner.persist(&c.model_slot, m);
        // Under the lock, like a reload's snapshot: either it saw this reservation or not.
        let carried = !inner.retired.load(Ordering::Relaxed);
        drop(st);
        Some(Attempt {
            target: Target { dialect: a.view.dialect, provider: a.view.clone() },
            inner,
            acct: c.acct,
            caller: self.facts.caller,
            acct_slot: c.acct_slot,
            model_slot: c.model_slot,
            model: c.target.model.clone(),
            send_model: c.target.send_model.clone(),
            context: c.context,
            est: input,
            reserved: tokens.reserve,
            marks: Some((am, mm)),
            carried,
            probe,
            started: tokio::time::Instant::now(),
            first_byte: None,
            need_context: self.need_context.clone(),
        })
    }

    /// A passed-over target frees at `at_ms` (for the retry time of the plan's error).
    pub(super) fn note_free_at(&mut self, at_ms: i64) {
        self.earliest_free_ms = min_opt(self.earliest_free_ms, Some(at_ms));
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
        let (inner, acct) = self.home();
        let (acct_slot, model_slot) = slots_of(&inner, acct, self.caller, &self.model);
        let (account_limits, model_limits) = inner.limits(acct, &self.model);
        let scope = inner.providers[inner.accounts[acct].provider].rate_scope;
        let mut st = inner.lock();
        if scope == RateScope::Account {
            let k = st.get(&acct_slot, now);
            k.counters.observe(&windows, &account_limits, now);
            inner.persist(&acct_slot, k);
        }
        let m = st.get(&model_slot, now);
        m.counters.observe(&windows, &model_limits, now);
        inner.persist(&model_slot, m);
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
            (self.acct_slot, self.model_slot) = slots_of(&inner, acct, self.caller, &self.model);
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
        let (acct_slot, model_slot) = (&self.acct_slot, &self.model_slot);
        let latency = self.first_byte.unwrap_or_else(|| self.started.elapsed());
        let (tokens, failure) = match outcome {
            Outcome::Success(usage) => (usage.map(|u| u.total_input() + u.output).unwrap_or(self.reserved), None),
            // The provider saw the request; it billed no tokens.
            Outcome::Failed(f) => (0, Some(f)),
        };
        st.get(acct_slot, now).counters.settle(am, tokens, true);
        st.get(model_slot, now).counters.settle(mm, tokens, true);
        let verdict = match failure {
            None => {
                st.get(acct_slot, now).succeeded(None);
                st.get(model_slot, now).succeeded(Some(latency));
                Verdict::Done
            }
            Some(f) => {
                let msg = f.to_string();
                st.get(acct_slot, now).note_error(msg.clone(), now);
                st.get(model_slot, now).note_error(msg.clone(), now);
                let who = format!("provider `{}` account `{label}` model `{}`", p.name, self.model);
                let scoped = st.get(if p.rate_scope == RateScope::Account { acct_slot } else { model_slot }, now);
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
                        let (al, ml) = inner.limits(self.acct, &self.model);
                        scoped.counters.exhaust_day(if p.rate_scope == RateScope::Model { &ml } else { &al });
                        tracing::warn!("{who}: daily quota spent; out until {} ({})", reset, p.day_zone.name());
                        Verdict::TryNext
                    }
                    Failure::Unavailable { .. } => {
                        if st.get(acct_slot, now).unavailable(&inner.settings, now, msg) {
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
                        st.get(acct_slot, now).disabled = Some(format!("key refused (HTTP {status})"));
                        Verdict::TryNext
                    }
                    // Caused by the request itself, whoever sent it: no mark against the target's
                    // health. Only a larger window can help a prompt that does not fit.
                    Failure::ContextTooLong { .. } => {
                        let need = self.context.map(|c| c + 1).unwrap_or(self.est + 1).max(self.est + 1);
                        self.need_context.fetch_max(need, Ordering::Relaxed);
                        Verdict::TryNext
                    }
                    Failure::BadRequest { .. } => Verdict::ReturnToClient,
                }
            }
        };
        let k = st.get(acct_slot, now);
        if self.probe {
            k.probing = false;
        }
        inner.persist(acct_slot, k);
        let m = st.get(model_slot, now);
        inner.persist(model_slot, m);
        verdict
    }
}

/// Where the state of account `acct` of `inner` (the caller's lane on it) and of its `model` live.
fn slots_of(inner: &Inner, acct: usize, caller: Option<Caller>, model: &str) -> (Slot, Slot) {
    let lane: Lane = inner.lane(acct, caller);
    (inner.account_slot(lane), inner.model_slot(lane, model))
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
            let now = inner.clock.now_ms();
            let acct = st.get(&self.acct_slot, now);
            acct.counters.settle(am, 0, false);
            if self.probe {
                acct.probing = false;
            }
            inner.persist(&self.acct_slot, acct);
            let m = st.get(&self.model_slot, now);
            m.counters.settle(mm, 0, false);
            inner.persist(&self.model_slot, m);
            return;
        }
    }
}
