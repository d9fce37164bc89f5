//! Sends a folded request through the pool's attempts: translate when the target speaks another
//! dialect, classify the answer (an error status, or an error hidden in a 200's body or first
//! event), fall back while nothing has reached the client, then relay.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures_util::StreamExt;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};

use super::count_tokens;
use super::error::ProxyError;
use super::outgoing;
use super::relay::{relay_body, whole_body, ByteStream, RelayContext, Transform};
use super::{AppState, Body};
use crate::cache::RequestCache;
use crate::config::Price;
use crate::dialect::breakpoints::CacheTtl;
use crate::dialect::sse::find_event_end;
use crate::dialect::translate::{self, StreamTranslator};
use crate::dialect::{gemini, headers, Dialect, RequestEnvelope};
use crate::fold::clear::{Cleared, Economics};
use crate::fold::Prepared;
use crate::ledger::{Prices, Record};
use crate::pool::{classify, Attempt, Caller, Failure, Outcome, RequestFacts, Verdict};

/// Error bodies and non-streamed answers are read whole before deciding; beyond this they are cut.
const WHOLE_BODY_LIMIT: usize = 32 * 1024 * 1024;
/// A stream's first event is held back to judge it only up to this size (a Responses
/// `response.created` echoes the request's instructions and tools); a longer first event is
/// committed and streamed on as it arrives.
const PEEK_LIMIT: usize = 256 * 1024;

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
    pub started: Instant,
}

/// A provider's answer that was read before deciding, kept in case no other target does better.
struct HeldAnswer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    upstream: Dialect,
    /// Who gave it and why it failed, for the ledger record.
    provider: String,
    account: String,
    reason: String,
}

