//! The ledger of a team in PostgreSQL (`[ledger] url = "postgres://…"`): the same records the
//! SQLite file gets, written by a thread of its own in batches, never on a request's path. While
//! PostgreSQL is away the batches wait in memory (up to `MAX_WAITING` records; past that the
//! oldest are counted lost) and go out when it is back; the instance's SQLite file has them all
//! either way. `tokenfold report --ledger postgres://…` reads every instance's records.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::{Client, NoTls};

use super::record::Record;

/// Records waiting for PostgreSQL; beyond this the oldest are dropped and counted lost.
const MAX_WAITING: usize = 200_000;
/// Records in one transaction.
const BATCH: usize = 5000;
/// How long to wait before trying an unreachable PostgreSQL again.
const RETRY_EVERY: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS requests (
    id BIGSERIAL PRIMARY KEY,
    ts_ms BIGINT NOT NULL,
    client TEXT NOT NULL, dialect TEXT NOT NULL, route TEXT NOT NULL, provider TEXT NOT NULL,
    account TEXT NOT NULL, model TEXT NOT NULL, status INTEGER NOT NULL, outcome TEXT NOT NULL,
    fallbacks BIGINT NOT NULL, fallback_reasons TEXT NOT NULL, error TEXT NOT NULL,
    latency_ms BIGINT NOT NULL, ttfb_us BIGINT NOT NULL, upstream_us BIGINT NOT NULL, overhead_us BIGINT NOT NULL,
    tokens_before BIGINT NOT NULL, tokens_after BIGINT NOT NULL,
    usage_input BIGINT NOT NULL, usage_output BIGINT NOT NULL,
    cache_read BIGINT NOT NULL, cache_write BIGINT NOT NULL,
    cost_usd DOUBLE PRECISION NOT NULL, baseline_cost_usd DOUBLE PRECISION NOT NULL,
    list_cost_usd DOUBLE PRECISION NOT NULL, list_baseline_usd DOUBLE PRECISION NOT NULL,
    free_tier BOOLEAN NOT NULL, session TEXT NOT NULL,
    uncached_cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS requests_ts ON requests(ts_ms);
CREATE INDEX IF NOT EXISTS requests_session ON requests(session);
CREATE TABLE IF NOT EXISTS savings (
    request_id BIGINT NOT NULL REFERENCES requests(id) ON DELETE CASCADE,
    mechanism TEXT NOT NULL, tokens BIGINT NOT NULL, turn_tokens BIGINT NOT NULL,
    elisions BIGINT NOT NULL, recalls BIGINT NOT NULL, steps BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS savings_request ON savings(request_id);
";

/// The columns of `requests` after `id`, in the order both ledgers write them.
const COLUMNS: &str = "ts_ms, client, dialect, route, provider, account, model, status, outcome, fallbacks, \
    fallback_reasons, error, latency_ms, ttfb_us, upstream_us, overhead_us, tokens_before, tokens_after, \
    usage_input, usage_output, cache_read, cache_write, cost_usd, baseline_cost_usd, list_cost_usd, \
    list_baseline_usd, free_tier, session, uncached_cost_usd";

/// Hands batches to the PostgreSQL writer thread.
pub struct PgSink {
    tx: SyncSender<Vec<Record>>,
    stats: Arc<Stats>,
}

#[derive(Default)]
struct Stats {
    up: AtomicBool,
    waiting: AtomicU64,
    written: AtomicU64,
    lost: AtomicU64,
}

impl PgSink {
    /// Starts the writer for `url` (it connects in the background, and again whenever needed).
    pub fn start(url: &str, shown: &str) -> Result<PgSink, String> {
        let config: tokio_postgres::Config =
            url.parse().map_err(|e| format!("`ledger.url` {shown} is not a PostgreSQL URL: {e}"))?;
        let (tx, rx) = mpsc::sync_channel(1024);
        let stats = Arc::new(Stats::default());
        let s = stats.clone();
        let shown = shown.to_string();
        std::thread::Builder::new()
            .name("tokenfold-ledger-pg".into())
            .spawn(move || writer(config, shown, rx, &s))
            .map_err(|e| format!("cannot start the PostgreSQL ledger writer: {e}"))?;
        Ok(PgSink { tx, stats })
    }

    /// Queues a batch; counted lost if the writer is that far behind.
    pub fn send(&self, batch: Vec<Record>) {
        let n = batch.len() as u64;
        self.stats.waiting.fetch_add(n, Relaxed);
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(batch) {
            self.stats.waiting.fetch_sub(n, Relaxed);
            self.stats.lost.fetch_add(n, Relaxed);
        }
    }

    /// Records written to PostgreSQL so far, and records still waiting.
    pub fn progress(&self) -> (u64, u64) {
        (self.stats.written.load(Relaxed), self.stats.waiting.load(Relaxed))
    }

    /// Lines for `/metrics`.
    pub fn metrics(&self) -> String {
        let s = &self.stats;
        format!(
            "# HELP tokenfold_ledger_postgres_up Whether PostgreSQL took the last batch of ledger records.\n\
             # TYPE tokenfold_ledger_postgres_up gauge\ntokenfold_ledger_postgres_up {}\n\
             # HELP tokenfold_ledger_postgres_waiting Ledger records waiting for PostgreSQL.\n\
             # TYPE tokenfold_ledger_postgres_waiting gauge\ntokenfold_ledger_postgres_waiting {}\n\
             # HELP tokenfold_ledger_postgres_lost_total Ledger records PostgreSQL never got (too many waited).\n\
             # TYPE tokenfold_ledger_postgres_lost_total counter\ntokenfold_ledger_postgres_lost_total {}\n",
            u8::from(s.up.load(Relaxed)),
            s.waiting.load(Relaxed),
            s.lost.load(Relaxed),
        )
    }
}

fn writer(config: tokio_postgres::Config, shown: String, rx: Receiver<Vec<Record>>, stats: &Stats) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("ledger: cannot start the PostgreSQL writer ({e}); its records stay in SQLite only");
            return;
        }
    };
    let mut waiting: VecDeque<Record> = VecDeque::new();
    let mut client: Option<Client> = None;
    let mut warned = false;
    let mut open = true;
    while open || !waiting.is_empty() {
        // Wait for records, or retry what waits.
        let timeout = if waiting.is_empty() { Duration::from_secs(3600) } else { RETRY_EVERY };
        match rx.recv_timeout(timeout) {
            Ok(batch) => waiting.extend(batch),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => open = false,
        }
        while let Ok(batch) = rx.try_recv() {
            waiting.extend(batch);
        }
        if waiting.len() > MAX_WAITING {
            let over = waiting.len() - MAX_WAITING;
            waiting.drain(..over);
            stats.lost.fetch_add(over as u64, Relaxed);
            stats.waiting.fetch_sub(over as u64, Relaxed);
        }
        if waiting.is_empty() {
            continue;
        }
        let batch: Vec<Record> = waiting.iter().take(BATCH).cloned().collect();
        let res = runtime.block_on(async {
            if client.as_ref().is_none_or(Client::is_closed) {
                client = Some(connect(&config).await?);
            }
            match client.as_mut() {
                Some(c) => insert(c, &batch).await,
                None => Ok(()),
            }
        });
        match res {
            Ok(()) => {
                let n = batch.len() as u64;
                waiting.drain(..batch.len());
                stats.waiting.fetch_sub(n, Relaxed);
                stats.written.fetch_add(n, Relaxed);
                if !stats.up.swap(true, Relaxed) && warned {
                    tracing::warn!("ledger: PostgreSQL at {shown} is back; the records that waited are written");
                }
            }
            // PostgreSQL refused these records (not a lost connection): retrying will not help.
            Err(e) if e.as_db_error().is_some() && client.as_ref().is_some_and(|c| !c.is_closed()) => {
                tracing::warn!("ledger: PostgreSQL at {shown} refused {} records: {e}", batch.len());
                let n = batch.len() as u64;
                waiting.drain(..batch.len());
                stats.waiting.fetch_sub(n, Relaxed);
                stats.lost.fetch_add(n, Relaxed);
            }
            Err(e) => {
                client = None;
                if stats.up.swap(false, Relaxed) || !warned {
                    tracing::warn!(
                        "ledger: PostgreSQL at {shown} is unavailable ({e}); records wait in memory (up to \
                         {MAX_WAITING}) and are written when it is back; this instance's SQLite ledger has them all"
                    );
                }
                warned = true;
                if !open {
                    let n = waiting.len() as u64;
                    stats.lost.fetch_add(n, Relaxed);
                    return;
                }
                std::thread::sleep(RETRY_EVERY);
            }
        }
    }
}

