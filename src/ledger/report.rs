//! `tokenfold report`: the ledger summed by a grouping key, as a table, JSON or CSV.

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::{params, Connection, OpenFlags};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Day,
    Route,
    Provider,
    Model,
    Mechanism,
    Client,
}

impl GroupBy {
    pub fn parse(s: &str) -> Option<GroupBy> {
        Some(match s {
            "day" => GroupBy::Day,
            "route" => GroupBy::Route,
            "provider" => GroupBy::Provider,
            "model" => GroupBy::Model,
            "mechanism" => GroupBy::Mechanism,
            "client" => GroupBy::Client,
            _ => return None,
        })
    }

    /// The SQL expression of the key over `requests` and over `daily`.
    fn columns(self) -> (&'static str, &'static str) {
        match self {
            GroupBy::Day => ("date(ts_ms / 1000, 'unixepoch')", "day"),
            GroupBy::Route => ("route", "route"),
            GroupBy::Provider => ("provider", "provider"),
            GroupBy::Model => ("model", "model"),
            GroupBy::Client | GroupBy::Mechanism => ("client", "client"),
        }
    }
}

#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct Row {
    pub key: String,
    pub requests: u64,
    pub errors: u64,
    pub fallbacks: u64,
    pub tokens_before: u64,
    pub tokens_after: u64,
    pub cost_usd: f64,
    pub baseline_cost_usd: f64,
    pub free_requests: u64,
    /// List-price value of the requests served by free tiers.
    pub free_value_usd: f64,
    pub overhead_p50_us: Option<u64>,
    pub overhead_p95_us: Option<u64>,
}

impl Row {
    pub fn saved_tokens(&self) -> u64 {
        self.tokens_before.saturating_sub(self.tokens_after)
    }
    pub fn saved_cost(&self) -> f64 {
        self.baseline_cost_usd - self.cost_usd
    }
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub since_ms: i64,
    pub by: String,
    pub rows: Vec<Row>,
    pub total: Row,
}

fn pct(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        100.0 * part / whole
    } else {
        0.0
    }
}

fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(idx).copied()
}

