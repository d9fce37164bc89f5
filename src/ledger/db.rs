//! The ledger's SQLite file: schema, batched inserts, compaction into daily aggregates.

use std::path::Path;

use rusqlite::{params, Connection};

use super::record::Record;

/// `PRAGMA user_version` of the schema below; `migrate` brings older files up to it.
pub const SCHEMA_VERSION: i64 = 2;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY,
    ts_ms INTEGER NOT NULL,
    client TEXT NOT NULL, dialect TEXT NOT NULL, route TEXT NOT NULL, provider TEXT NOT NULL,
    account TEXT NOT NULL, model TEXT NOT NULL, status INTEGER NOT NULL, outcome TEXT NOT NULL,
    fallbacks INTEGER NOT NULL, fallback_reasons TEXT NOT NULL, error TEXT NOT NULL,
    latency_ms INTEGER NOT NULL, ttfb_us INTEGER NOT NULL, upstream_us INTEGER NOT NULL, overhead_us INTEGER NOT NULL,
    tokens_before INTEGER NOT NULL, tokens_after INTEGER NOT NULL,
    usage_input INTEGER NOT NULL, usage_output INTEGER NOT NULL,
    cache_read INTEGER NOT NULL, cache_write INTEGER NOT NULL,
    cost_usd REAL NOT NULL, baseline_cost_usd REAL NOT NULL,
    list_cost_usd REAL NOT NULL, list_baseline_usd REAL NOT NULL, free_tier INTEGER NOT NULL,
    session TEXT NOT NULL,
    uncached_cost_usd REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS requests_ts ON requests(ts_ms);
CREATE INDEX IF NOT EXISTS requests_session ON requests(session);
CREATE TABLE IF NOT EXISTS savings (
    request_id INTEGER NOT NULL REFERENCES requests(id) ON DELETE CASCADE,
    mechanism TEXT NOT NULL, tokens INTEGER NOT NULL, turn_tokens INTEGER NOT NULL,
    elisions INTEGER NOT NULL, recalls INTEGER NOT NULL, steps INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS savings_request ON savings(request_id);
-- Requests older than the retention age, summed per day and grouping key.
CREATE TABLE IF NOT EXISTS daily (
    day TEXT NOT NULL, client TEXT NOT NULL, dialect TEXT NOT NULL, route TEXT NOT NULL,
    provider TEXT NOT NULL, account TEXT NOT NULL, model TEXT NOT NULL, status INTEGER NOT NULL,
    requests INTEGER NOT NULL, errors INTEGER NOT NULL, fallbacks INTEGER NOT NULL,
    tokens_before INTEGER NOT NULL, tokens_after INTEGER NOT NULL,
    usage_input INTEGER NOT NULL, usage_output INTEGER NOT NULL,
    cache_read INTEGER NOT NULL, cache_write INTEGER NOT NULL,
    cost_usd REAL NOT NULL, baseline_cost_usd REAL NOT NULL,
    free_requests INTEGER NOT NULL, free_value_usd REAL NOT NULL,
    uncached_cost_usd REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (day, client, dialect, route, provider, account, model, status)
);
CREATE TABLE IF NOT EXISTS daily_savings (
    day TEXT NOT NULL, mechanism TEXT NOT NULL, requests INTEGER NOT NULL, tokens INTEGER NOT NULL,
    turn_tokens INTEGER NOT NULL, elisions INTEGER NOT NULL, recalls INTEGER NOT NULL,
    steps INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, mechanism)
);
";

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error(
        "the ledger has schema version {0}, newer than this tokenfold knows ({SCHEMA_VERSION}); upgrade tokenfold"
    )]
    TooNew(i64),
    #[error("cannot create {0}")]
    File(String),
}

pub fn open(path: &Path) -> Result<Connection, DbError> {
    crate::files::private_sqlite(path).map_err(|e| DbError::File(format!("{}: {e}", path.display())))?;
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")?;
    super::migrate::to_current(&mut conn)?;
    conn.execute_batch("PRAGMA foreign_keys = ON;")?;
    Ok(conn)
}

