//! The HTTP client that talks to providers: URL and header rewriting, timeouts, streaming bodies.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::config::{ProviderAuth, Timeouts};
use crate::dialect::{headers, Dialect};

use super::failure::{Cause, Failure};
use super::Target;

/// Why talking to an upstream failed before its answer could be judged. The pool classifies it
/// by its variant (`Failure::from`); the server renders its message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UpstreamError {
    /// The HTTP client could not be built at start.
    #[error("internal error: cannot build the HTTP client: {0}")]
    Build(String),
    /// The provider's base URL does not make a URL for this request.
    #[error("upstream `{provider}` is unreachable: {detail}")]
    BadUrl { provider: String, detail: String },
    /// No connection could be made (refused, name lookup, TLS handshake).
    #[error("upstream `{provider}` is unreachable: {detail}")]
    Connect { provider: String, detail: String },
    /// A phase of the exchange took longer than its configured timeout.
    #[error("upstream `{provider}` did not {} within {secs:.1}s (timeouts.{})", phase.doing(), phase.key())]
    Timeout { provider: String, phase: Phase, secs: f64 },
    /// The connection broke before the answer could be judged (after connecting).
    #[error("upstream `{provider}` is unreachable: {detail}")]
    Reset { provider: String, detail: String },
    /// The answer stopped arriving before it could be judged (`timeouts.idle_ms`).
    #[error("upstream `{provider}` is unreachable: {detail}")]
    Stalled { provider: String, detail: String },
}

/// The phases of an upstream exchange that have a timeout of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// `timeouts.connect_ms`.
    Connect,
    /// `timeouts.first_byte_ms`: until the response headers.
    FirstByte,
}

impl Phase {
    fn doing(self) -> &'static str {
        match self {
            Phase::Connect => "accept the connection",
            Phase::FirstByte => "send response headers",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Phase::Connect => "connect_ms",
            Phase::FirstByte => "first_byte_ms",
        }
    }
}

impl UpstreamError {
    /// A timeout of one phase.
    pub fn is_timeout(&self) -> bool {
        matches!(self, UpstreamError::Timeout { .. })
    }

    /// A short label for metrics and the ledger.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Build(_) => "internal",
            UpstreamError::Timeout { .. } => "upstream_timeout",
            _ => "upstream_unreachable",
        }
    }
}

impl From<&UpstreamError> for Failure {
    /// The pool's class of a transport failure: every one is the target being unavailable.
    /// A stall while judging the answer counts as the connection breaking, as before the error
    /// was typed (its message names the idle timeout).
    fn from(e: &UpstreamError) -> Failure {
        let cause = match e {
            UpstreamError::Timeout { .. } => Cause::Timeout,
            UpstreamError::Connect { .. } => Cause::Connect,
            UpstreamError::Build(_)
            | UpstreamError::BadUrl { .. }
            | UpstreamError::Reset { .. }
            | UpstreamError::Stalled { .. } => Cause::Reset,
        };
        Failure::Unavailable { cause, detail: e.to_string() }
    }
}

/// Headers that describe one hop, not the message (RFC 9110 7.6.1), plus those the client library
/// sets itself from the body it sends. Headers a message's own `Connection` header names are
/// hop-by-hop too (`connection_options`).
fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
    )
}

/// The header names listed in `Connection:` (`Connection: keep-alive, x-custom-hop` makes
/// `x-custom-hop` hop-by-hop). Empty, without allocating, in the usual case.
fn connection_options(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("keep-alive") && !t.eq_ignore_ascii_case("close"))
        // `from_bytes` lower-cases, as `HeaderMap` stores names.
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect()
}

pub struct UpstreamClient {
    /// For requests served outside the proxy's worker threads.
    shared: reqwest::Client,
    /// One client (and so one connection pool) per worker thread, made on first use: a pooled
    /// connection's I/O task runs on the runtime that opened it, so sharing one pool across
    /// workers would wake another thread twice per request.
    per_worker: Vec<OnceLock<reqwest::Client>>,
    timeouts: Timeouts,
    /// Parsed URLs by base URL, then by path: a handful (providers × the four routes).
    urls: std::sync::RwLock<HashMap<String, HashMap<String, reqwest::Url>>>,
}

