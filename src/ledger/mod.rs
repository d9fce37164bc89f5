//! The savings ledger: one record per request, written off the hot path into SQLite.
//! Writing never blocks or fails a request: when the queue is full or the store is unavailable
//! the record is counted as lost (exposed in /metrics).

pub mod cache;
pub mod cli;
mod db;
mod migrate;
pub mod postgres;
pub mod record;
mod render;
pub mod report;
pub mod session;
pub mod sessions;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;

pub use record::{client_family, MechanismSaving, Record, RequestOutcome};

/// Records waiting to be written; beyond this they are dropped and counted as lost.
const QUEUE: usize = 16_384;
/// Request bodies queued for the writer to read a session id from, in bytes. Beyond this a
/// record's session is read on the caller's thread before it is queued: reading one takes ~0.3 ms
/// per 200 KB, so under load the single writer fell behind and the queue pinned hundreds of MB of
/// bodies (each also keeps hyper's read buffer it was sliced from alive).
const QUEUED_BODY_BYTES: usize = 8 * 1024 * 1024;
/// A queued body up to this size is copied out of the buffer it was read into: a 1 KB body sliced
/// from hyper's read buffer kept that whole buffer (8 KB and more) alive until the writer ran.
const COPIED_BODY_BYTES: usize = 64 * 1024;
/// How often the writer wakes to write what has queued up. Handing a record over is then only a
/// lock and a push: no thread is woken on the request path.
const WRITE_EVERY: Duration = Duration::from_millis(50);
const COMPACT_EVERY: Duration = Duration::from_secs(3600);

struct Shared {
    queue: Mutex<Vec<Record>>,
    lost: AtomicU64,
    /// The bytes of `session_body` in `queue` and in the batch being written.
    body_bytes: AtomicUsize,
    /// Records queued so far, and records the writer has finished with (written or lost):
    /// `flush` waits for the second to reach the first.
    queued: AtomicU64,
    handled: AtomicU64,
}

/// Cheap to clone; shared by all requests. The writer thread ends, after writing what is still
/// queued, when the last clone is dropped.
#[derive(Clone)]
pub struct Ledger {
    shared: Arc<Shared>,
    /// Dropped with the last clone: tells the writer to finish.
    alive: Arc<()>,
    enabled: bool,
    /// `[ledger] url`: every batch written to SQLite goes to PostgreSQL too.
    postgres: Option<Arc<postgres::PgSink>>,
}

impl Ledger {
    /// Opens (or creates) the ledger at `path` and starts its writer thread. Records older than
    /// `retention` are compacted into daily aggregates.
    pub fn open(path: &Path, retention: Duration) -> Ledger {
        Ledger::open_with(path, retention, None)
    }

