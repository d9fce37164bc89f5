//! Brings a ledger file written by an older tokenfold up to the current schema without losing
//! records. Version 0 is the first ledger layout (no `user_version` set); version 1 had no
//! uncached cost.

use rusqlite::Connection;

use super::db::{DbError, SCHEMA, SCHEMA_VERSION};

pub fn to_current(conn: &mut Connection) -> Result<(), DbError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(DbError::TooNew(version));
    }
    if version == SCHEMA_VERSION {
        // Tables dropped by hand come back empty rather than failing every write.
        conn.execute_batch(SCHEMA)?;
        return add_columns(conn);
    }
    let has_requests: bool =
        conn.query_row("SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'requests'", [], |r| {
            r.get(0)
        })?;
    let tx = conn.transaction()?;
    if !has_requests {
        tx.execute_batch(SCHEMA)?;
    } else if version == 1 {
        from_v1(&tx)?;
    } else {
        from_v0(&tx)?;
        uncached_as_billed(&tx)?;
    }
    tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION};"))?;
    tx.commit()?;
    add_columns(conn)
}

/// Columns added to a table after its version shipped, with a default that is right for older
/// rows (`steps`: clearing steps, none before clearing existed). Idempotent.
fn add_columns(conn: &mut Connection) -> Result<(), DbError> {
    for table in ["savings", "daily_savings"] {
        let has: bool = conn.query_row(
            &format!("SELECT COUNT(*) > 0 FROM pragma_table_info('{table}') WHERE name = 'steps'"),
            [],
            |r| r.get(0),
        )?;
        if !has {
            conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN steps INTEGER NOT NULL DEFAULT 0;"))?;
        }
    }
    Ok(())
}

/// Version 1 did not record what requests would have cost without the prompt cache.
fn from_v1(tx: &rusqlite::Transaction) -> rusqlite::Result<()> {
    tx.execute_batch(
        "ALTER TABLE requests ADD COLUMN uncached_cost_usd REAL NOT NULL DEFAULT 0;
         ALTER TABLE daily ADD COLUMN uncached_cost_usd REAL NOT NULL DEFAULT 0;",
    )?;
    uncached_as_billed(tx)
}

/// Records from before version 2 count as if the cache had saved nothing: exact for those without
/// cache reads or writes, an understatement of the cache's saving for the others (their prices
/// were not kept).
fn uncached_as_billed(tx: &rusqlite::Transaction) -> rusqlite::Result<()> {
    tx.execute_batch(
        "UPDATE requests SET uncached_cost_usd = cost_usd;
         UPDATE daily SET uncached_cost_usd = cost_usd;",
    )
}

/// Version 0 priced free-tier requests at list price in `cost_usd`, had whole-ms TTFB, no
/// account/status in the daily aggregates and no per-mechanism counts: move everything across,
/// marking what the old layout did not know as 0 / empty.
fn from_v0(tx: &rusqlite::Transaction) -> rusqlite::Result<()> {
    tx.execute_batch(
        "DROP INDEX IF EXISTS requests_ts; DROP INDEX IF EXISTS savings_request;
         ALTER TABLE requests RENAME TO requests_v0;
         ALTER TABLE savings RENAME TO savings_v0;
         CREATE TABLE IF NOT EXISTS daily (day TEXT);
         CREATE TABLE IF NOT EXISTS daily_savings (day TEXT);
         ALTER TABLE daily RENAME TO daily_v0;
         ALTER TABLE daily_savings RENAME TO daily_savings_v0;",
    )?;
    tx.execute_batch(SCHEMA)?;
    tx.execute_batch(
        "INSERT INTO requests (id, ts_ms, client, dialect, route, provider, account, model, status, outcome,
            fallbacks, fallback_reasons, error, latency_ms, ttfb_us, upstream_us, overhead_us, tokens_before,
            tokens_after, usage_input, usage_output, cache_read, cache_write, cost_usd, baseline_cost_usd,
            list_cost_usd, list_baseline_usd, free_tier, session)
         SELECT id, ts_ms, client, dialect, route, provider, account, model, status, outcome,
            fallbacks, fallback_reasons, '', latency_ms, ttfb_ms * 1000, MAX(latency_ms * 1000 - overhead_us, 0),
            overhead_us, tokens_before, tokens_after, usage_input, usage_output, cache_read, cache_write,
            CASE WHEN free_tier THEN 0 ELSE cost_usd END, CASE WHEN free_tier THEN 0 ELSE baseline_cost_usd END,
            cost_usd, baseline_cost_usd, free_tier, session
         FROM requests_v0;
         INSERT INTO savings (request_id, mechanism, tokens, turn_tokens, elisions, recalls)
         SELECT request_id, mechanism, tokens, 0, 0, 0 FROM savings_v0;",
    )?;
    let daily_cols: i64 =
        tx.query_row("SELECT COUNT(*) FROM pragma_table_info('daily_v0') WHERE name = 'free_cost_usd'", [], |r| {
            r.get(0)
        })?;
    if daily_cols > 0 {
        tx.execute_batch(
            "INSERT INTO daily SELECT day, client, dialect, route, provider, '', model, 0, requests, errors, fallbacks,
                tokens_before, tokens_after, usage_input, usage_output, cache_read, cache_write,
                cost_usd - free_cost_usd, baseline_cost_usd - free_cost_usd, free_requests, free_cost_usd, 0
             FROM daily_v0;
             INSERT INTO daily_savings (day, mechanism, requests, tokens, turn_tokens, elisions, recalls)
                 SELECT day, mechanism, 0, tokens, 0, 0, 0 FROM daily_savings_v0;",
        )?;
    }
    tx.execute_batch("DROP TABLE savings_v0; DROP TABLE requests_v0; DROP TABLE daily_v0; DROP TABLE daily_savings_v0;")
}

