//! The Redis a team's instances share (`[state] redis_url`): one reconnecting connection, whether
//! it answers now, how many instances use it, and a queue of writes that are not on a request's
//! path (settling, what headers taught, originals), sent in pipelined batches and kept while
//! Redis is away. The pool's admission scripts (`pool::redis`) and the originals store use it.
//!
//! An outage is said once in the log and shown on `/metrics`; requests never fail because of it.
//! While Redis is away a task asks it every second; when it answers again, the queued writes go
//! out. A Redis that came back empty (restarted without its data; its epoch key is gone) is first
//! given each instance's own counts by `Resync`.

pub mod originals;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Pipeline, RedisError, Script};
use tokio::sync::Notify;

/// Longest wait on Redis for one call: admission must not hang on it; past this the instance
/// admits alone.
const CALL_TIMEOUT: Duration = Duration::from_millis(500);
/// How often an instance that lost Redis asks it again, and an idle one says it is alive.
const PROBE_EVERY: Duration = Duration::from_secs(1);
const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);
/// Instances that used Redis within this long count in the 1/N share.
pub const INSTANCE_WINDOW_MS: i64 = 60_000;
/// Writes kept while Redis is away; beyond this the oldest are dropped (and counted).
const MAX_QUEUED: usize = 100_000;
/// Writes sent in one pipeline.
const BATCH: usize = 512;

/// One write off the request path: a script invocation, or plain commands.
pub enum Op {
    Script { script: &'static Script, keys: Vec<String>, args: Vec<String> },
    Commands(Vec<redis::Cmd>),
}

/// What an instance does when it finds Redis came back empty: after dropping the queued writes
/// (the counts they carried are its own, which it now writes whole), the writes that give Redis
/// this instance's counts and cooldowns back.
pub trait Resync: Send + Sync {
    fn resync(&self, redis: &Redis) -> Vec<Op>;
}

pub struct Redis {
    prefix: String,
    /// The URL without its password, for logs.
    shown: String,
    client: redis::Client,
    conn: Mutex<Option<ConnectionManager>>,
    up: AtomicBool,
    /// Instances seen within `INSTANCE_WINDOW_MS` at the last answer (at least this one).
    instances: AtomicU64,
    /// Redis's epoch as this instance last knew it: a new one means it lost its data.
    epoch: Mutex<String>,
    /// Times this instance gave an empty Redis its counts: attempts admitted before the last one
    /// settle as corrections of what was written then.
    generation: AtomicU64,
    /// This instance's id in the instances set and in reservation ids.
    instance: String,
    next_id: AtomicU64,
    queue: Mutex<VecDeque<Op>>,
    wake: Arc<Notify>,
    lost: AtomicU64,
    outages: AtomicU64,
    resync_lock: tokio::sync::Mutex<()>,
    resync: Mutex<Option<Weak<dyn Resync>>>,
}

impl Redis {
    /// The handle for `[state]` (`url`, shown as `shown`; keys prefixed `tokenfold:<name>`), with
    /// its tasks started on the current tokio runtime. It connects in the background: until it
    /// has, admission is local (see `ready`).
    pub fn start(url: &str, shown: &str, name: &str) -> Result<Arc<Redis>, String> {
        let client = redis::Client::open(url).map_err(|e| format!("`state.redis_url` {shown}: {e}"))?;
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| "the shared state needs the async runtime to be running".to_string())?;
        let shown = shown_url(&client);
        let redis = Arc::new(Redis {
            prefix: format!("tokenfold:{name}"),
            shown,
            client,
            conn: Mutex::new(None),
            up: AtomicBool::new(false),
            instances: AtomicU64::new(1),
            epoch: Mutex::new(String::new()),
            generation: AtomicU64::new(0),
            instance: random_id(),
            next_id: AtomicU64::new(0),
            queue: Mutex::new(VecDeque::new()),
            wake: Arc::new(Notify::new()),
            lost: AtomicU64::new(0),
            outages: AtomicU64::new(0),
            resync_lock: tokio::sync::Mutex::new(()),
            resync: Mutex::new(None),
        });
        runtime.spawn(watch(Arc::downgrade(&redis)));
        runtime.spawn(write(Arc::downgrade(&redis)));
        Ok(redis)
    }