impl UpstreamClient {
    /// A client for `workers` worker threads (see `serve_on_worker`).
    pub fn new(timeouts: Timeouts, workers: usize) -> Result<UpstreamClient, UpstreamError> {
        let shared = build_client(&timeouts).map_err(|e| UpstreamError::Build(e.to_string()))?;
        let per_worker = (0..workers).map(|_| OnceLock::new()).collect();
        Ok(UpstreamClient { shared, per_worker, timeouts, urls: Default::default() })
    }

    /// The client of the worker thread this runs on.
    fn http(&self) -> &reqwest::Client {
        let slot = WORKER.with(Cell::get).and_then(|i| self.per_worker.get(i));
        match slot {
            Some(slot) => slot.get_or_init(|| build_client(&self.timeouts).unwrap_or_else(|_| self.shared.clone())),
            None => &self.shared,
        }
    }

    /// `base` + `path` (+ `?query`). Each base and path is parsed once: parsing (with IDNA host
    /// checks, and again to set the path) on every request showed up in profiles.
    fn url(&self, base: &str, path: &str, query: Option<&str>) -> Result<reqwest::Url, String> {
        let cached = self.urls.read().ok().and_then(|m| m.get(base)?.get(path).cloned());
        let mut url = match cached {
            Some(u) => u,
            None => {
                let mut parsed = reqwest::Url::parse(base).map_err(|e| format!("bad base URL `{base}`: {e}"))?;
                let full_path = format!("{}{}", parsed.path().trim_end_matches('/'), path);
                parsed.set_path(&full_path);
                if let Ok(mut m) = self.urls.write() {
                    m.entry(base.to_string()).or_default().insert(path.to_string(), parsed.clone());
                }
                parsed
            }
        };
        if query.is_some() {
            url.set_query(query);
        }
        Ok(url)
    }

    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// Sends `body` to `target` at `path_after_v1` (+ `?query`) with the method and headers of
    /// the client's request `client`, and waits for the response headers (first-byte timeout).
    pub async fn send(
        &self,
        target: &Target,
        client: &http::request::Parts,
        (path_after_v1, query): (&str, Option<&str>),
        proxy_key_header: Option<&HeaderName>,
        body: Bytes,
    ) -> Result<reqwest::Response, UpstreamError> {
        let provider = &target.provider;
        let url = self
            .url(&provider.base_url, path_after_v1, query)
            .map_err(|detail| UpstreamError::BadUrl { provider: provider.name.clone(), detail })?;
        // Built directly: the builder's `.headers()` merges into an empty map header by header.
        let mut request = reqwest::Request::new(client.method.clone(), url);
        let mut headers = upstream_headers(&client.headers, target, proxy_key_header);
        if matches!(target.provider.auth, ProviderAuth::Client) {
            super::credentials::carry_client_key(&mut headers, client.uri.query(), target.dialect);
        }
        *request.headers_mut() = headers;
        *request.body_mut() = Some(body.into());
        match tokio::time::timeout(self.timeouts.first_byte, self.http().execute(request)).await {
            Err(_) => Err(UpstreamError::Timeout {
                provider: provider.name.clone(),
                phase: Phase::FirstByte,
                secs: self.timeouts.first_byte.as_secs_f64(),
            }),
            Ok(Err(e)) if e.is_timeout() => Err(UpstreamError::Timeout {
                provider: provider.name.clone(),
                phase: Phase::Connect,
                secs: self.timeouts.connect.as_secs_f64(),
            }),
            Ok(Err(e)) if e.is_connect() => Err(UpstreamError::Connect {
                provider: provider.name.clone(),
                detail: format!("connection failed ({})", deepest_cause(&e)),
            }),
            Ok(Err(e)) => Err(UpstreamError::Reset { provider: provider.name.clone(), detail: deepest_cause(&e) }),
            Ok(Ok(resp)) => Ok(resp),
        }
    }
}

