//! One client connection, start to end: HTTP/1.1 or HTTP/2 with prior knowledge (h2c) on the
//! same port, the client-side timeouts, and its part in a graceful stop.
//!
//! hyper's own HTTP/1 header timeout also runs while a keep-alive connection waits for its next
//! request, so it cannot give separate header and idle limits, and HTTP/2 has none. The timeouts
//! are kept here instead, from what the connection does: while no request is open the connection
//! is idle (`keepalive_timeout`) until the first byte of the next request, which must then
//! complete its headers within `header_timeout`; a new connection gets `header_timeout` from
//! accept. While a request is open the body timeout (in `handlers`) and the upstream timeouts apply.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::{handlers, pending, AppState};
use crate::config::ServerSettings;

/// Where a stop is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Running,
    /// No new requests; those in flight finish.
    Draining,
    /// The deadline passed: connections close now (their requests are recorded as cancelled).
    Abort,
}

/// The open connections, and the signal that stops them.
pub struct Connections {
    open: AtomicUsize,
    stop: watch::Sender<Stop>,
}

impl Default for Connections {
    fn default() -> Self {
        Connections { open: AtomicUsize::new(0), stop: watch::Sender::new(Stop::Running) }
    }
}

impl Connections {
    /// A place for one more connection, unless `cap` are open.
    pub fn admit(state: &Arc<AppState>, cap: usize) -> Option<Slot> {
        let open = &state.connections.open;
        let mut n = open.load(Relaxed);
        loop {
            if n >= cap {
                return None;
            }
            match open.compare_exchange_weak(n, n + 1, Relaxed, Relaxed) {
                Ok(_) => return Some(Slot(state.clone())),
                Err(now) => n = now,
            }
        }
    }

    pub fn open(&self) -> usize {
        self.open.load(Relaxed)
    }

    pub fn signal(&self, stop: Stop) {
        self.stop.send_replace(stop);
    }
}

/// One admitted connection; frees its place when dropped.
pub struct Slot(Arc<AppState>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.connections.open.fetch_sub(1, Relaxed);
    }
}

/// Serves one connection until the client closes it, a timeout closes it, or a stop ends it.
pub async fn serve_connection(state: Arc<AppState>, stream: TcpStream, peer: SocketAddr, slot: Slot) {
    let activity = Arc::new(Activity::new());
    let service = {
        let (state, activity) = (state.clone(), activity.clone());
        service_fn(move |req| {
            let state = state.clone();
            let open = Request::begins(&activity);
            async move {
                let response = handlers::handle(state, req, peer).await;
                // The request stays open until its answer is sent (or dropped).
                Ok::<_, Infallible>(response.map(|body| pending::hold(body, open)))
            }
        })
    };
    let io = TokioIo::new(Watched { stream, activity: activity.clone() });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The header timeout is kept below (hyper's would also cut idle keep-alive connections).
    builder.http1().keep_alive(true).header_read_timeout(None);
    // Boxed, so that it is closed (and its requests dropped) before `slot` frees its place.
    let mut conn = Box::pin(builder.serve_connection(io, service));
    let limits = &state.cfg.server;
    let mut stop = state.connections.stop.subscribe();
    let mut draining = false;
    loop {
        if !draining && *stop.borrow_and_update() != Stop::Running {
            // HTTP/1 closes once the request in flight is answered (at once when idle);
            // HTTP/2 sends GOAWAY and finishes its open streams.
            conn.as_mut().graceful_shutdown();
            draining = true;
        }
        if *stop.borrow() == Stop::Abort {
            break;
        }
        let deadline = activity.deadline(limits);
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    tracing::debug!("connection from {peer} ended: {e}");
                }
                break;
            }
            () = activity.changed.notified() => {}
            _ = stop.changed() => {}
            () = tokio::time::sleep_until(deadline.map_or_else(far_future, |(at, _)| at)), if deadline.is_some() => {
                let Some((_, why)) = activity.deadline(limits).filter(|(at, _)| *at <= Instant::now()) else {
                    continue; // a request began or ended meanwhile
                };
                tracing::debug!("closing the connection from {peer}: {}", why.reason());
                if why == Expiry::Idle {
                    // Closed cleanly (HTTP/2 says GOAWAY first), but not waited on for long.
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(1), conn.as_mut()).await;
                }
                break;
            }
        }
    }
    drop(conn);
    drop(slot);
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400)
}