/// Sums the ledger at `path` since `since_ms`, optionally for one conversation.
pub fn build(path: &Path, since_ms: i64, by: GroupBy, session: Option<&str>) -> rusqlite::Result<Report> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    let mut overheads: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let session_filter = session.unwrap_or("");
    if by == GroupBy::Mechanism {
        mechanism_rows(&conn, since_ms, session_filter, &mut rows)?;
    } else {
        let (raw_key, daily_key) = by.columns();
        let sql = format!(
            "SELECT {raw_key}, outcome != 'completed', fallbacks, tokens_before, tokens_after, cost_usd,
                    baseline_cost_usd, free_tier, overhead_us
             FROM requests WHERE ts_ms >= ?1 AND (?2 = '' OR session = ?2)"
        );
        let mut stmt = conn.prepare(&sql)?;
        let mut q = stmt.query(params![since_ms, session_filter])?;
        while let Some(r) = q.next()? {
            let key: String = r.get(0)?;
            let row = rows.entry(key.clone()).or_insert_with(|| Row { key: key.clone(), ..Row::default() });
            row.requests += 1;
            row.errors += r.get::<_, i64>(1)? as u64;
            row.fallbacks += r.get::<_, i64>(2)? as u64;
            row.tokens_before += r.get::<_, i64>(3)? as u64;
            row.tokens_after += r.get::<_, i64>(4)? as u64;
            let cost: f64 = r.get(5)?;
            row.baseline_cost_usd += r.get::<_, f64>(6)?;
            if r.get::<_, bool>(7)? {
                row.free_requests += 1;
                row.free_value_usd += cost;
            } else {
                row.cost_usd += cost;
            }
            overheads.entry(key).or_default().push(r.get::<_, i64>(8)? as u64);
        }
        // Compacted days have no per-conversation detail, so a session view reads raw rows only.
        if session.is_none() {
            let sql = format!(
                "SELECT {daily_key}, SUM(requests), SUM(errors), SUM(fallbacks), SUM(tokens_before), SUM(tokens_after),
                        SUM(cost_usd), SUM(baseline_cost_usd), SUM(free_requests), SUM(free_cost_usd)
                 FROM daily WHERE day >= date(?1 / 1000, 'unixepoch') GROUP BY {daily_key}"
            );
            let mut stmt = conn.prepare(&sql)?;
            let mut q = stmt.query(params![since_ms])?;
            while let Some(r) = q.next()? {
                let key: String = r.get(0)?;
                let row = rows.entry(key.clone()).or_insert_with(|| Row { key, ..Row::default() });
                row.requests += r.get::<_, i64>(1)? as u64;
                row.errors += r.get::<_, i64>(2)? as u64;
                row.fallbacks += r.get::<_, i64>(3)? as u64;
                row.tokens_before += r.get::<_, i64>(4)? as u64;
                row.tokens_after += r.get::<_, i64>(5)? as u64;
                let free_cost: f64 = r.get(9)?;
                row.cost_usd += r.get::<_, f64>(6)? - free_cost;
                row.baseline_cost_usd += r.get::<_, f64>(7)?;
                row.free_requests += r.get::<_, i64>(8)? as u64;
                row.free_value_usd += free_cost;
            }
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
    let rows: Vec<Row> = rows.into_values().collect();
    let mut total = Row { key: "total".into(), ..Row::default() };
    for r in &rows {
        total.requests += r.requests;
        total.errors += r.errors;
        total.fallbacks += r.fallbacks;
        total.tokens_before += r.tokens_before;
        total.tokens_after += r.tokens_after;
        total.cost_usd += r.cost_usd;
        total.baseline_cost_usd += r.baseline_cost_usd;
        total.free_requests += r.free_requests;
        total.free_value_usd += r.free_value_usd;
    }
    if by != GroupBy::Mechanism {
        total.overhead_p50_us = percentile(&all_overheads, 0.5);
        total.overhead_p95_us = percentile(&all_overheads, 0.95);
    }
    let by = format!("{by:?}").to_lowercase();
    Ok(Report { since_ms, by, rows, total })
}

/// Tokens saved per mechanism (a request counts once per mechanism that saved something in it).
fn mechanism_rows(
    conn: &Connection,
    since_ms: i64,
    session: &str,
    rows: &mut BTreeMap<String, Row>,
) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare(
        "SELECT s.mechanism, COUNT(*), SUM(s.tokens) FROM savings s JOIN requests r ON r.id = s.request_id
         WHERE r.ts_ms >= ?1 AND (?2 = '' OR r.session = ?2) GROUP BY s.mechanism",
    )?;
    let mut q = stmt.query(params![since_ms, session])?;
    while let Some(r) = q.next()? {
        let key: String = r.get(0)?;
        let tokens = r.get::<_, i64>(2)? as u64;
        rows.insert(
            key.clone(),
            Row { key, requests: r.get::<_, i64>(1)? as u64, tokens_before: tokens, ..Row::default() },
        );
    }
    if session.is_empty() {
        let mut stmt = conn.prepare(
            "SELECT mechanism, SUM(tokens) FROM daily_savings WHERE day >= date(?1 / 1000, 'unixepoch') GROUP BY mechanism",
        )?;
        let mut q = stmt.query(params![since_ms])?;
        while let Some(r) = q.next()? {
            let key: String = r.get(0)?;
            let row = rows.entry(key.clone()).or_insert_with(|| Row { key, ..Row::default() });
            row.tokens_before += r.get::<_, i64>(1)? as u64;
        }
    }
    Ok(())
}

