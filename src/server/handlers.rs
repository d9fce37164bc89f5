//! Request handling: auth, routing by path, and the proxy path for the three dialects.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

use super::error::ProxyError;
use super::relay::{relay_body, RelayContext};
use super::{AppState, Body};
use crate::dialect::{headers, Dialect, RequestEnvelope};

pub async fn handle(state: Arc<AppState>, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let path = req.uri().path().to_string();
    let dialect = error_dialect(&path, req.headers());
    if req.method() == Method::GET && path == "/healthz" {
        return json_response(StatusCode::OK, Bytes::from_static(b"{\"status\":\"ok\"}"));
    }
    let proxy_key_header = match authenticate(&state, req.headers()) {
        Ok(h) => h,
        Err(e) => return error_response(&state, dialect, e),
    };
    // `/v1` is optional so base URLs with or without it both work.
    let route = path.strip_prefix("/v1").unwrap_or(&path).to_string();
    let result = match (req.method(), route.as_str()) {
        (&Method::GET, "/metrics") => Ok(text_response(state.metrics.render())),
        (&Method::GET, "/models") => Ok(models_response(&state, req.headers())),
        (&Method::POST, "/messages") | (&Method::POST, "/messages/count_tokens") => {
            proxy(&state, Dialect::Anthropic, req, &route, proxy_key_header, peer).await
        }
        (&Method::POST, "/chat/completions") => {
            proxy(&state, Dialect::OpenaiChat, req, &route, proxy_key_header, peer).await
        }
        (&Method::POST, "/responses") => {
            proxy(&state, Dialect::OpenaiResponses, req, &route, proxy_key_header, peer).await
        }
        _ => Err(ProxyError::UnknownRoute { method: req.method().to_string(), path }),
    };
    result.unwrap_or_else(|e| error_response(&state, dialect, e))
}

/// The dialect an error is rendered in before the body is read: by path, then by header.
fn error_dialect(path: &str, headers: &HeaderMap) -> Dialect {
    if path.contains("/messages") || headers.contains_key(headers::ANTHROPIC_VERSION) {
        Dialect::Anthropic
    } else if path.contains("/responses") {
        Dialect::OpenaiResponses
    } else {
        Dialect::OpenaiChat
    }
}

/// Checks the proxy key when `server.api_keys` is set. Returns the header that carried it, which
/// must not be forwarded upstream.
fn authenticate(state: &AppState, hdrs: &HeaderMap) -> Result<Option<HeaderName>, ProxyError> {
    if state.cfg.api_keys.is_empty() {
        return Ok(None);
    }
    for name in [headers::TOKENFOLD_KEY, headers::X_API_KEY, headers::AUTHORIZATION] {
        let Some(value) = hdrs.get(name).and_then(|v| v.to_str().ok()) else { continue };
        let presented = value.strip_prefix("Bearer ").unwrap_or(value).trim();
        if state.cfg.api_keys.iter().any(|k| constant_time_eq(k.expose().as_bytes(), presented.as_bytes())) {
            return Ok(Some(HeaderName::from_static(name)));
        }
    }
    Err(ProxyError::Unauthorized)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn proxy(
    state: &Arc<AppState>,
    dialect: Dialect,
    req: Request<Incoming>,
    route: &str,
    proxy_key_header: Option<HeaderName>,
    peer: SocketAddr,
) -> Result<Response<Body>, ProxyError> {
    let started = Instant::now();
    let (parts, incoming) = req.into_parts();
    let body = read_body(state, &parts.headers, incoming).await?;
    state.metrics.bytes_in.fetch_add(body.len() as u64, Relaxed);
    let envelope: RequestEnvelope = serde_json::from_slice(&body).map_err(|e| ProxyError::MalformedJson(e.to_string()))?;

    // Fold on the ingress dialect, before any translation. Fail open: a panic forwards the original.
    let fold_off = parts.headers.get(headers::TOKENFOLD).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"off"));
    let mut saved_tokens = 0;
    let mut forward = body.clone();
    if state.folder.enabled() && !fold_off {
        let folded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| state.folder.fold(dialect, &body)));
        match folded {
            Ok(Some(f)) => {
                saved_tokens = f.saved_tokens;
                forward = f.body;
            }
            Ok(None) => {}
            Err(_) => tracing::error!("folding panicked; forwarding the request unchanged"),
        }
    }

    let targets = state.pool.targets(dialect, envelope.model.as_deref())?;
    let path_after_v1 = route;
    let mut last_error = None;
    for target in &targets {
        if target.dialect != dialect {
            // Translation plugs in here.
            last_error = Some(ProxyError::Internal(format!(
                "provider `{}` speaks {}; translation from {dialect} is not available yet",
                target.provider.name, target.dialect
            )));
            continue;
        }
        let sent_at = Instant::now();
        let resp = state
            .upstream
            .send(
                target,
                parts.method.clone(),
                path_after_v1,
                parts.uri.query(),
                &parts.headers,
                proxy_key_header.as_ref(),
                forward.clone(),
            )
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(provider = %target.provider.name, "{e}");
                let retry = e.retryable();
                last_error = Some(e);
                if retry {
                    continue;
                }
                break;
            }
        };
        state.metrics.upstream_latency(sent_at.elapsed());
        state.metrics.bytes_upstream.fetch_add(forward.len() as u64, Relaxed);
        state.metrics.saved_tokens.fetch_add(saved_tokens, Relaxed);
        let status = resp.status();
        state.metrics.request(dialect, status.as_u16());
        tracing::info!(
            dialect = %dialect,
            provider = %target.provider.name,
            model = envelope.model.as_deref().unwrap_or("-"),
            status = status.as_u16(),
            upstream_ms = sent_at.elapsed().as_millis() as u64,
            saved_tokens,
            %peer,
            "{} {}",
            parts.method,
            parts.uri.path()
        );
        let mut headers = crate::pool::upstream::client_response_headers(resp.headers());
        if let Ok(v) = HeaderValue::from_str(&saved_tokens.to_string()) {
            headers.insert(HeaderName::from_static(headers::SAVED_TOKENS), v);
        }
        let is_sse = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("text/event-stream"));
        let body = relay_body(
            resp,
            RelayContext {
                state: state.clone(),
                dialect,
                provider: target.provider.name.clone(),
                is_sse,
                started,
            },
        );
        let mut response = Response::new(body);
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        return Ok(response);
    }
    Err(last_error.unwrap_or_else(|| ProxyError::NoUpstream(dialect)))
}