/// Inserts `records` in one transaction.
pub fn insert(conn: &mut Connection, records: &[Record]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut req = tx.prepare_cached(
            "INSERT INTO requests (ts_ms, client, dialect, route, provider, account, model, status, outcome,
                fallbacks, fallback_reasons, error, latency_ms, ttfb_us, upstream_us, overhead_us, tokens_before,
                tokens_after, usage_input, usage_output, cache_read, cache_write, cost_usd, baseline_cost_usd,
                list_cost_usd, list_baseline_usd, free_tier, session, uncached_cost_usd)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20,
                ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29)",
        )?;
        let mut sav = tx.prepare_cached(
            "INSERT INTO savings (request_id, mechanism, tokens, turn_tokens, elisions, recalls, steps)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for r in records {
            req.execute(params![
                r.ts_ms,
                r.client,
                r.dialect,
                r.route,
                r.provider,
                r.account,
                r.model,
                r.status,
                r.outcome.as_str(),
                r.fallbacks.len() as i64,
                r.fallbacks.join("; "),
                r.error,
                r.latency_ms as i64,
                r.ttfb_us as i64,
                r.upstream_us as i64,
                r.overhead_us as i64,
                r.tokens_before as i64,
                r.tokens_after as i64,
                r.usage.input as i64,
                r.usage.output as i64,
                r.usage.cache_read as i64,
                r.usage.cache_write as i64,
                r.cost_usd,
                r.baseline_cost_usd,
                r.list_cost_usd,
                r.list_baseline_usd,
                r.free_tier,
                r.session,
                r.uncached_cost_usd,
            ])?;
            let id = tx.last_insert_rowid();
            for s in r.stored_savings() {
                sav.execute(params![
                    id,
                    s.mechanism,
                    s.tokens as i64,
                    s.turn_tokens as i64,
                    s.elisions as i64,
                    s.recalls as i64,
                    s.steps as i64
                ])?;
            }
        }
    }
    tx.commit()
}

/// Folds requests older than `cutoff_ms` into the daily tables and deletes them. Every figure
/// `report` shows except overhead percentiles and sessions survives: totals stay equal.
pub fn compact_before(conn: &mut Connection, cutoff_ms: i64) -> rusqlite::Result<usize> {
    let tx = conn.transaction()?;
    tx.execute(
        "INSERT INTO daily SELECT date(ts_ms / 1000, 'unixepoch') AS day, client, dialect, route, provider, account,
            model, status,
            COUNT(*), SUM(outcome != 'completed'), SUM(fallbacks), SUM(tokens_before), SUM(tokens_after),
            SUM(usage_input), SUM(usage_output), SUM(cache_read), SUM(cache_write),
            SUM(cost_usd), SUM(baseline_cost_usd), SUM(free_tier), SUM(CASE WHEN free_tier THEN list_cost_usd ELSE 0 END),
            SUM(uncached_cost_usd)
         FROM requests WHERE ts_ms < ?1
         GROUP BY day, client, dialect, route, provider, account, model, status
         ON CONFLICT (day, client, dialect, route, provider, account, model, status) DO UPDATE SET
            requests = requests + excluded.requests, errors = errors + excluded.errors,
            fallbacks = fallbacks + excluded.fallbacks, tokens_before = tokens_before + excluded.tokens_before,
            tokens_after = tokens_after + excluded.tokens_after, usage_input = usage_input + excluded.usage_input,
            usage_output = usage_output + excluded.usage_output, cache_read = cache_read + excluded.cache_read,
            cache_write = cache_write + excluded.cache_write, cost_usd = cost_usd + excluded.cost_usd,
            baseline_cost_usd = baseline_cost_usd + excluded.baseline_cost_usd,
            free_requests = free_requests + excluded.free_requests,
            free_value_usd = free_value_usd + excluded.free_value_usd,
            uncached_cost_usd = uncached_cost_usd + excluded.uncached_cost_usd",
        params![cutoff_ms],
    )?;
    tx.execute(
        "INSERT INTO daily_savings (day, mechanism, requests, tokens, turn_tokens, elisions, recalls, steps)
         SELECT date(r.ts_ms / 1000, 'unixepoch') AS day, s.mechanism, COUNT(*),
            SUM(s.tokens), SUM(s.turn_tokens), SUM(s.elisions), SUM(s.recalls), SUM(s.steps)
         FROM savings s JOIN requests r ON r.id = s.request_id WHERE r.ts_ms < ?1 GROUP BY day, s.mechanism
         ON CONFLICT (day, mechanism) DO UPDATE SET requests = requests + excluded.requests,
            tokens = tokens + excluded.tokens, turn_tokens = turn_tokens + excluded.turn_tokens,
            elisions = elisions + excluded.elisions, recalls = recalls + excluded.recalls,
            steps = steps + excluded.steps",
        params![cutoff_ms],
    )?;
    tx.execute(
        "DELETE FROM savings WHERE request_id IN (SELECT id FROM requests WHERE ts_ms < ?1)",
        params![cutoff_ms],
    )?;
    let n = tx.execute("DELETE FROM requests WHERE ts_ms < ?1", params![cutoff_ms])?;
    tx.commit()?;
    Ok(n)
}
