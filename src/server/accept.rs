//! Accepting connections without running out of file descriptors: the soft open-file limit is
//! raised to the hard one at start, connections are capped below what the limit allows, and an
//! accept that fails anyway (EMFILE and the like) backs off instead of spinning.

use std::time::Duration;

use tokio::time::Instant;

/// Descriptors kept for everything that is not a client connection: the listener, runtimes,
/// SQLite files (ledger, pool store, their WAL and SHM), the originals, config watching.
const RESERVED_FDS: u64 = 64;
/// How often a repeated warning (accept failures, refused connections) is logged at most.
const LOG_EVERY: Duration = Duration::from_secs(10);
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Raises the soft open-file limit to the hard limit (a proxy holds two descriptors per
/// request, and a soft limit of 1,024 is common). Called at start, before anything is opened.
pub fn raise_fd_limit() {
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!("cannot raise the open-file limit: {e}");
    }
}

/// The soft open-file limit in force (`None` where it cannot be read).
pub fn fd_limit() -> Option<u64> {
    rlimit::getrlimit(rlimit::Resource::NOFILE).ok().map(|(soft, _)| soft)
}

/// The connections served at once: `server.max_connections`, lowered so that each (and the
/// upstream connection it may need) has a descriptor under `fd_limit`.
pub fn connection_cap(configured: usize, fd_limit: Option<u64>) -> usize {
    let Some(limit) = fd_limit else { return configured };
    let fits = (limit.saturating_sub(RESERVED_FDS) / 2).max(1);
    configured.min(usize::try_from(fits).unwrap_or(usize::MAX))
}

/// A warning that may repeat many times a second: logged once, then at most every `LOG_EVERY`
/// with how many times it happened meanwhile.
#[derive(Default)]
pub struct Throttled {
    last: Option<Instant>,
    unlogged: u64,
}

impl Throttled {
    /// Counts one occurrence; `Some(n)` when a line is due, `n` being how many it covers.
    pub fn note(&mut self) -> Option<u64> {
        self.unlogged += 1;
        let now = Instant::now();
        if self.last.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}

/// The wait after a failed accept: 10 ms, doubling to 1 s while failures go on.
#[derive(Default)]
pub struct Backoff {
    next: Option<Duration>,
    log: Throttled,
}

impl Backoff {
    /// A failed accept: logs (throttled) and says how long to wait before the next.
    pub fn failed(&mut self, e: &std::io::Error) -> Duration {
        let wait = self.next.unwrap_or(FIRST_BACKOFF);
        self.next = Some((wait * 2).min(MAX_BACKOFF));
        if let Some(n) = self.log.note() {
            tracing::warn!(
                "accept failed: {e} ({n} time(s) since the last line; retrying within {} ms). \
                 Out of file descriptors? Raise the open-file limit (ulimit -n) or lower server.max_connections",
                wait.as_millis()
            );
        }
        wait
    }

    pub fn succeeded(&mut self) {
        self.next = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_descriptors_for_upstreams_and_files() {
        assert_eq!(connection_cap(2048, Some(1024)), 480);
        assert_eq!(connection_cap(2048, Some(1_048_576)), 2048);
        assert_eq!(connection_cap(100, None), 100);
        assert_eq!(connection_cap(100, Some(10)), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn failed_accepts_back_off_and_log_rarely() {
        let mut b = Backoff::default();
        let e = std::io::Error::other("Too many open files");
        let waits: Vec<u128> = (0..9).map(|_| b.failed(&e).as_millis()).collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        b.succeeded();
        assert_eq!(b.failed(&e).as_millis(), 10);

        let mut t = Throttled::default();
        assert_eq!(t.note(), Some(1), "the first occurrence is logged");
        let logged: Vec<u64> = (0..50).filter_map(|_| t.note()).collect();
        assert!(logged.is_empty(), "{logged:?}");
        tokio::time::advance(LOG_EVERY).await;
        assert_eq!(t.note(), Some(51), "the next line says how many it covers");
    }
}
