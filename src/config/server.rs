//! `[server]` beyond the address, keys and body limit: how long a client may take, how many
//! connections are served at once, how long a stop waits for requests in flight, and which
//! browser origins and host names are let in besides loopback ones.

use std::time::Duration;

use toml::Spanned;

use super::file::ServerSection;
use super::ConfigError;

/// Defaults: a silent or trickling client is dropped after `HEADER_TIMEOUT`; a body must arrive
/// within `BODY_TIMEOUT` (32 MiB at 0.5 MiB/s); an idle keep-alive connection is kept a minute
/// (clients' own pools give up sooner: Node 4-5 s, httpx 5 s); a stop waits up to 30 s for
/// answers still streaming.
const HEADER_TIMEOUT_MS: u64 = 10_000;
const BODY_TIMEOUT_MS: u64 = 60_000;
const KEEPALIVE_TIMEOUT_MS: u64 = 60_000;
const MAX_CONNECTIONS: u64 = 2048;
const SHUTDOWN_TIMEOUT_MS: u64 = 30_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// From accepting a connection (or the first byte of a later request on it) until the
    /// request's headers are complete.
    pub header_timeout: Duration,
    /// Until a request's body is complete.
    pub body_timeout: Duration,
    /// How long a connection may sit with no request before it is closed.
    pub keepalive_timeout: Duration,
    /// Connections served at once; lowered at start if the open-file limit is too small for it.
    pub max_connections: usize,
    /// How long a stop (SIGTERM, Ctrl-C) waits for requests in flight.
    pub shutdown_timeout: Duration,
    /// `scheme://host[:port]`, lower case, default port left out (as browsers send `Origin`).
    pub allowed_origins: Vec<String>,
    /// `host` or `host:port`, lower case.
    pub allowed_hosts: Vec<String>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            header_timeout: Duration::from_millis(HEADER_TIMEOUT_MS),
            body_timeout: Duration::from_millis(BODY_TIMEOUT_MS),
            keepalive_timeout: Duration::from_millis(KEEPALIVE_TIMEOUT_MS),
            max_connections: MAX_CONNECTIONS as usize,
            shutdown_timeout: Duration::from_millis(SHUTDOWN_TIMEOUT_MS),
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
        }
    }
}

type At<'a> = &'a dyn Fn(std::ops::Range<usize>) -> String;

pub fn validate(s: &ServerSection, at: At) -> Result<ServerSettings, ConfigError> {
    let invalid = |span: std::ops::Range<usize>, key: &str, msg: String| {
        ConfigError::Invalid(format!("{}: `server.{key}`: {msg}", at(span)))
    };
    let positive = |v: &Option<Spanned<u64>>, key: &str, default: u64| -> Result<u64, ConfigError> {
        match v {
            None => Ok(default),
            Some(v) if *v.get_ref() == 0 => Err(invalid(v.span(), key, "must be above 0".into())),
            Some(v) => Ok(*v.get_ref()),
        }
    };
    let ms = |v, key, default| positive(v, key, default).map(Duration::from_millis);
    let mut allowed_origins = Vec::new();
    for o in &s.allowed_origins {
        allowed_origins.push(normalize_origin(o.get_ref()).map_err(|m| invalid(o.span(), "allowed_origins", m))?);
    }
    let mut allowed_hosts = Vec::new();
    for h in &s.allowed_hosts {
        allowed_hosts.push(normalize_host(h.get_ref()).map_err(|m| invalid(h.span(), "allowed_hosts", m))?);
    }
    Ok(ServerSettings {
        header_timeout: ms(&s.header_timeout_ms, "header_timeout_ms", HEADER_TIMEOUT_MS)?,
        body_timeout: ms(&s.body_timeout_ms, "body_timeout_ms", BODY_TIMEOUT_MS)?,
        keepalive_timeout: ms(&s.keepalive_timeout_ms, "keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS)?,
        max_connections: positive(&s.max_connections, "max_connections", MAX_CONNECTIONS)? as usize,
        shutdown_timeout: ms(&s.shutdown_timeout_ms, "shutdown_timeout_ms", SHUTDOWN_TIMEOUT_MS)?,
        allowed_origins,
        allowed_hosts,
    })
}

/// `https://App.Example.com:443/` → `https://app.example.com`.
pub fn normalize_origin(raw: &str) -> Result<String, String> {
    let o = raw.trim().trim_end_matches('/').to_ascii_lowercase();
    let refuse = || format!("`{raw}` is not an origin like https://app.example.com or http://localhost:3000");
    let (scheme, authority) = o.split_once("://").ok_or_else(refuse)?;
    if !matches!(scheme, "http" | "https") || authority.is_empty() {
        return Err(refuse());
    }
    if authority.contains(['/', '?', '#', '@', ' ']) {
        return Err(refuse());
    }
    let default_port = if scheme == "https" { ":443" } else { ":80" };
    Ok(o.strip_suffix(default_port).unwrap_or(&o).to_string())
}

/// `Tokenfold.Internal.` → `tokenfold.internal`; `host:port` stays.
pub fn normalize_host(raw: &str) -> Result<String, String> {
    let h = raw.trim().to_ascii_lowercase();
    if h.is_empty() || h.contains(['/', '?', '#', '@', ' ']) {
        return Err(format!("`{raw}` is not a host name like tokenfold.internal or tokenfold.internal:8411"));
    }
    Ok(h.trim_end_matches('.').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_and_hosts_are_normalized_or_refused() {
        assert_eq!(normalize_origin("https://App.Example.com:443/").unwrap(), "https://app.example.com");
        assert_eq!(normalize_origin("http://localhost:3000").unwrap(), "http://localhost:3000");
        for bad in ["app.example.com", "ftp://x", "https://", "https://x/path", "null", "*"] {
            assert!(normalize_origin(bad).is_err(), "{bad}");
        }
        assert_eq!(normalize_host("Tokenfold.Internal.").unwrap(), "tokenfold.internal");
        assert_eq!(normalize_host("box:8411").unwrap(), "box:8411");
        assert!(normalize_host("http://box").is_err());
        assert!(normalize_host("").is_err());
    }
}
