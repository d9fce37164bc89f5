//! A graceful stop: the listener is closed already; requests in flight finish (up to
//! `server.shutdown_timeout_ms`, or until a second SIGTERM/Ctrl-C), then the writers (ledger,
//! pool counters, originals) write out what they hold, so a stop right after a burst loses nothing.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::conn::Stop;
use super::AppState;

/// How long the writers get to write out what they hold.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn drain(state: &Arc<AppState>, stops: &mut mpsc::UnboundedReceiver<()>) {
    let grace = state.cfg.server.shutdown_timeout;
    let in_flight = state.metrics.in_flight.load(Relaxed);
    tracing::info!(
        "stopping: no new connections; waiting up to {:.1}s for {in_flight} request(s) in flight \
         (server.shutdown_timeout_ms; stop again to end them now)",
        grace.as_secs_f64()
    );
    state.connections.signal(Stop::Draining);
    let drained = tokio::select! {
        () = all_closed(state) => true,
        () = tokio::time::sleep(grace) => false,
        Some(()) = stops.recv() => false,
    };
    if !drained {
        tracing::warn!(
            "stopping now: {} connection(s) still open, {} request(s) in flight (recorded as cancelled)",
            state.connections.open(),
            state.metrics.in_flight.load(Relaxed)
        );
        state.connections.signal(Stop::Abort);
        let _ = tokio::time::timeout(Duration::from_secs(2), all_closed(state)).await;
    }
    let writers = state.clone();
    let flushed = tokio::task::spawn_blocking(move || {
        writers.pool().flush();
        writers.folder.originals().flush();
        writers.ledger.flush(FLUSH_TIMEOUT)
    })
    .await
    .unwrap_or(false);
    if !flushed {
        tracing::warn!("the ledger did not write its last records within {}s", FLUSH_TIMEOUT.as_secs());
    }
}

async fn all_closed(state: &AppState) {
    while state.connections.open() > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
