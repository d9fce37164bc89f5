//! `tokenfold report`: the ledger summed by a grouping key. Raw records and compacted daily
//! aggregates are summed alike, so totals do not change when old records are compacted.

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::{params, Connection, OpenFlags};
use serde::Serialize;

pub use super::render::{expiry_line, render_csv, render_table};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Day,
    Route,
    Provider,
    Account,
    Model,
    Status,
    Mechanism,
    Client,
}

impl GroupBy {
    pub const NAMES: &'static str = "day, route, provider, account, model, status, mechanism, client";

    pub fn parse(s: &str) -> Option<GroupBy> {
        Some(match s {
            "day" => GroupBy::Day,
            "route" => GroupBy::Route,
            "provider" => GroupBy::Provider,
            "account" => GroupBy::Account,
            "model" => GroupBy::Model,
            "status" => GroupBy::Status,
            "mechanism" => GroupBy::Mechanism,
            "client" => GroupBy::Client,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            GroupBy::Day => "day",
            GroupBy::Route => "route",
            GroupBy::Provider => "provider",
            GroupBy::Account => "account",
            GroupBy::Model => "model",
            GroupBy::Status => "status",
            GroupBy::Mechanism => "mechanism",
            GroupBy::Client => "client",
        }
    }

    /// The SQL expression of the key over `requests` and over `daily`. Mechanism rows have their
    /// own query; the request rows of that view are summed as one total.
    fn columns(self) -> (&'static str, &'static str) {
        match self {
            GroupBy::Day => ("date(ts_ms / 1000, 'unixepoch')", "day"),
            GroupBy::Route => ("route", "route"),
            GroupBy::Provider => ("provider", "provider"),
            GroupBy::Account => ("provider || '/' || account", "provider || '/' || account"),
            GroupBy::Model => ("model", "model"),
            GroupBy::Status => ("CAST(status AS TEXT)", "CAST(status AS TEXT)"),
            GroupBy::Client => ("client", "client"),
            GroupBy::Mechanism => ("'total'", "'total'"),
        }
    }
}

#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct Row {
    pub key: String,
    pub requests: u64,
    /// Requests that did not complete (errors, broken streams, cancelled).
    pub errors: u64,
    pub fallbacks: u64,
    pub tokens_before: u64,
    pub tokens_after: u64,
    /// Billed cost (free tiers bill 0).
    pub cost_usd: f64,
    /// Billed cost had nothing been folded (cache aware).
    pub baseline_cost_usd: f64,
    pub free_requests: u64,
    /// List-price value of the requests served by free tiers (not part of `saved_cost`).
    pub free_value_usd: f64,
    pub overhead_p50_us: Option<u64>,
    pub overhead_p95_us: Option<u64>,
    /// Provider-reported input billed at the full rate (cache reads and writes not included).
    pub usage_input: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    /// Cache reads over every input token the provider reported, in percent; `None` without any.
    pub cache_hit_pct: Option<f64>,
    /// What the same tokens would have cost with no prompt cache (against `cost_usd`).
    pub uncached_cost_usd: f64,
}

impl Row {
    pub fn saved_tokens(&self) -> u64 {
        self.tokens_before.saturating_sub(self.tokens_after)
    }
    pub fn saved_cost(&self) -> f64 {
        self.baseline_cost_usd - self.cost_usd
    }

    fn add(&mut self, o: &Row) {
        self.requests += o.requests;
        self.errors += o.errors;
        self.fallbacks += o.fallbacks;
        self.tokens_before += o.tokens_before;
        self.tokens_after += o.tokens_after;
        self.cost_usd += o.cost_usd;
        self.baseline_cost_usd += o.baseline_cost_usd;
        self.free_requests += o.free_requests;
        self.free_value_usd += o.free_value_usd;
        self.usage_input += o.usage_input;
        self.cache_read += o.cache_read;
        self.cache_write += o.cache_write;
        self.uncached_cost_usd += o.uncached_cost_usd;
    }

    /// What the prompt cache saved: the uncached cost against the billed one.
    pub fn cache_saved_cost(&self) -> f64 {
        self.uncached_cost_usd - self.cost_usd
    }

