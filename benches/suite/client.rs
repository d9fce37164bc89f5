//! The load client: keep-alive HTTP/1.1 connections on hyper, one per concurrent caller, all on
//! the caller's single-threaded runtime. Also one-off requests for configuring a peer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;

use crate::bodies::Dialect;

/// One request as a target expects it: its path, its credentials, its model name in the body.
#[derive(Clone)]
pub struct Call {
    pub path: &'static str,
    pub body: Bytes,
    pub headers: Arc<HeaderMap>,
}

/// The headers a client of `dialect` sends with `key`.
pub fn client_headers(dialect: Dialect, key: &str) -> Result<Arc<HeaderMap>, String> {
    let mut h = HeaderMap::new();
    let value = |s: &str| HeaderValue::from_str(s).map_err(|e| format!("header value {s:?}: {e}"));
    h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(http::header::USER_AGENT, HeaderValue::from_static("tokenfold-suite/1"));
    match dialect {
        Dialect::Anthropic => {
            h.insert(HeaderName::from_static("x-api-key"), value(key)?);
            h.insert(HeaderName::from_static("anthropic-version"), HeaderValue::from_static("2023-06-01"));
        }
        Dialect::OpenaiChat => {
            h.insert(http::header::AUTHORIZATION, value(&format!("Bearer {key}"))?);
        }
    }
    Ok(Arc::new(h))
}

pub struct Reply {
    /// Until the first body bytes (the first SSE event of a stream).
    pub first_byte: Duration,
    /// Until the end of the body.
    pub total: Duration,
    pub body: Bytes,
}

pub struct Conn {
    addr: SocketAddr,
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> Result<Conn, String> {
        let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake with {addr}: {e}"))?;
        tokio::spawn(conn);
        Ok(Conn { addr, sender })
    }

    /// Sends one request and reads the whole answer; anything but a non-empty 200 is an error
    /// that quotes the start of the answer.
    pub async fn send(&mut self, call: &Call) -> Result<Reply, String> {
        if self.sender.ready().await.is_err() {
            // The peer closed the keep-alive connection (some do after N requests): reconnect once.
            *self = Conn::open(self.addr).await?;
        }
        let req = request(call)?;
        let mut start = Instant::now();
        let resp = match self.sender.send_request(req).await {
            Ok(r) => r,
            // A keep-alive connection the peer closed while idle (Node closes them after 5 s):
            // send again on a fresh one, timing only that exchange.
            Err(e) if e.is_closed() || e.is_incomplete_message() || e.is_canceled() => {
                *self = Conn::open(self.addr).await?;
                start = Instant::now();
                self.sender.send_request(request(call)?).await.map_err(|e| format!("{}: {e}", call.path))?
            }
            Err(e) => return Err(format!("{}: {e}", call.path)),
        };
        let status = resp.status();
        let mut body = resp.into_body();
        let mut first_byte = None;
        let mut received = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("reading the answer to {}: {e}", call.path))?;
            if let Some(data) = frame.data_ref() {
                if !data.is_empty() {
                    first_byte.get_or_insert_with(|| start.elapsed());
                }
                received.extend_from_slice(data);
            }
        }
        let total = start.elapsed();
        if status != StatusCode::OK || received.is_empty() {
            let text = String::from_utf8_lossy(&received[..received.len().min(240)]).into_owned();
            return Err(format!("{} answered {status}: {text}", call.path));
        }
        Ok(Reply { first_byte: first_byte.unwrap_or(total), total, body: Bytes::from(received) })
    }
}

fn request(call: &Call) -> Result<Request<Full<Bytes>>, String> {
    let mut req = Request::builder().method(Method::POST).uri(call.path).header(http::header::HOST, "127.0.0.1");
    if let Some(h) = req.headers_mut() {
        h.extend(call.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    req.body(Full::new(call.body.clone())).map_err(|e| format!("build request: {e}"))
}

/// What `concurrency` connections sending back to back for `duration` achieved.
pub struct Blast {
    pub ok: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub first_error: Option<String>,
}

impl Blast {
    pub fn rps(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

pub async fn blast(addr: SocketAddr, call: &Call, concurrency: usize, duration: Duration) -> Result<Blast, String> {
    let mut conns = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        conns.push(Conn::open(addr).await?);
    }
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut conn| {
            let call = call.clone();
            tokio::spawn(async move {
                let (mut ok, mut errors, mut first_error) = (0u64, 0u64, None);
                while Instant::now() < deadline {
                    match conn.send(&call).await {
                        Ok(_) => ok += 1,
                        Err(e) => {
                            errors += 1;
                            first_error.get_or_insert(e);
                            // A failed exchange may leave the connection unusable; start afresh.
                            match Conn::open(conn.addr).await {
                                Ok(c) => conn = c,
                                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                            }
                        }
                    }
                }
                (ok, errors, first_error)
            })
        })
        .collect();
    let mut out = Blast { ok: 0, errors: 0, elapsed: Duration::ZERO, first_error: None };
    for task in tasks {
        let (ok, errors, first_error) = task.await.map_err(|e| format!("load task: {e}"))?;
        out.ok += ok;
        out.errors += errors;
        if out.first_error.is_none() {
            out.first_error = first_error;
        }
    }
    out.elapsed = start.elapsed();
    Ok(out)
}

/// One request on a fresh connection, any status (for configuring a peer through its API).
pub async fn once(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, String)],
    body: Option<String>,
) -> Result<(StatusCode, HeaderMap, Bytes), String> {
    let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    let mut req =
        Request::builder().method(method).uri(path).header(http::header::HOST, format!("127.0.0.1:{}", addr.port()));
    for (k, v) in headers {
        req = req.header(*k, v.as_str());
    }
    if body.is_some() {
        req = req.header(http::header::CONTENT_TYPE, "application/json");
    }
    let req = req.body(Full::new(Bytes::from(body.unwrap_or_default()))).map_err(|e| format!("build request: {e}"))?;
    let resp = sender.send_request(req).await.map_err(|e| format!("{path}: {e}"))?;
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.map_err(|e| format!("reading {path}: {e}"))?.to_bytes();
    Ok((parts.status, parts.headers, bytes))
}