thread_local! {
    /// The worker thread's index, set once when the thread starts.
    static WORKER: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Marks the calling thread as worker `index`: its upstream requests use that worker's own
/// connection pool.
pub fn serve_on_worker(index: usize) {
    WORKER.with(|w| w.set(Some(index)));
}

fn build_client(timeouts: &Timeouts) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(timeouts.connect)
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        // We relay bodies as the provider sent them; decoding is left to the client.
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// The headers sent upstream: the client's, minus hop-by-hop, proxy-own and (for providers with
/// their own key) the client's credentials.
pub fn upstream_headers(client: &HeaderMap, target: &Target, proxy_key_header: Option<&HeaderName>) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(client.len() + 1);
    let own_key = matches!(target.provider.auth, ProviderAuth::Key { .. });
    let options = connection_options(client);
    for (name, value) in client {
        let n = name.as_str();
        if is_hop_by_hop(n)
            || options.contains(name)
            || n.starts_with(headers::TOKENFOLD_PREFIX)
            // Bodies are relayed (and parsed) as sent: ask for them uncompressed.
            || n == "accept-encoding"
            || proxy_key_header == Some(name)
            || (own_key && (n == headers::X_API_KEY || n == headers::AUTHORIZATION || n == headers::X_GOOG_API_KEY))
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    if let ProviderAuth::Key { secret, .. } = &target.provider.auth {
        let (name, value) = match target.dialect {
            Dialect::Anthropic => (headers::X_API_KEY, secret.expose().to_string()),
            Dialect::Gemini => (headers::X_GOOG_API_KEY, secret.expose().to_string()),
            _ => (headers::AUTHORIZATION, format!("Bearer {}", secret.expose())),
        };
        if let Ok(mut v) = HeaderValue::from_str(&value) {
            v.set_sensitive(true);
            out.insert(HeaderName::from_static(name), v);
        }
    }
    out
}

/// Response headers relayed to the client: the provider's, minus hop-by-hop ones.
pub fn client_response_headers(upstream: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(upstream.len() + 1);
    let options = connection_options(upstream);
    for (name, value) in upstream {
        if !is_hop_by_hop(name.as_str()) && !options.contains(name) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// A one-line cause without the URL's query or any header value.
fn deepest_cause(e: &reqwest::Error) -> String {
    use std::error::Error;
    let mut cause: Option<&dyn Error> = e.source();
    let mut deepest = e.without_url_string();
    while let Some(c) = cause {
        deepest = c.to_string();
        cause = c.source();
    }
    deepest
}

trait WithoutUrl {
    fn without_url_string(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_string(&self) -> String {
        let mut s = self.to_string();
        if let Some(url) = self.url() {
            s = s.replace(url.as_str(), "");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Provider;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(HeaderName::from_bytes(n.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn headers_named_in_connection_are_hop_by_hop_both_ways() {
        let target = Target {
            provider: std::sync::Arc::new(Provider::client_passthrough(
                "p".into(),
                Dialect::Anthropic,
                "http://x/v1".into(),
            )),
            dialect: Dialect::Anthropic,
        };
        let client = headers(&[
            ("connection", "keep-alive, X-Custom-Hop"),
            ("connection", "x-second-hop"),
            ("x-custom-hop", "1"),
            ("x-second-hop", "2"),
            ("keep-alive", "timeout=5"),
            ("x-end-to-end", "3"),
            ("anthropic-version", "2023-06-01"),
        ]);
        let sent = upstream_headers(&client, &target, None);
        let names: Vec<&str> = sent.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["x-end-to-end", "anthropic-version"]);

        let answer = headers(&[("connection", "x-resp-hop"), ("x-resp-hop", "1"), ("request-id", "r1")]);
        let relayed = client_response_headers(&answer);
        assert_eq!(relayed.keys().map(|n| n.as_str()).collect::<Vec<_>>(), ["request-id"]);
    }
}
