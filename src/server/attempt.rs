//! One attempt at one target, in phases: clear for the target's economics, translate when it
//! speaks another dialect, prepare for its prompt cache, send, read enough of the answer to judge
//! it, classify, and commit or fail. The pool's verdict on a failure says whether the next
//! target may be tried.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, StatusCode};

use super::count_tokens;
use super::error::ProxyError;
use super::fallback::{Answer, UpstreamRequest};
use super::fit::{self, Shaped};
use super::outgoing;
use super::peek;
use super::pending::Pending;
use super::relay::{ByteStream, Committed, Transform};
use super::AppState;
use crate::config::ProviderAuth;
use crate::dialect::{gemini, Dialect};
use crate::pool::{classify, Attempt, Failure, Outcome, Pool, UpstreamError, Verdict};

/// How an attempt ended.
pub enum Step {
    /// The answer goes to the client.
    Commit(Answer),
    /// Nothing reached the client and the pool says the next target may be tried.
    Retry(Failed),
    /// Nothing reached the client and no other target may be tried.
    Stop(Failed),
}

/// Why an attempt did not commit.
pub enum Failed {
    /// The provider answered, with an error (or an error inside a 200).
    Answer(HeldAnswer),
    /// No judgeable answer came (connect, timeout, reset, stall).
    Transport(UpstreamError),
}

/// A provider's answer that was read before deciding, kept in case no other target does better.
pub struct HeldAnswer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub upstream: Dialect,
    /// Who gave it and why it failed, for the ledger record.
    pub provider: String,
    pub account: String,
    pub reason: String,
}

