//! A raw-TCP mock provider for the failures an HTTP library will not produce on purpose:
//! connection resets before and after the first byte, answers that never come, scripted
//! replies per request. It records every request with when it arrived and when its answer
//! ended, and the most requests it ever had in flight at once.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// What the mock does with one request.
#[derive(Clone)]
pub enum Fault {
    /// A whole answer (sent with its length; the connection stays open for the next request).
    Answer { status: u16, headers: Vec<(String, String)>, body: Vec<u8> },
    /// A 200 `text/event-stream` answer: each chunk flushed on its own, `gap` apart, then the
    /// stream ends properly or the connection is reset.
    Stream { chunks: Vec<Vec<u8>>, gap: Duration, end: End },
    /// Like `Stream`, but waits for `Notify` after the first chunk (a long answer a test holds open).
    Held { first: Vec<u8>, gate: Arc<Notify>, rest: Vec<Vec<u8>> },
    /// Say nothing for this long, then close.
    Hang(Duration),
    /// Reset the connection without answering.
    Reset,
    /// Wait, then do the other.
    Delay(Duration, Box<Fault>),
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum End {
    Finish,
    Reset,
}

impl Fault {
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Fault {
        Fault::Answer { status, headers: vec![("content-type".into(), "application/json".into())], body: body.into() }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Fault {
        if let Fault::Answer { headers, .. } = &mut self {
            headers.push((name.to_string(), value.to_string()));
        }
        self
    }

    pub fn sse(chunks: Vec<Vec<u8>>) -> Fault {
        Fault::Stream { chunks, gap: Duration::ZERO, end: End::Finish }
    }
}

/// One request the mock received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub body: Vec<u8>,
    pub arrived: Instant,
    /// When its answer ended (or the connection was cut); `None` while in flight.
    pub done: Option<Instant>,
}

impl Seen {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

type Handler = dyn Fn(&Seen, usize) -> Fault + Send + Sync;

pub struct FaultMock {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    max_in_flight: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultMock {
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// The most requests this mock had in flight at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }
}

impl Drop for FaultMock {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a mock on 127.0.0.1:0; `handler` gets each request and how many came before it.
pub async fn start(handler: impl Fn(&Seen, usize) -> Fault + Send + Sync + 'static) -> FaultMock {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let max_in_flight = Arc::new(AtomicUsize::new(0));
    let handler: Arc<Handler> = Arc::new(handler);
    let (s, i, m) = (seen.clone(), in_flight.clone(), max_in_flight.clone());
    let task = tokio::spawn(async move {
        loop {
            let Ok((conn, _)) = listener.accept().await else { continue };
            let _ = conn.set_nodelay(true);
            let (handler, s, i, m) = (handler.clone(), s.clone(), i.clone(), m.clone());
            tokio::spawn(serve_connection(conn, handler, s, i, m));
        }
    });
    FaultMock { addr, seen, max_in_flight, task }
}

/// An address nothing listens on (connections are refused).
pub async fn refused_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr
}

async fn serve_connection(
    mut conn: TcpStream,
    handler: Arc<Handler>,
    seen: Arc<Mutex<Vec<Seen>>>,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
) {
    let mut buf = Vec::new();
    loop {
        let Some((path, body)) = read_request(&mut conn, &mut buf).await else { return };
        let rec = Seen { path, body, arrived: Instant::now(), done: None };
        let (index, fault) = {
            let mut all = seen.lock().unwrap();
            let index = all.len();
            let fault = handler(&rec, index);
            all.push(rec);
            (index, fault)
        };
        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        max_in_flight.fetch_max(now, Ordering::SeqCst);
        let keep = act(&mut conn, fault).await;
        in_flight.fetch_sub(1, Ordering::SeqCst);
        seen.lock().unwrap()[index].done = Some(Instant::now());
        if !keep {
            return;
        }
    }
}

/// Does what `fault` says; true when the connection can take another request.
async fn act(conn: &mut TcpStream, fault: Fault) -> bool {
    match fault {
        Fault::Delay(d, then) => {
            tokio::time::sleep(d).await;
            Box::pin(act(conn, *then)).await
        }
        Fault::Answer { status, headers, body } => {
            let mut head = format!("HTTP/1.1 {status} {}\r\ncontent-length: {}\r\n", reason(status), body.len());
            for (n, v) in headers {
                head.push_str(&format!("{n}: {v}\r\n"));
            }
            head.push_str("\r\n");
            let mut out = head.into_bytes();
            out.extend_from_slice(&body);
            conn.write_all(&out).await.is_ok()
        }
        Fault::Stream { chunks, gap, end } => {
            if stream_head(conn).await.is_err() {
                return false;
            }
            for (n, c) in chunks.iter().enumerate() {
                if n > 0 && !gap.is_zero() {
                    tokio::time::sleep(gap).await;
                }
                if write_chunk(conn, c).await.is_err() {
                    return false;
                }
            }
            match end {
                End::Finish => conn.write_all(b"0\r\n\r\n").await.is_ok(),
                End::Reset => {
                    reset(conn);
                    false
                }
            }
        }
        Fault::Held { first, gate, rest } => {
            if stream_head(conn).await.is_err() || write_chunk(conn, &first).await.is_err() {
                return false;
            }
            gate.notified().await;
            for c in &rest {
                if write_chunk(conn, c).await.is_err() {
                    return false;
                }
            }
            conn.write_all(b"0\r\n\r\n").await.is_ok()
        }
        Fault::Hang(d) => {
            // Until the time is up or the client gives up and closes.
            let mut byte = [0u8; 1];
            tokio::select! {
                _ = tokio::time::sleep(d) => {}
                _ = conn.read(&mut byte) => {}
            }
            false
        }
        Fault::Reset => {
            reset(conn);
            false
        }
    }
}

async fn stream_head(conn: &mut TcpStream) -> std::io::Result<()> {
    conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n").await
}

async fn write_chunk(conn: &mut TcpStream, data: &[u8]) -> std::io::Result<()> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    conn.write_all(&out).await?;
    conn.flush().await
}

/// Makes the coming close a reset (RST instead of FIN): the peer reads "connection reset".
/// The caller drops the connection right after.
fn reset(conn: &mut TcpStream) {
    let _ = conn.set_zero_linger();
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Reads one request (head and a `content-length` body). `None` when the connection closed.
async fn read_request(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, Vec<u8>)> {
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = conn.read(&mut chunk).await.ok().filter(|&n| n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
    let len = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case("content-length").then(|| v.trim().parse::<usize>().ok()).flatten()
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = conn.read(&mut chunk).await.ok().filter(|&n| n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[head_end..head_end + len].to_vec();
    buf.drain(..head_end + len);
    Some((path, body))
}
