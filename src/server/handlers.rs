//! Request handling: auth, routing by path, the proxy's own endpoints, and errors as answers.
//! The proxy path itself is `inbound.rs`.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

use super::error::ProxyError;
use super::inbound::{self, Inbound};
use super::{cross_origin, dashboard};
use super::{AppState, Body};
use crate::dialect::{gemini, headers, Dialect};

pub async fn handle(state: Arc<AppState>, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let path = req.uri().path().to_string();
    let gemini_call = gemini::Call::parse(&path, req.uri().query());
    let dialect = if gemini_call.is_some() { Dialect::Gemini } else { error_dialect(&path, req.headers()) };
    let access = match cross_origin::check(&state.cfg, &req) {
        Ok(a) => a,
        Err(e) => return refuse(&state, dialect, req.version(), e),
    };
    if cross_origin::is_preflight(&req) {
        return cross_origin::preflight_answer(req.headers()).map(full);
    }
    let mut response = route(state, req, peer, path, dialect, gemini_call).await;
    if let cross_origin::Access::Cors(origin) = access {
        cross_origin::allow(response.headers_mut(), origin);
    }
    response
}

/// An error answer after which an HTTP/1 connection is closed: a client refused at the door
/// does not get to keep a connection open.
fn refuse(state: &AppState, dialect: Dialect, version: Version, e: ProxyError) -> Response<Body> {
    let mut r = error_response(state, dialect, e);
    if version <= Version::HTTP_11 {
        r.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

async fn route(
    state: Arc<AppState>,
    req: Request<Incoming>,
    peer: SocketAddr,
    path: String,
    dialect: Dialect,
    gemini_call: Option<gemini::Call>,
) -> Response<Body> {
    // Claude Code probes `HEAD /api/hello` on its base URL at start (unless nonessential traffic
    // is off): a liveness check like /healthz, not an API call.
    let probe = req.method() == Method::GET || req.method() == Method::HEAD;
    if probe && (path == "/healthz" || path == "/api/hello") {
        return json_response(StatusCode::OK, Bytes::from_static(b"{\"status\":\"ok\"}"));
    }
    let proxy_key_header = match authenticate(&state, req.headers(), dashboard_key(&path, req.uri().query())) {
        Ok(h) => h,
        Err(e) => return refuse(&state, dialect, req.version(), e),
    };
    // `/v1` is optional so base URLs with or without it both work.
    let route = path.strip_prefix("/v1").unwrap_or(&path).to_string();
    let result = match (req.method(), route.as_str()) {
        (&Method::GET, "/metrics") => {
            let mut text = state.metrics.render(state.ledger.lost());
            if let Some(r) = state.pool().shared() {
                text.push_str(&r.metrics());
            }
            text.push_str(&state.ledger.metrics());
            Ok(text_response(text))
        }
        (&Method::GET, "/dashboard") | (&Method::GET, "/dashboard/data") if !dashboard::allowed(&state, peer) => {
            Err(ProxyError::Forbidden("the dashboard is served to loopback only unless server.api_keys is set".into()))
        }
        (&Method::GET, "/dashboard") => {
            let mut r = Response::new(full(Bytes::from_static(dashboard::PAGE.as_bytes())));
            r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
            Ok(r)
        }
        (&Method::GET, "/dashboard/data") => match dashboard::data(&state).await {
            Ok(body) => Ok(json_response(StatusCode::OK, body)),
            Err(e) => Err(ProxyError::Internal(format!("dashboard data: {e}"))),
        },
        (&Method::GET, "/pool") if !dashboard::allowed(&state, peer) => Err(ProxyError::Forbidden(
            "the pool status is served to loopback only unless server.api_keys is set".into(),
        )),
        (&Method::GET, "/pool") => match serde_json::to_vec(&state.pool().pool_status()) {
            Ok(body) => Ok(json_response(StatusCode::OK, Bytes::from(body))),
            Err(e) => Err(ProxyError::Internal(format!("pool status: {e}"))),
        },
        (&Method::GET, "/models") => Ok(models_response(&state, req.headers(), proxy_key_header.as_ref()).await),
        (&Method::GET, r) if r.starts_with("/o/") => Ok(original_response(&state, &r["/o/".len()..]).await),
        (&Method::POST, "/messages") | (&Method::POST, "/messages/count_tokens") => {
            inbound::proxy(&state, req, Inbound { dialect: Dialect::Anthropic, route: &route, proxy_key_header, peer })
                .await
        }
        (&Method::POST, "/chat/completions") => {
            inbound::proxy(&state, req, Inbound { dialect: Dialect::OpenaiChat, route: &route, proxy_key_header, peer })
                .await
        }
        (&Method::POST, "/responses") => {
            inbound::proxy(
                &state,
                req,
                Inbound { dialect: Dialect::OpenaiResponses, route: &route, proxy_key_header, peer },
            )
            .await
        }
        (&Method::POST, _) if gemini_call.is_some() => {
            inbound::proxy(&state, req, Inbound { dialect: Dialect::Gemini, route: &route, proxy_key_header, peer })
                .await
        }
        _ => Err(ProxyError::UnknownRoute { method: req.method().to_string(), path }),
    };
    result.unwrap_or_else(|e| error_response(&state, dialect, e))
}

/// The dialect an error is rendered in before the body is read. The three dialect paths decide
/// by themselves; only elsewhere (unknown routes, `/metrics`) does `anthropic-version` pick Anthropic.
fn error_dialect(path: &str, headers: &HeaderMap) -> Dialect {
    let route = path.strip_prefix("/v1").unwrap_or(path);
    if route.starts_with("/messages") {
        Dialect::Anthropic
    } else if route.starts_with("/chat/completions") {
        Dialect::OpenaiChat
    } else if route.starts_with("/responses") {
        Dialect::OpenaiResponses
    } else if path.contains("/models/") && path.contains(':') {
        // A Gemini method this proxy does not serve (`:embedContent`, ...).
        Dialect::Gemini
    } else if headers.contains_key(headers::ANTHROPIC_VERSION) {
        Dialect::Anthropic
    } else {
        Dialect::OpenaiChat
    }
}

/// Checks the proxy key when `server.api_keys` is set. Returns the header that carried it, which
/// must not be forwarded upstream.
fn authenticate(state: &AppState, hdrs: &HeaderMap, query_key: Option<&str>) -> Result<Option<HeaderName>, ProxyError> {
    if state.cfg.api_keys.is_empty() {
        return Ok(None);
    }
    let is_proxy_key = |presented: &str| {
        state.cfg.api_keys.iter().any(|k| constant_time_eq(k.expose().as_bytes(), presented.as_bytes()))
    };
    if query_key.is_some_and(is_proxy_key) {
        return Ok(None);
    }
    for name in [headers::TOKENFOLD_KEY, headers::X_API_KEY, headers::AUTHORIZATION, headers::X_GOOG_API_KEY] {
        let Some(value) = hdrs.get(name).and_then(|v| v.to_str().ok()) else { continue };
        if is_proxy_key(value.strip_prefix("Bearer ").unwrap_or(value).trim()) {
            return Ok(Some(HeaderName::from_static(name)));
        }
    }
    Err(ProxyError::Unauthorized)
}

/// A browser cannot set headers when opening a page: the dashboard also takes `?key=`.
fn dashboard_key<'a>(path: &str, query: Option<&'a str>) -> Option<&'a str> {
    if !path.starts_with("/dashboard") {
        return None;
    }
    query?.split('&').find_map(|kv| kv.strip_prefix("key="))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `GET /v1/models`: what a client can ask for here. Route names first, then the models of
/// providers that are on (a provider waiting for its key is left out, as is a route with no
/// target left), then `--upstream-model`. When the config names none (`serve --upstream URL`
/// alone), the upstream's own list is asked for. OpenAI list shape, or Anthropic's when the
/// caller sends `anthropic-version`.
async fn models_response(state: &AppState, hdrs: &HeaderMap, proxy_key: Option<&HeaderName>) -> Response<Body> {
    let anthropic = hdrs.contains_key(headers::ANTHROPIC_VERSION);
    let mut ids = usable_models(state);
    if ids.is_empty() {
        ids = upstream_models(state, hdrs, proxy_key, anthropic).await;
    }
    let body = if anthropic {
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

/// `GET /o/<id>`: a stored original, for agents that reach the proxy over the network (the key
/// check has already run: with `server.api_keys` set only key holders get here).
async fn original_response(state: &AppState, id: &str) -> Response<Body> {
    match state.folder.originals().get_anywhere(id).await {
        Some(text) => {
            let mut r = Response::new(full(Bytes::from(text)));
            r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
            r
        }
        None => {
            let mut r =
                Response::new(full(Bytes::from(format!("no stored original `{id}` (pruned, or never stored here)\n"))));
            *r.status_mut() = StatusCode::NOT_FOUND;
            r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
            r
        }
    }
}

/// The model ids the caller's default upstream lists at its own `/models` (either list shape has
/// `data[].id`). Best effort: an upstream that cannot say gives an empty list, logged at debug.
async fn upstream_models(
    state: &AppState,
    hdrs: &HeaderMap,
    proxy_key: Option<&HeaderName>,
    anthropic: bool,
) -> Vec<(String, String)> {
    let dialect = if anthropic { Dialect::Anthropic } else { Dialect::OpenaiChat };
    let Some(target) = state.pool().default_target(dialect) else {
        return Vec::new();
    };
    let owner = target.provider.name.clone();
    // The caller's headers (its credentials) on a GET without a query.
    let (mut parts, ()) = Request::new(()).into_parts();
    parts.method = Method::GET;
    parts.headers = hdrs.clone();
    let sent = state.upstream.send(&target, &parts, ("/models", None), proxy_key, Bytes::new()).await;
    let body = match sent {
        Ok(r) if r.status().is_success() => r.bytes().await.ok(),
        Ok(r) => {
            tracing::debug!(provider = %owner, status = r.status().as_u16(), "upstream has no model list");
            None
        }
        Err(e) => {
            tracing::debug!(provider = %owner, "model list: {e}");
            None
        }
    };
    let listed: serde_json::Value = body.and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    let data = listed.get("data").and_then(|d| d.as_array()).map(Vec::as_slice).unwrap_or(&[]);
    data.iter().filter_map(|m| m.get("id")?.as_str()).map(|id| (id.to_string(), owner.clone())).collect()
}

/// `(model name, owner)` for every name a request may carry that some usable target serves.
/// Follows the pool, so a reloaded config shows at once.
fn usable_models(state: &AppState) -> Vec<(String, String)> {
    let cfg = &state.cfg;
    let pool = state.pool();
    let mut ids: Vec<(String, String)> = Vec::new();
    let mut add = |id: &str, owner: &str| {
        if !ids.iter().any(|(known, _)| known == id) {
            ids.push((id.to_string(), owner.to_string()));
        }
    };
    for name in pool.usable_route_names() {
        add(name, "tokenfold");
    }
    for p in pool.providers().iter().filter(|p| p.is_usable()) {
        for m in &p.models {
            add(m, &p.name);
        }
    }
    if let Some(m) = &state.model_override {
        let owner = Dialect::ALL.iter().find_map(|&d| cfg.upstream_for(d)).map(|p| p.name.as_str());
        add(m, owner.unwrap_or("upstream"));
    }
    ids
}

pub(super) fn error_response(state: &AppState, dialect: Dialect, e: ProxyError) -> Response<Body> {
    state.metrics.error(e.kind());
    state.metrics.request(dialect, e.status().as_u16());
    tracing::warn!(dialect = %dialect, status = e.status().as_u16(), "{e}");
    match e {
        ProxyError::Upstream { status, headers, body } => {
            let mut r = Response::new(full(body));
            *r.status_mut() = status;
            *r.headers_mut() = *headers;
            r
        }
        e => {
            let mut r = json_response(e.status(), e.body(dialect));
            if let ProxyError::Pool(p) = &e {
                if let Some(after) = p.retry_after() {
                    let secs = after.as_secs_f64().ceil().max(1.0) as u64;
                    r.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
                }
            }
            r
        }
    }
}

pub(super) fn json_response(status: StatusCode, body: Bytes) -> Response<Body> {
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