async fn read_body(state: &AppState, headers: &HeaderMap, incoming: Incoming) -> Result<Bytes, ProxyError> {
    let limit = state.cfg.max_body_bytes;
    let declared = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if let Some(size) = declared.filter(|&s| s > limit) {
        return Err(ProxyError::BodyTooLarge { size: Some(size), limit });
    }
    match Limited::new(incoming, limit as usize).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ProxyError::BodyTooLarge { size: None, limit }),
        Err(e) => Err(ProxyError::BodyRead(e.to_string())),
    }
}

fn models_response(state: &AppState, hdrs: &HeaderMap) -> Response<Body> {
    let mut ids: Vec<(String, String)> = Vec::new();
    for p in &state.cfg.providers {
        for m in &p.models {
            if !ids.iter().any(|(id, _)| id == m) {
                ids.push((m.clone(), p.name.clone()));
            }
        }
    }
    let body = if hdrs.contains_key(headers::ANTHROPIC_VERSION) {
        let data: Vec<serde_json::Value> = ids
            .iter()
            .map(|(id, _)| {
                serde_json::json!({
                    "type": "model", "id": id, "display_name": id, "created_at": "1970-01-01T00:00:00Z"
                })
            })
            .collect();
        serde_json::json!({
            "data": data,
            "has_more": false,
            "first_id": ids.first().map(|(id, _)| id.clone()),
            "last_id": ids.last().map(|(id, _)| id.clone()),
        })
    } else {
        let data: Vec<serde_json::Value> = ids
            .iter()
            .map(|(id, owner)| serde_json::json!({"id": id, "object": "model", "created": 0, "owned_by": owner}))
            .collect();
        serde_json::json!({"object": "list", "data": data})
    };
    json_response(StatusCode::OK, Bytes::from(serde_json::to_vec(&body).unwrap_or_default()))
}

fn error_response(state: &AppState, dialect: Dialect, e: ProxyError) -> Response<Body> {
    state.metrics.error(e.kind());
    state.metrics.request(dialect, e.status().as_u16());
    tracing::warn!(dialect = %dialect, status = e.status().as_u16(), "{e}");
    json_response(e.status(), e.body(dialect))
}

fn json_response(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn text_response(text: String) -> Response<Body> {
    let mut r = Response::new(full(Bytes::from(text)));
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    r
}

fn full(b: Bytes) -> Body {
    Full::new(b).map_err(|never| match never {}).boxed_unsync()
}
