//! HTTP front door: accepts connections, authenticates, routes by path and relays responses.

mod count_tokens;
mod dashboard;
pub mod error;
mod forward;
mod handlers;
pub mod metrics;
mod outgoing;
mod pending;
mod relay;
pub mod reload;
mod workers;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use tokio::net::TcpListener;

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
}

impl AppState {
    pub fn new(cfg: Config) -> Result<Arc<AppState>, ProxyError> {
        AppState::with_model_override(cfg, None)
    }

    pub fn with_model_override(cfg: Config, model_override: Option<String>) -> Result<Arc<AppState>, ProxyError> {
        let upstream = UpstreamClient::new(cfg.timeouts.clone(), workers::count())?;
        let ledger = match ledger_path() {
            Some(path) => Ledger::open(&path, cfg.ledger_retention),
            None => Ledger::disabled(),
        };
        Ok(Arc::new(AppState {
            ledger,
            model_override,
            pool: std::sync::RwLock::new(Pool::new(&cfg)),
            folder: Folder::with_options(cfg.fold_enabled, crate::fold::FoldOptions::from_config(&cfg)),
            upstream,
            metrics: Metrics::default(),
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

/// Serves connections from `listener` until `shutdown` completes.
pub async fn serve(state: Arc<AppState>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    // Connections go to the worker threads; should they not start, this runtime serves them.
    let mut workers = match workers::Workers::start(&state, workers::count()) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!("{e}; serving connections on the main runtime");
            None
        }
    };
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off briefly instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let stream = match workers.as_mut() {
            Some(w) => match w.hand_over(stream, peer) {
                Ok(()) => continue,
                Err(stream) => stream,
            },
            None => stream,
        };
        tokio::spawn(workers::serve_connection(state.clone(), stream, peer));
    }
}