    fn set_hit_share(&mut self) {
        self.cache_hit_pct = hit_pct(self.cache_read, self.usage_input + self.cache_read + self.cache_write);
    }
}

/// `read` of `all` input tokens in percent; `None` without input.
pub fn hit_pct(read: u64, all: u64) -> Option<f64> {
    (all > 0).then(|| 100.0 * read as f64 / all as f64)
}

/// What one fold mechanism did: requests it acted in, tokens it saved, elisions and recalls (for
/// `clear`: outputs cleared, reads of their originals, and the clearing steps taken).
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct MechanismRow {
    pub key: String,
    pub requests: u64,
    pub tokens_saved: u64,
    /// Of `tokens_saved`, removed from the turn's new blocks (the rest sat in the cached prefix).
    pub turn_tokens: u64,
    pub elisions: u64,
    pub recalls: u64,
    /// Clearing steps taken (`clear` only).
    pub steps: u64,
    /// recalls / elisions in percent; `None` without elisions.
    pub recall_pct: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub since_ms: i64,
    pub by: String,
    /// The conversation the report is limited to, if any.
    pub session: Option<String>,
    /// Empty for `--by mechanism` (see `mechanisms`).
    pub rows: Vec<Row>,
    pub total: Row,
    /// Per mechanism, always filled.
    pub mechanisms: Vec<MechanismRow>,
    /// The prompt cache expiring between turns (conversations are in raw records only).
    pub cache_expiry: super::cache::ExpiryNotice,
}

impl Report {
    pub fn empty(since_ms: i64, by: GroupBy) -> Report {
        let total = Row { key: "total".into(), ..Row::default() };
        Report {
            since_ms,
            by: by.name().into(),
            session: None,
            rows: vec![],
            total,
            mechanisms: vec![],
            cache_expiry: Default::default(),
        }
    }
}

/// Requests the proxy refused before choosing a target have no provider, route or model.
fn shown_key(key: String) -> String {
    if key.is_empty() || key == "/" {
        "(none)".into()
    } else {
        key
    }
}

fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(idx).copied()
}

pub fn open_read_only(path: &Path) -> rusqlite::Result<Connection> {
    Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
}