pub async fn send_with_fallback(
    state: &Arc<AppState>,
    req: UpstreamRequest<'_>,
    record: &mut Record,
) -> Result<Response<Body>, ProxyError> {
    // The estimate is bytes / 4 of the folded body, plus the output the request allows.
    let facts = RequestFacts {
        est_tokens: req.body.len() as u64 / 4,
        max_output: req.envelope.max_output(),
        has_tools: req.has_tools,
        has_images: req.has_images,
        caller: Caller::from_headers(&req.parts.headers, req.proxy_key_header.as_ref()),
    };
    let model = req.envelope.model.as_deref();
    // The pool this request started with, even if a reload replaces it meanwhile.
    let pool = state.pool();
    let mut plan = pool.plan(req.ingress, model, &facts).map_err(ProxyError::Pool)?;
    record.route = plan.label().to_string();
    let mut held: Option<HeldAnswer> = None;
    let mut last_error: Option<ProxyError> = None;
    while let Some(mut attempt) = plan.admit_next().await {
        let target = attempt.target().clone();
        // A failed request's record names the last target tried.
        note_target(record, &attempt);
        // Clearing is decided for this target's economics, on the ingress dialect.
        let cleared = clear_for(state, &req, &attempt);
        let body = cleared.as_ref().map_or(&req.body, |c| &c.body);
        if req.route == "/messages/count_tokens"
            && req.ingress == Dialect::Anthropic
            && target.dialect != Dialect::Anthropic
        {
            // Only Anthropic counts tokens upstream; elsewhere the proxy estimates.
            drop(attempt);
            return count_tokens::answer_locally_for(Dialect::Anthropic, body);
        }
        if req.gemini.is_some_and(|c| c.method == gemini::Method::CountTokens) && target.dialect != Dialect::Gemini {
            drop(attempt);
            return count_tokens::answer_locally_for(Dialect::Gemini, body);
        }
        // Translation happens after folding and clearing, only when the target speaks another dialect.
        let model_override = attempt.send_model().or(state.model_override.as_deref()).map(str::to_string);
        let target_reasoning = target.provider.model_spec(attempt.model()).is_some_and(|s| s.reasoning);
        let own_key = matches!(target.provider.auth, crate::config::ProviderAuth::Key { .. });
        let facts = outgoing::TargetFacts {
            dialect: target.dialect,
            model_override: model_override.as_deref(),
            reasoning: target_reasoning,
            own_key,
            drop_prompt_cache_key: !target.provider.takes_prompt_cache_key,
        };
        let outgoing = outgoing::prepare(&req, body, &facts)?;
        let reply = outgoing.reply;
        // Breakpoints or a cache key for this target, on the body in its own dialect. A clearing
        // step's first cleared output gets a breakpoint before it when it is far back.
        let first_cleared = cleared.as_ref().and_then(|c| c.first_newly_cleared.as_deref());
        let send_body = match req.route {
            "/messages/count_tokens" => outgoing.body,
            _ => req.cache.prepare(&attempt, outgoing.body, record, first_cleared),
        };
        let sent_at = Instant::now();
        // The proxy's own time if the request ends before the relay takes over (error, cancel).
        record.overhead_us = sent_at.duration_since(req.started).as_micros() as u64;
        let upstream_bytes = send_body.len() as u64;
        let at = (outgoing.path.as_str(), outgoing.query.as_deref());
        let sent = state.upstream.send(&target, req.parts, at, req.proxy_key_header.as_ref(), send_body).await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                add_upstream_wait(record, sent_at);
                let retry = transport_failed(attempt, record, &e);
                last_error = Some(e);
                if retry {
                    continue;
                }
                break;
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
        let mut body_stream: ByteStream = Box::pin(http_body_util::BodyDataStream::new(resp_body));
        // Read enough to judge the answer: the whole body, or a stream's first event.
        let streamed = is_sse && status.is_success();
        let peeked = if streamed {
            peek_first_event(&mut body_stream, state.upstream.timeouts().idle).await
        } else {
            read_whole(&mut body_stream, state.upstream.timeouts().idle).await
        };
        // Waiting on this upstream (connect, headers, the part read to judge it) is not overhead.
        add_upstream_wait(record, sent_at);
        let peeked = match peeked {
            Ok(p) => p,
            Err(e) => {
                let e = ProxyError::UpstreamUnreachable { provider: target.provider.name.clone(), detail: e };
                let retry = transport_failed(attempt, record, &e);
                last_error = Some(e);
                if retry {
                    continue;
                }
                break;
            }
        };
        if let Some(failure) = classify(status.as_u16(), &resp_headers, &peeked, pool.clock().now_ms()) {
            tracing::warn!(provider = %target.provider.name, "{failure}");
            let (provider, account) = (attempt.provider().to_string(), attempt.account().to_string());
            let reason = format!("{provider}/{account}: {}", failure.kind());
            record.fallbacks.push(reason.clone());
            let retry = attempt.report(Outcome::Failed(failure)) == Verdict::TryNext;
            held = Some(HeldAnswer {
                status,
                headers: resp_headers,
                body: peeked,
                upstream: target.dialect,
                provider,
                account,
                reason,
            });
            if retry {
                continue;
            }
            break;
        }
        attempt.mark_first_byte();
        // Committed: from here the answer goes to the client.
        let saved_tokens = req.saved_tokens + cleared.as_ref().map_or(0, |c| c.saved_tokens);
        if let Some(c) = &cleared {
            note_clear(record, c);
        }
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
        let transform = transform_for(req.ingress, target.dialect, status, is_sse, req.envelope, reply);
        record.status = status.as_u16();
        if let Some(p) = attempt.price() {
            let (input, output, cached_input) = (p.input, p.output, p.cached_input);
            let (cache_write, cache_write_1h) = (p.cache_write, p.cache_write_1h);
            record.prices = Prices { input, output, cached_input, cache_write, cache_write_1h };
        }
        let context = RelayContext {
            state: state.clone(),
            dialect: req.ingress,
            upstream_dialect: target.dialect,
            provider: target.provider.name.clone(),
            is_sse,
            started: req.started,
            record: std::mem::replace(record, Record::empty()),
            attempt: Some(attempt),
        };
        let headers = client_headers(&resp_headers, saved_tokens, &transform);
        let complete = !streamed && peeked.len() < WHOLE_BODY_LIMIT;
        let body = if complete {
            whole_body(peeked, context, transform)
        } else {
            relay_body(peeked, body_stream, context, transform)
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        return Ok(response);
    }
    // No target took the request: the provider's own answer if one came back, else our error.
    // The last failure led to no further attempt, so it is the request's error, not a hop.
    let last_failure = record.fallbacks.pop().unwrap_or_default();
    if let Some(h) = held {
        record.status = h.status.as_u16();
        (record.provider, record.account, record.error) = (h.provider, h.account, h.reason);
        let transform = transform_for(req.ingress, h.upstream, h.status, false, req.envelope, Default::default());
        let body = match transform {
            Transform::Whole { upstream, client, .. } => {
                Bytes::from(translate::translate_error(upstream, client, h.status.as_u16(), &h.body))
            }
            _ => h.body,
        };
        let mut headers = crate::pool::upstream::client_response_headers(&h.headers);
        if h.upstream != req.ingress {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        return Err(ProxyError::Upstream { status: h.status, headers: Box::new(headers), body });
    }
    record.error = last_failure;
    Err(last_error.unwrap_or_else(|| ProxyError::Pool(plan.exhausted())))
}

/// Tells the pool an attempt failed in transport (connect, timeout, reset) and notes the hop in
/// the ledger record. True when the next target may be tried.
fn transport_failed(attempt: Attempt, record: &mut Record, e: &ProxyError) -> bool {
    tracing::warn!(provider = attempt.provider(), "{e}");
    record.fallbacks.push(format!("{}/{}: {}", attempt.provider(), attempt.account(), e.kind()));
    attempt.report(Outcome::Failed(Failure::from_proxy_error(e))) == Verdict::TryNext
}

/// Names the attempt's target in the record: provider, account, model, and whether its account is
/// a free tier.
fn note_target(record: &mut Record, attempt: &Attempt) {
    record.provider = attempt.provider().to_string();
    record.account = attempt.account().to_string();
    record.model = attempt.model().to_string();
    record.free_tier = free_tier(attempt);
}

/// Whether the attempt's account is a free tier.
fn free_tier(attempt: &Attempt) -> bool {
    let accounts = &attempt.target().provider.accounts;
    accounts.iter().find(|a| a.label == attempt.account()).is_some_and(|a| a.free_tier)
}

/// Clears stale tool output for the attempt's target: the provider's kind, the model's price and
/// whether the account is a free tier give the economics (a fallback to a target with other
/// economics decides again). `None`: send the folded body. Fails open.
fn clear_for(state: &AppState, req: &UpstreamRequest, attempt: &Attempt) -> Option<Cleared> {
    let p = req.prepared.as_ref()?;
    let kind = attempt.target().provider.dialect;
    // With the 1-hour TTL the breakpoints we add write at its price, so a step's rewrite costs that.
    let one_hour = kind == Dialect::Anthropic && state.cfg.cache.anthropic_ttl == CacheTtl::OneHour;
    let price = attempt.price().map(|p| if one_hour { Price { cache_write: p.cache_write_1h, ..p } } else { p });
    let econ = Economics::of_target(kind, price, free_tier(attempt));
    let cleared = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| state.folder.clear(p, econ)));
    cleared.unwrap_or_else(|_| {
        tracing::error!("clearing panicked; sending the request as folded");
        None
    })
}

