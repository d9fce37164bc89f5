//! Conversations in the ledger, for `report --session [PREFIX]`.

use std::path::Path;

use rusqlite::params;
use serde::Serialize;

use super::report::open_read_only;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SessionRow {
    pub session: String,
    pub first_ms: i64,
    pub last_ms: i64,
    pub client: String,
    pub requests: u64,
    pub saved_tokens: u64,
    pub saved_usd: f64,
    pub cache_read: u64,
    /// Cache reads over every input token, in percent.
    pub cache_hit_pct: Option<f64>,
}

/// What `--session PREFIX` names.
#[derive(Debug, PartialEq)]
pub enum Pick {
    /// Exactly one conversation (or one whose id is exactly the prefix).
    One(String),
    /// Several start with the prefix: the user picks one.
    Several(Vec<SessionRow>),
    /// None does; the most recent ones are offered.
    Nothing(Vec<SessionRow>),
}

/// Conversations since `since_ms` whose id starts with `prefix` (all with ""), newest first.
pub fn list(path: &Path, since_ms: i64, prefix: &str, limit: usize) -> rusqlite::Result<Vec<SessionRow>> {
    let conn = open_read_only(path)?;
    let mut stmt = conn.prepare(
        "SELECT session, MIN(ts_ms), MAX(ts_ms), MAX(client), COUNT(*), SUM(MAX(tokens_before - tokens_after, 0)),
                SUM(baseline_cost_usd - cost_usd), SUM(cache_read), SUM(usage_input + cache_read + cache_write)
         FROM requests
         WHERE ts_ms >= ?1 AND session != '' AND substr(session, 1, length(?2)) = ?2
         GROUP BY session ORDER BY MAX(ts_ms) DESC, session LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![since_ms, prefix, limit as i64], |r| {
        Ok(SessionRow {
            session: r.get(0)?,
            first_ms: r.get(1)?,
            last_ms: r.get(2)?,
            client: r.get(3)?,
            requests: r.get::<_, i64>(4)? as u64,
            saved_tokens: r.get::<_, i64>(5)?.max(0) as u64,
            saved_usd: r.get(6)?,
            cache_read: r.get::<_, i64>(7)?.max(0) as u64,
            cache_hit_pct: super::report::hit_pct(r.get::<_, i64>(7)?.max(0) as u64, r.get::<_, i64>(8)?.max(0) as u64),
        })
    })?;
    rows.collect()
}

pub fn pick(path: &Path, since_ms: i64, prefix: &str, limit: usize) -> rusqlite::Result<Pick> {
    let matches = list(path, since_ms, prefix, limit.max(2))?;
    if let Some(exact) = matches.iter().find(|s| s.session == prefix) {
        return Ok(Pick::One(exact.session.clone()));
    }
    Ok(match matches.len() {
        1 => Pick::One(matches[0].session.clone()),
        0 => Pick::Nothing(list(path, since_ms, "", limit)?),
        _ => Pick::Several(matches),
    })
}