/// Sums the ledger at `path` since `since_ms`, optionally for one conversation.
pub fn build(path: &Path, since_ms: i64, by: GroupBy, session: Option<&str>) -> rusqlite::Result<Report> {
    let conn = open_read_only(path)?;
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    let mut overheads: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let session_filter = session.unwrap_or("");
    let (raw_key, daily_key) = by.columns();
    let sql = format!(
        "SELECT {raw_key}, outcome != 'completed', fallbacks, tokens_before, tokens_after, cost_usd,
                baseline_cost_usd, free_tier, list_cost_usd, overhead_us, usage_input, cache_read, cache_write,
                uncached_cost_usd
         FROM requests WHERE ts_ms >= ?1 AND (?2 = '' OR session = ?2)"
    );
    let mut stmt = conn.prepare(&sql)?;
    let mut q = stmt.query(params![since_ms, session_filter])?;
    while let Some(r) = q.next()? {
        let key = shown_key(r.get(0)?);
        let row = rows.entry(key.clone()).or_insert_with(|| Row { key: key.clone(), ..Row::default() });
        row.requests += 1;
        row.errors += r.get::<_, i64>(1)? as u64;
        row.fallbacks += r.get::<_, i64>(2)? as u64;
        row.tokens_before += r.get::<_, i64>(3)? as u64;
        row.tokens_after += r.get::<_, i64>(4)? as u64;
        row.cost_usd += r.get::<_, f64>(5)?;
        row.baseline_cost_usd += r.get::<_, f64>(6)?;
        if r.get::<_, bool>(7)? {
            row.free_requests += 1;
            row.free_value_usd += r.get::<_, f64>(8)?;
        }
        overheads.entry(key).or_default().push(r.get::<_, i64>(9)?.max(0) as u64);
        row.usage_input += r.get::<_, i64>(10)?.max(0) as u64;
        row.cache_read += r.get::<_, i64>(11)?.max(0) as u64;
        row.cache_write += r.get::<_, i64>(12)?.max(0) as u64;
        row.uncached_cost_usd += r.get::<_, f64>(13)?;
    }
    // Compacted days have no per-conversation detail, so a session view reads raw rows only.
    if session.is_none() {
        let sql = format!(
            "SELECT {daily_key}, SUM(requests), SUM(errors), SUM(fallbacks), SUM(tokens_before), SUM(tokens_after),
                    SUM(cost_usd), SUM(baseline_cost_usd), SUM(free_requests), SUM(free_value_usd),
                    SUM(usage_input), SUM(cache_read), SUM(cache_write), SUM(uncached_cost_usd)
             FROM daily WHERE day >= date(?1 / 1000, 'unixepoch') GROUP BY 1"
        );
        let mut stmt = conn.prepare(&sql)?;
        let mut q = stmt.query(params![since_ms])?;
        while let Some(r) = q.next()? {
            let key = shown_key(r.get(0)?);
            let row = rows.entry(key.clone()).or_insert_with(|| Row { key, ..Row::default() });
            row.requests += r.get::<_, i64>(1)? as u64;
            row.errors += r.get::<_, i64>(2)? as u64;
            row.fallbacks += r.get::<_, i64>(3)? as u64;
            row.tokens_before += r.get::<_, i64>(4)? as u64;
            row.tokens_after += r.get::<_, i64>(5)? as u64;
            row.cost_usd += r.get::<_, f64>(6)?;
            row.baseline_cost_usd += r.get::<_, f64>(7)?;
            row.free_requests += r.get::<_, i64>(8)? as u64;
            row.free_value_usd += r.get::<_, f64>(9)?;
            row.usage_input += r.get::<_, i64>(10)?.max(0) as u64;
            row.cache_read += r.get::<_, i64>(11)?.max(0) as u64;
            row.cache_write += r.get::<_, i64>(12)?.max(0) as u64;
            row.uncached_cost_usd += r.get::<_, f64>(13)?;
        }
    }
    let mut all_overheads = Vec::new();
    for (key, mut o) in overheads {
        o.sort_unstable();
        if let Some(row) = rows.get_mut(&key) {
            row.overhead_p50_us = percentile(&o, 0.5);
            row.overhead_p95_us = percentile(&o, 0.95);
        }
        all_overheads.extend(o);
    }
    all_overheads.sort_unstable();
    let mut rep = Report::empty(since_ms, by);
    rep.session = session.map(str::to_string);
    for r in rows.values_mut() {
        r.set_hit_share();
        rep.total.add(r);
    }
    rep.total.set_hit_share();
    rep.total.overhead_p50_us = percentile(&all_overheads, 0.5);
    rep.total.overhead_p95_us = percentile(&all_overheads, 0.95);
    if by != GroupBy::Mechanism {
        rep.rows = rows.into_values().collect();
    }
    rep.mechanisms = mechanism_rows(&conn, since_ms, session)?;
    rep.cache_expiry = super::cache::expiry(&conn, since_ms, session)?;
    Ok(rep)
}