/// Runs one attempt. `Err` is an error of the request itself (it cannot be translated for this
/// target), which ends the request.
pub async fn run(
    state: &Arc<AppState>,
    req: &UpstreamRequest<'_>,
    pool: &Pool,
    mut attempt: Attempt,
    shaped: Shaped,
    pending: &mut Pending,
) -> Result<Step, ProxyError> {
    let target = attempt.target().clone();
    pending.trying(&attempt, fit::free_tier(&attempt));
    // Cleared for this target's economics and fitted to its budget, on the ingress dialect.
    let Shaped { body, cleared, steps, .. } = shaped;
    let body = &body;
    if let Some(local) = count_locally(req, target.dialect) {
        // Only Anthropic and Gemini count tokens upstream; elsewhere the proxy estimates.
        drop(attempt);
        return Ok(Step::Commit(Answer::Local(count_tokens::answer_locally_for(local, body)?)));
    }
    // Translation happens after folding and clearing, only when the target speaks another dialect.
    let model_override = attempt.send_model().or(state.model_override.as_deref()).map(str::to_string);
    let facts = outgoing::TargetFacts {
        dialect: target.dialect,
        model_override: model_override.as_deref(),
        reasoning: target.provider.model_spec(attempt.model()).is_some_and(|s| s.reasoning),
        own_key: matches!(target.provider.auth, ProviderAuth::Key { .. }),
        drop_prompt_cache_key: !target.provider.takes_prompt_cache_key,
    };
    let outgoing = outgoing::prepare(req, body, &facts)?;
    // Breakpoints or a cache key for this target, on the body in its own dialect. A clearing
    // step's first cleared output gets a breakpoint before it when it is far back.
    let first_cleared = cleared.as_ref().and_then(|c| c.first_newly_cleared.as_deref());
    let send_body = match req.route {
        "/messages/count_tokens" => outgoing.body,
        _ => req.cache.prepare(&attempt, outgoing.body, || pending.session().to_string(), first_cleared),
    };

    let sent_at = Instant::now();
    pending.sending(sent_at);
    let upstream_bytes = send_body.len() as u64;
    let at = (outgoing.path.as_str(), outgoing.query.as_deref());
    let sent = state.upstream.send(&target, req.parts, at, req.proxy_key_header.as_ref(), send_body).await;
    let resp = match sent {
        Ok(r) => r,
        Err(e) => {
            pending.upstream_waited(sent_at.elapsed());
            return Ok(transport_failed(attempt, pending, e));
        }
    };
    state.metrics.upstream_latency(sent_at.elapsed());
    // Taken apart rather than copying the headers out of it.
    let (resp_parts, resp_body) = http::Response::from(resp).into_parts();
    let (status, resp_headers) = (resp_parts.status, resp_parts.headers);
    attempt.observe_headers(&resp_headers);
    let is_sse = resp_headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    let mut rest: ByteStream = Box::pin(http_body_util::BodyDataStream::new(resp_body));
    // Read enough to judge the answer: the whole body, or a stream's first event.
    let streamed = is_sse && status.is_success();
    let (idle, provider) = (state.upstream.timeouts().idle, target.provider.name.as_str());
    let peeked = if streamed {
        peek::first_event(&mut rest, idle, provider).await
    } else {
        peek::whole(&mut rest, idle, provider).await
    };
    // Waiting on this upstream (connect, headers, the part read to judge it) is not overhead.
    pending.upstream_waited(sent_at.elapsed());
    let peeked = match peeked {
        Ok(p) => p,
        Err(e) => return Ok(transport_failed(attempt, pending, e)),
    };

    if let Some(failure) = classify(status.as_u16(), &resp_headers, &peeked, pool.clock().now_ms()) {
        tracing::warn!(provider = %target.provider.name, "{failure}");
        let (provider, account) = (attempt.provider().to_string(), attempt.account().to_string());
        let reason = format!("{provider}/{account}: {}", failure.kind());
        pending.hop(reason.clone());
        let retry = attempt.report(Outcome::Failed(failure)) == Verdict::TryNext;
        let held = HeldAnswer {
            status,
            headers: resp_headers,
            body: peeked,
            upstream: target.dialect,
            provider,
            account,
            reason,
        };
        return Ok(if retry { Step::Retry(Failed::Answer(held)) } else { Step::Stop(Failed::Answer(held)) });
    }

    // Committed: from here the answer goes to the client.
    attempt.mark_first_byte();
    let fit_saved: u64 = steps.iter().map(|(_, t)| t).sum();
    let saved_tokens = req.saved_tokens + cleared.as_ref().map_or(0, |c| c.saved_tokens) + fit_saved;
    if let Some(c) = &cleared {
        pending.cleared(c);
    }
    pending.fitted(&steps);
    state.metrics.bytes_upstream.fetch_add(upstream_bytes, Relaxed);
    state.metrics.saved_tokens.fetch_add(saved_tokens, Relaxed);
    state.metrics.request(req.ingress, status.as_u16());
    // One line per request only with --debug: the ledger keeps every request, and a
    // synchronous log write per request showed up as tens of µs in the overhead bench.
    tracing::debug!(
        dialect = %req.ingress,
        provider = %target.provider.name,
        account = attempt.account(),
        model = attempt.model(),
        status = status.as_u16(),
        upstream_ms = sent_at.elapsed().as_millis() as u64,
        saved_tokens,
        peer = %req.peer,
        "{} {}",
        req.parts.method,
        req.parts.uri.path()
    );
    let transform = Transform::for_answer(req.ingress, target.dialect, status, is_sse, req.envelope, outgoing.reply);
    pending.committed(status.as_u16(), &attempt);
    let complete = !streamed && peeked.len() < peek::WHOLE_BODY_LIMIT;
    Ok(Step::Commit(Answer::Relay(Box::new(Committed {
        status,
        headers: resp_headers,
        saved_tokens,
        peeked,
        rest,
        complete,
        is_sse,
        transform,
        upstream_dialect: target.dialect,
        provider: target.provider.name.clone(),
        attempt,
    }))))
}

/// The dialect to count tokens in here, when the request is a token count the target cannot make.
fn count_locally(req: &UpstreamRequest<'_>, target: Dialect) -> Option<Dialect> {
    if req.route == "/messages/count_tokens" && req.ingress == Dialect::Anthropic && target != Dialect::Anthropic {
        return Some(Dialect::Anthropic);
    }
    let gemini_count = req.gemini.is_some_and(|c| c.method == gemini::Method::CountTokens);
    (gemini_count && target != Dialect::Gemini).then_some(Dialect::Gemini)
}

/// Tells the pool an attempt failed in transport (connect, timeout, reset, stall) and notes the
/// hop in the ledger record.
fn transport_failed(attempt: Attempt, pending: &mut Pending, e: UpstreamError) -> Step {
    tracing::warn!(provider = attempt.provider(), "{e}");
    pending.hop(format!("{}/{}: {}", attempt.provider(), attempt.account(), e.kind()));
    match attempt.report(Outcome::Failed(Failure::from(&e))) {
        Verdict::TryNext => Step::Retry(Failed::Transport(e)),
        _ => Step::Stop(Failed::Transport(e)),
    }
}
