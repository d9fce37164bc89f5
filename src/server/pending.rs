//! A request between arrival and the end of its answer: its ledger record, filled in here and
//! nowhere else (what folding, the attempts and the relay did), written once when the request
//! ends however it ends; and the in-flight gauge.

use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};

use super::error::ProxyError;
use super::{AppState, Body};
use crate::dialect::usage::Usage;
use crate::dialect::Dialect;
use crate::fold::clear::Cleared;
use crate::fold::Folded;
use crate::ledger::{Record, RequestOutcome};
use crate::pool::Attempt;

/// The ledger record of a request still being served. The handler owns it until the answer is
/// committed, then the relay does. hyper drops the handler future when the client disconnects
/// during the upstream send or the first-event peek; that drops (and so cancels) the upstream
/// request with it, and this guard records the request as cancelled.
pub struct Pending {
    state: Arc<AppState>,
    /// When the request arrived.
    started: Instant,
    record: Record,
    /// Written to the ledger (or left out on purpose): nothing more to do on drop.
    closed: bool,
}

/// Status recorded for a client that went away before any answer (nginx's "client closed request").
const CLIENT_CLOSED: u16 = 499;

impl Pending {
    pub fn new(state: &Arc<AppState>, started: Instant, dialect: Dialect, user_agent: &str) -> Pending {
        let mut record = Record::empty();
        record.ts_ms = crate::ledger::now_ms();
        record.dialect = dialect.name();
        record.client = crate::ledger::client_family(user_agent);
        Pending { state: state.clone(), started, record, closed: false }
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    /// The model the client asked for (also the route until the pool names one).
    pub fn asked_for(&mut self, model: &str) {
        self.record.model = model.to_string();
        self.record.route = model.to_string();
    }

    /// The conversation id a client sent in a header, or the body to read it from later (by the
    /// ledger writer, off the request path).
    pub fn session_from(&mut self, header_id: Option<String>, dialect: Dialect, body: &Bytes) {
        match header_id {
            Some(id) => self.record.session = id,
            None => self.record.session_body = Some((dialect, body.clone())),
        }
    }

    /// The conversation id, read from the kept body now if the writer has not yet.
    pub fn session(&mut self) -> &str {
        self.record.resolve_session();
        &self.record.session
    }

    /// Time spent waiting for the client (its body, or its reading of the answer).
    pub fn client_waited(&mut self, d: Duration) {
        self.record.client_us += d.as_micros() as u64;
    }

    /// Time spent waiting on an upstream (any attempt).
    pub fn upstream_waited(&mut self, d: Duration) {
        self.record.upstream_us += d.as_micros() as u64;
    }

    /// What folding did, per mechanism.
    pub fn folded(&mut self, f: &Folded) {
        let r = &mut self.record;
        for (mechanism, tokens) in f.savings_by_mechanism() {
            r.add_saving(mechanism, |s| s.tokens += tokens);
        }
        for (mechanism, tokens) in &f.turn_savings {
            r.add_saving(mechanism, |s| s.turn_tokens += tokens);
        }
        for (mechanism, n) in &f.turn_elisions {
            r.add_saving(mechanism, |s| s.elisions += n);
        }
        for (mechanism, n) in &f.turn_recalls {
            r.add_saving(mechanism, |s| s.recalls += n);
        }
    }

    /// The plan's name (route or model).
    pub fn routed(&mut self, label: &str) {
        self.record.route = label.to_string();
    }

    /// The attempt's target: a failed request's record names the last one tried.
    pub fn trying(&mut self, attempt: &Attempt, free_tier: bool) {
        let r = &mut self.record;
        r.provider = attempt.provider().to_string();
        r.account = attempt.account().to_string();
        r.model = attempt.model().to_string();
        r.free_tier = free_tier;
    }

    /// The proxy's own time so far, if the request ends before the relay takes over (error,
    /// cancel): everything until the attempt's body went out.
    pub fn sending(&mut self, at: Instant) {
        self.record.overhead_us = at.duration_since(self.started).as_micros() as u64;
    }

    /// A target that failed before another was tried, as `provider/account: why`.
    pub fn hop(&mut self, why: String) {
        self.record.fallbacks.push(why);
    }

    /// No other target was tried after the last failure: it is the request's error, not a hop.
    pub fn last_hop_was_final(&mut self) -> String {
        self.record.fallbacks.pop().unwrap_or_default()
    }

    /// Why the request failed.
    pub fn failed_because(&mut self, error: String) {
        self.record.error = error;
    }

    /// The provider's error answer that goes back to the client as it came.
    pub fn answered_by(&mut self, status: u16, provider: String, account: String, reason: String) {
        let r = &mut self.record;
        r.status = status;
        (r.provider, r.account, r.error) = (provider, account, reason);
    }

    /// What clearing did in the request that went out (mechanism `clear`).
    pub fn cleared(&mut self, c: &Cleared) {
        self.record.add_saving(crate::fold::clear::MECHANISM, |s| {
            s.tokens += c.saved_tokens;
            s.elisions += c.newly_cleared;
            s.recalls += c.recalls;
            s.steps += u64::from(c.stepped());
        });
        self.record.rewritten_tokens = c.rewritten_tokens;
    }

    /// The fitting steps the request that went out took (mechanisms `fit:<step>`).
    pub fn fitted(&mut self, steps: &[(&'static str, u64)]) {
        for (step, tokens) in steps {
            self.record.add_saving(step, |s| {
                s.tokens += tokens;
                s.steps += 1;
            });
        }
    }

    /// Waiting for a target's TPM window instead of cutting the request harder (`fit:wait`,
    /// and the wait in the fallback chain).
    pub fn waited_for_window(&mut self, target: &str, ms: u64) {
        self.record.add_saving(crate::fold::fit::WAIT, |s| s.steps += 1);
        self.record.fallbacks.push(format!("{target}: waited {ms} ms for its TPM window"));
    }

    /// The answer is committed: its status, and the target's prices for settling its cost.
    pub fn committed(&mut self, status: u16, attempt: &Attempt) {
        self.record.status = status;
        if let Some(p) = attempt.price() {
            self.record.prices = p;
        }
    }

    /// Ends the request: how it went, when its first byte went out (`None`: never, or only now),
    /// and the usage the provider reported. The one place the record is closed and written.
    pub fn finish(mut self, outcome: RequestOutcome, first_byte: Option<Instant>, usage: Option<Usage>) {
        self.write(outcome, first_byte, usage);
    }

    /// Ends a request the proxy answered with an error of its own or the provider's.
    pub fn fail(mut self, e: &ProxyError) {
        self.record.status = e.status().as_u16();
        if self.record.error.is_empty() {
            self.record.error = e.kind().to_string();
        }
        self.write(RequestOutcome::Error, None, None);
    }

    /// A request answered without a provider (counted locally): not a ledger record.
    pub fn discard(mut self) {
        self.closed = true;
    }

    /// A stream the relay ended early: why, kept for the record.
    pub fn broke_off(&mut self, kind: &str) {
        self.record.error = kind.to_string();
    }

    fn write(&mut self, outcome: RequestOutcome, first_byte: Option<Instant>, usage: Option<Usage>) {
        if std::mem::replace(&mut self.closed, true) {
            return;
        }
        let mut r = std::mem::replace(&mut self.record, Record::empty());
        let now = Instant::now();
        let completed_with_error = outcome == RequestOutcome::Completed && r.status >= 400;
        r.outcome = if completed_with_error { RequestOutcome::Error } else { outcome };
        let total = now.duration_since(self.started);
        r.latency_ms = total.as_millis() as u64;
        r.ttfb_us = first_byte.unwrap_or(now).duration_since(self.started).as_micros() as u64;
        // Total minus every wait on an upstream (failed attempts included) and on the client.
        r.set_overhead(total);
        if let Some(u) = usage {
            r.settle(u);
        }
        self.state.ledger.record(r);
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        self.state.metrics.cancelled.fetch_add(1, Relaxed);
        tracing::info!(
            after_ms = self.started.elapsed().as_millis() as u64,
            "client went away before the answer started: upstream request cancelled"
        );
        self.record.status = CLIENT_CLOSED;
        self.write(RequestOutcome::Cancelled, None, None);
    }
}

/// Counts a request in `tokenfold_in_flight` while it lives.
pub struct InFlight(Arc<AppState>);

impl InFlight {
    pub fn enter(state: &Arc<AppState>) -> InFlight {
        state.metrics.in_flight.fetch_add(1, Relaxed);
        InFlight(state.clone())
    }

    /// Hands the count to `body`: it ends when the body is finished or dropped.
    pub fn track(self, body: Body) -> Body {
        hold(body, self)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.metrics.in_flight.fetch_sub(1, Relaxed);
    }
}

/// `body`, keeping `held` alive until the body is finished or dropped (a guard whose drop says
/// the answer is over).
pub fn hold<T: Send + Unpin + 'static>(body: Body, held: T) -> Body {
    BodyExt::boxed_unsync(Holding { body, _held: held })
}

struct Holding<T> {
    body: Body,
    _held: T,
}

impl<T: Send + Unpin + 'static> hyper::body::Body for Holding<T> {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        // `Body` is `Unpin` (boxed), so is `Holding`.
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