    /// `open`, with the records also written to PostgreSQL at `postgres` (`[ledger] url`).
    pub fn open_with(path: &Path, retention: Duration, postgres: Option<&crate::config::ServiceUrl>) -> Ledger {
        let mut ledger = Ledger::disabled();
        ledger.postgres = postgres.and_then(|u| match postgres::PgSink::start(u.url.expose(), &u.shown) {
            Ok(s) => Some(Arc::new(s)),
            Err(e) => {
                tracing::warn!("{e}; records are written to SQLite only");
                None
            }
        });
        let conn = match db::open(path) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(
                    "ledger at {} is unavailable ({e}); requests are served but not recorded",
                    path.display()
                );
                return ledger;
            }
        };
        let (shared, alive) = (ledger.shared.clone(), Arc::downgrade(&ledger.alive));
        let pg = ledger.postgres.clone();
        let spawned = std::thread::Builder::new()
            .name("tokenfold-ledger".into())
            .spawn(move || writer(conn, shared, alive, retention, pg));
        match spawned {
            Ok(_) => ledger.enabled = true,
            Err(e) => tracing::warn!("cannot start the ledger writer ({e}); requests are not recorded"),
        }
        ledger
    }

    /// A ledger that records nothing (every record counts as lost).
    pub fn disabled() -> Ledger {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Vec::new()),
            lost: AtomicU64::new(0),
            body_bytes: AtomicUsize::new(0),
            queued: AtomicU64::new(0),
            handled: AtomicU64::new(0),
        });
        Ledger { shared, alive: Arc::new(()), enabled: false, postgres: None }
    }

    /// Queues a record without waiting on the writer. Its session is read here, not by the
    /// writer, when the writer already has `QUEUED_BODY_BYTES` of bodies to read.
    pub fn record(&self, mut r: Record) {
        if !self.enabled {
            self.shared.lost.fetch_add(1, Relaxed);
            return;
        }
        let mut body = r.session_body.as_ref().map_or(0, |(_, b)| b.len());
        if body > 0 && self.shared.body_bytes.load(Relaxed) + body > QUEUED_BODY_BYTES {
            r.resolve_session();
            body = 0;
        } else if let Some((_, b)) = r.session_body.as_mut().filter(|_| body <= COPIED_BODY_BYTES) {
            *b = Bytes::copy_from_slice(b);
        }
        let mut q = self.shared.queue.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() < QUEUE {
            q.push(r);
            self.shared.body_bytes.fetch_add(body, Relaxed);
            self.shared.queued.fetch_add(1, Relaxed);
        } else {
            drop(q);
            self.shared.lost.fetch_add(1, Relaxed);
        }
    }

    /// Waits (up to `timeout`) until every record queued so far is written; false if it is not.
    /// For a stop: the writer otherwise writes every 50 ms, and a process that exits right after
    /// a burst would lose the last of it.
    pub fn flush(&self, timeout: Duration) -> bool {
        let target = self.shared.queued.load(Relaxed);
        let deadline = Instant::now() + timeout;
        while self.enabled && self.shared.handled.load(Relaxed) < target {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        while let Some(pg) = self.postgres.as_ref().filter(|p| p.progress().1 > 0) {
            if Instant::now() >= deadline {
                tracing::warn!("ledger: {} records never reached PostgreSQL", pg.progress().1);
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    /// Lines for `/metrics` about the PostgreSQL ledger, when there is one.
    pub fn metrics(&self) -> String {
        self.postgres.as_ref().map(|p| p.metrics()).unwrap_or_default()
    }

    /// Records that could not be written.
    pub fn lost(&self) -> u64 {
        self.shared.lost.load(Relaxed)
    }

    /// Records queued but not yet written.
    pub fn pending(&self) -> usize {
        self.shared.queue.lock().map(|q| q.len()).unwrap_or(0)
    }

    /// Bytes of request bodies held for the writer to read session ids from.
    pub fn queued_body_bytes(&self) -> usize {
        self.shared.body_bytes.load(Relaxed)
    }
}

fn writer(
    mut conn: rusqlite::Connection,
    shared: Arc<Shared>,
    alive: Weak<()>,
    retention: Duration,
    postgres: Option<Arc<postgres::PgSink>>,
) {
    let mut last_compaction: Option<Instant> = None;
    loop {
        std::thread::sleep(WRITE_EVERY);
        let last_round = alive.strong_count() == 0;
        let mut batch = std::mem::take(&mut *shared.queue.lock().unwrap_or_else(|p| p.into_inner()));
        if !batch.is_empty() {
            let bodies: usize = batch.iter().filter_map(|r| r.session_body.as_ref()).map(|(_, b)| b.len()).sum();
            batch.iter_mut().for_each(Record::resolve_session);
            shared.body_bytes.fetch_sub(bodies, Relaxed);
            if let Err(e) = db::insert(&mut conn, &batch) {
                tracing::warn!("ledger write failed ({e}); {} records lost", batch.len());
                shared.lost.fetch_add(batch.len() as u64, Relaxed);
            }
            if let Some(pg) = &postgres {
                pg.send(batch.clone());
            }
            shared.handled.fetch_add(batch.len() as u64, Relaxed);
        }
        if last_compaction.is_none_or(|t| t.elapsed() > COMPACT_EVERY) {
            last_compaction = Some(Instant::now());
            let cutoff = now_ms() - retention.as_millis() as i64;
            if let Err(e) = db::compact_before(&mut conn, cutoff) {
                tracing::warn!("ledger compaction failed: {e}");
            }
        }
        if last_round {
            return;
        }
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The ledger file: `$TOKENFOLD_LEDGER` (`off` disables it), else `default_path()`.
pub fn path_from_env() -> Option<PathBuf> {
    match std::env::var("TOKENFOLD_LEDGER") {
        Ok(v) if v == "off" => None,
        Ok(v) if !v.is_empty() => Some(v.into()),
        _ => Some(default_path()),
    }
}

/// Where the ledger lives by default: `$XDG_DATA_HOME/tokenfold/ledger.db`
/// (`~/.local/share/tokenfold/ledger.db`).
pub fn default_path() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("tokenfold").join("ledger.db")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::usage::Usage;
    use crate::dialect::Dialect;

    fn rec(ts_ms: i64, provider: &str, account: &str, status: u16, saved: u64) -> Record {
        let mut r = Record::empty();
        r.ts_ms = ts_ms;
        r.provider = provider.into();
        r.account = account.into();
        r.model = "m".into();
        r.route = "m".into();
        r.status = status;
        r.outcome = if status == 200 { RequestOutcome::Completed } else { RequestOutcome::Error };
        r.free_tier = account == "free";
        r.prices =
            crate::price::Price { input: 3.0, output: 15.0, cached_input: 0.3, cache_write: 3.75, cache_write_1h: 6.0 };
        r.add_saving("dedup", |s| (s.tokens, s.turn_tokens, s.elisions, s.recalls) = (saved, saved / 4, 2, 1));
        r.add_saving("logs", |s| (s.tokens, s.elisions) = (saved / 2, 4));
        r.settle(Usage { input: 1000, output: 100, cache_read: 5_000, cache_write: 300, cache_write_1h: 0 });
        r
    }

    #[test]
    fn compaction_keeps_report_totals() {
        let dir = std::env::temp_dir().join(format!("tokenfold-ledger-unit-{}", std::process::id()));
        let path = dir.join("l.db");
        let _ = std::fs::remove_file(&path);
        let mut conn = db::open(&path).unwrap();
        let now = now_ms();
        let old = now - 40 * 86_400_000;
        let records: Vec<Record> = (0..12)
            .map(|i| {
                let account = ["paid", "free", "paid"][i % 3];
                rec(if i < 7 { old } else { now }, ["p", "q"][i % 2], account, [200, 429][i / 10], 100 + i as u64)
            })
            .collect();
        db::insert(&mut conn, &records).unwrap();
        let since = old - 86_400_000;
        let groups = [
            report::GroupBy::Provider,
            report::GroupBy::Account,
            report::GroupBy::Status,
            report::GroupBy::Day,
            report::GroupBy::Mechanism,
        ];
        let before: Vec<report::Report> =
            groups.iter().map(|g| report::build(&path, since, *g, None).unwrap()).collect();
        assert_eq!(db::compact_before(&mut conn, now - 30 * 86_400_000).unwrap(), 7);
        let remaining: i64 = conn.query_row("SELECT COUNT(*) FROM requests", [], |r| r.get(0)).unwrap();
        assert_eq!(remaining, 5);
        for (g, b) in groups.iter().zip(&before) {
            let a = report::build(&path, since, *g, None).unwrap();
            assert_eq!(a.total.requests, 12, "{g:?}");
            let strip = |rows: &[report::Row]| -> Vec<report::Row> {
                rows.iter().map(|r| report::Row { overhead_p50_us: None, overhead_p95_us: None, ..r.clone() }).collect()
            };
            // Every row equal (money to a billionth of a cent), overhead percentiles aside.
            assert_eq!(a.rows.len(), b.rows.len(), "{g:?}");
            for (x, y) in strip(&a.rows).iter().zip(strip(&b.rows).iter()) {
                assert_eq!(
                    (&x.key, x.requests, x.errors, x.tokens_before, x.tokens_after),
                    (&y.key, y.requests, y.errors, y.tokens_before, y.tokens_after),
                    "{g:?}"
                );
                assert_eq!(x.free_requests, y.free_requests, "{g:?}");
                assert_eq!((x.usage_input, x.cache_read, x.cache_write), (y.usage_input, y.cache_read, y.cache_write));
                assert_eq!(x.cache_hit_pct, y.cache_hit_pct, "{g:?}");
                for (u, v) in [
                    (x.cost_usd, y.cost_usd),
                    (x.baseline_cost_usd, y.baseline_cost_usd),
                    (x.free_value_usd, y.free_value_usd),
                    (x.uncached_cost_usd, y.uncached_cost_usd),
                ] {
                    assert!((u - v).abs() < 1e-9, "{g:?} {x:?} {y:?}");
                }
            }
            assert_eq!(a.mechanisms, b.mechanisms, "{g:?}: per-mechanism counts survive");
        }
        let by_account = report::build(&path, since, report::GroupBy::Account, None).unwrap();
        assert_eq!(by_account.total.cache_read, 12 * 5_000, "cache reads survive compaction");
        assert!(by_account.total.uncached_cost_usd > by_account.total.cost_usd, "{:?}", by_account.total);
        let keys: Vec<&str> = by_account.rows.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["p/free", "p/paid", "q/free", "q/paid"]);
        let by_status = report::build(&path, since, report::GroupBy::Status, None).unwrap();
        let statuses: Vec<(&str, u64)> = by_status.rows.iter().map(|r| (r.key.as_str(), r.requests)).collect();
        assert_eq!(statuses, [("200", 10), ("429", 2)]);
        let dedup = &by_account.mechanisms[0];
        assert_eq!((dedup.key.as_str(), dedup.requests, dedup.elisions, dedup.recalls), ("dedup", 12, 24, 12));
        assert_eq!(dedup.recall_pct, Some(50.0));
    }

    #[test]
    fn queued_bodies_stay_bounded_and_every_session_is_still_read() {
        let dir = std::env::temp_dir().join(format!("tokenfold-ledger-bodies-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("l.db");
        let _ = std::fs::remove_file(&path);
        let ledger = Ledger::open(&path, Duration::from_secs(86_400));
        // 16 conversations of 1 MiB each, queued faster than the writer wakes (every 50 ms).
        let pad = "x".repeat(1024 * 1024);
        let bodies: Vec<Bytes> = (0..16)
            .map(|i| {
                let body = serde_json::json!({"model": "m", "max_tokens": 8, "messages": [
                    {"role": "user", "content": format!("conversation {i}")},
                    {"role": "assistant", "content": "ok"},
                    {"role": "user", "content": pad},
                ]});
                Bytes::from(serde_json::to_vec(&body).unwrap())
            })
            .collect();
        let mut expected = Vec::new();
        for (i, body) in bodies.iter().enumerate() {
            let mut r = rec(now_ms(), "p", "paid", 200, 10);
            r.route = format!("r{i}");
            r.session_body = Some((Dialect::Anthropic, body.clone()));
            ledger.record(r);
            let queued = ledger.queued_body_bytes();
            assert!(queued <= QUEUED_BODY_BYTES, "{queued} bytes of bodies queued after {} records", i + 1);
            expected.push((format!("r{i}"), session::from_body(Dialect::Anthropic, body)));
        }
        drop(bodies);
        let conn = rusqlite::Connection::open(&path).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut written: Vec<(String, String)> = Vec::new();
        while written.len() < expected.len() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            let mut stmt = conn.prepare("SELECT route, session FROM requests ORDER BY id").unwrap();
            written = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?))).unwrap().map(Result::unwrap).collect();
        }
        written.sort_by_key(|(route, _)| route[1..].parse::<usize>().unwrap());
        assert_eq!(written, expected, "every record written with the session of its own body");
        assert_eq!(ledger.queued_body_bytes(), 0);
        let distinct: std::collections::HashSet<&String> = expected.iter().map(|(_, s)| s).collect();
        assert_eq!(distinct.len(), 16, "the conversations have different sessions: {expected:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_unavailable_store_counts_lost_records() {
        let ledger = Ledger::open(Path::new("/proc/no-such-dir/ledger.db"), Duration::from_secs(1));
        ledger.record(Record::empty());
        assert_eq!(ledger.lost(), 1);
    }
}
