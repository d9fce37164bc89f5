//! Sends a folded request through the pool's plan: one attempt per target (`attempt.rs`) until
//! one commits an answer to the client or none is left; then the provider's own answer if one
//! came back, else the proxy's error.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderName, HeaderValue, Response};

use super::attempt::{self, Failed, HeldAnswer, Step};
use super::error::ProxyError;
use super::fit::{self, Shaped};
use super::pending::Pending;
use super::relay::{Committed, Transform};
use super::{AppState, Body};
use crate::cache::RequestCache;
use crate::dialect::translate;
use crate::dialect::{gemini, Dialect, RequestEnvelope};
use crate::fold::fit::NoFit;
use crate::fold::Prepared;
use crate::pool::{Attempt, Bound, Caller, Offer, Plan, RequestFacts, UpstreamError};

/// Everything about the client's request the attempts need.
pub struct UpstreamRequest<'a> {
    pub ingress: Dialect,
    /// The path after `/v1`.
    pub route: &'a str,
    /// A Gemini request's URL (model, method); `None` for the other dialects.
    pub gemini: Option<&'a gemini::Call>,
    pub parts: &'a http::request::Parts,
    pub envelope: &'a RequestEnvelope,
    /// From the envelope scan: what admission needs to know besides the size.
    pub has_tools: bool,
    pub has_images: bool,
    /// The folded body, in the ingress dialect.
    pub body: Bytes,
    /// The request as folding prepared it, for clearing per attempt; `None`: no clearing.
    pub prepared: Option<Prepared>,
    pub proxy_key_header: Option<HeaderName>,
    pub saved_tokens: u64,
    /// How each attempt's body is prepared for its target's prompt cache.
    pub cache: RequestCache,
    pub peer: SocketAddr,
}

/// What the request gets once an attempt commits.
pub enum Answer {
    /// The provider's answer, relayed to the client as it comes (boxed: the other variant is
    /// small, and a `Step` moves through every attempt).
    Relay(Box<Committed>),
    /// Answered here without a provider (a token count no target can make).
    Local(Response<Body>),
}

pub async fn send_with_fallback(
    state: &Arc<AppState>,
    req: UpstreamRequest<'_>,
    pending: &mut Pending,
) -> Result<Answer, ProxyError> {
    // Token counts are answered as they are; everything else is fitted to each target.
    let fitting = !is_token_count(&req);
    // The estimate is bytes / 4 of the folded body, plus the output the request allows.
    let facts = RequestFacts {
        est_tokens: req.body.len() as u64 / 4,
        max_output: req.envelope.max_output(),
        has_tools: req.has_tools,
        has_images: req.has_images,
        caller: Caller::from_headers(&req.parts.headers, req.proxy_key_header.as_ref()),
        fitted: fitting,
    };
    // The pool this request started with, even if a reload replaces it meanwhile.
    let pool = state.pool();
    let mut plan = pool.plan(req.ingress, req.envelope.model.as_deref(), &facts)?;
    pending.routed(plan.label());
    let mut ranked =
        if fitting && plan.ranks_fitted() { rank_by_fitted_size(state, &req, &mut plan) } else { Vec::new() };
    // The provider's last answer, kept in case no other target does better; the last transport error.
    let mut held: Option<HeldAnswer> = None;
    let mut last_error: Option<UpstreamError> = None;
    // Targets passed over because the request cannot fit them even with an empty TPM window.
    let (mut offered, mut too_small) = (0usize, 0usize);
    loop {
        let next = if fitting {
            let Some(offer) = plan.next_offer() else { break };
            offered += 1;
            match fit_to(state, &req, &mut plan, offer, &mut ranked, pending).await {
                Fit::Ready(ready) => Some(*ready),
                Fit::TooSmall => {
                    too_small += 1;
                    None
                }
                Fit::Busy => None,
            }
        } else {
            let Some(attempt) = plan.admit_next().await else { break };
            let shaped = fit::unfitted(state, &req, &attempt);
            Some((attempt, shaped))
        };
        let Some((attempt, shaped)) = next else { continue };
        let (failed, stop) = match attempt::run(state, &req, &pool, attempt, shaped, pending).await? {
            Step::Commit(answer) => return Ok(answer),
            Step::Retry(failed) => (failed, false),
            Step::Stop(failed) => (failed, true),
        };
        match failed {
            Failed::Answer(h) => held = Some(h),
            Failed::Transport(e) => last_error = Some(e),
        }
        if stop {
            break;
        }
    }
    // The last failure led to no further attempt, so it is the request's error, not a hop.
    let last_failure = pending.last_hop_was_final();
    if let Some(h) = held {
        return Err(provider_answer(h, req.ingress, req.envelope, pending));
    }
    pending.failed_because(last_failure);
    if last_error.is_none() && offered > 0 && too_small == offered {
        return Err(plan.nothing_fits().into());
    }
    Err(last_error.map_or_else(|| plan.exhausted().into(), ProxyError::Transport))
}

