//! Relays an upstream response body to the client chunk by chunk as it arrives, with an idle
//! timeout, and notices when the client goes away (dropping the body cancels the upstream call).

use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;

use super::{AppState, Body};
use crate::dialect::errors::{error_event, ErrorClass};
use crate::dialect::Dialect;

pub struct RelayContext {
    pub state: Arc<AppState>,
    pub dialect: Dialect,
    pub provider: String,
    pub is_sse: bool,
    pub started: Instant,
}

/// How a relayed response ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    UpstreamFailed,
    Cancelled,
}

/// Records the outcome once, when the body is finished or dropped.
struct Finish {
    ctx: RelayContext,
    outcome: Option<Outcome>,
    bytes: u64,
}

impl Drop for Finish {
    fn drop(&mut self) {
        let outcome = self.outcome.unwrap_or(Outcome::Cancelled);
        let m = &self.ctx.state.metrics;
        m.bytes_out.fetch_add(self.bytes, Relaxed);
        if outcome == Outcome::Cancelled {
            m.cancelled.fetch_add(1, Relaxed);
            tracing::info!(
                provider = %self.ctx.provider,
                after_ms = self.ctx.started.elapsed().as_millis() as u64,
                "client went away: upstream request cancelled"
            );
        }
    }
}

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

struct State {
    upstream: ByteStream,
    finish: Finish,
}

pub fn relay_body(resp: reqwest::Response, ctx: RelayContext) -> Body {
    let idle = ctx.state.upstream.timeouts().idle;
    let state = State { upstream: Box::pin(resp.bytes_stream()), finish: Finish { ctx, outcome: None, bytes: 0 } };
    let stream = futures_util::stream::unfold(Some(state), move |state| async move {
        let mut st = state?;
        match tokio::time::timeout(idle, st.upstream.next()).await {
            Ok(Some(Ok(chunk))) => {
                st.finish.bytes += chunk.len() as u64;
                Some((Ok(Frame::data(chunk)), Some(st)))
            }
            Ok(None) => {
                st.finish.outcome = Some(Outcome::Completed);
                None
            }
            Ok(Some(Err(e))) => {
                let msg = format!("upstream `{}` broke off the response: {e}", st.finish.ctx.provider);
                end_with_error(st, ErrorClass::Api, msg, "upstream_broken")
            }
            Err(_) => {
                let msg = format!(
                    "upstream `{}` sent nothing for {:.1}s (timeouts.idle_ms)",
                    st.finish.ctx.provider,
                    idle.as_secs_f64()
                );
                end_with_error(st, ErrorClass::Timeout, msg, "upstream_idle_timeout")
            }
        }
    });
    BodyExt::boxed_unsync(StreamBody::new(stream))
}

/// Ends the client's response after an upstream failure: an SSE stream gets a final error event
/// in the client's dialect; any other body is cut (the client sees a truncated response).
fn end_with_error(
    mut st: State,
    class: ErrorClass,
    msg: String,
    kind: &'static str,
) -> Option<(Result<Frame<Bytes>, std::io::Error>, Option<State>)> {
    tracing::warn!("{msg}");
    st.finish.ctx.state.metrics.error(kind);
    st.finish.outcome = Some(Outcome::UpstreamFailed);
    if st.finish.ctx.is_sse {
        let event = Bytes::from(error_event(st.finish.ctx.dialect, class, &msg));
        st.finish.bytes += event.len() as u64;
        // `None` state: the stream ends after this event.
        drop(st);
        Some((Ok(Frame::data(event)), None))
    } else {
        Some((Err(std::io::Error::other(msg)), None))
    }
}
