//! The request layer: reads a `mintcache.v1.Cache` call's whole request before the call is
//! served, so that what a call holds while its request is still arriving is bounded:
//!
//! - the request must have arrived within `server.request_read_timeout_ms` of the call's
//!   arrival; a call whose client stalls is answered `DEADLINE_EXCEEDED` (naming the setting)
//!   and lets go of everything it held;
//! - a message announced over `server.max_message_bytes` is refused on its length prefix,
//!   before it is read (`RESOURCE_EXHAUSTED`, gRPC's code for a message over a size limit);
//! - the request bytes held at once, by all calls, stay within
//!   `server.max_buffered_request_bytes`: a call takes its message's length from that budget as
//!   soon as the message's prefix arrives, before reading it further, and gives it back when
//!   the call ends. A call that finds the budget spent is refused at once
//!   (`RESOURCE_EXHAUSTED`), never queued;
//! - a request that stops arriving because the client cancelled the call or its connection
//!   closed is answered `CANCELLED`: a client's doing, never counted as a server fault.
//!
//! Calls take a call slot (the concurrency limit) only after this layer: a slow or stuck
//! upload never holds the slot of a call being served. The messages are handed to the service
//! as one buffer, so that decoding them never waits on the network.
//!
//! Why not HTTP/2 flow control alone: it bounds what a stream may send before the server reads
//! it, but gRPC reads every message to its end to decode it, so any number of calls could each
//! hold up to `server.max_message_bytes`.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::Frame;
use http_body_util::{BodyExt as _, StreamBody};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tonic::body::Body;
use tower::{Layer, Service};

use super::BoxFuture;
use super::limits::ReceivedAt;
use crate::core::framing::{Framing, PREFIX_BYTES};
use crate::grpc::status;

/// The limits of request reading, shared by every call of a server.
#[derive(Debug)]
struct Limits {
    /// Bytes of request messages that may be held at once, as permits.
    budget: Arc<Semaphore>,
    budget_bytes: usize,
    max_message_bytes: usize,
    read_timeout: Duration,
}

/// Reads each call's whole request, within its read timeout and the request-bytes budget,
/// before the call is served.
#[derive(Clone, Debug)]
pub(crate) struct RequestLayer {
    limits: Arc<Limits>,
}

impl RequestLayer {
    /// Requests of at most `max_message_bytes` per message, `budget_bytes` held at once by all
    /// calls, each arriving within `read_timeout`.
    pub(crate) fn new(
        budget_bytes: usize,
        max_message_bytes: usize,
        read_timeout: Duration,
    ) -> Self {
        Self {
            limits: Arc::new(Limits {
                // The configuration keeps the budget far below what a semaphore can count on
                // 64-bit platforms; the clamp only matters elsewhere.
                budget: Arc::new(Semaphore::new(budget_bytes.min(Semaphore::MAX_PERMITS))),
                budget_bytes,
                max_message_bytes,
                read_timeout,
            }),
        }
    }
}

impl<S> Layer<S> for RequestLayer {
    type Service = RequestService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestService {
            inner,
            limits: self.limits.clone(),
        }
    }
}

/// See [`RequestLayer`].
#[derive(Clone, Debug)]
pub(crate) struct RequestService<S> {
    inner: S,
    limits: Arc<Limits>,
}

impl<S, R> Service<http::Request<Body>> for RequestService<S>
where
    S: Service<http::Request<Body>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        // The clone is the one that was not polled ready; keep the ready one for this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let limits = self.limits.clone();
        Box::pin(async move {
            let received = request
                .extensions()
                .get::<ReceivedAt>()
                .map_or_else(Instant::now, |r| r.instant());
            let (parts, body) = request.into_parts();
            let read = tokio::time::timeout_at(received + limits.read_timeout, read(body, &limits));
            let (body, held) = match read.await {
                Ok(Ok(read)) => read,
                Ok(Err(refusal)) => return Ok(refusal.status(&limits).into_http::<R>()),
                Err(_) => {
                    return Ok(status::request_read_timeout(limits.read_timeout).into_http::<R>());
                }
            };
            let response = inner.call(http::Request::from_parts(parts, body)).await;
            // The request's bytes go back to the budget once the call has been answered.
            drop(held);
            response
        })
    }
}

/// Why a request was not read to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// A message announced over `server.max_message_bytes`.
    TooLarge(u32),
    /// The budget of request bytes is spent.
    BudgetSpent,
    /// The stream was reset or the connection closed before the request ended.
    Abandoned,
    /// The request ended inside a message.
    CutShort,
}

impl Refusal {
    fn status(self, limits: &Limits) -> tonic::Status {
        match self {
            Self::TooLarge(len) => status::message_too_large(len, limits.max_message_bytes),
            Self::BudgetSpent => status::request_budget_spent(limits.budget_bytes),
            Self::Abandoned => status::request_abandoned(),
            Self::CutShort => status::request_cut_short(),
        }
    }
}

/// Reads `body` to its end within the budget: the same body, buffered, and the share of the
/// budget it holds.
async fn read(
    mut body: Body,
    limits: &Limits,
) -> Result<(Body, Option<OwnedSemaphorePermit>), Refusal> {
    let mut framing = Framing::default();
    let mut held: Option<OwnedSemaphorePermit> = None;
    let mut buffer: Vec<u8> = Vec::new();
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| Refusal::Abandoned)?;
        let frame = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                trailers = frame.into_trailers().ok();
                continue;
            }
        };
        framing.advance(&frame, |len| {
            let too_large = usize::try_from(len).map_or(true, |l| l > limits.max_message_bytes);
            if too_large {
                return Err(Refusal::TooLarge(len));
            }
            let share = limits
                .budget
                .clone()
                .try_acquire_many_owned(len)
                .map_err(|_| Refusal::BudgetSpent)?;
            match &mut held {
                Some(held) => held.merge(share),
                None => held = Some(share),
            }
            // Room for the whole message at once: what is buffered is what was taken from
            // the budget, never a doubling of it.
            buffer.reserve_exact(PREFIX_BYTES + len as usize);
            Ok(())
        })?;
        buffer.extend_from_slice(&frame);
    }
    if !framing.at_boundary() {
        return Err(Refusal::CutShort);
    }
    let mut frames = vec![Frame::data(Bytes::from(buffer))];
    frames.extend(trailers.map(Frame::trailers));
    let body = StreamBody::new(futures_util::stream::iter(
        frames.into_iter().map(Ok::<_, Infallible>),
    ));
    Ok((Body::new(body), held))
}