async fn connect(config: &tokio_postgres::Config) -> Result<Client, tokio_postgres::Error> {
    let mut config = config.clone();
    config.connect_timeout(CONNECT_TIMEOUT);
    let (mut client, conn) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("ledger: PostgreSQL connection ended: {e}");
        }
    });
    // Instances starting together must not both create the tables: one at a time.
    let tx = client.transaction().await?;
    tx.batch_execute(&format!("SELECT pg_advisory_xact_lock(7411018); {SCHEMA}")).await?;
    tx.commit().await?;
    Ok(client)
}

/// Inserts `records` and their savings in one transaction.
async fn insert(client: &mut Client, records: &[Record]) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let placeholders: Vec<String> = (1..=29).map(|i| format!("${i}")).collect();
    let req = tx
        .prepare(&format!("INSERT INTO requests ({COLUMNS}) VALUES ({}) RETURNING id", placeholders.join(", ")))
        .await?;
    let sav = tx
        .prepare(
            "INSERT INTO savings (request_id, mechanism, tokens, turn_tokens, elisions, recalls, steps)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .await?;
    for r in records {
        let n = |v: u64| v as i64;
        let row = tx
            .query_one(
                &req,
                &[
                    &r.ts_ms,
                    &r.client,
                    &r.dialect,
                    &r.route,
                    &r.provider,
                    &r.account,
                    &r.model,
                    &i32::from(r.status),
                    &r.outcome.as_str(),
                    &(r.fallbacks.len() as i64),
                    &r.fallbacks.join("; "),
                    &r.error,
                    &n(r.latency_ms),
                    &n(r.ttfb_us),
                    &n(r.upstream_us),
                    &n(r.overhead_us),
                    &n(r.tokens_before),
                    &n(r.tokens_after),
                    &n(r.usage.input),
                    &n(r.usage.output),
                    &n(r.usage.cache_read),
                    &n(r.usage.cache_write),
                    &r.cost_usd,
                    &r.baseline_cost_usd,
                    &r.list_cost_usd,
                    &r.list_baseline_usd,
                    &r.free_tier,
                    &r.session,
                    &r.uncached_cost_usd,
                ],
            )
            .await?;
        let id: i64 = row.get(0);
        for s in r.stored_savings() {
            let args: [&(dyn tokio_postgres::types::ToSql + Sync); 7] =
                [&id, &s.mechanism, &n(s.tokens), &n(s.turn_tokens), &n(s.elisions), &n(s.recalls), &n(s.steps)];
            tx.execute(&sav, &args).await?;
        }
    }
    tx.commit().await
}

