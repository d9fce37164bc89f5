//! The pool's durable state in the embedded SQLite file: one row per key (account or account's
//! model) with its counters and cooldown as JSON. The hot path only sends a snapshot down a
//! channel; a background thread coalesces snapshots per key and writes them in one transaction.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Mutex;
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

enum Msg {
    Put(String, Box<KeyState>),
    Flush(mpsc::Sender<()>),
}

/// Handle to the writer thread. Dropping it writes what is pending and stops the thread.
pub struct Store {
    path: PathBuf,
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
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(sql)?;
        conn.execute(SCHEMA, []).map_err(sql)?;
        let loaded = load(&conn).map_err(sql)?;
        let (tx, rx) = mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("tokenfold-pool-store".into())
            .spawn(move || write_loop(conn, rx))
            .map_err(StoreError::Thread)?;
        let store = Store { path: path.to_path_buf(), tx: Mutex::new(Some(tx)), writer: Mutex::new(Some(writer)) };
        Ok((store, loaded))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues a key's state; never blocks on disk.
    pub fn put(&self, key: &str, state: KeyState) {
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = tx.as_ref() {
            let _ = tx.send(Msg::Put(key.to_string(), Box::new(state)));
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

fn load(conn: &Connection) -> rusqlite::Result<HashMap<String, KeyState>> {
    let mut stmt = conn.prepare("SELECT key, state FROM pool_state")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = HashMap::new();
    for row in rows {
        let (key, json) = row?;
        match serde_json::from_str::<KeyState>(&json) {
            Ok(state) => {
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

fn write_loop(mut conn: Connection, rx: mpsc::Receiver<Msg>) {
    while let Ok(first) = rx.recv() {
        if matches!(first, Msg::Put(..)) {
            std::thread::sleep(COALESCE);
        }
        let mut pending: HashMap<String, Box<KeyState>> = HashMap::new();
        let mut acks = Vec::new();
        let mut next = Some(first);
        // Coalesce everything already queued into one transaction.
        while let Some(msg) = next {
            match msg {
                Msg::Put(k, s) => {
                    pending.insert(k, s);
                }
                Msg::Flush(ack) => acks.push(ack),
            }
            next = rx.try_recv().ok();
        }
        if let Err(e) = write_batch(&mut conn, &pending) {
            tracing::warn!("pool store: could not save {} keys: {e}", pending.len());
        }
        for ack in acks {
            let _ = ack.send(());
        }
    }
}

fn write_batch(conn: &mut Connection, pending: &HashMap<String, Box<KeyState>>) -> rusqlite::Result<()> {
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
        for (key, state) in pending {
            let json = serde_json::to_string(state).unwrap_or_default();
            stmt.execute(params![key, json, now])?;
        }
    }
    tx.commit()
}