#[cfg(test)]
mod tests {
    use super::super::{db, report};
    use rusqlite::params;

    /// The first ledger layout, as shipped before schema versions.
    const V0: &str = "
    CREATE TABLE requests (id INTEGER PRIMARY KEY, ts_ms INTEGER NOT NULL, client TEXT NOT NULL,
        dialect TEXT NOT NULL, route TEXT NOT NULL, provider TEXT NOT NULL, account TEXT NOT NULL,
        model TEXT NOT NULL, status INTEGER NOT NULL, outcome TEXT NOT NULL, fallbacks INTEGER NOT NULL,
        fallback_reasons TEXT NOT NULL, latency_ms INTEGER NOT NULL, ttfb_ms INTEGER NOT NULL,
        overhead_us INTEGER NOT NULL, tokens_before INTEGER NOT NULL, tokens_after INTEGER NOT NULL,
        usage_input INTEGER NOT NULL, usage_output INTEGER NOT NULL, cache_read INTEGER NOT NULL,
        cache_write INTEGER NOT NULL, cost_usd REAL NOT NULL, baseline_cost_usd REAL NOT NULL,
        free_tier INTEGER NOT NULL, session TEXT NOT NULL);
    CREATE INDEX requests_ts ON requests(ts_ms);
    CREATE TABLE savings (request_id INTEGER NOT NULL REFERENCES requests(id) ON DELETE CASCADE,
        mechanism TEXT NOT NULL, tokens INTEGER NOT NULL);
    CREATE INDEX savings_request ON savings(request_id);
    CREATE TABLE daily (day TEXT NOT NULL, client TEXT NOT NULL, dialect TEXT NOT NULL, route TEXT NOT NULL,
        provider TEXT NOT NULL, model TEXT NOT NULL, requests INTEGER NOT NULL, errors INTEGER NOT NULL,
        fallbacks INTEGER NOT NULL, tokens_before INTEGER NOT NULL, tokens_after INTEGER NOT NULL,
        usage_input INTEGER NOT NULL, usage_output INTEGER NOT NULL, cache_read INTEGER NOT NULL,
        cache_write INTEGER NOT NULL, cost_usd REAL NOT NULL, baseline_cost_usd REAL NOT NULL,
        free_requests INTEGER NOT NULL, free_cost_usd REAL NOT NULL,
        PRIMARY KEY (day, client, dialect, route, provider, model));
    CREATE TABLE daily_savings (day TEXT NOT NULL, mechanism TEXT NOT NULL, tokens INTEGER NOT NULL,
        PRIMARY KEY (day, mechanism));";

