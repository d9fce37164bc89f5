//! `GET /dashboard`: one self-contained page (no CDN, no build step) and the JSON it polls.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;

use super::AppState;
use crate::ledger::report::{self, GroupBy, Recent, Report};

pub const PAGE: &str = include_str!("dashboard.html");

/// A quota bar: how much of one window an account has used.
#[derive(Debug, Serialize)]
pub struct QuotaBar {
    pub label: String,
    pub used: u64,
    pub limit: u64,
    pub reset_in_s: Option<f64>,
}

#[derive(Serialize)]
struct Data {
    summary: Report,
    by_day: Report,
    by_mechanism: Report,
    recent: Vec<Recent>,
    quotas: Vec<QuotaBar>,
}

/// Without api keys the dashboard is for this machine only.
pub fn allowed(state: &AppState, peer: SocketAddr) -> bool {
    !state.cfg.api_keys.is_empty() || peer.ip().is_loopback()
}

/// The figures of the last 30 days, read from the ledger off the async threads.
pub async fn data(_state: &Arc<AppState>) -> Result<Bytes, String> {
    let Some(path) = super::ledger_path() else { return Err("the ledger is off (TOKENFOLD_LEDGER=off)".into()) };
    let since = crate::ledger::now_ms() - 30 * 86_400_000;
    let data = tokio::task::spawn_blocking(move || -> Result<Data, String> {
        if !path.exists() {
            let empty = |by: &str| Report { since_ms: since, by: by.into(), rows: vec![], total: Default::default() };
            return Ok(Data {
                summary: empty("provider"),
                by_day: empty("day"),
                by_mechanism: empty("mechanism"),
                recent: vec![],
                quotas: vec![],
            });
        }
        let e = |e: rusqlite::Error| e.to_string();
        Ok(Data {
            summary: report::build(&path, since, GroupBy::Provider, None).map_err(e)?,
            by_day: report::build(&path, since, GroupBy::Day, None).map_err(e)?,
            by_mechanism: report::build(&path, since, GroupBy::Mechanism, None).map_err(e)?,
            recent: report::recent(&path, 50).map_err(e)?,
            quotas: vec![],
        })
    })
    .await
    .map_err(|e| e.to_string())??;
    serde_json::to_vec(&data).map(Bytes::from).map_err(|e| e.to_string())
}