/// What clearing did in the request that went out, for the ledger (mechanism `clear`).
fn note_clear(record: &mut Record, c: &Cleared) {
    record.add_saving(crate::fold::clear::MECHANISM, |s| {
        s.tokens += c.saved_tokens;
        s.elisions += c.newly_cleared;
        s.recalls += c.recalls;
        s.steps += u64::from(c.stepped());
    });
    record.rewritten_tokens = c.rewritten_tokens;
}

/// Adds the time since `since`, spent waiting on an upstream, to the record's `upstream_us`.
fn add_upstream_wait(record: &mut Record, since: Instant) {
    record.upstream_us += since.elapsed().as_micros() as u64;
}

fn transform_for(
    ingress: Dialect,
    upstream: Dialect,
    status: StatusCode,
    is_sse: bool,
    env: &RequestEnvelope,
    reply: translate::ReplyContext,
) -> Transform {
    if ingress == upstream {
        Transform::None
    } else if is_sse && status.is_success() {
        let model = env.model.as_deref().unwrap_or("");
        let mut translator = StreamTranslator::with_reply(upstream, ingress, model, &reply);
        translator.set_include_usage(env.stream_options.as_ref().is_some_and(|o| o.include_usage));
        Transform::Stream(Box::new(translator))
    } else {
        let error_status = (!status.is_success()).then_some(status.as_u16());
        Transform::Whole { upstream, client: ingress, error_status, buf: Vec::new(), reply }
    }
}

fn client_headers(upstream: &HeaderMap, saved_tokens: u64, transform: &Transform) -> HeaderMap {
    let mut headers = crate::pool::upstream::client_response_headers(upstream);
    headers.insert(HeaderName::from_static(headers::SAVED_TOKENS), HeaderValue::from(saved_tokens));
    if matches!(transform, Transform::Whole { .. }) {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    headers
}

/// Reads a stream until its first complete SSE event (or its end, or `PEEK_LIMIT` bytes).
async fn peek_first_event(body: &mut ByteStream, idle: std::time::Duration) -> Result<Bytes, String> {
    // Usually the first chunk holds the whole first event: then it is passed on as it is.
    let mut seen: Option<Vec<u8>> = None;
    let mut first: Option<Bytes> = None;
    loop {
        let chunk = match tokio::time::timeout(idle, body.next()).await {
            Err(_) => return Err(format!("no event within {:.1}s (timeouts.idle_ms)", idle.as_secs_f64())),
            Ok(Some(Ok(chunk))) => chunk,
            Ok(Some(Err(e))) if first.is_none() => return Err(format!("connection reset before the first byte ({e})")),
            // Nothing has reached the client yet: a break before a whole first event is one to
            // fall back from, however many bytes came.
            Ok(Some(Err(e))) => {
                let n = seen.as_ref().map_or_else(|| first.as_ref().map_or(0, |f| f.len()), |s| s.len());
                return Err(format!("connection reset after {n} bytes, before the first complete event ({e})"));
            }
            Ok(None) => return Ok(joined(first, seen)),
        };
        let Some(prefix) = &first else {
            if find_event_end(&chunk).is_some() || chunk.len() >= PEEK_LIMIT {
                return Ok(chunk);
            }
            first = Some(chunk);
            continue;
        };
        let buf = seen.get_or_insert_with(|| prefix.to_vec());
        // A blank line may straddle the chunk boundary: look again at the last three bytes.
        let from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk);
        if find_event_end(&buf[from..]).is_some() || buf.len() >= PEEK_LIMIT {
            return Ok(joined(first, seen));
        }
    }
}

