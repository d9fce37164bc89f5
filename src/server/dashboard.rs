//! `GET /dashboard`: one self-contained page (no CDN, no build step) and the JSON it polls:
//! the ledger's figures and the pool's quota windows.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;

use super::AppState;
use crate::ledger::cache::{self, CacheSeries};
use crate::ledger::report::{self, GroupBy, Recent, Report};
use crate::pool::status::{PoolStatus, WindowStatus, Windows};

pub const PAGE: &str = include_str!("dashboard.html");

/// Days of history the page shows.
const DAYS: i64 = 30;

/// One quota window of an account (or of one model of it).
#[derive(Debug, Serialize, PartialEq)]
pub struct QuotaBar {
    /// `rpm`, `tpd`, ... or `MODEL rpm` for a per-model window.
    pub label: String,
    pub used: u64,
    /// `None`: the provider publishes no limit for it (shown as a count, not a bar).
    pub limit: Option<u64>,
    pub reset_in_s: Option<u64>,
}

/// One provider account with its quota bars.
#[derive(Debug, Serialize, PartialEq)]
pub struct QuotaAccount {
    pub provider: String,
    pub account: String,
    pub health: String,
    /// Why the account is off (a key not set), if it is.
    pub off: Option<String>,
    pub cooldown_s: Option<u64>,
    pub cooldown_reason: Option<String>,
    pub bars: Vec<QuotaBar>,
}

#[derive(Serialize)]
struct Data {
    summary: Report,
    by_day: Report,
    recent: Vec<Recent>,
    quotas: Vec<QuotaAccount>,
    /// Prompt-cache hit share per provider over time.
    cache: CacheChart,
    /// Records the ledger could not write (also in /metrics).
    lost_records: u64,
}

#[derive(Serialize, Default)]
struct CacheChart {
    /// Width of a point's time bucket (an hour, or a day for longer histories).
    bucket_ms: i64,
    series: Vec<CacheSeries>,
}

/// Without api keys the dashboard is for this machine only.
pub fn allowed(state: &AppState, peer: SocketAddr) -> bool {
    peer_allowed(!state.cfg.api_keys.is_empty(), peer.ip())
}

/// The access rule on its own: any peer when api keys are configured (they are then checked
/// like on every route), else loopback only. An IPv4 peer seen through a dual-stack socket
/// (`::ffff:127.0.0.1`) is still loopback.
pub fn peer_allowed(api_keys_configured: bool, peer: IpAddr) -> bool {
    api_keys_configured || peer.to_canonical().is_loopback()
}

/// Every account's windows that have a limit or have been used, as bars.
pub fn quota_accounts(status: &PoolStatus) -> Vec<QuotaAccount> {
    let mut out = Vec::new();
    for p in &status.providers {
        for a in &p.accounts {
            let mut bars = bars_of("", &a.windows);
            for m in &a.models {
                // Per-model windows only where the provider limits per model.
                bars.extend(bars_of(&m.name, &m.windows).into_iter().filter(|b| b.limit.is_some()));
            }
            out.push(QuotaAccount {
                provider: p.name.clone(),
                account: a.label.clone(),
                health: a.health.clone(),
                off: p.off.clone().or_else(|| (a.health == "off").then(|| a.last_error.clone().unwrap_or_default())),
                cooldown_s: a.cooldown.as_ref().map(|c| c.remaining_s),
                cooldown_reason: a.cooldown.as_ref().map(|c| c.reason.clone()),
                bars,
            });
        }
    }
    out
}

fn bars_of(model: &str, w: &Windows) -> Vec<QuotaBar> {
    let named: [(&str, &WindowStatus); 4] = [("rpm", &w.rpm), ("tpm", &w.tpm), ("rpd", &w.rpd), ("tpd", &w.tpd)];
    named
        .into_iter()
        .filter(|(_, s)| s.limit.is_some() || s.used > 0)
        .map(|(name, s)| QuotaBar {
            label: if model.is_empty() { name.to_string() } else { format!("{model} {name}") },
            used: s.used,
            limit: s.limit,
            reset_in_s: s.resets_in_s,
        })
        .collect()
}

/// The figures of the last 30 days, read from the ledger off the async threads.
pub async fn data(state: &Arc<AppState>) -> Result<Bytes, String> {
    let quotas = quota_accounts(&state.pool().pool_status());
    let lost_records = state.ledger.lost();
    let Some(path) = super::ledger_path() else { return Err("the ledger is off (TOKENFOLD_LEDGER=off)".into()) };
    let since = crate::ledger::now_ms() - DAYS * 86_400_000;
    let data = tokio::task::spawn_blocking(move || -> Result<Data, String> {
        if !path.exists() {
            return Ok(Data {
                summary: Report::empty(since, GroupBy::Provider),
                by_day: Report::empty(since, GroupBy::Day),
                recent: vec![],
                quotas,
                cache: CacheChart::default(),
                lost_records,
            });
        }
        let e = |e: rusqlite::Error| e.to_string();
        Ok(Data {
            summary: report::build(&path, since, GroupBy::Provider, None).map_err(e)?,
            by_day: report::build(&path, since, GroupBy::Day, None).map_err(e)?,
            recent: report::recent(&path, 50).map_err(e)?,
            quotas,
            cache: cache::series(&path, since)
                .map(|(bucket_ms, series)| CacheChart { bucket_ms, series })
                .map_err(e)?,
            lost_records,
        })
    })
    .await
    .map_err(|e| e.to_string())??;
    serde_json::to_vec(&data).map(Bytes::from).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_only_without_api_keys() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        for local in ["127.0.0.1", "127.3.2.1", "::1", "::ffff:127.0.0.1"] {
            assert!(peer_allowed(false, ip(local)), "{local}");
        }
        for remote in ["10.0.0.5", "192.168.1.20", "fe80::1", "::ffff:10.0.0.5", "0.0.0.0"] {
            assert!(!peer_allowed(false, ip(remote)), "{remote} must be refused without api keys");
            assert!(peer_allowed(true, ip(remote)), "{remote} may ask (with a key) when api keys are set");
        }
    }
}