/// The report as a terminal table.
pub fn render_table(rep: &Report) -> String {
    let mut out = String::new();
    if rep.by == "mechanism" {
        out.push_str(&format!("{:<28} {:>9} {:>14}\n", "mechanism", "requests", "tokens saved"));
        for r in rep.rows.iter().chain(std::iter::once(&rep.total)) {
            out.push_str(&format!("{:<28} {:>9} {:>14}\n", r.key, r.requests, r.tokens_before));
        }
        return out;
    }
    out.push_str(&format!(
        "{:<24} {:>8} {:>12} {:>7} {:>10} {:>10} {:>7} {:>6} {:>10} {:>5} {:>5} {:>8} {:>8}\n",
        rep.by,
        "requests",
        "tok saved",
        "tok %",
        "cost $",
        "saved $",
        "$ %",
        "free",
        "free val $",
        "fallb",
        "errs",
        "p50 µs",
        "p95 µs"
    ));
    for r in rep.rows.iter().chain(std::iter::once(&rep.total)) {
        let us = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "{:<24} {:>8} {:>12} {:>6.1}% {:>10.4} {:>10.4} {:>6.1}% {:>6} {:>10.4} {:>5} {:>5} {:>8} {:>8}\n",
            truncate(&r.key, 24),
            r.requests,
            r.saved_tokens(),
            pct(r.saved_tokens() as f64, r.tokens_before as f64),
            r.cost_usd,
            r.saved_cost(),
            pct(r.saved_cost(), r.baseline_cost_usd),
            r.free_requests,
            r.free_value_usd,
            r.fallbacks,
            r.errors,
            us(r.overhead_p50_us),
            us(r.overhead_p95_us),
        ));
    }
    out
}

pub fn render_csv(rep: &Report) -> String {
    let mut out = String::from(
        "key,requests,errors,fallbacks,tokens_before,tokens_after,cost_usd,baseline_cost_usd,free_requests,free_value_usd,overhead_p50_us,overhead_p95_us\n",
    );
    for r in rep.rows.iter().chain(std::iter::once(&rep.total)) {
        let us = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
        out.push_str(&format!(
            "\"{}\",{},{},{},{},{},{},{},{},{},{},{}\n",
            r.key.replace('"', "\"\""),
            r.requests,
            r.errors,
            r.fallbacks,
            r.tokens_before,
            r.tokens_after,
            r.cost_usd,
            r.baseline_cost_usd,
            r.free_requests,
            r.free_value_usd,
            us(r.overhead_p50_us),
            us(r.overhead_p95_us)
        ));
    }
    out
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).chain(std::iter::once('…')).collect()
    }
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
        let (y, m, d) = (y.parse::<i64>().ok()?, m.parse::<i64>().ok()?, d.parse::<i64>().ok()?);
        if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
            return None;
        }
        return Some(days_from_civil(y, m, d) * 86_400_000);
    }
    None
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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

/// One row of the recent-requests list.
#[derive(Debug, Serialize)]
pub struct Recent {
    pub ts_ms: i64,
    pub client: String,
    pub provider: String,
    pub model: String,
    pub status: u16,
    pub outcome: String,
    pub fallbacks: String,
    pub latency_ms: u64,
    pub saved_tokens: u64,
}

/// The newest `n` requests.
pub fn recent(path: &Path, n: usize) -> rusqlite::Result<Vec<Recent>> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut stmt = conn.prepare(
        "SELECT ts_ms, client, provider, model, status, outcome, fallback_reasons, latency_ms, tokens_before - tokens_after
         FROM requests ORDER BY id DESC LIMIT ?1",
    )?;
    let rows = stmt.query_map(params![n as i64], |r| {
        Ok(Recent {
            ts_ms: r.get(0)?,
            client: r.get(1)?,
            provider: r.get(2)?,
            model: r.get(3)?,
            status: r.get::<_, i64>(4)? as u16,
            outcome: r.get(5)?,
            fallbacks: r.get(6)?,
            latency_ms: r.get::<_, i64>(7)? as u64,
            saved_tokens: r.get::<_, i64>(8)?.max(0) as u64,
        })
    })?;
    rows.collect()
}
