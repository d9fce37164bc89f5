//! The pool's durable state in the embedded SQLite file: one row per key (account or account's
//! model) with its counters and cooldown as JSON. The hot path only leaves a key's latest
//! snapshot in a map (a later one replaces it, so a burst holds one per key, not one per
//! request); a background thread takes the map every 250 ms and writes it in one transaction.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use rusqlite::{params, Connection};

use super::state::KeyState;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create {path}: {source}")]
    Dir { path: String, source: std::io::Error },
    #[error("cannot open the pool store {path}: {source}")]
    Sqlite { path: String, source: rusqlite::Error },
    #[error("cannot start the pool store writer: {0}")]
    Thread(std::io::Error),
}

/// The last word per key since the writer's last batch: its state, or `None` to delete it.
type Pending = HashMap<String, Option<KeyState>>;

enum Msg {
    /// The pending map was empty and is not any more: write it after gathering a while.
    Wake,
    /// Reclaims the file's free pages (after many rows were dropped at once).
    Vacuum,
    Flush(mpsc::Sender<()>),
}

/// Handle to the writer thread. Dropping it writes what is pending and stops the thread.
pub struct Store {
    path: PathBuf,
    pending: Arc<Mutex<Pending>>,
    tx: Mutex<Option<mpsc::Sender<Msg>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS pool_state (
    key TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    updated_ms INTEGER NOT NULL
)";

impl Store {
    /// Opens (creating) the file and returns the store with every key's saved state.
    pub fn open(path: &Path) -> Result<(Store, HashMap<String, KeyState>), StoreError> {
        let shown = path.display().to_string();
        crate::files::private_sqlite(path).map_err(|source| StoreError::Dir { path: shown.clone(), source })?;
        let sql = |source| StoreError::Sqlite { path: shown.clone(), source };
        let conn = Connection::open(path).map_err(sql)?;
        // WAL lets the ledger (another connection to the same file) write alongside.
        conn.pragma_update(None, "journal_mode", "WAL").map_err(sql)?;
        // After a checkpoint the WAL is cut back to 4 MiB instead of keeping its largest size.
        conn.pragma_update(None, "journal_size_limit", 4i64 << 20).map_err(sql)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(sql)?;
        conn.execute(SCHEMA, []).map_err(sql)?;
        let loaded = load(&conn).map_err(sql)?;
        let (tx, rx) = mpsc::channel();
        let pending = Arc::new(Mutex::new(Pending::new()));
        let taken = pending.clone();
        let writer = std::thread::Builder::new()
            .name("tokenfold-pool-store".into())
            .spawn(move || write_loop(conn, rx, &taken))
            .map_err(StoreError::Thread)?;
        let store =
            Store { path: path.to_path_buf(), pending, tx: Mutex::new(Some(tx)), writer: Mutex::new(Some(writer)) };
        Ok((store, loaded))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues a key's state; never blocks on disk.
    pub fn put(&self, key: &str, state: KeyState) {
        self.note(key.to_string(), Some(state));
    }

    /// Queues the removal of a key's row.
    pub fn delete(&self, key: String) {
        self.note(key, None);
    }

    /// Queues the removal of many rows (a restart that dropped them) and, when they were most of
    /// the file, gives the space back to the file system.
    pub fn delete_many(&self, keys: Vec<String>, of_loaded: usize) {
        let many = keys.len() >= VACUUM_MIN_ROWS && keys.len() * 2 >= of_loaded;
        for k in keys {
            self.note(k, None);
        }
        if many {
            self.send(Msg::Vacuum);
        }
    }

    fn note(&self, key: String, state: Option<KeyState>) {
        let was_empty = {
            let mut p = lock(&self.pending);
            let was_empty = p.is_empty();
            p.insert(key, state);
            was_empty
        };
        if was_empty {
            self.send(Msg::Wake);
        }
    }

    fn send(&self, msg: Msg) {
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = tx.as_ref() {
            let _ = tx.send(msg);
        }
    }

    /// Waits until everything queued so far is on disk.
    pub fn flush(&self) {
        let (ack_tx, ack_rx) = mpsc::channel();
        let sent = {
            let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
            tx.as_ref().is_some_and(|tx| tx.send(Msg::Flush(ack_tx)).is_ok())
        };
        if sent {
            let _ = ack_rx.recv();
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(w) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = w.join();
        }
    }
}

/// Fewer dropped rows than this are not worth a VACUUM.
const VACUUM_MIN_ROWS: usize = 1000;

fn load(conn: &Connection) -> rusqlite::Result<HashMap<String, KeyState>> {
    let mut stmt = conn.prepare("SELECT key, state, updated_ms FROM pool_state")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))?;
    let mut out = HashMap::new();
    for row in rows {
        let (key, json, updated_ms) = row?;
        match serde_json::from_str::<KeyState>(&json) {
            Ok(mut state) => {
                // Rows saved before `last_used_ms` existed: their last write is their last use.
                if state.last_used_ms == 0 {
                    state.last_used_ms = updated_ms;
                }
                out.insert(key, state);
            }
            // A row from an incompatible version is dropped, not fatal: counters restart at 0.
            Err(e) => tracing::warn!("pool store: ignoring saved state of `{key}`: {e}"),
        }
    }
    Ok(out)
}

/// How long the writer gathers snapshots before one transaction: at a busy proxy each request
/// updates its key, and writing each time would cost a transaction per request.
const COALESCE: std::time::Duration = std::time::Duration::from_millis(250);

fn lock(pending: &Mutex<Pending>) -> MutexGuard<'_, Pending> {
    pending.lock().unwrap_or_else(|e| e.into_inner())
}

fn write_loop(mut conn: Connection, rx: mpsc::Receiver<Msg>, pending: &Mutex<Pending>) {
    while let Ok(first) = rx.recv() {
        if matches!(first, Msg::Wake) {
            std::thread::sleep(COALESCE);
        }
        let mut acks = Vec::new();
        let mut vacuum = false;
        let mut next = Some(first);
        while let Some(msg) = next {
            match msg {
                Msg::Wake => {}
                Msg::Vacuum => vacuum = true,
                Msg::Flush(ack) => acks.push(ack),
            }
            next = rx.try_recv().ok();
        }
        // Everything put before the messages just read is in the map.
        let batch = std::mem::take(&mut *lock(pending));
        if let Err(e) = write_batch(&mut conn, &batch) {
            tracing::warn!("pool store: could not save {} keys: {e}", batch.len());
        }
        if vacuum {
            if let Err(e) = conn.execute_batch("VACUUM") {
                tracing::warn!("pool store: could not reclaim the space of dropped rows: {e}");
            }
        }
        for ack in acks {
            let _ = ack.send(());
        }
    }
    // The store was dropped: what is left goes too.
    let batch = std::mem::take(&mut *lock(pending));
    if let Err(e) = write_batch(&mut conn, &batch) {
        tracing::warn!("pool store: could not save {} keys: {e}", batch.len());
    }
}

fn write_batch(conn: &mut Connection, pending: &Pending) -> rusqlite::Result<()> {
    if pending.is_empty() {
        return Ok(());
    }
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO pool_state (key, state, updated_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT(key) DO UPDATE SET state = excluded.state, updated_ms = excluded.updated_ms",
        )?;
        let mut delete = tx.prepare_cached("DELETE FROM pool_state WHERE key = ?1")?;
        for (key, state) in pending {
            match state {
                Some(state) => {
                    let json = serde_json::to_string(state).unwrap_or_default();
                    stmt.execute(params![key, json, now])?;
                }
                None => {
                    delete.execute(params![key])?;
                }
            }
        }
    }
    tx.commit()
}
