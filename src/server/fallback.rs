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
use super::pending::Pending;
use super::relay::{Committed, Transform};
use super::{AppState, Body};
use crate::cache::RequestCache;
use crate::dialect::translate;
use crate::dialect::{gemini, Dialect, RequestEnvelope};
use crate::fold::Prepared;
use crate::pool::{Caller, RequestFacts, UpstreamError};

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
    // The estimate is bytes / 4 of the folded body, plus the output the request allows.
    let facts = RequestFacts {
        est_tokens: req.body.len() as u64 / 4,
        max_output: req.envelope.max_output(),
        has_tools: req.has_tools,
        has_images: req.has_images,
        caller: Caller::from_headers(&req.parts.headers, req.proxy_key_header.as_ref()),
    };
    // The pool this request started with, even if a reload replaces it meanwhile.
    let pool = state.pool();
    let mut plan = pool.plan(req.ingress, req.envelope.model.as_deref(), &facts)?;
    pending.routed(plan.label());
    // The provider's last answer, kept in case no other target does better; the last transport error.
    let mut held: Option<HeldAnswer> = None;
    let mut last_error: Option<UpstreamError> = None;
    while let Some(next) = plan.admit_next().await {
        let (failed, stop) = match attempt::run(state, &req, &pool, next, pending).await? {
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
    Err(last_error.map_or_else(|| plan.exhausted().into(), ProxyError::Transport))
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
