//! Relays an upstream response body to the client chunk by chunk as it arrives, with an idle
//! timeout, and notices when the client goes away (dropping the body cancels the upstream call).

use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;

use super::pending::Pending;
use super::{AppState, Body};
use crate::dialect::errors::{error_body, error_event, ErrorClass};
use crate::dialect::translate::{self, StreamTranslator};
use crate::dialect::usage::UsageSniffer;
use crate::dialect::{headers, Dialect, RequestEnvelope};
use crate::ledger::RequestOutcome as Outcome;
use crate::pool::{Attempt, Cause, Failure, Outcome as PoolOutcome, StreamWatch};

/// An answer an attempt committed to: what was read of it to judge it, and the rest to come.
pub struct Committed {
    pub status: StatusCode,
    /// The provider's response headers.
    pub headers: HeaderMap,
    /// Tokens folding and clearing saved (a response header says it).
    pub saved_tokens: u64,
    /// What was read to judge the answer: the whole body, or a stream's first event.
    pub peeked: Bytes,
    pub rest: ByteStream,
    /// `peeked` is the whole body: it goes out in one piece, with its length.
    pub complete: bool,
    pub is_sse: bool,
    pub transform: Transform,
    /// The dialect of the bytes coming from upstream.
    pub upstream_dialect: Dialect,
    pub provider: String,
    /// The pool's attempt, told how the request went when the body ends.
    pub attempt: Attempt,
}

/// The client's response for a committed answer; `pending` (the request's record) is finished
/// when its body ends or is dropped.
pub fn respond(state: &Arc<AppState>, client_dialect: Dialect, c: Committed, pending: Pending) -> Response<Body> {
    let headers = client_headers(&c.headers, c.saved_tokens, &c.transform);
    let ctx = RelayContext {
        state: state.clone(),
        dialect: client_dialect,
        upstream_dialect: c.upstream_dialect,
        provider: c.provider,
        is_sse: c.is_sse,
        started: pending.started(),
        pending: Some(pending),
        attempt: Some(c.attempt),
    };
    let body = if c.complete {
        whole_body(c.peeked, ctx, c.transform)
    } else {
        relay_body(c.peeked, c.rest, ctx, c.transform)
    };
    let mut response = Response::new(body);
    *response.status_mut() = c.status;
    *response.headers_mut() = headers;
    response
}

