//! Thread per core: each worker thread runs its own single-threaded runtime and serves the
//! connections handed to it, start to end. A request, its upstream call (from that worker's own
//! connection pool) and the relay of the answer all run on one thread, so nothing waits for a
//! wake-up of another thread; on a work-stealing runtime each request crossed threads several
//! times, which showed as tens of µs of added latency.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::conn::{serve_connection, Slot};
use super::AppState;

type Handoff = (std::net::TcpStream, SocketAddr, Slot);

/// How many workers serve connections: `TOKIO_WORKER_THREADS` if set, else one per CPU.
pub fn count() -> usize {
    std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
}

/// The running workers; dropping this lets them finish once their connections have.
pub struct Workers {
    queues: Vec<mpsc::UnboundedSender<Handoff>>,
    next: usize,
}

impl Workers {
    /// Starts `n` worker threads. Fails only if not even one thread could be started.
    pub fn start(state: &Arc<AppState>, n: usize) -> Result<Workers, String> {
        let mut queues = Vec::with_capacity(n);
        let mut last_error = String::new();
        for index in 0..n {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(r) => r,
                Err(e) => {
                    last_error = format!("cannot start a worker runtime: {e}");
                    continue;
                }
            };
            let (tx, mut rx) = mpsc::unbounded_channel::<Handoff>();
            let state = state.clone();
            let spawned = std::thread::Builder::new().name(format!("tokenfold-worker-{index}")).spawn(move || {
                crate::pool::upstream::serve_on_worker(index);
                runtime.block_on(async move {
                    while let Some((stream, peer, slot)) = rx.recv().await {
                        match TcpStream::from_std(stream) {
                            Ok(stream) => {
                                tokio::spawn(serve_connection(state.clone(), stream, peer, slot));
                            }
                            Err(e) => tracing::warn!("cannot take over the connection from {peer}: {e}"),
                        }
                    }
                });
            });
            match spawned {
                Ok(_) => queues.push(tx),
                Err(e) => last_error = format!("cannot start a worker thread: {e}"),
            }
        }
        if queues.is_empty() {
            return Err(last_error);
        }
        Ok(Workers { queues, next: 0 })
    }

    /// Hands an accepted connection to the next worker in turn. Gives it back if that worker is
    /// gone (the caller then serves it itself).
    pub fn hand_over(&mut self, stream: TcpStream, peer: SocketAddr, slot: Slot) -> Result<(), (TcpStream, Slot)> {
        let std_stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("cannot hand over the connection from {peer}: {e}");
                return Ok(());
            }
        };
        self.next = (self.next + 1) % self.queues.len();
        let Err(mpsc::error::SendError((std_stream, _, slot))) = self.queues[self.next].send((std_stream, peer, slot))
        else {
            return Ok(());
        };
        match TcpStream::from_std(std_stream) {
            Ok(stream) => Err((stream, slot)),
            Err(e) => {
                tracing::warn!("cannot serve the connection from {peer}: {e}");
                Ok(())
            }
        }
    }
}
