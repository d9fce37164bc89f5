//! A recording pass-through between the agent and the proxy: keeps every request exactly as the
//! agent sent it, numbers it (a header the proxy forwards, so the mock's copy can be matched), and
//! keeps the proxy's response status and headers (`x-tokenfold-saved-tokens`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::TryStreamExt;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use super::model::SEQ_HEADER;

#[derive(Debug, Clone)]
pub struct Exchange {
    pub seq: u64,
    pub method: String,
    pub path: String,
    pub request_headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub status: u16,
    pub response_headers: Vec<(String, String)>,
    /// The proxy's answer when it was an error status (read whole; errors are small).
    pub error_body: Option<String>,
    /// The proxy could not be reached.
    pub error: Option<String>,
}

impl Exchange {
    pub fn response_header(&self, name: &str) -> Option<&str> {
        self.response_headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

pub struct Tap {
    pub addr: SocketAddr,
    exchanges: Arc<Mutex<Vec<Exchange>>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Tap {
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn exchanges(&self) -> Vec<Exchange> {
        let mut v = self.exchanges.lock().map(|e| e.clone()).unwrap_or_default();
        v.sort_by_key(|e| e.seq);
        v
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

type TapBody = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

const HOP_BY_HOP: [&str; 6] = ["host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade"];

pub async fn start(upstream: String) -> std::io::Result<Tap> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let exchanges = Arc::new(Mutex::new(Vec::new()));
    let client = reqwest::Client::builder().no_proxy().build().map_err(std::io::Error::other)?;
    let seq = Arc::new(AtomicU64::new(1));
    let (tx, mut rx) = tokio::sync::oneshot::channel();
    let log = exchanges.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                _ = &mut rx => return,
                a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
            };
            let _ = stream.set_nodelay(true);
            let (client, log, seq, upstream) = (client.clone(), log.clone(), seq.clone(), upstream.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (client, log, upstream) = (client.clone(), log.clone(), upstream.clone());
                    let n = seq.fetch_add(1, Ordering::SeqCst);
                    async move { Ok::<_, Infallible>(relay(client, log, &upstream, n, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    Ok(Tap { addr, exchanges, shutdown: Some(tx) })
}

async fn relay(
    client: reqwest::Client,
    log: Arc<Mutex<Vec<Exchange>>>,
    upstream: &str,
    seq: u64,
    req: Request<hyper::body::Incoming>,
) -> Response<TapBody> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    let path = parts.uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".into());
    let request_headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let mut exchange = Exchange {
        seq,
        method: parts.method.to_string(),
        path: path.clone(),
        request_headers,
        body: body.to_vec(),
        status: 0,
        response_headers: vec![],
        error_body: None,
        error: None,
    };
    let mut out = client.request(parts.method.clone(), format!("{upstream}{path}")).body(body);
    for (name, value) in &parts.headers {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            out = out.header(name, value);
        }
    }
    let sent = out.header(SEQ_HEADER, seq.to_string()).send().await;
    let resp = match sent {
        Ok(r) => r,
        Err(e) => {
            exchange.error = Some(e.to_string());
            if let Ok(mut l) = log.lock() {
                l.push(exchange);
            }
            let mut r =
                Response::new(Full::new(Bytes::from_static(b"tap: proxy unreachable")).map_err(|n| match n {}).boxed());
            *r.status_mut() = hyper::StatusCode::BAD_GATEWAY;
            return r;
        }
    };
    exchange.status = resp.status().as_u16();
    exchange.response_headers = resp
        .headers()
        .iter()
        .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let mut builder = Response::builder().status(resp.status());
    for (name, value) in resp.headers() {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            builder = builder.header(name, value);
        }
    }
    if resp.status().as_u16() >= 400 {
        let text = resp.bytes().await.unwrap_or_default();
        exchange.error_body = Some(String::from_utf8_lossy(&text).into_owned());
        if let Ok(mut l) = log.lock() {
            l.push(exchange);
        }
        let body = BodyExt::boxed(Full::new(text).map_err(|n| match n {}));
        return builder
            .body(body)
            .unwrap_or_else(|_| Response::new(BodyExt::boxed(Full::new(Bytes::new()).map_err(|n| match n {}))));
    }
    if let Ok(mut l) = log.lock() {
        l.push(exchange);
    }
    let stream =
        resp.bytes_stream().map_ok(Frame::data).map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>);
    builder
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .unwrap_or_else(|_| Response::new(BodyExt::boxed(Full::new(Bytes::new()).map_err(|n| match n {}))))
}