    /// Waits up to `timeout` for the first connection; false if Redis did not answer by then.
    pub async fn ready(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.is_up() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.is_up()
    }

    /// Who does a full resync for this instance (the pool; a reloaded pool replaces it).
    pub fn set_resync(&self, r: Weak<dyn Resync>) {
        *lock(&self.resync) = Some(r);
    }

    /// `tokenfold:<pool name>:<rest>`.
    pub fn key(&self, rest: &str) -> String {
        format!("{}:{rest}", self.prefix)
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Relaxed)
    }

    /// Instances that used this Redis within the last minute, this one included.
    pub fn instances(&self) -> u64 {
        self.instances.load(Relaxed).max(1)
    }

    pub fn set_instances(&self, n: u64) {
        self.instances.store(n.max(1), Relaxed);
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    pub fn epoch(&self) -> String {
        lock(&self.epoch).clone()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Relaxed)
    }

    /// A fresh id, unique across instances (reservations).
    pub fn new_id(&self) -> String {
        format!("{}-{}", self.instance, self.next_id.fetch_add(1, Relaxed))
    }

    /// The connection, when there is one and Redis answered last time.
    pub fn connection(&self) -> Option<ConnectionManager> {
        if !self.is_up() {
            return None;
        }
        lock(&self.conn).clone()
    }

    /// Runs `pipe` with the call timeout. An error that says Redis is unreachable marks it down.
    pub async fn query<T: redis::FromRedisValue>(&self, pipe: &Pipeline) -> Result<T, RedisError> {
        let mut conn = self.connection().ok_or_else(unreachable_now)?;
        self.timed(pipe.query_async::<T>(&mut conn)).await
    }

    /// Runs one script with the call timeout (loading it first if Redis does not have it). An
    /// error that says Redis is unreachable marks it down.
    pub async fn invoke(&self, inv: &redis::ScriptInvocation<'_>) -> Result<redis::Value, RedisError> {
        let mut conn = self.connection().ok_or_else(unreachable_now)?;
        self.timed(inv.invoke_async::<redis::Value>(&mut conn)).await
    }

    /// `call` with the call timeout; marks Redis down when the error says it is unreachable.
    async fn timed<T>(&self, call: impl std::future::Future<Output = Result<T, RedisError>>) -> Result<T, RedisError> {
        let res = match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(r) => r,
            Err(_) => Err(RedisError::from((redis::ErrorKind::Io, "no answer within 500 ms"))),
        };
        if let Err(e) = &res {
            if unreachable(e) {
                self.down(e);
            }
        }
        res
    }

    /// Redis stopped answering: from now on each instance admits alone, until it answers again.
    pub fn down(&self, why: &RedisError) {
        if self.up.swap(false, Relaxed) {
            self.outages.fetch_add(1, Relaxed);
            tracing::warn!(
                "shared state: Redis at {} is unreachable ({why}); admitting on this instance's own counters at \
                 1/{} of what each limit had left, until it answers again",
                self.shown,
                self.instances()
            );
        }
    }

    /// Queues a write; it goes out in the next batch, or when Redis is back.
    pub fn push(&self, op: Op) {
        let mut q = lock(&self.queue);
        if q.len() >= MAX_QUEUED {
            q.pop_front();
            self.lost.fetch_add(1, Relaxed);
        }
        q.push_back(op);
        drop(q);
        self.wake.notify_one();
    }

    /// Drops the writes not sent yet (a full resync writes what they carried).
    pub fn clear_queue(&self) {
        lock(&self.queue).clear();
    }

    /// Starts a new generation: attempts admitted before it are counted in the counts a full
    /// resync writes. Called under the pool's lock, with the snapshot.
    pub fn next_generation(&self) {
        self.generation.fetch_add(1, Relaxed);
    }

    /// Redis has the epoch `seen`, not the one this instance knew: it lost its data. Gives it this
    /// instance's counts (once per epoch, whoever notices first).
    pub async fn resync(&self, seen: &str) -> Result<(), RedisError> {
        let _one = self.resync_lock.lock().await;
        if self.epoch() == seen {
            return Ok(());
        }
        let source = lock(&self.resync).as_ref().and_then(Weak::upgrade);
        let ops = source.map(|s| s.resync(self)).unwrap_or_default();
        let n = ops.len();
        let mut pipe = redis::pipe();
        add_ops(&mut pipe, &ops);
        let conn = lock(&self.conn).clone().filter(|_| n > 0);
        if let Some(mut conn) = conn {
            tokio::time::timeout(CALL_TIMEOUT * 4, pipe.query_async::<()>(&mut conn))
                .await
                .map_err(|_| RedisError::from((redis::ErrorKind::Io, "no answer within 2 s")))??;
        }
        let known = std::mem::replace(&mut *lock(&self.epoch), seen.to_string());
        if !known.is_empty() {
            tracing::warn!(
                "shared state: Redis at {} came back without its data; wrote this instance's counts back ({n} writes)",
                self.shown
            );
        }
        Ok(())
    }

    /// Lines for `/metrics`.
    pub fn metrics(&self) -> String {
        let queued = lock(&self.queue).len();
        format!(
            "# HELP tokenfold_shared_state_up Whether the shared Redis answers (0: each instance admits alone on a share of each limit).\n\
             # TYPE tokenfold_shared_state_up gauge\ntokenfold_shared_state_up {}\n\
             # HELP tokenfold_shared_state_instances Instances that used the shared Redis in the last minute.\n\
             # TYPE tokenfold_shared_state_instances gauge\ntokenfold_shared_state_instances {}\n\
             # HELP tokenfold_shared_state_outages_total Times the shared Redis stopped answering.\n\
             # TYPE tokenfold_shared_state_outages_total counter\ntokenfold_shared_state_outages_total {}\n\
             # HELP tokenfold_shared_state_queued Writes waiting for the shared Redis.\n\
             # TYPE tokenfold_shared_state_queued gauge\ntokenfold_shared_state_queued {queued}\n\
             # HELP tokenfold_shared_state_dropped_total Writes dropped because too many waited for Redis.\n\
             # TYPE tokenfold_shared_state_dropped_total counter\ntokenfold_shared_state_dropped_total {}\n",
            u8::from(self.is_up()),
            self.instances(),
            self.outages.load(Relaxed),
            self.lost.load(Relaxed),
        )
    }

    /// Connects (or checks the connection), learns the epoch and the instances, gives an empty
    /// Redis this instance's counts, and marks Redis up.
    async fn connect(&self) -> Result<(), RedisError> {
        let existing = lock(&self.conn).clone();
        let mut conn = match existing {
            Some(c) => c,
            None => {
                let cfg = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CALL_TIMEOUT))
                    .set_response_timeout(Some(CALL_TIMEOUT))
                    .set_number_of_retries(1);
                let c = ConnectionManager::new_with_config(self.client.clone(), cfg).await?;
                *lock(&self.conn) = Some(c.clone());
                c
            }
        };
        let (epoch, n): (String, u64) = tokio::time::timeout(CALL_TIMEOUT, self.hello().query_async(&mut conn))
            .await
            .map_err(|_| RedisError::from((redis::ErrorKind::Io, "no answer within 500 ms")))??;
        self.set_instances(n);
        if epoch != self.epoch() {
            self.resync(&epoch).await?;
        }
        if !self.up.swap(true, Relaxed) && self.outages.load(Relaxed) > 0 {
            tracing::warn!("shared state: Redis at {} answers again; admission is shared again", self.shown);
        } else if self.outages.load(Relaxed) == 0 {
            tracing::info!("shared state: Redis at {} (keys {}:…)", self.shown, self.prefix);
        }
        self.wake.notify_one();
        Ok(())
    }

    /// Sets the epoch if Redis has none, says this instance is alive; returns the epoch and the
    /// instances seen within the window.
    fn hello(&self) -> Pipeline {
        let now = now_ms();
        let (epoch, instances) = (self.key("epoch"), self.key("instances"));
        let mut p = redis::pipe();
        p.cmd("SET").arg(&epoch).arg(random_id()).arg("NX").ignore();
        p.cmd("GET").arg(&epoch);
        p.cmd("ZADD").arg(&instances).arg(now).arg(&self.instance).ignore();
        p.cmd("ZREMRANGEBYSCORE").arg(&instances).arg("-inf").arg(now - INSTANCE_WINDOW_MS).ignore();
        p.cmd("ZCARD").arg(&instances);
        p
    }
}

