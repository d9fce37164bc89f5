//! In-process mock providers: record every request, answer with scripted replies.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::sync::{mpsc, Notify};

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// One piece of a streamed reply.
pub enum Chunk {
    Bytes(Vec<u8>),
    Sleep(Duration),
    /// Wait until the test calls `notify_one` on this.
    Gate(Arc<Notify>),
}

pub enum Reply {
    Json {
        status: u16,
        body: Vec<u8>,
        headers: Vec<(&'static str, String)>,
    },
    Stream {
        status: u16,
        content_type: &'static str,
        chunks: Vec<Chunk>,
    },
    /// Accept the request and never answer.
    Hang,
}

impl Reply {
    pub fn ok_json(body: impl Into<Vec<u8>>) -> Reply {
        Reply::Json { status: 200, body: body.into(), headers: vec![] }
    }
    pub fn sse(chunks: Vec<Chunk>) -> Reply {
        Reply::Stream { status: 200, content_type: "text/event-stream", chunks }
    }
}

type Handler = dyn Fn(&Recorded) -> Reply + Send + Sync;

pub struct Mock {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<Recorded>>>,
    /// Streams whose reader went away before the stream ended.
    pub disconnects: Arc<AtomicUsize>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Mock {
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
    pub fn last(&self) -> Recorded {
        self.requests.lock().unwrap().last().cloned().expect("the mock received no request")
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub async fn start(handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Mock {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let disconnects = Arc::new(AtomicUsize::new(0));
    let handler: Arc<Handler> = Arc::new(handler);
    let (tx, mut rx) = tokio::sync::oneshot::channel();
    let (reqs, discs) = (requests.clone(), disconnects.clone());
    tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                _ = &mut rx => return,
                a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
            };
            let _ = stream.set_nodelay(true);
            let (handler, reqs, discs) = (handler.clone(), reqs.clone(), discs.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (handler, reqs, discs) = (handler.clone(), reqs.clone(), discs.clone());
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.map(|c| c.to_bytes().to_vec()).unwrap_or_default();
                        let rec = Recorded {
                            method: parts.method.to_string(),
                            path: parts.uri.path().to_string(),
                            query: parts.uri.query().map(str::to_string),
                            headers: parts
                                .headers
                                .iter()
                                .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                                .collect(),
                            body,
                        };
                        let reply = handler(&rec);
                        reqs.lock().unwrap().push(rec);
                        Ok::<_, Infallible>(respond(reply, discs).await)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    Mock { addr, requests, disconnects, shutdown: Some(tx) }
}

type MockBody = UnsyncBoxBody<Bytes, Infallible>;

/// Adds one to the counter when dropped.
struct CountOnDrop(Arc<AtomicUsize>);

impl Drop for CountOnDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

async fn respond(reply: Reply, disconnects: Arc<AtomicUsize>) -> Response<MockBody> {
    match reply {
        Reply::Json { status, body, headers } => {
            let mut b = Response::builder().status(status).header("content-type", "application/json");
            for (n, v) in headers {
                b = b.header(n, v);
            }
            b.body(Full::new(Bytes::from(body)).boxed_unsync()).unwrap()
        }
        Reply::Hang => {
            // hyper drops this future when the proxy closes the connection: that counts as a disconnect.
            let _noticed = CountOnDrop(disconnects);
            tokio::time::sleep(Duration::from_secs(3600)).await;
            std::mem::forget(_noticed);
            Response::new(Full::new(Bytes::new()).boxed_unsync())
        }
        Reply::Stream { status, content_type, chunks } => {
            let (tx, rx) = mpsc::channel::<Bytes>(4);
            tokio::spawn(async move {
                for c in chunks {
                    match c {
                        Chunk::Bytes(b) => {
                            if tx.send(Bytes::from(b)).await.is_err() {
                                disconnects.fetch_add(1, Ordering::SeqCst);
                                return;
                            }
                        }
                        Chunk::Sleep(d) => {
                            tokio::select! {
                                _ = tokio::time::sleep(d) => {}
                                _ = tx.closed() => { disconnects.fetch_add(1, Ordering::SeqCst); return; }
                            }
                        }
                        Chunk::Gate(n) => {
                            tokio::select! {
                                _ = n.notified() => {}
                                _ = tx.closed() => { disconnects.fetch_add(1, Ordering::SeqCst); return; }
                            }
                        }
                    }
                }
            });
            let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
            });
            Response::builder()
                .status(status)
                .header("content-type", content_type)
                .body(StreamBody::new(stream).boxed_unsync())
                .unwrap()
        }
    }
}

/// A short Anthropic Messages SSE stream saying `text`.
pub fn anthropic_stream(text: &str) -> Vec<Vec<u8>> {
    let t = serde_json::to_string(text).unwrap();
    [
        r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_mock","type":"message","role":"assistant","model":"claude-test","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":1}}}

"#
        .to_string(),
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n".to_string(),
        format!("event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":{t}}}}}\n\n"),
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n".to_string(),
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":5}}\n\n".to_string(),
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n".to_string(),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect()
}

/// A short OpenAI Chat SSE stream saying `text`.
pub fn chat_stream(text: &str) -> Vec<Vec<u8>> {
    let t = serde_json::to_string(text).unwrap();
    let head = r#"{"id":"chatcmpl-mock","object":"chat.completion.chunk","created":1,"model":"gpt-test","#;
    vec![
        format!("data: {head}\"choices\":[{{\"index\":0,\"delta\":{{\"role\":\"assistant\",\"content\":\"\"}},\"finish_reason\":null}}]}}\n\n"),
        format!("data: {head}\"choices\":[{{\"index\":0,\"delta\":{{\"content\":{t}}},\"finish_reason\":null}}]}}\n\n"),
        format!("data: {head}\"choices\":[{{\"index\":0,\"delta\":{{}},\"finish_reason\":\"stop\"}}]}}\n\n"),
        "data: [DONE]\n\n".to_string(),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect()
}

/// A short OpenAI Responses SSE stream saying `text`, with `event:` lines as the API sends them.
pub fn responses_stream(text: &str) -> Vec<Vec<u8>> {
    let t = serde_json::to_string(text).unwrap();
    let response = |status: &str, output: &str, usage: &str| {
        format!(
            r#"{{"id":"resp_mock","object":"response","created_at":1,"status":"{status}","model":"gpt-test","output":[{output}],"usage":{usage}}}"#
        )
    };
    let item = format!(
        r#"{{"type":"message","id":"msg_mock","status":"completed","role":"assistant","content":[{{"type":"output_text","text":{t},"annotations":[]}}]}}"#
    );
    let events = [
        ("response.created", format!(r#""response":{}"#, response("in_progress", "", "null"))),
        (
            "response.output_item.added",
            r#""output_index":0,"item":{"type":"message","id":"msg_mock","status":"in_progress","role":"assistant","content":[]}"#.to_string(),
        ),
        (
            "response.output_text.delta",
            format!(r#""item_id":"msg_mock","output_index":0,"content_index":0,"delta":{t}"#),
        ),
        ("response.output_item.done", format!(r#""output_index":0,"item":{item}"#)),
        ("response.completed", format!(r#""response":{}"#, response("completed", &item, r#"{"input_tokens":12,"output_tokens":5,"total_tokens":17}"#))),
    ];
    events
        .iter()
        .enumerate()
        .map(|(i, (name, fields))| {
            format!("event: {name}\ndata: {{\"type\":\"{name}\",\"sequence_number\":{i},{fields}}}\n\n").into_bytes()
        })
        .collect()
}

pub fn anthropic_message(text: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": "msg_mock", "type": "message", "role": "assistant", "model": "claude-test",
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 12, "output_tokens": 5}
    }))
    .unwrap()
}

pub fn chat_completion(text: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": "chatcmpl-mock", "object": "chat.completion", "created": 1, "model": "gpt-test",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}
    }))
    .unwrap()
}
