//! Admission: a `Plan` orders the candidates (route targets × usable accounts) by strategy and
//! health; `Plan::next` checks and reserves quota for one candidate under the pool's lock; the
//! `Attempt` it returns (`attempt.rs`) settles with the real usage on `report`, or releases on drop.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Limits, Strategy};
use crate::dialect::usage::Usage;
use crate::dialect::Dialect;

use super::caller::Caller;
use super::failure::Failure;
use super::redis::Ticket;
use super::slots::{Lane, Slot, State};
use super::state::{Health, KeyState};
use super::window::{Block, Est, Mark};
use super::{Inner, Pool, PoolError, Resolved, Target};

mod attempt;

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
    pub(super) acct: usize,
    pub(super) target: Resolved,
    pub(super) context: Option<u64>,
    /// Where the state of the account (or the caller's lane on it) and of the model live.
    pub(super) acct_slot: Slot,
    pub(super) model_slot: Slot,
    /// Healthy (0), demoted after a recent failure (1), or blocked when the plan was made (2).
    pub(super) rank: u8,
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
    /// How the shared state (`[state] redis_url`) admitted it, to settle there too.
    ticket: Option<Ticket>,
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
            let (rank, metric) = match inner.admit(&mut st, &c, facts.est_with(input), now, false) {
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

    /// Whether the candidate can take `est` tokens now: `(demoted, probe)` or why not. With a
    /// shared state, this instance's counters decide alone (`solo`, or Redis is away) within a
    /// safe share of each limit; else (ranking a plan) against the whole limit.
    fn admit(&self, st: &mut State, c: &Candidate, est: Est, now: i64, solo: bool) -> Result<(bool, bool), Block> {
        let a = &self.accounts[c.acct];
        let zone = &self.providers[a.provider].day_zone;
        let (day, next_day) = (zone.day_index(now), zone.next_reset_ms(now));
        let (acct_limits, model_limits) = self.limits(c.acct, &c.target.model);
        let health = |k: &KeyState| match k.health(now) {
            Health::Ready { demoted, probe } => Ok((demoted, probe)),
            Health::Blocked { reason, free_at_ms } => Err(Block { reason, free_at_ms }),
        };
        let instances = self.redis.as_ref().filter(|r| solo || !r.is_up()).map(|r| r.instances());
        let check = |k: &mut KeyState, configured: &Limits| match instances {
            None => k.counters.check(configured, est, now, day, next_day),
            Some(n) => {
                let l = super::redis::share(&k.counters.effective(configured), k.seen.as_ref(), n, now, day);
                k.counters.check_within(&l, est, now, day, next_day)
            }
        };
        let k = st.get(&c.acct_slot, now);
        let (d1, probe) = health(k)?;
        check(k, &acct_limits)?;
        let m = st.get(&c.model_slot, now);
        let (d2, _) = health(m)?;
        check(m, &model_limits)?;
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
    /// The next candidate that can take the request now, with its quota reserved, decided on
    /// this instance's counters (with a shared state: within this instance's safe share of each
    /// limit; `admit_next` asks Redis).
    pub fn next_attempt(&mut self) -> Option<Attempt> {
        while let Some((c, est, tokens)) = self.next_candidate() {
            if let Some(a) = self.admit_here(c, est, tokens) {
                return Some(a);
            }
        }
        None
    }

    /// Admits `c` on this instance's counters, or notes why not.
    pub(super) fn admit_here(&mut self, c: Candidate, est: u64, tokens: Est) -> Option<Attempt> {
        let inner = self.inner.clone();
        let now = inner.clock.now_ms();
        let mut st = inner.lock();
        let probe = match inner.admit(&mut st, &c, tokens, now, true) {
            Ok((_, probe)) => probe,
            Err(b) => {
                self.refused(&c, b);
                return None;
            }
        };
        let ticket = inner.redis.as_ref().map(|r| {
            let day = inner.providers[inner.accounts[c.acct].provider].day_zone.day_index(now);
            Ticket::local(r, now.div_euclid(1000), day, tokens.reserve)
        });
        Some(self.start(&mut st, c, est, tokens, probe, ticket, now))
    }

    pub(super) fn pool(&self) -> &Arc<Inner> {
        &self.inner
    }

    /// The next candidate that a larger context need has not ruled out, with the input tokens to
    /// admit it with and its reservation.
    pub(super) fn next_candidate(&mut self) -> Option<(Candidate, u64, Est)> {
        while self.pos < self.cands.len() {
            let c = self.cands[self.pos].clone();
            self.pos += 1;
            let need = self.need_context.load(Ordering::Relaxed);
            if need > 0 && c.context.is_some_and(|ctx| ctx < need) {
                self.skipped.push(format!("{}: window smaller than the prompt", self.inner.describe(&c)));
                continue;
            }
            let est = self.facts.est_tokens.max(need);
            return Some((c, est, self.facts.est_with(est)));
        }
        None
    }

    /// A passed-over target frees at `at_ms` (for the retry time of the plan's error).
    pub(super) fn note_free_at(&mut self, at_ms: i64) {
        self.earliest_free_ms = min_opt(self.earliest_free_ms, Some(at_ms));
    }

    /// Notes why `c` was passed over.
    pub(super) fn refused(&mut self, c: &Candidate, b: Block) {
        self.skipped.push(format!("{}: {}", self.inner.describe(c), b.reason));
        self.earliest_free_ms = min_opt(self.earliest_free_ms, b.free_at_ms);
    }

    /// Reserves `tokens` on this instance's counters for admitted candidate `c` and makes its
    /// attempt.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn start(
        &mut self,
        st: &mut State,
        c: Candidate,
        est: u64,
        tokens: Est,
        probe: bool,
        ticket: Option<Ticket>,
        now: i64,
    ) -> Attempt {
        let inner = self.inner.clone();
        let a = &inner.accounts[c.acct];
        let day = inner.providers[a.provider].day_zone.day_index(now);
        let acct = st.get(&c.acct_slot, now);
        acct.probing |= probe;
        let am = acct.counters.reserve(tokens.reserve, now, day);
        inner.persist(&c.acct_slot, acct);
        let m = st.get(&c.model_slot, now);
        let mm = m.counters.reserve(tokens.reserve, now, day);
        inner.persist(&c.model_slot, m);
        if ticket.as_ref().is_some_and(Ticket::is_shared) {
            super::redis::note_own(st.get(&c.acct_slot, now), now, day);
            super::redis::note_own(st.get(&c.model_slot, now), now, day);
        }
        // Under the lock, like a reload's snapshot: either it saw this reservation or not.
        let carried = !inner.retired.load(Ordering::Relaxed);
        Attempt {
            target: Target { dialect: a.view.dialect, provider: a.view.clone() },
            inner: inner.clone(),
            acct: c.acct,
            caller: self.facts.caller,
            acct_slot: c.acct_slot,
            model_slot: c.model_slot,
            model: c.target.model.clone(),
            send_model: c.target.send_model.clone(),
            context: c.context,
            est,
            reserved: tokens.reserve,
            marks: Some((am, mm)),
            ticket,
            carried,
            probe,
            started: tokio::time::Instant::now(),
            first_byte: None,
            need_context: self.need_context.clone(),
        }
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

/// Where the state of account `acct` of `inner` (the caller's lane on it) and of its `model` live.
fn slots_of(inner: &Inner, acct: usize, caller: Option<Caller>, model: &str) -> (Slot, Slot) {
    let lane: Lane = inner.lane(acct, caller);
    (inner.account_slot(lane), inner.model_slot(lane, model))
}
