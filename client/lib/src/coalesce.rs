//! A connection that sends a call's frames in one write: [`Coalesced`], and the connector that
//! makes one per TCP connection ([`CoalescingConnector`]).
//!
//! HTTP/2 on hyper writes a unary call's HEADERS frame on its own: the request body (its DATA
//! frame) is sent by another task once the stream has flow-control capacity, which the
//! connection assigns after it has flushed the HEADERS. Each call then costs the client two
//! `writev`s, and the server two wake-ups: one for a HEADERS frame it cannot answer yet, one for
//! the DATA. (grpc-go made the same change in its transport: a unary call's headers are not
//! flushed before its message.)
//!
//! [`Coalesced`] keeps what is written until a flush, and lets the first flush of each batch
//! wait one turn of the scheduler: the tasks woken meanwhile (the request body, other calls of
//! the connection) add their frames, and everything leaves in one `writev`. A flush with
//! nothing new written since the last one goes straight through, so a lone frame waits one
//! turn at most. Reading is untouched.
//!
//! Channels to one endpoint over TCP use it (`ClientBuilder::build` and `connect` with one
//! endpoint, and the Python package's native transport, one channel per endpoint). A channel
//! balanced over several endpoints keeps tonic's own connector: tonic's balancer connects its
//! endpoints itself.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use hyper::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

/// Bytes a connection keeps before it writes them out without waiting for the flush: far above
/// a batch of small calls, and a bound on what a large request holds twice.
const HOLD_BYTES: usize = 64 * 1024;

/// A connection whose writes leave at flushes, one `writev` per batch (see the module
/// documentation).
#[derive(Debug)]
pub(crate) struct Coalesced<IO> {
    io: IO,
    pending: Vec<u8>,
    /// Bytes of `pending` already written.
    sent: usize,
    /// The current batch's flush has waited its turn.
    waited: bool,
}

impl<IO> Coalesced<IO> {
    pub(crate) fn new(io: IO) -> Self {
        Self {
            io,
            pending: Vec::new(),
            sent: 0,
            waited: false,
        }
    }
}

impl<IO: Write + Unpin> Coalesced<IO> {
    /// Writes out what is kept.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.pending.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.pending[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.pending.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }
}

impl<IO: Read + Unpin> Read for Coalesced<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: Write + Unpin> Write for Coalesced<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.pending.len() >= HOLD_BYTES {
            ready!(self.poll_send(cx))?;
        }
        let mut n = 0;
        for buf in bufs {
            self.pending.extend_from_slice(buf);
            n += buf.len();
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.pending.is_empty() {
            return Pin::new(&mut self.io).poll_flush(cx);
        }
        if !self.waited {
            // One turn of the scheduler: a task that wakes itself is run again after the
            // tasks already woken (the request body's among them).
            self.waited = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        ready!(self.poll_send(cx))?;
        self.waited = false;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send(cx))?;
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Connects over TCP like tonic's own connector with the builder's settings (`TCP_NODELAY`,
/// any scheme), and hands out [`Coalesced`] connections.
#[derive(Clone, Debug)]
pub(crate) struct CoalescingConnector {
    http: HttpConnector,
}

impl CoalescingConnector {
    pub(crate) fn new() -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        Self { http }
    }
}

impl Service<Uri> for CoalescingConnector {
    type Response = Coalesced<TokioIo<TcpStream>>;
    type Error = <HttpConnector as Service<Uri>>::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.http.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.http.call(uri);
        Box::pin(async move { Ok(Coalesced::new(connecting.await?)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts the writes that reach it.
    #[derive(Default)]
    struct Counted {
        writes: Vec<Vec<u8>>,
    }

    impl Write for Counted {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.writes.push(buf.to_vec());
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn write(io: &mut Coalesced<Counted>, cx: &mut Context<'_>, bytes: &[u8]) {
        assert!(matches!(
            Pin::new(io).poll_write(cx, bytes),
            Poll::Ready(Ok(n)) if n == bytes.len()
        ));
    }

    #[test]
    fn writes_before_a_flush_leave_together_after_one_turn() {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut io = Coalesced::new(Counted::default());
        write(&mut io, &mut cx, b"headers");
        // The first flush of a batch waits a turn; what is written meanwhile joins it.
        assert!(Pin::new(&mut io).poll_flush(&mut cx).is_pending());
        write(&mut io, &mut cx, b"data");
        assert!(io.io.writes.is_empty(), "nothing leaves before the flush");
        assert!(matches!(
            Pin::new(&mut io).poll_flush(&mut cx),
            Poll::Ready(Ok(()))
        ));
        assert_eq!(io.io.writes, vec![b"headersdata".to_vec()]);
        // The next batch waits its own turn.
        write(&mut io, &mut cx, b"next");
        assert!(Pin::new(&mut io).poll_flush(&mut cx).is_pending());
        assert!(Pin::new(&mut io).poll_flush(&mut cx).is_ready());
        assert_eq!(io.io.writes.len(), 2);
        // A flush with nothing kept does not wait.
        assert!(Pin::new(&mut io).poll_flush(&mut cx).is_ready());
    }

    #[test]
    fn a_large_batch_is_written_out_before_it_grows_further() {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut io = Coalesced::new(Counted::default());
        let chunk = vec![7u8; HOLD_BYTES];
        write(&mut io, &mut cx, &chunk);
        assert!(io.io.writes.is_empty());
        write(&mut io, &mut cx, b"more");
        assert_eq!(
            io.io.writes.len(),
            1,
            "the kept bytes left before more were taken"
        );
        assert_eq!(io.pending, b"more");
    }

    #[test]
    fn shutdown_writes_what_is_kept() {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut io = Coalesced::new(Counted::default());
        write(&mut io, &mut cx, b"last");
        assert!(Pin::new(&mut io).poll_shutdown(&mut cx).is_ready());
        assert_eq!(io.io.writes, vec![b"last".to_vec()]);
    }
}
