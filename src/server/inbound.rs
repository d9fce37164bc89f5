//! The proxy path of one request: read the body (within its limits), read its envelope, fold it
//! on the client's dialect, and hand it to the attempts (`fallback.rs`); the answer goes out
//! through the relay, an error in the caller's dialect.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, USER_AGENT};
use http::{HeaderMap, HeaderName, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::error::ProxyError;
use super::fallback::{send_with_fallback, Answer, UpstreamRequest};
use super::pending::{InFlight, Pending};
use super::{relay, AppState, Body};
use crate::cache::RequestCache;
use crate::dialect::{envelope, gemini, headers, Dialect};
use crate::fold::Level;

/// Where a proxied request came from and what it asked for, as routing found it.
pub struct Inbound<'a> {
    /// The dialect of the route (the body is read in it).
    pub dialect: Dialect,
    /// The path after `/v1`.
    pub route: &'a str,
    /// The header that carried the proxy's own key (never forwarded).
    pub proxy_key_header: Option<HeaderName>,
    pub peer: SocketAddr,
}

pub async fn proxy(
    state: &Arc<AppState>,
    req: Request<Incoming>,
    inbound: Inbound<'_>,
) -> Result<Response<Body>, ProxyError> {
    let started = Instant::now();
    let in_flight = InFlight::enter(state);
    let user_agent = req.headers().get(USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mut pending = Pending::new(state, started, inbound.dialect, user_agent);
    let answer = fold_and_send(state, req, &inbound, &mut pending).await;
    let response = match answer {
        Ok(Answer::Relay(committed)) => relay::respond(state, inbound.dialect, *committed, pending),
        Ok(Answer::Local(response)) => {
            pending.discard();
            response
        }
        Err(e) => {
            pending.fail(&e);
            return Err(e);
        }
    };
    // Until the body is done (or the client drops it), the request counts as in flight.
    Ok(response.map(|body| in_flight.track(body)))
}

/// Reads, scans and folds the request, then sends it through the attempts.
async fn fold_and_send(
    state: &Arc<AppState>,
    req: Request<Incoming>,
    inbound: &Inbound<'_>,
    pending: &mut Pending,
) -> Result<Answer, ProxyError> {
    let dialect = inbound.dialect;
    let (parts, incoming) = req.into_parts();
    let body = read_body(state, &parts.headers, incoming, pending).await?;
    state.metrics.bytes_in.fetch_add(body.len() as u64, Relaxed);
    let mut scanned = envelope::scan(&body)?;
    // Gemini names the model and streaming in the URL.
    let gemini_call = gemini::Call::parse(parts.uri.path(), parts.uri.query()).filter(|_| dialect == Dialect::Gemini);
    if let Some(call) = &gemini_call {
        scanned.envelope.model = Some(call.model.clone());
        scanned.envelope.stream = Some(call.streams());
    }
    let envelope = &scanned.envelope;
    pending.asked_for(envelope.model.as_deref().unwrap_or_default());
    // A session id in a header is read now; one in the body is read by the ledger writer.
    pending.session_from(crate::ledger::session::from_headers(&parts.headers), dialect, &body);

    // Fold on the ingress dialect, before any translation. Fail open: a panic forwards the original.
    let fold_off = parts.headers.get(headers::TOKENFOLD).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"off"));
    let level = fold_level(state, &parts.headers)?;
    let mut cache = RequestCache::new(state.cfg.cache, &parts.headers, dialect, scanned.has_prompt_cache_key)
        .map_err(|e| ProxyError::BadHeader(e.to_string()))?;
    if fold_off {
        cache = cache.switched_off();
    }
    // Clearing comes per attempt (it depends on the target); it is off for this request when the
    // client says so, or when the client asks the provider to clear tool uses itself.
    let clear = clearing_asked(&parts.headers)? && !scanned.clears_tool_uses;
    let mut saved_tokens = 0;
    let mut folded_body = body.clone();
    let mut prepared = None;
    if state.folder.enabled() && !fold_off {
        let folded =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| state.folder.prepare(dialect, &body, level)));
        match folded {
            Ok(Some(p)) => {
                if let Some(f) = &p.folded {
                    saved_tokens = f.saved_tokens;
                    pending.folded(f);
                    folded_body = f.body.clone();
                }
                prepared = Some(p).filter(|_| clear);
            }
            Ok(None) => {}
            Err(_) => tracing::error!("folding panicked; forwarding the request unchanged"),
        }
    }

    let request = UpstreamRequest {
        ingress: dialect,
        route: inbound.route,
        gemini: gemini_call.as_ref(),
        parts: &parts,
        envelope,
        has_tools: scanned.has_tools,
        has_images: scanned.has_images,
        body: folded_body,
        prepared,
        proxy_key_header: inbound.proxy_key_header.clone(),
        saved_tokens,
        cache,
        peer: inbound.peer,
    };
    send_with_fallback(state, request, pending).await
}

