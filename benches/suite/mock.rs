//! The zero-delay provider every column talks to: Anthropic Messages and OpenAI Chat, whole
//! answers and SSE streams, with usage in both. A path under `/fail503` answers 503 before any
//! body byte, so failover can be measured and counted.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// The rest of a stream follows the first event after this gap, so "time to first token" cannot
/// be confused with "time to the end of the stream" (a relay that buffers shows up as ≥ 1 ms).
pub const STREAM_GAP: Duration = Duration::from_millis(1);

/// Path prefix of the target that is down.
pub const FAIL_PREFIX: &str = "/fail503";

const ANTHROPIC_JSON: &[u8] = br#"{"id":"msg_suite","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"Done."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":250,"output_tokens":3}}"#;
const OPENAI_JSON: &[u8] = br#"{"id":"chatcmpl-suite","object":"chat.completion","created":1764547200,"model":"gpt-5","choices":[{"index":0,"message":{"role":"assistant","content":"Done."},"finish_reason":"stop"}],"usage":{"prompt_tokens":250,"completion_tokens":3,"total_tokens":253}}"#;
const ANTHROPIC_503: &[u8] = br#"{"type":"error","error":{"type":"overloaded_error","message":"mock target is down"}}"#;
const OPENAI_503: &[u8] =
    br#"{"error":{"message":"mock target is down","type":"server_error","code":"service_unavailable"}}"#;

const ANTHROPIC_SSE: [&str; 2] = [
    "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_suite\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":250,\"output_tokens\":1}}}\n\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
     event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Done.\"}}\n\n\
     event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
     event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":3}}\n\n\
     event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
];
const OPENAI_SSE: [&str; 2] = [
    "data: {\"id\":\"chatcmpl-suite\",\"object\":\"chat.completion.chunk\",\"created\":1764547200,\"model\":\"gpt-5\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-suite\",\"object\":\"chat.completion.chunk\",\"created\":1764547200,\"model\":\"gpt-5\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Done.\"},\"finish_reason\":null}]}\n\n\
     data: {\"id\":\"chatcmpl-suite\",\"object\":\"chat.completion.chunk\",\"created\":1764547200,\"model\":\"gpt-5\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":250,\"completion_tokens\":3,\"total_tokens\":253}}\n\n\
     data: [DONE]\n\n",
];

type MockBody = BoxBody<Bytes, Infallible>;

/// What the mock has answered, so a run can prove which targets a peer really tried.
#[derive(Default)]
pub struct Counters {
    pub answered: AtomicU64,
    pub failed_503: AtomicU64,
}

pub struct Mock {
    pub addr: SocketAddr,
    pub counters: Arc<Counters>,
}

impl Mock {
    pub fn failed_503(&self) -> u64 {
        self.counters.failed_503.load(Ordering::Relaxed)
    }
}

/// Starts the mock on 127.0.0.1:0 on its own thread and single-threaded runtime (one core at
/// most, so it cannot starve the load client of the second one); it lives until the process exits.
pub fn start() -> Result<Mock, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind the mock: {e}"))?;
    listener.set_nonblocking(true).map_err(|e| format!("mock listener: {e}"))?;
    let addr = listener.local_addr().map_err(|e| format!("mock address: {e}"))?;
    let counters = Arc::new(Counters::default());
    let shared = counters.clone();
    let rt =
        tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| format!("mock runtime: {e}"))?;
    std::thread::Builder::new()
        .name("suite-mock".into())
        .spawn(move || {
            rt.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
                loop {
                    let Ok((stream, _)) = listener.accept().await else { continue };
                    let _ = stream.set_nodelay(true);
                    let counters = shared.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |req| handle(req, counters.clone()));
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        })
        .map_err(|e| format!("spawn the mock thread: {e}"))?;
    Ok(Mock { addr, counters })
}

#[derive(Clone, Copy, PartialEq)]
enum Dialect {
    Anthropic,
    OpenaiChat,
}

async fn handle(req: Request<Incoming>, counters: Arc<Counters>) -> Result<Response<MockBody>, Infallible> {
    let path = req.uri().path().to_string();
    let is_get = req.method() == http::Method::GET;
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(plain(StatusCode::BAD_REQUEST, "text/plain", Bytes::new())),
    };
    if is_get && path.ends_with("/models") {
        let list = br#"{"object":"list","data":[{"id":"gpt-5","object":"model"},{"id":"claude-sonnet-4-5","object":"model"}]}"#;
        return Ok(plain(StatusCode::OK, "application/json", Bytes::from_static(list)));
    }
    let dialect = if path.ends_with("/messages") {
        Dialect::Anthropic
    } else if path.ends_with("/chat/completions") {
        Dialect::OpenaiChat
    } else {
        return Ok(plain(StatusCode::NOT_FOUND, "text/plain", Bytes::from_static(b"mock: unknown path")));
    };
    if path.starts_with(FAIL_PREFIX) {
        counters.failed_503.fetch_add(1, Ordering::Relaxed);
        let text = if dialect == Dialect::Anthropic { ANTHROPIC_503 } else { OPENAI_503 };
        return Ok(plain(StatusCode::SERVICE_UNAVAILABLE, "application/json", Bytes::from_static(text)));
    }
    counters.answered.fetch_add(1, Ordering::Relaxed);
    if !wants_stream(&body) {
        let text = if dialect == Dialect::Anthropic { ANTHROPIC_JSON } else { OPENAI_JSON };
        return Ok(plain(StatusCode::OK, "application/json", Bytes::from_static(text)));
    }
    let events = if dialect == Dialect::Anthropic { ANTHROPIC_SSE } else { OPENAI_SSE };
    let frames = futures_util::stream::unfold(0usize, move |i| async move {
        let event = events.get(i)?;
        if i > 0 {
            tokio::time::sleep(STREAM_GAP).await;
        }
        Some((Ok::<_, Infallible>(Frame::data(Bytes::from_static(event.as_bytes()))), i + 1))
    });
    let mut r = Response::new(StreamBody::new(frames).boxed());
    r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/event-stream"));
    r.headers_mut().insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-cache"));
    Ok(r)
}

/// `"stream":true` as our client writes it, or `"stream": true` as Python's json.dumps does.
fn wants_stream(body: &[u8]) -> bool {
    memchr::memmem::find(body, b"\"stream\":true").is_some()
        || memchr::memmem::find(body, b"\"stream\": true").is_some()
}

fn plain(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<MockBody> {
    let mut r = Response::new(Full::new(body).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    r
}
