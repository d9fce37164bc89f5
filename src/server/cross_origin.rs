//! Web pages. Any page the user opens can send requests to a loopback port (a `text/plain` POST
//! needs no CORS preflight) and so spend the user's quota, and through DNS rebinding (its own
//! name resolving to 127.0.0.1) it can also read the answers. So a request is refused unless
//! its `Origin` (sent by browsers only) is a loopback origin, the proxy's own, or one listed in
//! `server.allowed_origins`; and, without `server.api_keys`, unless its `Host` is a loopback
//! name or one listed in `server.allowed_hosts` (with keys a page cannot know, the key check is
//! the protection). Allowed origins get CORS answers, preflights included.

use std::net::IpAddr;

use bytes::Bytes;
use http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, HOST, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};

use super::error::ProxyError;
use crate::config::Config;

/// What a request may do, as far as browsers go.
#[derive(Debug, PartialEq)]
pub enum Access {
    /// Not from a browser page, or from this machine's own.
    Allowed,
    /// From an allowed other origin: the answer carries CORS headers for it.
    Cors(HeaderValue),
}

/// Checks `Host` and `Origin`; the error says how to allow what was refused.
pub fn check<B>(cfg: &Config, req: &Request<B>) -> Result<Access, ProxyError> {
    let host = request_host(req);
    if cfg.api_keys.is_empty() {
        if let Some(h) = host.filter(|h| !host_allowed(cfg, h)) {
            return Err(ProxyError::Forbidden(format!(
                "Host `{h}` is not a loopback name, so this may be a web page reaching the proxy through DNS \
                 rebinding. To serve it under that name, add \"{}\" to server.allowed_hosts (or set server.api_keys)",
                h.to_ascii_lowercase()
            )));
        }
    }
    let Some(origin) = req.headers().get(ORIGIN) else { return Ok(Access::Allowed) };
    let text = String::from_utf8_lossy(origin.as_bytes());
    let Ok(normal) = crate::config::normalize_origin(&text) else {
        return Err(refused_origin(&text));
    };
    let (_, authority) = normal.split_once("://").unwrap_or_default();
    if is_loopback_host(authority) || host.is_some_and(|h| h.eq_ignore_ascii_case(authority)) {
        return Ok(Access::Allowed);
    }
    if cfg.server.allowed_origins.contains(&normal) {
        return Ok(Access::Cors(origin.clone()));
    }
    Err(refused_origin(&text))
}

fn refused_origin(origin: &str) -> ProxyError {
    ProxyError::Forbidden(format!(
        "cross-origin request from `{origin}` refused: a web page may not use this proxy. \
         To allow that site, add \"{origin}\" to server.allowed_origins"
    ))
}

/// Whether `req` is a CORS preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`).
pub fn is_preflight<B>(req: &Request<B>) -> bool {
    req.method() == Method::OPTIONS
        && req.headers().contains_key(ORIGIN)
        && req.headers().contains_key(ACCESS_CONTROL_REQUEST_METHOD)
}