    #[test]
    fn a_version_1_ledger_gains_the_uncached_cost() {
        let dir = std::env::temp_dir().join(format!("tokenfold-migrate-v1-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("v1.db");
        {
            // The version-1 schema: today's without the uncached cost columns.
            let v1 = db::SCHEMA
                .replace(",\n    uncached_cost_usd REAL NOT NULL DEFAULT 0\n", "\n")
                .replace("\n    uncached_cost_usd REAL NOT NULL DEFAULT 0,\n", "\n");
            assert!(!v1.contains("uncached"), "{v1}");
            let c = rusqlite::Connection::open(&path).unwrap();
            c.execute_batch(&v1).unwrap();
            c.execute_batch("PRAGMA user_version = 1;").unwrap();
            c.execute(
                "INSERT INTO requests (ts_ms, client, dialect, route, provider, account, model, status, outcome,
                    fallbacks, fallback_reasons, error, latency_ms, ttfb_us, upstream_us, overhead_us, tokens_before,
                    tokens_after, usage_input, usage_output, cache_read, cache_write, cost_usd, baseline_cost_usd,
                    list_cost_usd, list_baseline_usd, free_tier, session)
                 VALUES (?1, 'c', 'anthropic', 'r', 'p', 'a', 'm', 200, 'completed', 0, '', '', 9, 9, 9, 9, 100, 90,
                    90, 10, 0, 0, 0.25, 0.3, 0.25, 0.3, 0, 's')",
                params![super::super::now_ms()],
            )
            .unwrap();
        }
        drop(db::open(&path).unwrap());
        let c = rusqlite::Connection::open(&path).unwrap();
        let uncached: f64 = c.query_row("SELECT uncached_cost_usd FROM requests", [], |r| r.get(0)).unwrap();
        assert_eq!(uncached, 0.25, "an old record counts its billed cost");
        let version: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, db::SCHEMA_VERSION);
        let daily: i64 = c
            .query_row("SELECT COUNT(*) FROM pragma_table_info('daily') WHERE name = 'uncached_cost_usd'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(daily, 1);
    }

    #[test]
    fn a_version_0_ledger_is_migrated_without_losing_records() {
        let dir = std::env::temp_dir().join(format!("tokenfold-migrate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("old.db");
        {
            let c = rusqlite::Connection::open(&path).unwrap();
            c.execute_batch(V0).unwrap();
            let now = super::super::now_ms();
            for (free, cost) in [(0, 0.02), (1, 0.5)] {
                c.execute(
                    "INSERT INTO requests VALUES (NULL, ?1, 'Claude Code', 'anthropic', 'r', 'p', 'a', 'm', 200,
                        'completed', 0, '', 900, 400, 35, 1500, 1000, 900, 50, 100, 0, ?2, ?3, ?4, 's1')",
                    params![now, cost, cost + 0.01, free],
                )
                .unwrap();
                c.execute("INSERT INTO savings VALUES (last_insert_rowid(), 'span', 500)", []).unwrap();
            }
            c.execute(
                "INSERT INTO daily VALUES ('2020-01-01', 'c', 'anthropic', 'r', 'p', 'm', 3, 1, 0, 30, 20, 10, 5, 10, 0,
                    0.3, 0.4, 1, 0.1)",
                [],
            )
            .unwrap();
            c.execute("INSERT INTO daily_savings VALUES ('2020-01-01', 'span', 10)", []).unwrap();
        }
        drop(db::open(&path).unwrap());
        let rep = report::build(&path, 0, report::GroupBy::Provider, None).unwrap();
        assert_eq!(rep.total.requests, 5);
        assert_eq!(rep.total.errors, 1);
        assert_eq!(rep.total.free_requests, 2);
        // Paid: 0.02 (raw) + 0.3 - 0.1 (daily) ; free values: 0.5 (raw) + 0.1 (daily).
        assert!((rep.total.cost_usd - 0.22).abs() < 1e-9, "{}", rep.total.cost_usd);
        assert!((rep.total.free_value_usd - 0.6).abs() < 1e-9, "{}", rep.total.free_value_usd);
        let c = rusqlite::Connection::open(&path).unwrap();
        let ttfb: i64 = c.query_row("SELECT MIN(ttfb_us) FROM requests", [], |r| r.get(0)).unwrap();
        assert_eq!(ttfb, 400_000);
        let version: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, db::SCHEMA_VERSION);
        let mech = report::build(&path, 0, report::GroupBy::Mechanism, None).unwrap();
        assert_eq!(mech.mechanisms[0].tokens_saved, 1010);
        // Opening again is a no-op.
        drop(db::open(&path).unwrap());
        let again = report::build(&path, 0, report::GroupBy::Provider, None).unwrap();
        assert_eq!(again.total.requests, 5);
    }
}