/// Copies every record since `since_ms` (and its savings) from PostgreSQL at `url` into a new
/// SQLite ledger at `path`, so `report` reads a team's records with the very queries it reads
/// one instance's with. Returns how many requests it copied.
pub fn copy_into_sqlite(url: &str, since_ms: i64, path: &Path) -> Result<usize, String> {
    let config: tokio_postgres::Config = url.parse().map_err(|e| format!("not a PostgreSQL URL: {e}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    let (requests, savings) = runtime
        .block_on(async {
            let mut config = config.clone();
            config.connect_timeout(CONNECT_TIMEOUT);
            let (client, conn) = config.connect(NoTls).await?;
            tokio::spawn(conn);
            let exists: bool = client.query_one("SELECT to_regclass('requests') IS NOT NULL", &[]).await?.get(0);
            if !exists {
                return Ok((Vec::new(), Vec::new()));
            }
            let requests = client
                .query(&format!("SELECT id, {COLUMNS} FROM requests WHERE ts_ms >= $1 ORDER BY id"), &[&since_ms])
                .await?;
            let savings = client
                .query(
                    "SELECT s.request_id, s.mechanism, s.tokens, s.turn_tokens, s.elisions, s.recalls, s.steps
                     FROM savings s JOIN requests r ON r.id = s.request_id WHERE r.ts_ms >= $1",
                    &[&since_ms],
                )
                .await?;
            Ok::<_, tokio_postgres::Error>((requests, savings))
        })
        .map_err(|e| e.to_string())?;
    let mut conn = super::db::open(path).map_err(|e| e.to_string())?;
    let tx = conn.transaction().map_err(|e| e.to_string())?;
    {
        let placeholders: Vec<String> = (1..=30).map(|i| format!("?{i}")).collect();
        let mut ins = tx
            .prepare(&format!("INSERT INTO requests (id, {COLUMNS}) VALUES ({})", placeholders.join(", ")))
            .map_err(|e| e.to_string())?;
        for row in &requests {
            let mut values: Vec<rusqlite::types::Value> = Vec::with_capacity(30);
            for (i, col) in row.columns().iter().enumerate() {
                use rusqlite::types::Value as V;
                let ty = col.type_();
                values.push(if *ty == tokio_postgres::types::Type::INT8 {
                    V::Integer(row.get::<_, i64>(i))
                } else if *ty == tokio_postgres::types::Type::INT4 {
                    V::Integer(i64::from(row.get::<_, i32>(i)))
                } else if *ty == tokio_postgres::types::Type::FLOAT8 {
                    V::Real(row.get::<_, f64>(i))
                } else if *ty == tokio_postgres::types::Type::BOOL {
                    V::Integer(i64::from(row.get::<_, bool>(i)))
                } else {
                    V::Text(row.get::<_, String>(i))
                });
            }
            ins.execute(rusqlite::params_from_iter(values)).map_err(|e| e.to_string())?;
        }
        let mut sav = tx
            .prepare(
                "INSERT INTO savings (request_id, mechanism, tokens, turn_tokens, elisions, recalls, steps)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .map_err(|e| e.to_string())?;
        for row in &savings {
            let n = |i: usize| row.get::<_, i64>(i);
            sav.execute(rusqlite::params![n(0), row.get::<_, String>(1), n(2), n(3), n(4), n(5), n(6)])
                .map_err(|e| e.to_string())?;
        }
    }
    tx.commit().map_err(|e| e.to_string())?;
    Ok(requests.len())
}