fn joined(first: Option<Bytes>, seen: Option<Vec<u8>>) -> Bytes {
    match seen {
        Some(all) => Bytes::from(all),
        None => first.unwrap_or_default(),
    }
}

/// Reads a whole (non-streamed) body, up to `WHOLE_BODY_LIMIT`. A body in one chunk (the usual
/// case for JSON answers) is not copied.
async fn read_whole(body: &mut ByteStream, idle: std::time::Duration) -> Result<Bytes, String> {
    let mut first: Option<Bytes> = None;
    let mut all: Option<Vec<u8>> = None;
    loop {
        match tokio::time::timeout(idle, body.next()).await {
            Err(_) => return Err(format!("body stalled for {:.1}s (timeouts.idle_ms)", idle.as_secs_f64())),
            Ok(None) => return Ok(joined(first, all)),
            Ok(Some(Err(e))) => return Err(format!("connection broke while reading the answer ({e})")),
            Ok(Some(Ok(chunk))) => {
                let Some(prefix) = &first else {
                    first = Some(chunk);
                    continue;
                };
                let buf = all.get_or_insert_with(|| prefix.to_vec());
                buf.extend_from_slice(&chunk);
                if buf.len() >= WHOLE_BODY_LIMIT {
                    return Ok(joined(first, all));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(chunks: &[&[u8]]) -> ByteStream {
        let items: Vec<reqwest::Result<Bytes>> = chunks.iter().map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        Box::pin(futures_util::stream::iter(items))
    }

    async fn peek(chunks: &[&[u8]]) -> Bytes {
        peek_first_event(&mut stream(chunks), std::time::Duration::from_secs(1)).await.unwrap()
    }

    #[tokio::test]
    async fn the_peek_stops_after_the_first_event_wherever_the_chunks_break() {
        assert_eq!(peek(&[b"data: a\n\ndata: b\n\n"]).await.as_ref(), b"data: a\n\ndata: b\n\n");
        assert_eq!(peek(&[b"data: a\n", b"\ndata: b", b"\n\n"]).await.as_ref(), b"data: a\n\ndata: b");
        assert_eq!(peek(&[b"data: a\r\n\r", b"\n", b"more"]).await.as_ref(), b"data: a\r\n\r\n");
        assert_eq!(peek(&[b"da", b"ta", b": a", b"\n\n", b"x"]).await.as_ref(), b"data: a\n\n");
        // A stream that ends inside its first event gives what it sent.
        assert_eq!(peek(&[b"data: a", b"b"]).await.as_ref(), b"data: ab");
        assert_eq!(peek(&[]).await.as_ref(), b"");
    }

    #[tokio::test]
    async fn the_peek_is_bounded() {
        let piece = vec![b'x'; 100 * 1024];
        let got = peek(&[b"data: ", &piece, &piece, &piece, &piece, b"\n\n"]).await;
        assert!(got.len() >= PEEK_LIMIT && got.len() < PEEK_LIMIT + piece.len() + 6, "{}", got.len());
        assert_eq!(peek(&[&vec![b'x'; PEEK_LIMIT], b"more"]).await.len(), PEEK_LIMIT);
    }

    #[tokio::test]
    async fn whole_bodies_are_joined() {
        let idle = std::time::Duration::from_secs(1);
        assert_eq!(read_whole(&mut stream(&[b"{\"a\":", b"1}"]), idle).await.unwrap().as_ref(), b"{\"a\":1}");
        assert_eq!(read_whole(&mut stream(&[b"{}"]), idle).await.unwrap().as_ref(), b"{}");
        assert_eq!(read_whole(&mut stream(&[]), idle).await.unwrap().as_ref(), b"");
    }
}
