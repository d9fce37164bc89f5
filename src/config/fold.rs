//! The folder's options from the config: the store of originals (and how agents elsewhere reach
//! it), the level, the index memory and clearing.

use std::sync::Arc;

use super::Config;
use crate::fold::originals::{Originals, Remote, StoreConfig};
use crate::fold::{FoldOptions, Level};

impl Config {
    /// The folder's options: opens the originals' store (its writer prunes it), or turns filters
    /// off with a warning when it is off or cannot be created. Agents on other machines (the proxy listens
    /// beyond loopback, or `fold.public_url` is set) get `curl` markers for the proxy's
    /// `GET /o/<id>` instead of a path.
    pub fn fold_options(&self) -> FoldOptions {
        let cfg = self;
        let o = &cfg.originals;
        let remote = (o.public_url.is_some() || !cfg.listen.ip().is_loopback()).then(|| Remote {
            base_url: o.public_url.clone().unwrap_or_else(|| default_public_url(cfg.listen)),
            key_required: !cfg.api_keys.is_empty(),
        });
        let store = o.dir.clone().map(|dir| {
            Originals::open(StoreConfig { dir: dir.clone(), max_bytes: o.max_bytes, max_age: o.max_age, remote })
                .map_err(|e| format!("cannot use {}: {e}", dir.display()))
        });
        match store {
            Some(Ok(s)) => FoldOptions {
                level: cfg.fold_level,
                originals: Arc::new(s),
                cache_bytes: cfg.fold_cache_bytes,
                clear: cfg.clear.clone(),
                ..FoldOptions::default()
            },
            other => {
                if cfg.fold_level != Level::Lossless {
                    let why = match other {
                        Some(Err(e)) => e,
                        _ => "fold.originals_dir is off".to_string(),
                    };
                    tracing::warn!("command output filters and clearing are off ({why}); folding is lossless only");
                }
                FoldOptions { filters_allowed: false, cache_bytes: cfg.fold_cache_bytes, ..FoldOptions::default() }
            }
        }
    }
}

/// `http://HOST:PORT` for a proxy bound to `listen`: the address itself, or this machine's name
/// when bound to every interface.
fn default_public_url(listen: std::net::SocketAddr) -> String {
    let host = if listen.ip().is_unspecified() {
        std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| listen.ip().to_string())
    } else {
        match listen.ip() {
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        }
    };
    format!("http://{host}:{}", listen.port())
}
