//! The savings ledger: one record per request, written off the hot path into SQLite.
//! Writing never blocks or fails a request: when the queue is full or the store is unavailable
//! the record is counted as lost (exposed in /metrics).

mod db;
pub mod record;
pub mod report;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

pub use record::{client_family, MechanismSaving, Prices, Record, RequestOutcome};

/// Records waiting to be written; beyond this they are dropped and counted as lost.
const QUEUE: usize = 16_384;
/// How often the writer wakes to write what has queued up. Handing a record over is then only a
/// lock and a push: no thread is woken on the request path.
const WRITE_EVERY: Duration = Duration::from_millis(50);
const COMPACT_EVERY: Duration = Duration::from_secs(3600);

struct Shared {
    queue: Mutex<Vec<Record>>,
    lost: AtomicU64,
}

/// Cheap to clone; shared by all requests. The writer thread ends (after a last write) when the
/// last clone is dropped.
#[derive(Clone)]
pub struct Ledger {
    shared: Arc<Shared>,
    enabled: bool,
}

impl Ledger {
    /// Opens (or creates) the ledger at `path` and starts its writer thread. Records older than
    /// `retention` are compacted into daily aggregates.
    pub fn open(path: &Path, retention: Duration) -> Ledger {
        let mut ledger = Ledger::disabled();
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
        let weak = Arc::downgrade(&ledger.shared);
        let spawned =
            std::thread::Builder::new().name("tokenfold-ledger".into()).spawn(move || writer(conn, weak, retention));
        match spawned {
            Ok(_) => ledger.enabled = true,
            Err(e) => tracing::warn!("cannot start the ledger writer ({e}); requests are not recorded"),
        }
        ledger
    }

    /// A ledger that records nothing (every record counts as lost).
    pub fn disabled() -> Ledger {
        let shared = Arc::new(Shared { queue: Mutex::new(Vec::new()), lost: AtomicU64::new(0) });
        Ledger { shared, enabled: false }
    }

    /// Queues a record without waiting.
    pub fn record(&self, r: Record) {
        if !self.enabled {
            self.shared.lost.fetch_add(1, Relaxed);
            return;
        }
        let mut q = self.shared.queue.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() < QUEUE {
            q.push(r);
        } else {
            drop(q);
            self.shared.lost.fetch_add(1, Relaxed);
        }
    }

    /// Records that could not be written.
    pub fn lost(&self) -> u64 {
        self.shared.lost.load(Relaxed)
    }

    /// Records queued but not yet written.
    pub fn pending(&self) -> usize {
        self.shared.queue.lock().map(|q| q.len()).unwrap_or(0)
    }
}

fn writer(mut conn: rusqlite::Connection, shared: Weak<Shared>, retention: Duration) {
    let mut last_compaction: Option<Instant> = None;
    loop {
        std::thread::sleep(WRITE_EVERY);
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let batch = std::mem::take(&mut *shared.queue.lock().unwrap_or_else(|p| p.into_inner()));
        if !batch.is_empty() {
            if let Err(e) = db::insert(&mut conn, &batch) {
                tracing::warn!("ledger write failed ({e}); {} records lost", batch.len());
                shared.lost.fetch_add(batch.len() as u64, Relaxed);
            }
        }
        if last_compaction.is_none_or(|t| t.elapsed() > COMPACT_EVERY) {
            last_compaction = Some(Instant::now());
            let cutoff = now_ms() - retention.as_millis() as i64;
            if let Err(e) = db::compact_before(&mut conn, cutoff) {
                tracing::warn!("ledger compaction failed: {e}");
            }
        }
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
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

    fn rec(ts_ms: i64, provider: &str, saved: u64) -> Record {
        let mut r = Record::empty();
        r.ts_ms = ts_ms;
        r.provider = provider.into();
        r.model = "m".into();
        r.route = "m".into();
        r.status = 200;
        r.prices = Prices { input: 3.0, output: 15.0, cached_input: 0.3, cache_write: 3.75 };
        r.savings.push(MechanismSaving { mechanism: "dedup".into(), tokens: saved });
        r.settle(Usage { input: 1000, output: 100, cache_read: 0, cache_write: 0 });
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
        let records: Vec<Record> = (0..10).map(|i| rec(if i < 6 { old } else { now }, "p", 100)).collect();
        db::insert(&mut conn, &records).unwrap();
        let before = report::build(&path, old - 86_400_000, report::GroupBy::Provider, None).unwrap();
        assert_eq!(db::compact_before(&mut conn, now - 30 * 86_400_000).unwrap(), 6);
        let after = report::build(&path, old - 86_400_000, report::GroupBy::Provider, None).unwrap();
        assert_eq!(before.total.requests, 10);
        assert_eq!(after.total.requests, 10);
        assert_eq!(after.total.tokens_before, before.total.tokens_before);
        assert!((after.total.baseline_cost_usd - before.total.baseline_cost_usd).abs() < 1e-9);
        let mech = report::build(&path, old - 86_400_000, report::GroupBy::Mechanism, None).unwrap();
        assert_eq!(mech.rows[0].tokens_before, 1000);
        let remaining: i64 = conn.query_row("SELECT COUNT(*) FROM requests", [], |r| r.get(0)).unwrap();
        assert_eq!(remaining, 4);
    }

    #[test]
    fn an_unavailable_store_counts_lost_records() {
        let ledger = Ledger::open(Path::new("/proc/no-such-dir/ledger.db"), Duration::from_secs(1));
        ledger.record(Record::empty());
        assert_eq!(ledger.lost(), 1);
    }
}