/// Keeps the connection: probes a Redis that went away every second, says this instance is alive
/// every ten.
async fn watch(redis: Weak<Redis>) {
    let mut last_hello = tokio::time::Instant::now();
    loop {
        let Some(r) = redis.upgrade() else { return };
        if !r.is_up() {
            if let Err(e) = r.connect().await {
                tracing::debug!("shared state: Redis at {} still unreachable: {e}", r.shown);
            }
            last_hello = tokio::time::Instant::now();
        } else if last_hello.elapsed() >= HEARTBEAT_EVERY {
            last_hello = tokio::time::Instant::now();
            match r.query::<(String, u64)>(&r.hello()).await {
                Ok((epoch, n)) => {
                    r.set_instances(n);
                    if epoch != r.epoch() {
                        if let Err(e) = r.resync(&epoch).await {
                            r.down(&e);
                        }
                    }
                }
                Err(e) => tracing::debug!("shared state: heartbeat failed: {e}"),
            }
        }
        drop(r);
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

/// Sends the queued writes in pipelined batches while Redis answers.
async fn write(redis: Weak<Redis>) {
    loop {
        let Some(r) = redis.upgrade() else { return };
        let batch: Vec<Op> = {
            let mut q = lock(&r.queue);
            let n = q.len().min(BATCH);
            q.drain(..n).collect()
        };
        if batch.is_empty() || !r.is_up() {
            let back = !batch.is_empty();
            if back {
                let mut q = lock(&r.queue);
                for op in batch.into_iter().rev() {
                    q.push_front(op);
                }
            }
            let wake = r.wake.clone();
            drop(r);
            // Woken by a push or a return; a return that raced the wait is caught by the timeout.
            let wait = if back { PROBE_EVERY } else { HEARTBEAT_EVERY };
            let _ = tokio::time::timeout(wait, wake.notified()).await;
            continue;
        }
        let mut pipe = redis::pipe();
        add_ops(&mut pipe, &batch);
        match r.query::<()>(&pipe).await {
            Ok(()) => {}
            Err(e) if unreachable(&e) => {
                let mut q = lock(&r.queue);
                for op in batch.into_iter().rev() {
                    q.push_front(op);
                }
            }
            Err(e) => tracing::warn!("shared state: {} writes refused by Redis: {e}", batch.len()),
        }
    }
}

/// Adds `ops` to `pipe`, each script loaded once first (a restarted Redis has none).
fn add_ops(pipe: &mut Pipeline, ops: &[Op]) {
    let mut loaded: Vec<&str> = Vec::new();
    for op in ops {
        match op {
            Op::Script { script, keys, args } => {
                if !loaded.contains(&script.get_hash()) {
                    loaded.push(script.get_hash());
                    pipe.load_script(script).ignore();
                }
                let mut inv = script.prepare_invoke();
                for k in keys {
                    inv.key(k);
                }
                for a in args {
                    inv.arg(a);
                }
                pipe.invoke_script(&inv).ignore();
            }
            Op::Commands(cmds) => {
                for c in cmds {
                    pipe.add_command(c.clone()).ignore();
                }
            }
        }
    }
}

/// Whether an error means Redis cannot be reached (rather than that it refused a command).
pub fn unreachable(e: &RedisError) -> bool {
    e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// 64 random bits in hex (std's per-process random hash keys, so no extra crate).
fn random_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    format!("{:016x}", h.finish())
}

/// `redis://host:port/db`, without user or password.
fn shown_url(client: &redis::Client) -> String {
    let info = client.get_connection_info();
    format!("{}", info.addr())
}

fn unreachable_now() -> RedisError {
    RedisError::from((redis::ErrorKind::Io, "Redis is unreachable"))
}

/// Wall-clock unix milliseconds (instances' liveness in Redis is wall-clock: they share no clock).
fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
