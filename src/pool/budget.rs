//! What a request may hold on one candidate target: its budget in input tokens, the smallest of
//! the model's context window less the output the request asks for, its per-request input cap
//! (`max_input_tokens`), and what its TPM windows (the account's and the model's, corrected by
//! the provider's headers) have left now. The request path fits the request to an `Offer`'s
//! budget, then `Plan::admit` reserves the fitted size (checked again under the lock).

use std::time::Duration;

use crate::config::Strategy;
use crate::price::Price;

use super::admission::{Attempt, Candidate, Plan};
use super::window::Est;
use super::{Inner, PoolError, Target};

/// Which limit sets a budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// Nothing known limits the request.
    None,
    /// The context window less the requested output.
    Context,
    /// The model's per-request input cap.
    InputCap,
    /// What the TPM window has left this minute.
    Tpm,
}

impl Bound {
    pub fn name(self) -> &'static str {
        match self {
            Bound::None => "none",
            Bound::Context => "context window",
            Bound::InputCap => "input cap",
            Bound::Tpm => "TPM left",
        }
    }
}

/// Input tokens one target takes for this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// `u64::MAX` when nothing limits it.
    pub tokens: u64,
    pub bound: Bound,
    /// What it would be with every TPM window empty (equal to `tokens` unless TPM binds).
    pub full_window: u64,
}

impl Budget {
    pub const UNLIMITED: Budget = Budget { tokens: u64::MAX, bound: Bound::None, full_window: u64::MAX };

    fn limit(&mut self, tokens: u64, bound: Bound) {
        if tokens < self.tokens {
            self.tokens = tokens;
            self.bound = bound;
        }
    }

    pub fn is_limited(&self) -> bool {
        self.tokens != u64::MAX
    }
}

/// One candidate of a plan with its budget, before any quota is reserved for it.
pub struct Offer {
    cand: Candidate,
    /// Its place in the plan (for `Plan::rank_fitted`).
    pub index: usize,
    target: Target,
    account: String,
    name: String,
    free_tier: bool,
    budget: Budget,
}

impl Offer {
    pub fn target(&self) -> &Target {
        &self.target
    }

    pub fn provider(&self) -> &str {
        &self.target.provider.name
    }

    pub fn account(&self) -> &str {
        &self.account
    }

    /// The model the quota is counted under.
    pub fn model(&self) -> &str {
        &self.cand.target.model
    }

    /// The model name to write into the request body, when it differs from what the client sent.
    pub fn send_model(&self) -> Option<&str> {
        self.cand.target.send_model.as_deref()
    }

    pub fn price(&self) -> Option<Price> {
        self.target.provider.model_spec(self.model()).map(|s| s.price)
    }

    pub fn free_tier(&self) -> bool {
        self.free_tier
    }

    /// Whether the model takes reasoning settings.
    pub fn reasoning(&self) -> bool {
        self.target.provider.model_spec(self.model()).is_some_and(|s| s.reasoning)
    }

    pub fn budget(&self) -> Budget {
        self.budget
    }

    /// `provider[account]/model`, as skip reasons name it.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Inner {
    /// The budget of candidate `c` for a request that allows `max_output` tokens of output.
    fn budget(&self, st: &mut super::slots::State, c: &Candidate, out: Est, max_output: u64, now: i64) -> Budget {
        let mut b = Budget::UNLIMITED;
        let spec = self.providers[c.target.provider].model_spec(&c.target.model);
        if let Some(ctx) = spec.and_then(|s| s.context) {
            b.limit(ctx.saturating_sub(max_output), Bound::Context);
        }
        if let Some(cap) = spec.and_then(|s| s.max_input_tokens) {
            b.limit(cap, Bound::InputCap);
        }
        let mut full = b.tokens;
        let (acct_limits, model_limits) = self.limits(c.acct, &c.target.model);
        for (slot, limits) in [(&c.acct_slot, acct_limits), (&c.model_slot, model_limits)] {
            let counters = &mut st.get(slot, now).counters;
            if let Some(left) = counters.tpm_input_left(&limits, out, now) {
                b.limit(left, Bound::Tpm);
            }
            if let Some(f) = counters.tpm_input_full(&limits, out) {
                full = full.min(f);
            }
        }
        b.full_window = full.max(b.tokens);
        b
    }

    fn offer(&self, st: &mut super::slots::State, c: Candidate, index: usize, out: Est, max_output: u64) -> Offer {
        let now = self.clock.now_ms();
        let budget = self.budget(st, &c, out, max_output, now);
        let a = &self.accounts[c.acct];
        let account = &self.providers[a.provider].accounts[a.account];
        Offer {
            target: Target { dialect: a.view.dialect, provider: a.view.clone() },
            account: account.label.clone(),
            free_tier: account.free_tier,
            name: self.describe(&c),
            index,
            budget,
            cand: c,
        }
    }
}

impl Inner {
    /// The smallest fraction of quota the candidate has left once `tokens` more are counted.
    fn fraction_left_after(&self, st: &mut super::slots::State, c: &Candidate, tokens: u64, now: i64) -> f64 {
        let a = &self.accounts[c.acct];
        let day = self.providers[a.provider].day_zone.day_index(now);
        let (acct_limits, model_limits) = self.limits(c.acct, &c.target.model);
        let fa = st.get(&c.acct_slot, now).counters.fraction_left_with(&acct_limits, tokens, now, day);
        let fm = st.get(&c.model_slot, now).counters.fraction_left_with(&model_limits, tokens, now, day);
        fa.min(fm)
    }
}

impl Plan {
    /// The route's strategy.
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// Whether the order of the candidates depends on each one's fitted size (`fit`,
    /// `most-remaining`): then `rank_fitted` orders them once the sizes are known.
    pub fn ranks_fitted(&self) -> bool {
        matches!(self.strategy, Strategy::Fit | Strategy::MostRemaining) && self.cands.len() - self.pos > 1
    }

