//! A request between arrival and the end of its answer: the ledger record until the relay takes
//! it over (cancelled if the client goes away first), and the in-flight gauge.

use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::Response;
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};

use super::error::ProxyError;
use super::{AppState, Body};
use crate::ledger::{Record, RequestOutcome};

/// The ledger record of a request whose answer is not yet handed to the client. hyper drops the
/// handler future when the client disconnects during the upstream send or the first-event peek;
/// that drops (and so cancels) the upstream request with it, and this guard records the request
/// as cancelled. Once the answer is committed the relay owns the record.
pub struct Pending<'a> {
    state: &'a AppState,
    started: Instant,
    pub record: Record,
    settled: bool,
}

impl<'a> Pending<'a> {
    pub fn new(state: &'a AppState, started: Instant) -> Pending<'a> {
        Pending { state, started, record: Record::empty(), settled: false }
    }

    /// Called with the handler's result: an error is recorded here, an answer by the relay.
    pub fn settle(&mut self, result: &Result<Response<Body>, ProxyError>) {
        self.settled = true;
        if let Err(e) = result {
            self.record.status = e.status().as_u16();
            if self.record.error.is_empty() {
                self.record.error = e.kind().to_string();
            }
            self.write(RequestOutcome::Error);
        }
    }

    fn write(&mut self, outcome: RequestOutcome) {
        let mut r = std::mem::replace(&mut self.record, Record::empty());
        r.outcome = outcome;
        let total = self.started.elapsed();
        r.latency_ms = total.as_millis() as u64;
        r.ttfb_us = total.as_micros() as u64;
        r.set_overhead(total);
        self.state.ledger.record(r);
    }
}

/// Status recorded for a client that went away before any answer (nginx's "client closed request").
const CLIENT_CLOSED: u16 = 499;

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        self.state.metrics.cancelled.fetch_add(1, Relaxed);
        tracing::info!(
            after_ms = self.started.elapsed().as_millis() as u64,
            "client went away before the answer started: upstream request cancelled"
        );
        self.record.status = CLIENT_CLOSED;
        self.write(RequestOutcome::Cancelled);
    }
}

/// Counts a request in `tokenfold_in_flight` while it lives.
pub struct InFlight(Arc<AppState>);

impl InFlight {
    pub fn enter(state: &Arc<AppState>) -> InFlight {
        state.metrics.in_flight.fetch_add(1, Relaxed);
        InFlight(state.clone())
    }

    /// Hands the count to `body`: it ends when the body is finished or dropped.
    pub fn track(self, body: Body) -> Body {
        hold(body, self)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.metrics.in_flight.fetch_sub(1, Relaxed);
    }
}

/// `body`, keeping `held` alive until the body is finished or dropped (a guard whose drop says
/// the answer is over).
pub fn hold<T: Send + Unpin + 'static>(body: Body, held: T) -> Body {
    BodyExt::boxed_unsync(Holding { body, _held: held })
}

struct Holding<T> {
    body: Body,
    _held: T,
}

impl<T: Send + Unpin + 'static> hyper::body::Body for Holding<T> {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        // `Body` is `Unpin` (boxed), so is `Holding`.
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
