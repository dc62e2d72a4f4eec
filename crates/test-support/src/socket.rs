//! [`CountingSocket`]: what crossed a socket, for tests that assert on batching.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A socket wrapper counting completed writes and flushes, and the bytes written and read.
///
/// The counters are shared: clone them out before the socket moves into a task.
#[derive(Debug)]
pub struct CountingSocket<S> {
    inner: S,
    /// Completed `poll_write` calls (successful or not).
    pub writes: Arc<AtomicUsize>,
    /// Completed `poll_flush` calls (successful or not).
    pub flushes: Arc<AtomicUsize>,
    /// Bytes the inner socket accepted.
    pub bytes_written: Arc<AtomicUsize>,
    /// Bytes read from the inner socket.
    pub bytes_read: Arc<AtomicUsize>,
}

impl<S> CountingSocket<S> {
    /// Wraps `inner`, all counters at zero.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            writes: Arc::default(),
            flushes: Arc::default(),
            bytes_written: Arc::default(),
            bytes_read: Arc::default(),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for CountingSocket<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            let read = buf.filled().len() - before;
            self.bytes_read.fetch_add(read, Ordering::Relaxed);
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CountingSocket<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(outcome) = &result {
            self.writes.fetch_add(1, Ordering::Relaxed);
            if let Ok(written) = outcome {
                self.bytes_written.fetch_add(*written, Ordering::Relaxed);
            }
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_flush(cx);
        if result.is_ready() {
            self.flushes.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Splits with `tokio::io::split` (one lock for both halves): the counters see every call
/// either half makes.
impl<S: AsyncRead + AsyncWrite + Send + Unpin + 'static> noise::SplitSocket for CountingSocket<S> {
    type ReadHalf = tokio::io::ReadHalf<Self>;
    type WriteHalf = tokio::io::WriteHalf<Self>;

    fn into_split(self) -> (Self::ReadHalf, Self::WriteHalf) {
        tokio::io::split(self)
    }
}