/// Why a connection is closed by a timeout.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expiry {
    /// No request for `server.keepalive_timeout_ms`.
    Idle,
    /// A request's headers not complete within `server.header_timeout_ms`.
    Headers,
}

impl Expiry {
    fn reason(self) -> &'static str {
        match self {
            Expiry::Idle => "idle for server.keepalive_timeout_ms",
            Expiry::Headers => "request headers not complete within server.header_timeout_ms",
        }
    }
}

/// What a connection is doing, as far as its timeouts go.
struct Activity {
    phase: Mutex<Phase>,
    /// Woken when a request ends or the first byte of the next one arrives: the deadline moves.
    changed: Notify,
}

#[derive(Clone, Copy)]
enum Phase {
    /// No request open since `since`; `reading` is when bytes of the next one started arriving.
    Waiting { since: Instant, reading: Option<Instant>, h2: bool },
    /// Requests open (HTTP/2 has several at once).
    Busy { open: usize, h2: bool },
}

impl Activity {
    fn new() -> Activity {
        let now = Instant::now();
        // A new connection must send its first request's headers within the header timeout.
        Activity {
            phase: Mutex::new(Phase::Waiting { since: now, reading: Some(now), h2: false }),
            changed: Notify::new(),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Phase) -> R) -> R {
        f(&mut self.phase.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// When the connection is to be closed, and why; `None` while a request is open.
    fn deadline(&self, limits: &ServerSettings) -> Option<(Instant, Expiry)> {
        match self.with(|p| *p) {
            Phase::Busy { .. } => None,
            Phase::Waiting { reading: Some(t), .. } => Some((t + limits.header_timeout, Expiry::Headers)),
            Phase::Waiting { since, .. } => Some((since + limits.keepalive_timeout, Expiry::Idle)),
        }
    }

    /// Bytes arrived. On HTTP/1 bytes while idle are the next request's start; an HTTP/2
    /// connection also carries frames that are not requests (settings, window updates, pings).
    fn bytes_read(&self, first: &[u8]) {
        let moved = self.with(|p| match p {
            Phase::Waiting { reading: reading @ None, h2: false, .. } => {
                *reading = Some(Instant::now());
                true
            }
            // The first bytes of the connection: HTTP/2 with prior knowledge opens with its preface.
            Phase::Waiting { h2: h2 @ false, .. } if first.starts_with(b"PRI ") => {
                *h2 = true;
                false
            }
            _ => false,
        });
        if moved {
            self.changed.notify_one();
        }
    }
}

/// An open request; ends (and lets the connection go idle) when dropped.
struct Request(Arc<Activity>);

impl Request {
    fn begins(activity: &Arc<Activity>) -> Request {
        activity.with(|p| {
            *p = match *p {
                Phase::Waiting { h2, .. } => Phase::Busy { open: 1, h2 },
                Phase::Busy { open, h2 } => Phase::Busy { open: open + 1, h2 },
            }
        });
        Request(activity.clone())
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        self.0.with(|p| {
            if let Phase::Busy { open, h2 } = *p {
                *p = match open {
                    0 | 1 => Phase::Waiting { since: Instant::now(), reading: None, h2 },
                    n => Phase::Busy { open: n - 1, h2 },
                };
            }
        });
        self.0.changed.notify_one();
    }
}

/// The client's socket, telling `Activity` when bytes arrive.
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.bytes_read(&buf.filled()[before..]);
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