/// `x-tokenfold-level`, else the configured level.
fn fold_level(state: &AppState, hdrs: &HeaderMap) -> Result<Level, ProxyError> {
    match hdrs.get(headers::TOKENFOLD_LEVEL) {
        None => Ok(state.folder.level()),
        Some(v) => v.to_str().ok().and_then(Level::parse).ok_or_else(|| {
            ProxyError::BadHeader(format!(
                "{}: `{}` is not one of lossless, balanced, aggressive",
                headers::TOKENFOLD_LEVEL,
                String::from_utf8_lossy(v.as_bytes())
            ))
        }),
    }
}

/// `x-tokenfold-clear`: `off` keeps every old tool output for this request.
fn clearing_asked(hdrs: &HeaderMap) -> Result<bool, ProxyError> {
    match hdrs.get(headers::TOKENFOLD_CLEAR).map(|v| v.as_bytes()) {
        None => Ok(true),
        Some(v) if v.eq_ignore_ascii_case(b"off") => Ok(false),
        Some(v) if v.eq_ignore_ascii_case(b"on") => Ok(true),
        Some(v) => Err(ProxyError::BadHeader(format!(
            "{}: `{}` is not one of on, off",
            headers::TOKENFOLD_CLEAR,
            String::from_utf8_lossy(v)
        ))),
    }
}

/// Reads the request body, within `server.max_body_bytes` and `server.body_timeout_ms`. How long
/// it waited for the client to send it is the client's time, not the proxy's overhead.
async fn read_body(
    state: &AppState,
    headers: &HeaderMap,
    mut incoming: Incoming,
    pending: &mut Pending,
) -> Result<Bytes, ProxyError> {
    let limit = state.cfg.max_body_bytes;
    let declared = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if let Some(size) = declared.filter(|&s| s > limit) {
        return Err(ProxyError::BodyTooLarge { size: Some(size), limit });
    }
    let timeout = state.cfg.server.body_timeout;
    let deadline = tokio::time::Instant::now() + timeout;
    // A body in one frame (the usual case for a small request) is not copied.
    let mut first: Option<Bytes> = None;
    let mut joined: Option<Vec<u8>> = None;
    loop {
        let asked = Instant::now();
        let frame = tokio::time::timeout_at(deadline, incoming.frame()).await;
        pending.client_waited(asked.elapsed());
        let data = match frame {
            Err(_) => return Err(ProxyError::BodyTimeout { secs: timeout.as_secs_f64() }),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(ProxyError::BodyRead(e.to_string())),
            Ok(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => data,
                Err(_) => continue, // trailers
            },
        };
        let size = joined.as_ref().map_or_else(|| first.as_ref().map_or(0, Bytes::len), Vec::len) + data.len();
        if size as u64 > limit {
            return Err(ProxyError::BodyTooLarge { size: None, limit });
        }
        match (&first, &mut joined) {
            (None, _) => first = Some(data),
            (Some(f), None) => joined = Some([f.as_ref(), data.as_ref()].concat()),
            (Some(_), Some(all)) => all.extend_from_slice(&data),
        }
    }
    Ok(joined.map(Bytes::from).or(first).unwrap_or_default())
}