/// A count of tokens, not a generation: nothing to fit.
fn is_token_count(req: &UpstreamRequest<'_>) -> bool {
    req.route == "/messages/count_tokens" || req.gemini.is_some_and(|c| c.method == gemini::Method::CountTokens)
}

/// How fitting to one offer went.
enum Fit {
    Ready(Box<(Attempt, Shaped)>),
    /// Larger than the target takes even with an empty TPM window.
    TooSmall,
    /// It would fit a fuller window, or another request took the window meanwhile.
    Busy,
}

/// Fits the request to `offer` and reserves its fitted size. When the TPM window alone is in
/// the way (it forces harder cuts, or no fit) and frees within the route's `max_wait_ms`, waits
/// for it instead. A target it cannot fit is skipped before a byte is sent, with the reason
/// (`needs 23,410 tokens, budget 8,000`) in the ledger's fallback chain and the plan's error.
async fn fit_to(
    state: &Arc<AppState>,
    req: &UpstreamRequest<'_>,
    plan: &mut Plan,
    offer: Offer,
    ranked: &mut Ranked,
    pending: &mut Pending,
) -> Fit {
    let budget = offer.budget();
    // Fitting is a pure function of the request, the target and the budget: ranking's result
    // for this target stands while its budget has not moved.
    let now = match ranked.iter().position(|(name, b, _)| name == offer.name() && *b == budget.tokens) {
        Some(i) => ranked.swap_remove(i).2,
        None => fit::for_offer(state, req, &offer, budget.tokens),
    };
    let cut_now = now.as_ref().map_or(u64::MAX, Shaped::removed);
    let waits = budget.bound == Bound::Tpm && !plan.max_wait().is_zero() && cut_now > 0;
    let fuller = if waits { fit::for_offer(state, req, &offer, budget.full_window).ok() } else { None };
    if let Some(full) = fuller.filter(|f| f.removed() < cut_now) {
        let tokens = full.tokens.unwrap_or(req.body.len() as u64 / 4);
        if let Some(wait) = plan.wait_for_window(&offer, tokens) {
            tokio::time::sleep(wait).await;
            pending.waited_for_window(offer.name(), wait.as_millis() as u64);
            return admit(plan, offer, full, req).await;
        }
    }
    match now {
        Ok(shaped) => admit(plan, offer, shaped, req).await,
        Err(no_fit) => {
            let reason = no_fit.to_string();
            pending.hop(format!("{}/{}: {reason}", offer.provider(), offer.account()));
            // Only the TPM window in the way: the target takes it once the window frees.
            let busy = budget.bound == Bound::Tpm && no_fit.needs <= budget.full_window;
            let free_in = if busy { plan.tpm_wait(&offer, no_fit.needs) } else { None };
            plan.pass_over(&offer, &reason, free_in);
            if busy {
                Fit::Busy
            } else {
                Fit::TooSmall
            }
        }
    }
}

async fn admit(plan: &mut Plan, offer: Offer, shaped: Shaped, req: &UpstreamRequest<'_>) -> Fit {
    let tokens = shaped.tokens.unwrap_or(req.body.len() as u64 / 4);
    match plan.admit(offer, tokens).await {
        Some(attempt) => Fit::Ready(Box::new((attempt, shaped))),
        None => Fit::Busy,
    }
}

/// Bodies fitted while ranking: per target name, the budget they were fitted to.
type Ranked = Vec<(String, u64, Result<Shaped, NoFit>)>;

/// Orders the plan's candidates by what fitting does to the request for each (`fit`: the least
/// reduction first; `most-remaining`: the most quota left after it). Returns the fitted bodies,
/// so the target tried is not fitted again.
fn rank_by_fitted_size(state: &AppState, req: &UpstreamRequest<'_>, plan: &mut Plan) -> Ranked {
    let offers = plan.remaining_offers();
    let mut sizes = Vec::with_capacity(offers.len());
    let mut ranked = Vec::with_capacity(offers.len());
    for o in &offers {
        let budget = o.budget().tokens;
        let shaped = fit::for_offer(state, req, o, budget);
        let size = shaped.as_ref().ok().map(|s| (s.tokens.unwrap_or(req.body.len() as u64 / 4), s.removed()));
        sizes.push((o.index, size));
        ranked.push((o.name().to_string(), budget, shaped));
    }
    plan.rank_fitted(&sizes);
    ranked
}

/// The provider's own error answer, for the client as it came (translated into its dialect).
fn provider_answer(h: HeldAnswer, ingress: Dialect, envelope: &RequestEnvelope, pending: &mut Pending) -> ProxyError {
    pending.answered_by(h.status.as_u16(), h.provider, h.account, h.reason);
    let transform = Transform::for_answer(ingress, h.upstream, h.status, false, envelope, Default::default());
    let body = match transform {
        Transform::Whole { upstream, client, .. } => {
            Bytes::from(translate::translate_error(upstream, client, h.status.as_u16(), &h.body))
        }
        _ => h.body,
    };
    let mut headers = crate::pool::upstream::client_response_headers(&h.headers);
    if h.upstream != ingress {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    ProxyError::Upstream { status: h.status, headers: Box::new(headers), body }
}