    /// How long a request may wait for a TPM window instead of being cut harder.
    pub fn max_wait(&self) -> Duration {
        Duration::from_millis(self.max_wait_ms)
    }

    fn out_est(&self) -> (Est, u64) {
        (self.facts.est_with(0), self.facts.max_output.unwrap_or(0))
    }

    /// The next candidate with its budget now; nothing is reserved.
    pub fn next_offer(&mut self) -> Option<Offer> {
        let (c, _, _) = self.next_candidate()?;
        let (out, max_output) = self.out_est();
        let inner = self.inner.clone();
        let mut st = inner.lock();
        Some(inner.offer(&mut st, c, self.pos - 1, out, max_output))
    }

    /// Every candidate not yet tried, with its budget now (to rank them by fitted size).
    pub fn remaining_offers(&self) -> Vec<Offer> {
        let (out, max_output) = self.out_est();
        let mut st = self.inner.lock();
        let rest = self.cands.iter().enumerate().skip(self.pos);
        rest.map(|(i, c)| self.inner.offer(&mut st, c.clone(), i, out, max_output)).collect()
    }

    /// Orders the candidates not yet tried by their fitted sizes: `fitted` gives, per offer
    /// index, the input tokens after fitting and the tokens fitting removed (`None`: it cannot
    /// fit). `fit` prefers the least reduction, `most-remaining` the most quota left after this
    /// request; a candidate that cannot fit goes last, and health still comes first (a target
    /// demoted after a failure goes after the healthy ones). Ties keep the plan's order.
    pub fn rank_fitted(&mut self, fitted: &[(usize, Option<(u64, u64)>)]) {
        let now = self.inner.clock.now_ms();
        let inner = self.inner.clone();
        let mut st = inner.lock();
        let mut keyed: Vec<(bool, u8, f64, usize, Candidate)> = Vec::new();
        for (i, c) in self.cands.iter().enumerate().skip(self.pos) {
            let f = fitted.iter().find(|(k, _)| *k == i).and_then(|(_, f)| *f);
            let key = match (self.strategy, f) {
                (_, None) => 0.0,
                (Strategy::Fit, Some((_, removed))) => removed as f64,
                (_, Some((tokens, _))) => {
                    let reserve = self.facts.est_with(tokens).reserve;
                    -inner.fraction_left_after(&mut st, c, reserve, now)
                }
            };
            keyed.push((f.is_none(), c.rank, key, i, c.clone()));
        }
        drop(st);
        keyed.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.total_cmp(&b.2)).then(a.3.cmp(&b.3)));
        self.cands.truncate(self.pos);
        self.cands.extend(keyed.into_iter().map(|(_, _, _, _, c)| c));
    }

    /// Reserves `offer`'s target for the fitted request of `input` tokens (through the shared
    /// state when there is one); `None`, with the reason noted, when it cannot take it now
    /// (another request took the window meanwhile).
    pub async fn admit(&mut self, offer: Offer, input: u64) -> Option<Attempt> {
        let tokens = self.facts.est_with(input);
        self.admit_candidate(offer.cand, input, tokens).await
    }

    /// Passes `offer` over before anything is sent, for `reason` (it cannot fit): noted for the
    /// error if no target answers, and as the model's last error for `tokenfold pool`. With
    /// `free_in`, the target could take it once that time has passed (a TPM window): the
    /// error's retry time.
    pub fn pass_over(&mut self, offer: &Offer, reason: &str, free_in: Option<Duration>) {
        self.skipped.push(format!("{}: {reason}", offer.name));
        let now = self.inner.clock.now_ms();
        if let Some(d) = free_in {
            self.note_free_at(now + d.as_millis() as i64);
        }
        let mut st = self.inner.lock();
        let m = st.get(&offer.cand.model_slot, now);
        m.note_error(format!("skipped: {reason}"), now);
        self.inner.persist(&offer.cand.model_slot, m);
    }

    /// How long to wait for `offer`'s TPM windows to take a request of `input` tokens, when
    /// that is within the route's `max_wait_ms` (`None`: do not wait).
    pub fn wait_for_window(&self, offer: &Offer, input: u64) -> Option<Duration> {
        if self.max_wait_ms == 0 || offer.budget.bound != Bound::Tpm {
            return None;
        }
        self.tpm_wait(offer, input).filter(|w| *w <= self.max_wait())
    }

    /// How long until `offer`'s TPM windows take a request of `input` tokens (zero: now);
    /// `None` when they never will or do not limit it.
    pub fn tpm_wait(&self, offer: &Offer, input: u64) -> Option<Duration> {
        let (out, _) = self.out_est();
        let now = self.inner.clock.now_ms();
        let (acct_limits, model_limits) = self.inner.limits(offer.cand.acct, offer.model());
        let mut st = self.inner.lock();
        let mut at: Option<i64> = Some(now);
        for (slot, limits) in [(&offer.cand.acct_slot, acct_limits), (&offer.cand.model_slot, model_limits)] {
            let c = &st.get(slot, now).counters;
            if c.effective(&limits).tpm.is_none() {
                continue;
            }
            let fits = c.tpm_fits_at(&limits, input, out, now)?;
            at = at.map(|t| t.max(fits));
        }
        at.map(|t| Duration::from_millis((t - now).max(0) as u64))
    }

    /// The error for the client when no target could take the request because it fits none of
    /// them (every reason says what it needs and what the target takes).
    pub fn nothing_fits(&self) -> PoolError {
        PoolError::NoFit { model: self.label().to_string(), reasons: self.skipped.join("; ") }
    }
}
