//! Reading enough of a provider's answer to judge it before anything reaches the client: a
//! stream's first complete event, or a whole (non-streamed) body. Whatever was read is returned
//! whole, to be relayed first.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;

use super::relay::ByteStream;
use crate::dialect::sse::{find_event_end, SseSplitter};
use crate::pool::UpstreamError;

/// Error bodies and non-streamed answers are read whole before deciding; beyond this they are cut.
pub const WHOLE_BODY_LIMIT: usize = 32 * 1024 * 1024;
/// A stream's first event is held back to judge it only up to this size (a Responses
/// `response.created` echoes the request's instructions and tools); a longer first event is
/// committed and streamed on as it arrives.
const PEEK_LIMIT: usize = 256 * 1024;

/// Reads a stream until its first complete SSE event (or its end, or `PEEK_LIMIT` bytes).
pub async fn first_event(body: &mut ByteStream, idle: Duration, provider: &str) -> Result<Bytes, UpstreamError> {
    let (stalled, reset) = cut_short(provider);
    // Usually the first chunk holds the whole first event: then it is passed on as it is.
    let first = match tokio::time::timeout(idle, body.next()).await {
        Err(_) => return Err(stalled(no_event(idle))),
        Ok(None) => return Ok(Bytes::new()),
        Ok(Some(Err(e))) => return Err(reset(format!("connection reset before the first byte ({e})"))),
        Ok(Some(Ok(chunk))) => chunk,
    };
    if find_event_end(&first).is_some() || first.len() >= PEEK_LIMIT {
        return Ok(first);
    }
    // The splitter finds the event's end however the chunks cut it; it never drops bytes here
    // (no limit of its own: this loop stops at `PEEK_LIMIT`).
    let mut events = SseSplitter::with_limit(usize::MAX);
    events.push(&first);
    loop {
        match tokio::time::timeout(idle, body.next()).await {
            Err(_) => return Err(stalled(no_event(idle))),
            Ok(None) => return Ok(Bytes::copy_from_slice(events.remainder())),
            // Nothing has reached the client yet: a break before a whole first event is one to
            // fall back from, however many bytes came.
            Ok(Some(Err(e))) => {
                let n = events.remainder().len();
                return Err(reset(format!("connection reset after {n} bytes, before the first complete event ({e})")));
            }
            Ok(Some(Ok(chunk))) => events.push(&chunk),
        }
        if let Some(event) = events.next_event() {
            return Ok(Bytes::from([event.as_ref(), events.remainder()].concat()));
        }
        if events.remainder().len() >= PEEK_LIMIT {
            return Ok(Bytes::copy_from_slice(events.remainder()));
        }
    }
}

fn no_event(idle: Duration) -> String {
    format!("no event within {:.1}s (timeouts.idle_ms)", idle.as_secs_f64())
}

/// Reads a whole (non-streamed) body, up to `WHOLE_BODY_LIMIT`. A body in one chunk (the usual
/// case for JSON answers) is not copied.
pub async fn whole(body: &mut ByteStream, idle: Duration, provider: &str) -> Result<Bytes, UpstreamError> {
    let (stalled, reset) = cut_short(provider);
    let mut first: Option<Bytes> = None;
    let mut all: Option<Vec<u8>> = None;
    loop {
        match tokio::time::timeout(idle, body.next()).await {
            Err(_) => return Err(stalled(format!("body stalled for {:.1}s (timeouts.idle_ms)", idle.as_secs_f64()))),
            Ok(None) => return Ok(joined(first, all)),
            Ok(Some(Err(e))) => return Err(reset(format!("connection broke while reading the answer ({e})"))),
            Ok(Some(Ok(chunk))) => {
                let Some(prefix) = &first else {
                    first = Some(chunk);
                    continue;
                };
                let buf = all.get_or_insert_with(|| prefix.to_vec());
                buf.extend_from_slice(&chunk);
                if buf.len() >= WHOLE_BODY_LIMIT {
                    return Ok(joined(first, all));
                }
            }
        }
    }
}