fn client_headers(upstream: &HeaderMap, saved_tokens: u64, transform: &Transform) -> HeaderMap {
    let mut headers = crate::pool::upstream::client_response_headers(upstream);
    headers.insert(HeaderName::from_static(headers::SAVED_TOKENS), HeaderValue::from(saved_tokens));
    if matches!(transform, Transform::Whole { .. }) {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    headers
}

struct RelayContext {
    state: Arc<AppState>,
    /// The client's dialect (errors inside the stream are rendered in it).
    dialect: Dialect,
    /// The dialect of the bytes coming from upstream.
    upstream_dialect: Dialect,
    provider: String,
    is_sse: bool,
    /// When the request arrived.
    started: Instant,
    /// The ledger record, finished when the body ends.
    pending: Option<Pending>,
    /// The pool's attempt, told how the request went when the body ends.
    attempt: Option<Attempt>,
}

impl RelayContext {
    fn pending(&mut self) -> Option<&mut Pending> {
        self.pending.as_mut()
    }
}

/// Records the outcome once, when the body is finished or dropped.
struct Finish {
    ctx: RelayContext,
    first_byte: Option<Instant>,
    outcome: Option<Outcome>,
    bytes: u64,
    usage: UsageSniffer,
    /// An error event the provider sent inside a stream (passed through to the client).
    watch: Option<StreamWatch>,
    /// Set while waiting for the upstream's next chunk (a drop mid-wait still counts it).
    waiting_since: Option<Instant>,
    /// A chunk already relayed whose usage is read once it is on its way (see `relay_body`).
    unsniffed: Option<Bytes>,
    /// When the last part went to the server to send: until it asks for the next, the proxy is
    /// waiting on the client's socket (a client reading slowly), not working.
    handed_at: Option<Instant>,
}

impl Finish {
    fn wait_begins(&mut self) {
        self.waiting_since = Some(Instant::now());
    }
    fn wait_ends(&mut self) {
        if let (Some(t), Some(p)) = (self.waiting_since.take(), self.ctx.pending()) {
            p.upstream_waited(t.elapsed());
        }
    }
    fn asked_for_more(&mut self) {
        if let (Some(t), Some(p)) = (self.handed_at.take(), self.ctx.pending()) {
            p.client_waited(t.elapsed());
        }
    }
    fn broke_off(&mut self, kind: &str) {
        if let Some(p) = self.ctx.pending() {
            p.broke_off(kind);
        }
    }
    fn sniff_pending(&mut self) {
        if let Some(chunk) = self.unsniffed.take() {
            self.usage.push(&chunk);
        }
    }
}

impl Drop for Finish {
    fn drop(&mut self) {
        self.sniff_pending();
        let mut outcome = self.outcome.unwrap_or(Outcome::Cancelled);
        let in_band = self.watch.as_ref().and_then(|w| w.failure().cloned());
        if in_band.is_some() && outcome == Outcome::Completed {
            outcome = Outcome::UpstreamFailed;
        }
        let state = self.ctx.state.clone();
        let m = &state.metrics;
        m.bytes_out.fetch_add(self.bytes, Relaxed);
        let usage = self.usage.finish();
        if let Some(u) = &usage {
            m.usage(u);
        }
        if outcome == Outcome::Cancelled {
            m.cancelled.fetch_add(1, Relaxed);
            tracing::info!(
                provider = %self.ctx.provider,
                after_ms = self.ctx.started.elapsed().as_millis() as u64,
                "client went away: upstream request cancelled"
            );
        }
        self.wait_ends();
        self.asked_for_more();
        let ctx = &mut self.ctx;
        // The pool hears first (as before the record moved into Pending): its quota and
        // in-flight count are free before the ledger write.
        if let Some(attempt) = ctx.attempt.take() {
            // A provider that broke off after the first byte counts against its health; a client
            // that went away still used the provider's quota.
            let report = match in_band {
                // The stream was relayed as it came; for the pool it is the failure it reported.
                Some(f) => PoolOutcome::Failed(f),
                None if outcome == Outcome::UpstreamFailed => {
                    PoolOutcome::Failed(Failure::Unavailable { cause: Cause::Reset, detail: "stream broke off".into() })
                }
                None => PoolOutcome::Success(usage),
            };
            attempt.report(report);
        }
        if let Some(p) = ctx.pending.take() {
            p.finish(outcome, self.first_byte, usage);
        }
    }
}

impl Transform {
    /// How a committed or held answer of `upstream` reaches an `ingress` client.
    pub fn for_answer(
        ingress: Dialect,
        upstream: Dialect,
        status: StatusCode,
        is_sse: bool,
        env: &RequestEnvelope,
        reply: translate::ReplyContext,
    ) -> Transform {
        if ingress == upstream {
            Transform::None
        } else if is_sse && status.is_success() {
            let model = env.model.as_deref().unwrap_or("");
            let mut translator = StreamTranslator::with_reply(upstream, ingress, model, &reply);
            translator.set_include_usage(env.stream_options.as_ref().is_some_and(|o| o.include_usage));
            Transform::Stream(Box::new(translator))
        } else {
            let error_status = (!status.is_success()).then_some(status.as_u16());
            Transform::Whole { upstream, client: ingress, error_status, buf: Vec::new(), reply }
        }
    }
}

/// How the upstream's bytes become the client's: as they are, or translated between dialects.
pub enum Transform {
    None,
    /// SSE, translated event by event.
    Stream(Box<StreamTranslator>),
    /// A JSON body translated once it is whole: a response, or (with a status) an error body.
    Whole {
        upstream: Dialect,
        client: Dialect,
        error_status: Option<u16>,
        buf: Vec<u8>,
        /// What the request's translation noted for its answer.
        reply: translate::ReplyContext,
    },
}

impl Transform {
    fn push(&mut self, chunk: Bytes) -> Bytes {
        match self {
            Transform::None => chunk,
            Transform::Stream(t) => Bytes::from(t.push(&chunk)),
            Transform::Whole { buf, .. } => {
                buf.extend_from_slice(&chunk);
                Bytes::new()
            }
        }
    }

    fn finish(&mut self) -> Bytes {
        match self {
            Transform::None => Bytes::new(),
            Transform::Stream(t) => Bytes::from(t.finish()),
            Transform::Whole { upstream, client, error_status, buf, reply } => {
                let out = match error_status {
                    Some(status) => translate::translate_error(*upstream, *client, *status, buf),
                    None => translate::translate_response_with(*upstream, *client, buf, reply).unwrap_or_else(|e| {
                        let msg = format!("could not translate the provider's {upstream} response: {e}");
                        error_body(*client, ErrorClass::Api, &msg)
                    }),
                };
                Bytes::from(out)
            }
        }
    }
}

pub type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;
type FrameResult = Result<Frame<Bytes>, std::io::Error>;

struct State {
    upstream: ByteStream,
    transform: Transform,
    finish: Finish,
}

/// A body that was read whole (a non-streamed answer): translated if needed and sent with its
/// length, so the client gets it in one write instead of a chunked stream.
fn whole_body(upstream_bytes: Bytes, ctx: RelayContext, mut transform: Transform) -> Body {
    let dialect = ctx.upstream_dialect;
    let first = transform.push(upstream_bytes.clone());
    let tail = transform.finish();
    let out = if tail.is_empty() {
        first
    } else {
        let mut joined = Vec::with_capacity(first.len() + tail.len());
        joined.extend_from_slice(&first);
        joined.extend_from_slice(&tail);
        Bytes::from(joined)
    };
    let mut finish = Finish {
        ctx,
        first_byte: Some(Instant::now()),
        outcome: Some(Outcome::Completed),
        bytes: out.len() as u64,
        usage: UsageSniffer::settled(dialect, None),
        watch: None,
        waiting_since: None,
        unsniffed: None,
        handed_at: None,
    };
    // Reading the usage and recording run as their own task, after this one has handed the
    // answer to the client (on the same worker thread).
    let record = move || {
        finish.usage = UsageSniffer::settled(dialect, UsageSniffer::of_whole_body(dialect, &upstream_bytes));
        drop(finish);
    };
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn(async move { record() })),
        Err(_) => record(),
    }
    BodyExt::boxed_unsync(http_body_util::Full::new(out).map_err(|never| match never {}))
}