/// The answer to a preflight whose origin `check` let through: what may be sent, for 10 minutes.
pub fn preflight_answer(req_headers: &HeaderMap) -> Response<Bytes> {
    let mut r = Response::new(Bytes::new());
    *r.status_mut() = StatusCode::NO_CONTENT;
    let h = r.headers_mut();
    if let Some(origin) = req_headers.get(ORIGIN) {
        h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    }
    h.insert(ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, OPTIONS"));
    if let Some(asked) = req_headers.get(ACCESS_CONTROL_REQUEST_HEADERS) {
        h.insert(ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
    }
    h.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    // Chromium's Private Network Access asks before a public page reaches a loopback address.
    if req_headers.get("access-control-request-private-network").is_some_and(|v| v == "true") {
        h.insert("access-control-allow-private-network", HeaderValue::from_static("true"));
    }
    h.insert(VARY, HeaderValue::from_static("Origin, Access-Control-Request-Method, Access-Control-Request-Headers"));
    r
}

/// Adds what a browser needs to let the page read an answer.
pub fn allow(headers: &mut HeaderMap, origin: HeaderValue) {
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.append(VARY, HeaderValue::from_static("Origin"));
}

/// The host the client asked for: `Host` (HTTP/1), else the URI's authority (HTTP/2).
fn request_host<B>(req: &Request<B>) -> Option<&str> {
    match req.headers().get(HOST) {
        Some(h) => Some(h.to_str().unwrap_or("<not text>")),
        None => req.uri().authority().map(|a| a.as_str()),
    }
}

fn host_allowed(cfg: &Config, host: &str) -> bool {
    if is_loopback_host(host) {
        return true;
    }
    let host = host.to_ascii_lowercase();
    let name = strip_port(&host).trim_end_matches('.');
    cfg.server.allowed_hosts.iter().any(|a| *a == host || a == name)
}

/// `localhost`, `*.localhost`, 127.0.0.0/8 and ::1, with or without a port. (Runs on every
/// request: no allocation.)
fn is_loopback_host(authority: &str) -> bool {
    let name = strip_port(authority).trim_end_matches('.');
    let suffix = name.len().checked_sub(".localhost".len()).and_then(|at| name.get(at..));
    if name.eq_ignore_ascii_case("localhost") || suffix.is_some_and(|s| s.eq_ignore_ascii_case(".localhost")) {
        return true;
    }
    let ip = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')).unwrap_or(name);
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.is_loopback(),
        Ok(IpAddr::V6(v6)) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        Err(_) => false,
    }
}

/// `host:port` → `host`; `[::1]:8411` → `[::1]`; a bare IPv6 address stays.
fn strip_port(authority: &str) -> &str {
    if let Some(end) = authority.find(']') {
        return &authority[..=end];
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> Config {
        Config::parse(&format!("[server]\n{extra}\n"), "t", &|_| Some("k".into())).unwrap()
    }

    fn req(host: &str, origin: Option<&str>) -> Request<()> {
        let mut b = Request::builder().uri("/v1/chat/completions").header(HOST, host);
        if let Some(o) = origin {
            b = b.header(ORIGIN, o);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn loopback_hosts_and_origins_pass_others_are_refused() {
        let c = cfg("");
        for host in ["127.0.0.1:8411", "localhost:8411", "LOCALHOST", "[::1]:8411", "127.8.9.1", "app.localhost:1"] {
            assert_eq!(check(&c, &req(host, None)).unwrap(), Access::Allowed, "{host}");
        }
        for host in ["evil.example", "evil.example:8411", "10.0.0.1:8411", "localhost.evil.example"] {
            let e = check(&c, &req(host, None)).unwrap_err().to_string();
            assert!(e.contains("server.allowed_hosts"), "{host}: {e}");
        }
        for origin in ["http://localhost:3000", "http://127.0.0.1:8411", "https://[::1]"] {
            assert_eq!(check(&c, &req("127.0.0.1:8411", Some(origin))).unwrap(), Access::Allowed, "{origin}");
        }
        for origin in ["https://evil.example", "null", "http://127.0.0.1.evil.example", "file://"] {
            let e = check(&c, &req("127.0.0.1:8411", Some(origin))).unwrap_err().to_string();
            assert!(e.contains("server.allowed_origins"), "{origin}: {e}");
        }
    }

    #[test]
    fn listed_hosts_and_origins_pass_and_keys_turn_the_host_check_off() {
        let c = cfg("allowed_hosts = [\"tokenfold.internal\"]\nallowed_origins = [\"https://app.example.com\"]");
        assert_eq!(check(&c, &req("tokenfold.internal:8411", None)).unwrap(), Access::Allowed);
        assert!(check(&c, &req("other.internal", None)).is_err());
        let cors = check(&c, &req("127.0.0.1", Some("https://app.example.com"))).unwrap();
        assert_eq!(cors, Access::Cors(HeaderValue::from_static("https://app.example.com")));
        // The proxy's own page, under an allowed name, is same-origin.
        assert_eq!(
            check(&c, &req("tokenfold.internal:8411", Some("http://tokenfold.internal:8411"))).unwrap(),
            Access::Allowed
        );
        let keyed = cfg("api_keys = [\"${K}\"]");
        assert_eq!(check(&keyed, &req("evil.example", None)).unwrap(), Access::Allowed);
        assert!(check(&keyed, &req("evil.example", Some("https://evil.example.com"))).is_err());
    }

    #[test]
    fn ports_are_stripped_only_where_they_are_ports() {
        assert_eq!(strip_port("a:1"), "a");
        assert_eq!(strip_port("[::1]:8411"), "[::1]");
        assert_eq!(strip_port("::1"), "::1");
        assert_eq!(strip_port("a"), "a");
    }
}
