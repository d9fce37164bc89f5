//! An admitted `Attempt`: what to send where, the provider's quota headers as they arrive, and
//! the settlement of its reservation with the real usage (`report`) or without (drop).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use http::HeaderMap;

use crate::config::{ProviderAuth, RateScope};
use crate::dialect::Dialect;
use crate::price::Price;

use super::{slots_of, Attempt, Outcome, Verdict};
use crate::pool::failure::Failure;
use crate::pool::headers::quota_headers;
use crate::pool::redis::Event;
use crate::pool::state::CooldownKind;
use crate::pool::{Inner, Target};

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
        if let Some(r) = &inner.redis {
            let m = st.get(&model_slot, now).clone();
            match scope {
                RateScope::Account => {
                    let k = st.get(&acct_slot, now).clone();
                    inner.observed_shared(r, &[&acct_slot, &model_slot], &[&k, &m]);
                }
                RateScope::Model => inner.observed_shared(r, &[&model_slot], &[&m]),
            }
        }
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
        // What the outcome says about health, for the other instances sharing the state.
        let mut event = Event::Nothing;
        let verdict = match failure {
            None => {
                event = Event::Succeeded;
                st.get(acct_slot, now).succeeded(None);
                st.get(model_slot, now).succeeded(Some(latency));
                Verdict::Done
            }
            Some(f) => {
                let msg = f.to_string();
                st.get(acct_slot, now).note_error(msg.clone(), now);
                st.get(model_slot, now).note_error(msg.clone(), now);
                let who = format!("provider `{}` account `{label}` model `{}`", p.name, self.model);
                let on_model = p.rate_scope == RateScope::Model;
                let scoped = st.get(if on_model { model_slot } else { acct_slot }, now);
                match f {
                    Failure::RateLimited { retry_after, .. } => {
                        event = Event::RateLimited { on_model, retry_after, reason: msg.clone() };
                        scoped.rate_limited(retry_after, &inner.settings, now, msg);
                        tracing::info!("{who}: {}", scoped.cooldown.as_ref().map(|c| c.reason.as_str()).unwrap_or(""));
                        Verdict::TryNext
                    }
                    Failure::QuotaExhausted { retry_after, .. } => {
                        let reset = p.day_zone.next_reset_ms(now);
                        let hint = retry_after.map(|d| now + d.as_millis() as i64).unwrap_or(reset);
                        // Providers' short retry hints on a daily quota would re-hammer it.
                        scoped.cool(CooldownKind::QuotaExhausted, hint.max(reset), msg.clone());
                        let (al, ml) = inner.limits(self.acct, &self.model);
                        let limits = if on_model { ml } else { al };
                        scoped.counters.exhaust_day(&limits);
                        event = Event::QuotaExhausted { on_model, until_ms: hint.max(reset), reason: msg, limits };
                        tracing::warn!("{who}: daily quota spent; out until {} ({})", reset, p.day_zone.name());
                        Verdict::TryNext
                    }
                    Failure::Unavailable { .. } => {
                        event = Event::Unavailable { reason: msg.clone() };
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
        if let (Some(r), Some(t)) = (&inner.redis, &self.ticket) {
            inner.settle_shared(r, (acct_slot, model_slot), t, tokens, true, self.probe, event);
        }
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
            if let (Some(r), Some(t)) = (&inner.redis, &self.ticket) {
                inner.settle_shared(r, (&self.acct_slot, &self.model_slot), t, 0, false, self.probe, Event::Nothing);
            }
            return;
        }
    }
}