/// The two ways an answer can be cut short while it is read to judge it, for `provider`.
fn cut_short(provider: &str) -> (impl Fn(String) -> UpstreamError + '_, impl Fn(String) -> UpstreamError + '_) {
    let stalled = move |detail| UpstreamError::Stalled { provider: provider.to_string(), detail };
    let reset = move |detail| UpstreamError::Reset { provider: provider.to_string(), detail };
    (stalled, reset)
}

fn joined(first: Option<Bytes>, all: Option<Vec<u8>>) -> Bytes {
    match all {
        Some(all) => Bytes::from(all),
        None => first.unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(chunks: &[&[u8]]) -> ByteStream {
        let items: Vec<reqwest::Result<Bytes>> = chunks.iter().map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        Box::pin(futures_util::stream::iter(items))
    }

    async fn peek(chunks: &[&[u8]]) -> Bytes {
        first_event(&mut stream(chunks), Duration::from_secs(1), "p").await.unwrap()
    }

    #[tokio::test]
    async fn the_peek_stops_after_the_first_event_wherever_the_chunks_break() {
        assert_eq!(peek(&[b"data: a\n\ndata: b\n\n"]).await.as_ref(), b"data: a\n\ndata: b\n\n");
        assert_eq!(peek(&[b"data: a\n", b"\ndata: b", b"\n\n"]).await.as_ref(), b"data: a\n\ndata: b");
        assert_eq!(peek(&[b"data: a\r\n\r", b"\n", b"more"]).await.as_ref(), b"data: a\r\n\r\n");
        assert_eq!(peek(&[b"da", b"ta", b": a", b"\n\n", b"x"]).await.as_ref(), b"data: a\n\n");
        // A stream that ends inside its first event gives what it sent.
        assert_eq!(peek(&[b"data: a", b"b"]).await.as_ref(), b"data: ab");
        assert_eq!(peek(&[]).await.as_ref(), b"");
    }

    #[tokio::test]
    async fn the_peek_is_bounded() {
        let piece = vec![b'x'; 100 * 1024];
        let got = peek(&[b"data: ", &piece, &piece, &piece, &piece, b"\n\n"]).await;
        assert!(got.len() >= PEEK_LIMIT && got.len() < PEEK_LIMIT + piece.len() + 6, "{}", got.len());
        assert_eq!(peek(&[&vec![b'x'; PEEK_LIMIT], b"more"]).await.len(), PEEK_LIMIT);
    }

    #[tokio::test]
    async fn a_break_or_a_stall_before_the_first_event_is_typed() {
        let broken: ByteStream = Box::pin(futures_util::stream::iter(vec![Ok(Bytes::from_static(b"data: a"))]).chain(
            futures_util::stream::once(async {
                let e = reqwest::Client::new().get("http://[::1]:1/").send().await.err();
                Err(e.expect("nothing listens on port 1"))
            }),
        ));
        let mut broken = broken;
        let e = first_event(&mut broken, Duration::from_secs(5), "p").await.unwrap_err();
        assert!(
            matches!(&e, UpstreamError::Reset { detail, .. } if detail.starts_with("connection reset after 7 bytes")),
            "{e}"
        );
        let mut silent: ByteStream = Box::pin(futures_util::stream::pending());
        let e = first_event(&mut silent, Duration::from_millis(10), "p").await.unwrap_err();
        assert!(matches!(e, UpstreamError::Stalled { .. }), "{e}");
    }

    #[tokio::test]
    async fn whole_bodies_are_joined() {
        let idle = Duration::from_secs(1);
        assert_eq!(whole(&mut stream(&[b"{\"a\":", b"1}"]), idle, "p").await.unwrap().as_ref(), b"{\"a\":1}");
        assert_eq!(whole(&mut stream(&[b"{}"]), idle, "p").await.unwrap().as_ref(), b"{}");
        assert_eq!(whole(&mut stream(&[]), idle, "p").await.unwrap().as_ref(), b"");
    }
}
