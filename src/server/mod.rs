//! HTTP front door: accepts connections, authenticates, routes by path and relays responses.

mod accept;
pub use accept::raise_fd_limit;
mod attempt;
mod conn;
mod count_tokens;
mod cross_origin;
mod dashboard;
pub mod error;
mod fallback;
mod fit;
mod handlers;
mod inbound;
pub mod metrics;
mod outgoing;
mod peek;
mod pending;
mod relay;
pub mod reload;
mod stop;
mod workers;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::fold::Folder;
use crate::ledger::Ledger;
use crate::pool::upstream::UpstreamClient;
use crate::pool::Pool;
use error::ProxyError;
use metrics::Metrics;

/// The response body type every route returns.
pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// Everything a request needs, shared by all connections.
pub struct AppState {
    /// The config the server started with. A reload replaces the pool (providers, accounts,
    /// routes, limits); `server.*`, `timeouts` and `fold` stay as they were until a restart.
    pub cfg: Arc<Config>,
    /// Replaced whole by a reload; a request works with the pool it started with.
    pool: std::sync::RwLock<Pool>,
    pub upstream: UpstreamClient,
    pub folder: Folder,
    pub metrics: Metrics,
    pub ledger: Ledger,
    /// `--upstream-model`: replaces the model name of every request.
    pub model_override: Option<String>,
    /// Open client connections, and the signal that stops them.
    pub connections: conn::Connections,
}

impl AppState {
    pub fn new(cfg: Config) -> Result<Arc<AppState>, ProxyError> {
        AppState::with_model_override(cfg, None)
    }

    pub fn with_model_override(cfg: Config, model_override: Option<String>) -> Result<Arc<AppState>, ProxyError> {
        let upstream = UpstreamClient::new(cfg.timeouts.clone(), workers::count())?;
        let ledger = match ledger_path() {
            Some(path) => Ledger::open_with(&path, cfg.ledger_retention, cfg.ledger_url.as_ref()),
            None => Ledger::disabled(),
        };
        let pool = Pool::new(&cfg);
        let folder = Folder::with_options(cfg.fold_enabled, cfg.fold_options());
        if let Some(r) = pool.shared() {
            folder.originals().share_through(r.clone());
        }
        Ok(Arc::new(AppState {
            ledger,
            model_override,
            pool: std::sync::RwLock::new(pool),
            folder,
            upstream,
            metrics: Metrics::default(),
            connections: conn::Connections::default(),
            cfg: Arc::new(cfg),
        }))
    }
}

impl AppState {
    /// The pool requests are admitted by now.
    pub fn pool(&self) -> Pool {
        self.pool.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Takes a reloaded config: a new pool carrying over counters and cooldowns, used by every
    /// request from now on. Says what changed, and what only a restart applies.
    pub fn apply_config(&self, new: &Config) -> String {
        let mut slot = self.pool.write().unwrap_or_else(|e| e.into_inner());
        let old = slot.clone();
        *slot = old.reload(new);
        drop(slot);
        reload::describe_change(&self.cfg, &old, new)
    }
}

/// The ledger file: `$TOKENFOLD_LEDGER` (`off` disables it), else the default under the data dir.
pub fn ledger_path() -> Option<std::path::PathBuf> {
    crate::ledger::path_from_env()
}

/// Refuses configurations that would expose the proxy without authentication.
pub fn check_exposure(cfg: &Config, listen: SocketAddr) -> Result<(), String> {
    if !listen.ip().is_loopback() && cfg.api_keys.is_empty() {
        return Err(format!(
            "refusing to listen on {listen}: it is reachable from other machines and server.api_keys is empty. \
             Set server.api_keys = [\"${{TOKENFOLD_API_KEY}}\"] (and export TOKENFOLD_API_KEY), or listen on 127.0.0.1."
        ));
    }
    Ok(())
}

/// Whether some usable target has a tight budget (an input cap or a TPM), which requests are
/// measured against often enough to load the tokenizer at start. Context windows alone do not
/// count: requests are rarely near one, and the vocabulary costs ~50 MB of memory to hold, so it
/// then loads on the first request that needs measuring.
fn fits_requests(cfg: &Config) -> bool {
    cfg.providers.iter().filter(|p| p.is_usable()).any(|p| {
        p.accounts.iter().any(|a| a.limits.tpm.is_some())
            || p.model_specs.iter().any(|m| m.max_input_tokens.is_some() || m.limits.tpm.is_some())
    })
}

/// Serves connections from `listener` until a stop is asked for on `stops` (SIGTERM, Ctrl-C):
/// then stops accepting, lets the requests in flight finish (up to `server.shutdown_timeout_ms`,
/// or until a second stop), and writes out the ledger, the pool's counters and the originals.
pub async fn serve(state: Arc<AppState>, listener: TcpListener, mut stops: mpsc::UnboundedReceiver<()>) {
    let fd_limit = accept::fd_limit();
    let cap = accept::connection_cap(state.cfg.server.max_connections, fd_limit);
    if cap < state.cfg.server.max_connections {
        tracing::warn!(
            "the open-file limit is {}: serving at most {cap} connections at once (server.max_connections = {}); \
             raise the limit (ulimit -n) to serve more",
            fd_limit.unwrap_or(0),
            state.cfg.server.max_connections
        );
    }
    // The tokenizer's vocabulary takes ~0.4 s to load: when some target has a tight budget,
    // load it now rather than in the first request fitting measures.
    if fits_requests(&state.cfg) {
        std::thread::spawn(|| crate::tokens::count(""));
    }
    // Connections go to the worker threads; should they not start, this runtime serves them.
    let mut workers = match workers::Workers::start(&state, workers::count()) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!("{e}; serving connections on the main runtime");
            None
        }
    };
    let mut backoff = accept::Backoff::default();
    let mut refused = accept::Throttled::default();
    loop {
        let (stream, peer) = tokio::select! {
            Some(()) = stops.recv() => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tokio::time::sleep(backoff.failed(&e)).await;
                    continue;
                }
            },
        };
        backoff.succeeded();
        let Some(slot) = conn::Connections::admit(&state, cap) else {
            // Closed at once: a descriptor per waiting client is what runs a server out of them.
            if let Some(n) = refused.note() {
                tracing::warn!(
                    "connection limit reached: {cap} connections open; closed {n} new one(s) from {peer} and others. \
                     Raise server.max_connections (and the open-file limit), or lower server.header_timeout_ms \
                     and server.keepalive_timeout_ms to drop silent clients sooner"
                );
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (stream, slot) = match workers.as_mut() {
            Some(w) => match w.hand_over(stream, peer, slot) {
                Ok(()) => continue,
                Err(back) => back,
            },
            None => (stream, slot),
        };
        tokio::spawn(conn::serve_connection(state.clone(), stream, peer, slot));
    }
    drop(listener);
    stop::drain(&state, &mut stops).await;
}
