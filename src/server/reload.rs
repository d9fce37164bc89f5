//! Hot reload of the config file, on SIGHUP and when the file changes (its modification time
//! and size are looked at once a second; no watcher dependency). The new pool serves every
//! request from then on; requests in flight keep their connections and settle in the new pool.
//! A file that does not load is refused with one log line, and the running config stays.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::AppState;
use crate::config::Config;
use crate::pool::Pool;

/// How often the file's modification time is looked at.
pub const POLL: Duration = Duration::from_secs(1);

/// Where the running config came from.
pub enum Source {
    /// A file: reloaded on SIGHUP and when it changes.
    File(PathBuf),
    /// The built-in config or `--upstream` flags: nothing to reload.
    Fixed(String),
}

/// Starts reloading `state`'s config from `source`. SIGHUP is handled from the moment this
/// returns (it no longer ends the process). Call from inside the runtime.
pub fn start(state: Arc<AppState>, source: Source) -> std::io::Result<()> {
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    // The file as the running config read it: taken now, not when the task first runs, so an
    // edit made right after start-up is still seen as a change.
    let initial = match &source {
        Source::File(p) => stamp(p),
        Source::Fixed(_) => None,
    };
    tokio::spawn(async move {
        let path = match source {
            Source::File(p) => p,
            Source::Fixed(what) => {
                #[cfg(unix)]
                while hangup.recv().await.is_some() {
                    tracing::info!("SIGHUP: nothing to reload, the config is {what}");
                }
                #[cfg(not(unix))]
                let _ = what;
                return;
            }
        };
        let mut seen = initial;
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            #[cfg(unix)]
            let why = tokio::select! {
                signal = hangup.recv() => match signal {
                    Some(()) => "SIGHUP",
                    None => return,
                },
                _ = tick.tick() => "file changed",
            };
            #[cfg(not(unix))]
            let why = {
                tick.tick().await;
                "file changed"
            };
            let now = stamp(&path);
            if why == "file changed" && now == seen {
                continue;
            }
            seen = now;
            reload_from(&state, &path, why);
        }
    });
    Ok(())
}

/// What tells a changed file: its modification time and size (`None` when it cannot be read).
fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Loads `path` and hands it to the server, or says why not and keeps the running config.
pub fn reload_from(state: &AppState, path: &Path, why: &str) {
    let shown = path.display().to_string();
    let loaded = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {shown}: {e}"))
        .and_then(|text| Config::parse(&text, &shown, &|v| std::env::var(v).ok()).map_err(|e| e.to_string()));
    match loaded {
        Err(e) => tracing::error!("config reload ({why}) refused, the running config stays: {e}"),
        Ok(cfg) => {
            let change = state.apply_config(&cfg);
            tracing::info!("config reloaded ({why}) from {shown}: {change}");
            for n in cfg.notices() {
                tracing::info!("note: {n}");
            }
        }
    }
}

/// One line on what a reload changed, and what it could not apply without a restart.
pub fn describe_change(running: &Config, old: &Pool, new: &Config) -> String {
    let before: BTreeSet<&str> = old.route_names().collect();
    let after: BTreeSet<&str> = new.routes.iter().map(|r| r.name.as_str()).collect();
    let usable = new.providers.iter().filter(|p| p.is_usable()).count();
    let mut out = format!("{} providers ({usable} usable), {} routes", new.providers.len(), new.routes.len());
    let added: Vec<&str> = after.difference(&before).copied().collect();
    let removed: Vec<&str> = before.difference(&after).copied().collect();
    if !added.is_empty() {
        out.push_str(&format!("; routes added: {}", added.join(", ")));
    }
    if !removed.is_empty() {
        out.push_str(&format!("; routes removed: {}", removed.join(", ")));
    }
    let mut restart = Vec::new();
    if new.api_keys != running.api_keys {
        restart.push("server.api_keys");
    }
    if new.max_body_bytes != running.max_body_bytes {
        restart.push("server.max_body_bytes");
    }
    if new.server != running.server {
        restart.push("server (timeouts, max_connections, allowed_origins, allowed_hosts)");
    }
    let (a, b) = (&new.timeouts, &running.timeouts);
    if (a.connect, a.first_byte, a.idle) != (b.connect, b.first_byte, b.idle) {
        restart.push("timeouts");
    }
    if new.fold_enabled != running.fold_enabled {
        restart.push("fold.enabled");
    }
    if new.pool.store != running.pool.store {
        restart.push("pool.store");
    }
    if new.cache != running.cache {
        restart.push("cache");
    }
    if !restart.is_empty() {
        out.push_str(&format!("; changed but applied only after a restart: {}", restart.join(", ")));
    }
    out
}
