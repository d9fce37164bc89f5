//! The store of originals: every output a filter shortened is written once to a content-addressed
//! file (`<dir>/<id>.txt`, id = the first 12 hex digits of its blake3), so the marker left in its
//! place can be expanded with the agent's own tools (`cat ~/.cache/tokenfold/o/<id>.txt`, or
//! `curl` against a shared proxy's `GET /o/<id>`).
//!
//! Writes happen on one background thread, off the request path, unless its queue holds more
//! than `MAX_QUEUED_BYTES`: then the request writes its original itself (an elision must never
//! point at nothing, and the queue must not grow without bound). An existing file is never
//! rewritten. The directory is pruned by age and total size at start and every 64 writes.
//! Markers name the directory the same way in every process: `~/...` when it is under `$HOME`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime};

use xxhash_rust::xxh3::xxh3_64;

/// Bytes of originals waiting for the writer thread beyond which a request writes its own.
pub const MAX_QUEUED_BYTES: usize = 16 << 20;

/// Hex digits of an original's id (48 bits: collisions are negligible at the store's size).
pub const ID_LEN: usize = 12;
/// Ids a process remembers having queued, to skip writing one twice (a few hundred KB).
const MAX_REMEMBERED_IDS: usize = 16_384;

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub dir: PathBuf,
    pub max_bytes: u64,
    pub max_age: Duration,
    /// Set when agents reach the proxy over the network: markers then give a URL on it.
    pub remote: Option<Remote>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// `http://host:port`, no trailing slash.
    pub base_url: String,
    /// The proxy requires a key: the marker's `curl` sends `x-tokenfold-key`.
    pub key_required: bool,
}

enum Job {
    Put(String, Arc<str>),
    Flush(mpsc::Sender<()>),
}

pub struct Originals {
    dir: Option<PathBuf>,
    shown: String,
    remote: Option<Remote>,
    tx: Option<SyncSender<Job>>,
    /// Ids already queued or written by this process (the most recent, up to `MAX_REMEMBERED_IDS`).
    queued: Mutex<HashSet<String>>,
    /// Bytes queued for the writer and not yet written.
    queued_bytes: Arc<AtomicUsize>,
    /// The size and age caps of the directory (the shared copies get the same).
    caps: (u64, Duration),
    /// With `[state] redis_url`: every original goes to Redis too, so any instance serves it.
    shared: OnceLock<crate::shared::originals::SharedOriginals>,
}

/// `$XDG_CACHE_HOME/tokenfold/o`, else `~/.cache/tokenfold/o`.
pub fn default_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("tokenfold").join("o"))
}

/// How markers write `dir`: relative to `~` when under `$HOME`, so every user's markers match.
fn shown(dir: &Path) -> String {
    if let Some(home) = std::env::var_os("HOME").map(PathBuf::from).filter(|h| !h.as_os_str().is_empty()) {
        if let Ok(rest) = dir.strip_prefix(&home) {
            return format!("~/{}", rest.display());
        }
    }
    dir.display().to_string()
}

/// The content id of an original.
pub fn id_of(text: &str) -> String {
    let h = blake3::hash(text.as_bytes());
    h.to_hex().as_str()[..ID_LEN].to_string()
}

/// Every word of `text` shaped like an original's id (12 lowercase hex digits, not glued to a
/// letter or digit before it): how a tool call or command names an original to read it back.
pub fn ids_in(text: &[u8]) -> impl Iterator<Item = &str> + '_ {
    let hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < text.len() {
            if !hex(text[i]) {
                i += 1;
                continue;
            }
            let s = i;
            while i < text.len() && hex(text[i]) {
                i += 1;
            }
            let bounded = s > 0 && !text[s - 1].is_ascii_alphanumeric();
            if i - s == ID_LEN && bounded {
                if let Ok(id) = std::str::from_utf8(&text[s..i]) {
                    return Some(id);
                }
            }
        }
        None
    })
}

