//! The connection's byte stream as hyper sees it: reads tell the
//! connection's [`Conn`] that bytes arrived, and the bodiless responses
//! hyper writes on its own for a request it cannot parse (400, 414, 431)
//! are replaced by the same status with the API's JSON error body.
//!
//! hyper writes such a response only between requests (no handler was
//! called for it), as a head with `content-length: 0`, and closes the
//! connection after it; nothing the gateway's handlers write has that
//! shape, since every error they answer carries a body.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::conn::Conn;
use crate::api::openai::ApiError;
use crate::telemetry::HTTP_MALFORMED_TOTAL;

/// A client stream with its connection's bookkeeping.
#[derive(Debug)]
pub(crate) struct ConnIo<S> {
    inner: S,
    conn: Arc<Conn>,
    /// A replacement response still being written: bytes and how many are
    /// out.
    pending: Option<(Vec<u8>, usize)>,
}

impl<S> ConnIo<S> {
    pub(crate) fn new(inner: S, conn: Arc<Conn>) -> Self {
        Self {
            inner,
            conn,
            pending: None,
        }
    }
}

impl<S: AsyncWrite + Unpin> ConnIo<S> {
    /// Writes what is left of a replacement response.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, at)) = &mut self.pending {
            if *at >= bytes.len() {
                self.pending = None;
                break;
            }
            let n = std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*at..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *at += n;
        }
        Poll::Ready(Ok(()))
    }

    /// Whether `buf` is hyper's own rejection, which is then queued as its
    /// replacement.
    fn replace_rejection(&mut self, buf: &[u8]) -> bool {
        if !self.conn.is_between_requests() {
            return false;
        }
        let Some(status) = hypers_rejection(buf) else {
            return false;
        };
        metrics::counter!(HTTP_MALFORMED_TOTAL, "status" => status.as_str().to_owned())
            .increment(1);
        self.pending = Some((http1_response(&ApiError::Malformed(status)), 0));
        true
    }
}

/// The status of a bodiless rejection head as hyper writes it
/// (`HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n...\r\n\r\n`).
fn hypers_rejection(buf: &[u8]) -> Option<StatusCode> {
    let status = match buf.get(..13)? {
        b"HTTP/1.1 400 " => StatusCode::BAD_REQUEST,
        b"HTTP/1.1 414 " => StatusCode::URI_TOO_LONG,
        b"HTTP/1.1 431 " => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        _ => return None,
    };
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = buf.get(..head_end + 4)?;
    let bodiless = head.len() == buf.len()
        && head
            .windows(19)
            .any(|w| w.eq_ignore_ascii_case(b"\r\ncontent-length: 0"));
    bodiless.then_some(status)
}

/// `error` as a complete HTTP/1.1 response that closes the connection.
pub(crate) fn http1_response(error: &ApiError) -> Vec<u8> {
    let (status, headers, body) = error.render();
    let mut out = format!(
        "HTTP/1.1 {} {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    )
    .into_bytes();
    for (name, value) in &headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(
        format!(
            "content-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(&body);
    out
}

impl<S: AsyncRead + Unpin> AsyncRead for ConnIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.conn.read();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ConnIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_pending(cx))?;
        if this.replace_rejection(buf) {
            // Taken whole; the replacement goes out now and on flush.
            let _ = this.poll_pending(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_pending(cx))?;
        if let [only] = bufs.iter().filter(|b| !b.is_empty()).collect::<Vec<_>>()[..]
            && this.replace_rejection(only)
        {
            let _ = this.poll_pending(cx)?;
            return Poll::Ready(Ok(only.len()));
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_bodiless_rejection_heads_are_recognised() {
        let head = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Wed, 02 Dec 2026 12:00:00 GMT\r\n\r\n";
        assert_eq!(
            hypers_rejection(head),
            Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 12\r\n\r\n{\"error\":{}}";
        assert_eq!(hypers_rejection(ours), None, "a handler's error has a body");
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(hypers_rejection(ok), None);
    }

    #[test]
    fn the_replacement_is_a_complete_response_in_the_error_shape() {
        let bytes = http1_response(&ApiError::Malformed(StatusCode::URI_TOO_LONG));
        let text = String::from_utf8(bytes).expect("utf-8");
        let (head, body) = text.split_once("\r\n\r\n").expect("a head");
        assert!(head.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{head}");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        assert!(head.contains("connection: close"), "{head}");
        let v: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!(v["error"]["code"], "uri_too_long");
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }

    /// Regression (issue 16, 5): hyper's own 400/414/431 had empty bodies.
    /// Written through the stream between requests, one comes out with the
    /// JSON error body; the same bytes while a request is in flight (a
    /// handler's) pass unchanged.
    #[tokio::test]
    async fn rejections_made_below_the_handlers_get_the_error_body() {
        use tokio::io::AsyncWriteExt as _;
        let registry = Arc::new(super::super::conn::Registry::new());
        let (conn, _reg) = registry.open();
        let head = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";

        let mut io = ConnIo::new(Vec::new(), conn.clone());
        io.write_all(head).await.expect("write");
        io.flush().await.expect("flush");
        let text = String::from_utf8(io.inner).expect("utf-8");
        let (_, body) = text.split_once("\r\n\r\n").expect("a head");
        let v: serde_json::Value = serde_json::from_str(body).expect("json body");
        assert_eq!(v["error"]["code"], "malformed_request");

        let _request = conn.begin();
        let mut io = ConnIo::new(Vec::new(), conn);
        io.write_all(head).await.expect("write");
        assert_eq!(io.inner, head.to_vec());
    }
}
