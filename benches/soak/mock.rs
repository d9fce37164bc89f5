//! The soak's providers on loopback: each answers all three dialects (`/v1/messages`,
//! `/v1/chat/completions`, `/v1/responses`), whole or streamed in a few events a few ms apart.
//! A flaky one fails a share of requests the ways providers do: 503, 429 with `Retry-After`,
//! or a reset before the first byte.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};

use super::support::MockBody as Body;

/// Time between streamed events: long enough that a client can go away mid-stream.
const EVENT_GAP: Duration = Duration::from_millis(3);

/// Starts a provider on its own thread; `fail_every`: every Nth request fails (0: never).
pub fn start(fail_every: u64) -> SocketAddr {
    let count = Arc::new(AtomicU64::new(0));
    super::support::spawn_mock("soak-provider", move |req| handle(req, fail_every, count.fetch_add(1, Relaxed)))
}

async fn handle(req: Request<Incoming>, fail_every: u64, n: u64) -> Result<Response<Body>, std::io::Error> {
    let path = req.uri().path().to_string();
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    if fail_every > 0 && n.is_multiple_of(fail_every) {
        match (n / fail_every) % 3 {
            0 => {
                return Ok(json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    r#"{"error":{"message":"overloaded, try later","type":"server_error"}}"#.into(),
                ))
            }
            1 => {
                let mut r = json(
                    StatusCode::TOO_MANY_REQUESTS,
                    r#"{"error":{"message":"Rate limit reached","type":"requests"}}"#.into(),
                );
                r.headers_mut().insert("retry-after", http::HeaderValue::from_static("1"));
                return Ok(r);
            }
            // hyper resets the connection when the service fails.
            _ => return Err(std::io::Error::other("reset before the first byte")),
        }
    }
    let stream = memchr::memmem::find(&body, b"\"stream\":true").is_some();
    let (whole, events) = match path.as_str() {
        "/v1/messages" => (ANTHROPIC, &ANTHROPIC_EVENTS[..]),
        "/v1/chat/completions" => (CHAT, &CHAT_EVENTS[..]),
        "/v1/responses" => (RESPONSES, &RESPONSES_EVENTS[..]),
        _ => return Ok(json(StatusCode::NOT_FOUND, r#"{"error":{"message":"no such route"}}"#.into())),
    };
    if !stream {
        return Ok(json(StatusCode::OK, Bytes::from_static(whole.as_bytes())));
    }
    let frames = futures_util::stream::unfold(0usize, move |i| async move {
        let event = events.get(i)?;
        if i > 0 {
            tokio::time::sleep(EVENT_GAP).await;
        }
        Some((Ok::<_, Infallible>(Frame::data(Bytes::from_static(event.as_bytes()))), i + 1))
    });
    let mut r = Response::new(StreamBody::new(frames).boxed());
    r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/event-stream"));
    Ok(r)
}

fn json(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut r = Response::new(Full::new(body).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    r
}

const ANTHROPIC: &str = r#"{"id":"msg_soak","type":"message","role":"assistant","model":"claude-soak","content":[{"type":"text","text":"Done."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":900,"output_tokens":4,"cache_read_input_tokens":600}}"#;
const CHAT: &str = r#"{"id":"chatcmpl-soak","object":"chat.completion","created":0,"model":"gpt-soak","choices":[{"index":0,"message":{"role":"assistant","content":"Done."},"finish_reason":"stop"}],"usage":{"prompt_tokens":900,"completion_tokens":4,"total_tokens":904}}"#;
const RESPONSES: &str = r#"{"id":"resp_soak","object":"response","created_at":0,"status":"completed","model":"codex-soak","output":[{"type":"message","id":"msg_1","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Done.","annotations":[]}]}],"usage":{"input_tokens":900,"output_tokens":4,"total_tokens":904}}"#;

const ANTHROPIC_EVENTS: [&str; 6] = [
    "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_soak\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-soak\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":900,\"output_tokens\":1}}}\n\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Done.\"}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":4}}\n\n",
    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
];
const CHAT_EVENTS: [&str; 4] = [
    "data: {\"id\":\"chatcmpl-soak\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-soak\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Done.\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-soak\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":900,\"completion_tokens\":4,\"total_tokens\":904}}\n\n",
    "data: [DONE]\n\n",
];
const RESPONSES_EVENTS: [&str; 4] = [
    "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_soak\",\"object\":\"response\",\"status\":\"in_progress\",\"model\":\"codex-soak\",\"output\":[]}}\n\n",
    "event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\",\"sequence_number\":1,\"output_index\":0,\"item\":{\"type\":\"message\",\"id\":\"msg_1\",\"status\":\"in_progress\",\"role\":\"assistant\",\"content\":[]}}\n\n",
    "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":2,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"Done.\"}\n\n",
    "event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":3,\"response\":{\"id\":\"resp_soak\",\"object\":\"response\",\"status\":\"completed\",\"model\":\"codex-soak\",\"output\":[{\"type\":\"message\",\"id\":\"msg_1\",\"status\":\"completed\",\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\",\"text\":\"Done.\",\"annotations\":[]}]}],\"usage\":{\"input_tokens\":900,\"output_tokens\":4,\"total_tokens\":904}}}\n\n",
];