/// Whether `s` is a well-formed id (so it can name a file safely).
pub fn is_id(s: &str) -> bool {
    s.len() == ID_LEN && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Originals {
    /// Markers as the default store would write them, nothing stored (replay, tests, benches).
    pub fn unstored() -> Originals {
        Originals {
            dir: None,
            shown: "~/.cache/tokenfold/o".to_string(),
            remote: None,
            tx: None,
            queued: Mutex::new(HashSet::new()),
            queued_bytes: Arc::new(AtomicUsize::new(0)),
            caps: (0, Duration::ZERO),
            shared: OnceLock::new(),
        }
    }

    /// Creates the directory and starts the writer thread (which prunes first).
    pub fn open(cfg: StoreConfig) -> std::io::Result<Originals> {
        crate::files::private_dir(&cfg.dir)?;
        let (tx, rx) = mpsc::sync_channel::<Job>(1024);
        let dir = cfg.dir.clone();
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let pending = Arc::clone(&queued_bytes);
        let (max_bytes, max_age) = (cfg.max_bytes, cfg.max_age);
        std::thread::Builder::new().name("tokenfold-originals".into()).spawn(move || {
            prune(&dir, max_bytes, max_age);
            let mut since_prune = 0;
            for job in rx {
                match job {
                    Job::Put(id, text) => {
                        if write_once(&dir, &id, &text) {
                            since_prune += 1;
                        }
                        pending.fetch_sub(text.len(), Ordering::Relaxed);
                        if since_prune >= 64 {
                            prune(&dir, max_bytes, max_age);
                            since_prune = 0;
                        }
                    }
                    Job::Flush(done) => {
                        let _ = done.send(());
                    }
                }
            }
        })?;
        Ok(Originals {
            shown: shown(&cfg.dir),
            dir: Some(cfg.dir),
            remote: cfg.remote,
            tx: Some(tx),
            queued: Mutex::new(HashSet::new()),
            queued_bytes,
            caps: (max_bytes, max_age),
            shared: OnceLock::new(),
        })
    }

    /// Writes every original to `redis` too from now on (same caps), and reads it there when
    /// this instance has no copy.
    pub fn share_through(&self, redis: Arc<crate::shared::Redis>) {
        if self.dir.is_some() {
            let _ = self.shared.set(crate::shared::originals::SharedOriginals::new(redis, self.caps.0, self.caps.1));
        }
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The command a marker gives to read original `id` back.
    pub fn recall(&self, id: &str) -> String {
        match &self.remote {
            Some(r) if r.key_required => {
                format!("curl -s -H \"x-tokenfold-key: $TOKENFOLD_API_KEY\" {}/o/{id}", r.base_url)
            }
            Some(r) => format!("curl -s {}/o/{id}", r.base_url),
            None => format!("cat {}/{id}.txt", self.shown),
        }
    }

    /// Everything about the store that changes markers: part of the fold cache key.
    pub fn fingerprint(&self) -> u64 {
        xxh3_64(self.recall("000000000000").as_bytes())
    }

    /// Queues `text` for writing under `id` (off the request path). When the writer is that far
    /// behind, writes it here and now instead: a marker must never name a missing original.
    pub fn put(&self, id: &str, text: &str) {
        let (Some(tx), Some(dir)) = (&self.tx, &self.dir) else { return };
        {
            let mut q = self.queued.lock().unwrap_or_else(PoisonError::into_inner);
            // It only spares re-queueing what is on disk already (the writer skips those): kept
            // bounded, or a long-running proxy holds every id it ever wrote (the soak bench).
            if q.len() >= MAX_REMEMBERED_IDS {
                q.clear();
            }
            if !q.insert(id.to_string()) {
                return;
            }
        }
        if let Some(s) = self.shared.get() {
            s.put(id, text);
        }
        if self.queued_bytes.fetch_add(text.len(), Ordering::Relaxed) + text.len() <= MAX_QUEUED_BYTES {
            match tx.try_send(Job::Put(id.to_string(), Arc::from(text))) {
                Ok(()) => return,
                Err(TrySendError::Full(_)) => {}
                Err(TrySendError::Disconnected(_)) => tracing::warn!("originals store: writer stopped"),
            }
        }
        self.queued_bytes.fetch_sub(text.len(), Ordering::Relaxed);
        write_once(dir, id, text);
    }

    /// The stored original `id`, if any.
    pub fn get(&self, id: &str) -> Option<Vec<u8>> {
        if !is_id(id) {
            return None;
        }
        std::fs::read(self.dir.as_ref()?.join(format!("{id}.txt"))).ok()
    }

    /// The stored original `id`: this instance's copy, else the shared one (another instance
    /// wrote its marker).
    pub async fn get_anywhere(&self, id: &str) -> Option<Vec<u8>> {
        if let Some(text) = self.get(id) {
            return Some(text);
        }
        match (is_id(id), self.shared.get()) {
            (true, Some(s)) => s.get(id).await,
            _ => None,
        }
    }

    /// Waits until every write queued so far is on disk (tests, shutdown).
    pub fn flush(&self) {
        let Some(tx) = &self.tx else { return };
        let (done, wait) = mpsc::channel();
        if tx.send(Job::Flush(done)).is_ok() {
            let _ = wait.recv_timeout(Duration::from_secs(10));
        }
    }
}

/// Writes `<dir>/<id>.txt` unless it exists (temp file + rename, so readers never see half).
fn write_once(dir: &Path, id: &str, text: &str) -> bool {
    let path = dir.join(format!("{id}.txt"));
    if path.exists() {
        return false;
    }
    let tmp = dir.join(format!(".{id}.{}.tmp", std::process::id()));
    let res = crate::files::write_private(&tmp, text.as_bytes()).and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        tracing::warn!("originals store: cannot write {}: {e}", path.display());
        return false;
    }
    true
}

/// Deletes originals older than `max_age`, then the oldest until the total is under `max_bytes`.
pub fn prune(dir: &Path, max_bytes: u64, max_age: Duration) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    let now = SystemTime::now();
    let mut files: Vec<(SystemTime, u64, PathBuf)> = Vec::new();
    for e in rd.flatten() {
        let p = e.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let Some(id) = name.strip_suffix(".txt") else { continue };
        if !is_id(id) {
            continue;
        }
        let Ok(md) = e.metadata() else { continue };
        let mtime = md.modified().unwrap_or(now);
        if now.duration_since(mtime).unwrap_or_default() > max_age {
            let _ = std::fs::remove_file(&p);
            continue;
        }
        files.push((mtime, md.len(), p));
    }
    let mut total: u64 = files.iter().map(|f| f.1).sum();
    if total <= max_bytes {
        return;
    }
    files.sort();
    for (_, len, p) in files {
        if total <= max_bytes / 10 * 9 {
            break;
        }
        if std::fs::remove_file(&p).is_ok() {
            total = total.saturating_sub(len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tokenfold-originals-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn writes_once_and_reads_back() {
        let dir = temp_dir("once");
        let cfg =
            StoreConfig { dir: dir.clone(), max_bytes: 1 << 20, max_age: Duration::from_secs(3600), remote: None };
        let s = Originals::open(cfg).unwrap();
        let id = id_of("hello\nworld\n");
        s.put(&id, "hello\nworld\n");
        s.flush();
        assert_eq!(s.get(&id).unwrap(), b"hello\nworld\n");
        // A second put of the same id does not rewrite (the file's mtime stays).
        let before = std::fs::metadata(dir.join(format!("{id}.txt"))).unwrap().modified().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let s2 = Originals::open(StoreConfig {
            dir: dir.clone(),
            max_bytes: 1 << 20,
            max_age: Duration::from_secs(3600),
            remote: None,
        })
        .unwrap();
        s2.put(&id, "hello\nworld\n");
        s2.flush();
        let after = std::fs::metadata(dir.join(format!("{id}.txt"))).unwrap().modified().unwrap();
        assert_eq!(before, after);
        assert!(s.get("../etc/passwd").is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// More than the writer's queue takes, in count and in bytes: every original is still on disk.
    #[test]
    fn a_burst_beyond_the_queue_loses_nothing() {
        let dir = temp_dir("burst");
        let cfg =
            StoreConfig { dir: dir.clone(), max_bytes: 1 << 30, max_age: Duration::from_secs(3600), remote: None };
        let s = Originals::open(cfg).unwrap();
        let mut texts: Vec<String> = (0..1500).map(|i| format!("line {i}\n").repeat(400)).collect();
        texts.extend((0..20).map(|i| format!("big {i}\n").repeat(150_000)));
        for t in &texts {
            s.put(&id_of(t), t);
        }
        s.flush();
        for t in &texts {
            assert_eq!(s.get(&id_of(t)).as_deref(), Some(t.as_bytes()), "an original went missing");
        }
        assert_eq!(s.queued_bytes.load(Ordering::Relaxed), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn prunes_by_size() {
        let dir = temp_dir("prune");
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..10u8 {
            let id = id_of(&format!("n{i}"));
            std::fs::write(dir.join(format!("{id}.txt")), vec![b'x'; 1000]).unwrap();
        }
        std::fs::write(dir.join("unrelated.txt"), b"keep me").unwrap();
        prune(&dir, 5000, Duration::from_secs(3600));
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
        let sizes: u64 =
            left.iter().filter(|e| e.file_name() != "unrelated.txt").map(|e| e.metadata().unwrap().len()).sum();
        assert!(sizes <= 4500, "{sizes}");
        assert!(dir.join("unrelated.txt").exists(), "only originals are pruned");
        let old = SystemTime::now() - Duration::from_secs(7200);
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            std::fs::File::options().write(true).open(e.path()).unwrap().set_modified(old).unwrap();
        }
        prune(&dir, 1 << 20, Duration::from_secs(3600));
        let left = std::fs::read_dir(&dir).unwrap().flatten().count();
        assert_eq!(left, 1, "everything older than the age cap goes");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn markers_name_the_store_the_same_way() {
        let s = Originals::unstored();
        assert_eq!(s.recall("3fa9c2e1aabb"), "cat ~/.cache/tokenfold/o/3fa9c2e1aabb.txt");
        let r = Originals {
            remote: Some(Remote { base_url: "http://10.0.0.5:8411".into(), key_required: true }),
            ..Originals::unstored()
        };
        assert!(r
            .recall("3fa9c2e1aabb")
            .starts_with("curl -s -H \"x-tokenfold-key: $TOKENFOLD_API_KEY\" http://10.0.0.5:8411/o/"));
        assert_ne!(s.fingerprint(), r.fingerprint());
    }
}
