//! Unix-socket connections whose requests carry a socket path as `:authority`.
//!
//! gRPC C-core clients (BuildStream's grpcio, buildbox-run) send the percent-encoded socket path,
//! e.g. `%2Ftmp%2Fcasd.sock`, as the HTTP/2 `:authority` of requests over a Unix socket. The
//! HTTP/2 server under tonic (h2) refuses that as a malformed authority and resets every stream
//! (hyperium/h2#487 is still open). An authority means nothing on a Unix socket, so the daemon
//! reads such connections through [`LocalAuthority`], which gives every request `localhost`
//! instead ([`rewriter`]) and changes nothing else.

mod rewriter;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

use rewriter::Rewriter;

/// Bytes read from the socket at a time while rewriting.
const READ_CHUNK: usize = 64 * 1024;

/// A connection whose incoming requests get `localhost` as their `:authority`; writes and
/// everything else pass straight through.
#[derive(Debug)]
pub struct LocalAuthority<S> {
    inner: S,
    rewriter: Rewriter,
    /// Bytes read but not yet rewritten (an incomplete frame) are `input[..filled]`; the rest is
    /// room for the next read, zeroed once when it grows rather than on every read.
    input: Vec<u8>,
    filled: usize,
    /// Rewritten bytes not yet handed to the reader, from `output_at` on.
    output: Vec<u8>,
    output_at: usize,
    eof: bool,
}

impl<S> LocalAuthority<S> {
    /// Wraps a freshly accepted connection.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            rewriter: Rewriter::default(),
            input: Vec::new(),
            filled: 0,
            output: Vec::new(),
            output_at: 0,
            eof: false,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for LocalAuthority<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.output_at < this.output.len() {
                let n = buf.remaining().min(this.output.len() - this.output_at);
                buf.put_slice(&this.output[this.output_at..this.output_at + n]);
                this.output_at += n;
                if this.output_at == this.output.len() {
                    this.output.clear();
                    this.output_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            let forwardable = this.rewriter.forwardable();
            if this.filled == 0 && forwardable > 0 {
                // Frame payloads (DATA above all) go straight into the reader's buffer.
                let limit = buf.remaining().min(forwardable);
                let mut direct = ReadBuf::new(buf.initialize_unfilled_to(limit));
                ready!(Pin::new(&mut this.inner).poll_read(cx, &mut direct))?;
                let n = direct.filled().len();
                buf.advance(n);
                this.rewriter.forwarded(n);
                return Poll::Ready(Ok(()));
            }
            if this.input.len() - this.filled < READ_CHUNK {
                this.input.resize(this.filled + READ_CHUNK, 0);
            }
            let mut chunk = ReadBuf::new(&mut this.input[this.filled..]);
            let read = Pin::new(&mut this.inner).poll_read(cx, &mut chunk);
            let n = chunk.filled().len();
            ready!(read)?;
            if n == 0 {
                // End of stream: whatever is left (an incomplete frame) goes on as it is.
                this.eof = true;
                this.output.extend_from_slice(&this.input[..this.filled]);
                this.filled = 0;
                continue;
            }
            this.filled += n;
            let used = this.rewriter.process(&this.input[..this.filled], &mut this.output);
            this.input.copy_within(used..this.filled, 0);
            this.filled -= used;
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for LocalAuthority<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, data)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S: Connected> Connected for LocalAuthority<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}
