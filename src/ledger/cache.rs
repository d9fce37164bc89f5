//! The ledger's view of the provider's prompt cache beyond the per-key sums of `report`: the
//! 5-minute cache expiring between turns, and the hit share per provider over time.

use std::path::Path;

use rusqlite::{params, Connection};
use serde::Serialize;

/// Conversations whose 5-minute Anthropic cache expired between two turns: the later turn read
/// nothing and wrote the whole prefix again after a pause of more than 5 minutes (and at most an
/// hour, which the 1-hour TTL would have bridged).
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct ExpiryNotice {
    pub conversations: u64,
    pub rewrites: u64,
    pub tokens_rewritten: u64,
}

/// See `ExpiryNotice`. A turn's predecessor is the conversation's previous request that the
/// provider billed.
pub fn expiry(conn: &Connection, since_ms: i64, session: Option<&str>) -> rusqlite::Result<ExpiryNotice> {
    const FIVE_MINUTES_MS: i64 = 300_000;
    const ONE_HOUR_MS: i64 = 3_600_000;
    conn.query_row(
        "SELECT COUNT(DISTINCT session), COUNT(*), COALESCE(SUM(cache_write), 0) FROM (
            SELECT session, ts_ms, cache_read, cache_write,
                   LAG(ts_ms) OVER (PARTITION BY session ORDER BY ts_ms, id) AS previous
            FROM requests
            WHERE ts_ms >= ?1 AND session != '' AND (?2 = '' OR session = ?2)
              AND usage_input + cache_read + cache_write > 0)
         WHERE previous IS NOT NULL AND ts_ms - previous > ?3 AND ts_ms - previous <= ?4
           AND cache_read = 0 AND cache_write > 0",
        params![since_ms, session.unwrap_or(""), FIVE_MINUTES_MS, ONE_HOUR_MS],
        |r| {
            Ok(ExpiryNotice {
                conversations: r.get::<_, i64>(0)? as u64,
                rewrites: r.get::<_, i64>(1)? as u64,
                tokens_rewritten: r.get::<_, i64>(2)?.max(0) as u64,
            })
        },
    )
}

/// Input tokens and cache reads of one provider in one time bucket.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CachePoint {
    /// Start of the bucket, unix ms.
    pub t_ms: i64,
    /// Every input token the provider reported (uncached, read and written).
    pub input: u64,
    pub cache_read: u64,
}

/// One provider's cache hits over time.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CacheSeries {
    pub provider: String,
    pub points: Vec<CachePoint>,
}

/// The hit share per provider since `since_ms`, in buckets of an hour when the records span at
/// most three days, else of a day; and the bucket width in ms.
pub fn series(path: &Path, since_ms: i64) -> rusqlite::Result<(i64, Vec<CacheSeries>)> {
    const HOUR: i64 = 3_600_000;
    let conn = super::report::open_read_only(path)?;
    let span: Option<i64> =
        conn.query_row("SELECT MAX(ts_ms) - MIN(ts_ms) FROM requests WHERE ts_ms >= ?1", params![since_ms], |r| {
            r.get(0)
        })?;
    let bucket = if span.unwrap_or(0) <= 72 * HOUR { HOUR } else { 24 * HOUR };
    let mut stmt = conn.prepare(
        "SELECT provider, (ts_ms / ?2) * ?2, SUM(usage_input + cache_read + cache_write), SUM(cache_read)
         FROM requests WHERE ts_ms >= ?1 AND provider != '' AND usage_input + cache_read + cache_write > 0
         GROUP BY 1, 2 ORDER BY 1, 2",
    )?;
    let mut out: Vec<CacheSeries> = Vec::new();
    let mut q = stmt.query(params![since_ms, bucket])?;
    while let Some(r) = q.next()? {
        let provider: String = r.get(0)?;
        let point = CachePoint {
            t_ms: r.get(1)?,
            input: r.get::<_, i64>(2)?.max(0) as u64,
            cache_read: r.get::<_, i64>(3)?.max(0) as u64,
        };
        match out.last_mut().filter(|s| s.provider == provider) {
            Some(s) => s.points.push(point),
            None => out.push(CacheSeries { provider, points: vec![point] }),
        }
    }
    Ok((bucket, out))
}
