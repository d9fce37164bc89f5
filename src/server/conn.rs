//! One client connection, start to end: HTTP/1.1 or HTTP/2 with prior knowledge (h2c) on the
//! same port, the client-side timeouts, and its part in a graceful stop.
//!
//! hyper's own HTTP/1 header timeout also runs while a keep-alive connection waits for its next
//! request, so it cannot give separate header and idle limits, and HTTP/2 has none. The timeouts
//! are kept here instead, from what the connection does: while no request is open the connection
//! is idle (`keepalive_timeout`) until the first byte of the next request, which must then
//! complete its headers within `header_timeout`; a new connection gets `header_timeout` from
//! accept. While a request is open the body timeout (in `handlers`) and the upstream timeouts apply.
//! The deadline is checked where hyper waits for the client's bytes (a read that would block), so
//! a request costs no wake-up of another task; a read past it fails and hyper closes the connection.

use std::convert::Infallible;
use std::future::Future;
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
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

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
    let io = TokioIo::new(Watched::new(stream, activity, &state.cfg.server, peer));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The header timeout is kept in `Watched` (hyper's would also cut idle keep-alive connections).
    builder.http1().keep_alive(true).header_read_timeout(None);
    // Boxed, so that it is closed (and its requests dropped) before `slot` frees its place.
    let mut conn = Box::pin(builder.serve_connection(io, service));
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
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    tracing::debug!("connection from {peer} ended: {e}");
                }
                break;
            }
            _ = stop.changed() => {}
        }
    }
    drop(conn);
    drop(slot);
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
        Activity { phase: Mutex::new(Phase::Waiting { since: now, reading: Some(now), h2: false }) }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Phase) -> R) -> R {
        f(&mut self.phase.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Bytes arrived. On HTTP/1 bytes while idle are the next request's start; an HTTP/2
    /// connection also carries frames that are not requests (settings, window updates, pings).
    fn bytes_read(&self, first: &[u8]) {
        self.with(|p| match p {
            Phase::Waiting { reading: reading @ None, h2: false, .. } => *reading = Some(Instant::now()),
            // The first bytes of the connection: HTTP/2 with prior knowledge opens with its preface.
            Phase::Waiting { h2: h2 @ false, .. } if first.starts_with(b"PRI ") => *h2 = true,
            _ => {}
        });
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
    }
}

/// The client's socket: tells `Activity` when bytes arrive, and fails a read that would wait
/// past the connection's deadline.
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
    header_timeout: Duration,
    keepalive_timeout: Duration,
    peer: SocketAddr,
    /// Set to the deadline in force whenever a read has to wait.
    timer: Pin<Box<Sleep>>,
    armed_for: Option<Instant>,
}

impl Watched {
    fn new(stream: TcpStream, activity: Arc<Activity>, limits: &ServerSettings, peer: SocketAddr) -> Watched {
        let now = Instant::now();
        Watched {
            stream,
            activity,
            header_timeout: limits.header_timeout,
            keepalive_timeout: limits.keepalive_timeout,
            peer,
            timer: Box::pin(tokio::time::sleep_until(now)),
            armed_for: None,
        }
    }

    /// A read found nothing to read: `Err` if the connection's deadline has passed, after
    /// arranging to be woken when it does.
    fn wait_within_deadline(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let deadline = match self.activity.with(|p| *p) {
            Phase::Busy { .. } => return Ok(()),
            Phase::Waiting { reading: Some(t), .. } => (t + self.header_timeout, Expiry::Headers),
            Phase::Waiting { since, .. } => (since + self.keepalive_timeout, Expiry::Idle),
        };
        if self.armed_for != Some(deadline.0) {
            self.timer.as_mut().reset(deadline.0);
            self.armed_for = Some(deadline.0);
        }
        if self.timer.as_mut().poll(cx).is_pending() {
            return Ok(());
        }
        tracing::debug!("closing the connection from {}: {}", self.peer, deadline.1.reason());
        Err(io::Error::new(io::ErrorKind::TimedOut, deadline.1.reason()))
    }
}

impl AsyncRead for Watched {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Pending => match this.wait_within_deadline(cx) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            },
            ready => {
                if buf.filled().len() > before {
                    this.activity.bytes_read(&buf.filled()[before..]);
                }
                ready
            }
        }
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