/// Per mechanism: requests it acted in, tokens saved, elisions and recalls.
fn mechanism_rows(conn: &Connection, since_ms: i64, session: Option<&str>) -> rusqlite::Result<Vec<MechanismRow>> {
    let mut rows: BTreeMap<String, MechanismRow> = BTreeMap::new();
    let mut add = |r: &rusqlite::Row| -> rusqlite::Result<()> {
        let key: String = r.get(0)?;
        let row = rows.entry(key.clone()).or_insert_with(|| MechanismRow { key, ..MechanismRow::default() });
        row.requests += r.get::<_, i64>(1)? as u64;
        row.tokens_saved += r.get::<_, i64>(2)? as u64;
        row.turn_tokens += r.get::<_, i64>(3)? as u64;
        row.elisions += r.get::<_, i64>(4)? as u64;
        row.recalls += r.get::<_, i64>(5)? as u64;
        row.steps += r.get::<_, i64>(6)? as u64;
        Ok(())
    };
    let mut stmt = conn.prepare(
        "SELECT s.mechanism, COUNT(*), SUM(s.tokens), SUM(s.turn_tokens), SUM(s.elisions), SUM(s.recalls),
            SUM(s.steps)
         FROM savings s JOIN requests r ON r.id = s.request_id
         WHERE r.ts_ms >= ?1 AND (?2 = '' OR r.session = ?2) GROUP BY s.mechanism",
    )?;
    let mut q = stmt.query(params![since_ms, session.unwrap_or("")])?;
    while let Some(r) = q.next()? {
        add(r)?;
    }
    if session.is_none() {
        let mut stmt = conn.prepare(
            "SELECT mechanism, SUM(requests), SUM(tokens), SUM(turn_tokens), SUM(elisions), SUM(recalls),
                SUM(steps)
             FROM daily_savings WHERE day >= date(?1 / 1000, 'unixepoch') GROUP BY mechanism",
        )?;
        let mut q = stmt.query(params![since_ms])?;
        while let Some(r) = q.next()? {
            add(r)?;
        }
    }
    Ok(rows
        .into_values()
        .map(|mut m| {
            m.recall_pct = (m.elisions > 0).then(|| 100.0 * m.recalls as f64 / m.elisions as f64);
            m
        })
        .collect())
}

/// One row of the recent-requests list.
#[derive(Debug, Serialize)]
pub struct Recent {
    pub ts_ms: i64,
    pub client: String,
    pub route: String,
    pub provider: String,
    pub account: String,
    pub model: String,
    pub status: u16,
    pub outcome: String,
    pub fallbacks: String,
    pub error: String,
    pub latency_ms: u64,
    pub overhead_us: u64,
    pub saved_tokens: u64,
    pub free_tier: bool,
}

/// The newest `n` requests.
pub fn recent(path: &Path, n: usize) -> rusqlite::Result<Vec<Recent>> {
    let conn = open_read_only(path)?;
    let mut stmt = conn.prepare(
        "SELECT ts_ms, client, route, provider, account, model, status, outcome, fallback_reasons, latency_ms,
                overhead_us, tokens_before - tokens_after, free_tier, error
         FROM requests ORDER BY ts_ms DESC, id DESC LIMIT ?1",
    )?;
    let rows = stmt.query_map(params![n as i64], |r| {
        Ok(Recent {
            ts_ms: r.get(0)?,
            client: r.get(1)?,
            route: r.get(2)?,
            provider: r.get(3)?,
            account: r.get(4)?,
            model: r.get(5)?,
            status: r.get::<_, i64>(6)? as u16,
            outcome: r.get(7)?,
            fallbacks: r.get(8)?,
            latency_ms: r.get::<_, i64>(9)?.max(0) as u64,
            overhead_us: r.get::<_, i64>(10)?.max(0) as u64,
            saved_tokens: r.get::<_, i64>(11)?.max(0) as u64,
            free_tier: r.get(12)?,
            error: r.get(13)?,
        })
    })?;
    rows.collect()
}

/// Parses `--since`: `24h`, `7d`, `30m`, or a date `YYYY-MM-DD` (UTC). Returns unix ms.
pub fn parse_since(s: &str, now_ms: i64) -> Option<i64> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.len().saturating_sub(1));
    if let Ok(n) = num.parse::<i64>() {
        let ms = match unit {
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return None,
        };
        return Some(now_ms - n * ms);
    }
    let parts: Vec<&str> = s.split('-').collect();
    if let [y, m, d] = parts.as_slice() {
        let date = jiff::civil::Date::new(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?).ok()?;
        return Some(date.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp().as_millisecond());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_forms() {
        assert_eq!(parse_since("24h", 100_000_000), Some(100_000_000 - 86_400_000));
        assert_eq!(parse_since("2026-11-23", 0), Some(20_780 * 86_400_000));
        assert_eq!(parse_since("1970-01-02", 0), Some(86_400_000));
        assert_eq!(parse_since("soon", 0), None);
    }
}