/// Relays `prefix` (bytes already read from upstream to judge the answer) and then the rest.
fn relay_body(prefix: Bytes, rest: ByteStream, ctx: RelayContext, transform: Transform) -> Body {
    let idle = ctx.state.upstream.timeouts().idle;
    let usage = UsageSniffer::new(ctx.upstream_dialect, ctx.is_sse);
    let watch = ctx.is_sse.then(|| StreamWatch::new(ctx.state.pool().clock().now_ms()));
    let finish = Finish {
        ctx,
        first_byte: None,
        outcome: None,
        bytes: 0,
        usage,
        watch,
        waiting_since: None,
        unsniffed: None,
        handed_at: None,
    };
    let upstream: ByteStream = if prefix.is_empty() {
        rest
    } else {
        Box::pin(futures_util::stream::once(async move { Ok(prefix) }).chain(rest))
    };
    let state = State { upstream, transform, finish };
    let stream = futures_util::stream::unfold(Some(state), move |state| async move {
        let mut st = state?;
        st.finish.asked_for_more();
        loop {
            if st.finish.unsniffed.is_some() {
                // Let the relayed chunk go out to the client first (returning Pending once makes
                // hyper flush), then read its usage.
                tokio::task::yield_now().await;
                st.finish.sniff_pending();
            }
            st.finish.wait_begins();
            let next = tokio::time::timeout(idle, st.upstream.next()).await;
            st.finish.wait_ends();
            return match next {
                Ok(Some(Ok(chunk))) => {
                    if let Some(w) = &mut st.finish.watch {
                        w.push(&chunk);
                    }
                    // Parsing an event that reports usage (`message_start`, the last chunk) is
                    // the one costly part of relaying; it waits until the bytes are sent.
                    // `"usage"`, and Gemini's `"usageMetadata"`.
                    if memchr::memmem::find(&chunk, b"\"usage").is_some() {
                        st.finish.unsniffed = Some(chunk.clone());
                    } else {
                        st.finish.usage.push(&chunk);
                    }
                    let out = st.transform.push(chunk);
                    if matches!(&st.transform, Transform::Stream(t) if t.gave_up()) {
                        tracing::warn!(provider = %st.finish.ctx.provider, "stream event over the size limit: the translated stream was ended");
                        st.finish.broke_off("event_too_large");
                        st.finish.outcome = Some(Outcome::UpstreamFailed);
                        st.finish.bytes += out.len() as u64;
                        return Some((Ok(Frame::data(out)), None));
                    }
                    if out.is_empty() {
                        // A translator may need more input before it can say anything.
                        continue;
                    }
                    st.finish.bytes += out.len() as u64;
                    let now = Instant::now();
                    st.finish.first_byte.get_or_insert(now);
                    st.finish.handed_at = Some(now);
                    Some((Ok(Frame::data(out)), Some(st)))
                }
                Ok(None) => {
                    st.finish.outcome = Some(Outcome::Completed);
                    let tail = st.transform.finish();
                    if tail.is_empty() {
                        return None;
                    }
                    st.finish.bytes += tail.len() as u64;
                    Some((Ok(Frame::data(tail)), None))
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
            };
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
) -> Option<(FrameResult, Option<State>)> {
    tracing::warn!("{msg}");
    st.finish.ctx.state.metrics.error(kind);
    st.finish.broke_off(kind);
    st.finish.outcome = Some(Outcome::UpstreamFailed);
    if let Transform::Stream(t) = &mut st.transform {
        // The translator closes what it opened and ends with an error event of the client's dialect.
        let tail = Bytes::from(t.finish());
        st.finish.bytes += tail.len() as u64;
        drop(st);
        return Some((Ok(Frame::data(tail)), None));
    }
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
