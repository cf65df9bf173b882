//! The HTTPS port: accepts TCP, completes TLS within a deadline, and serves HTTP/1.1 with upgrades.
//!
//! Slow clients are cut off, not waited for: the TLS handshake, a request's headers (also the wait
//! for the next request on a kept-alive connection) and then its body each get the request timeout
//! (`http_request_timeout_ms`, 10 s by default). Request bodies (forms and JSON) are read whole
//! before the handler runs, at most [`MAX_REQUEST_BODY`] bytes. A client that stops reading (a
//! download, a WebSocket) is dropped when a write makes no progress for `idle_timeout_ms`.

use std::sync::Arc;
use std::time::Duration;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::ConnectInfo;
use axum::http::{header, Request, Response, StatusCode};
use axum::response::IntoResponse;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// The largest request body the relay reads (its requests are forms and small JSON documents).
pub const MAX_REQUEST_BODY: usize = 64 * 1024;

/// Accepts connections until `shutdown`; each runs in `tracker`.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: axum::Router,
    timeout: Duration,
    write_stall: Duration,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (tcp, remote) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let router = router.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let tls = match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%remote, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%remote, "TLS handshake timed out");
                    return;
                }
            };
            let service =
                hyper::service::service_fn(move |req| handle(router.clone(), req, remote, timeout));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(timeout)
                .serve_connection(TokioIo::new(StallGuard::new(tls, write_stall)), service)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(%remote, error = %e, "HTTP connection ended with an error");
                    }
                }
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
}

/// Reads the request's body whole within `timeout` (and at most [`MAX_REQUEST_BODY`] bytes), adds
/// the client's address, and hands the request to the router.
async fn handle(
    router: axum::Router,
    req: Request<Incoming>,
    remote: SocketAddr,
    timeout: Duration,
) -> Result<Response<axum::body::Body>, Infallible> {
    let (mut parts, body) = req.into_parts();
    let read = http_body_util::Limited::new(body, MAX_REQUEST_BODY).collect();
    let bytes = match tokio::time::timeout(timeout, read).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return Ok(refusal(
                StatusCode::PAYLOAD_TOO_LARGE,
                "REQUEST_TOO_LARGE",
                &format!("Request bodies are at most {MAX_REQUEST_BODY} bytes."),
            ))
        }
        Ok(Err(e)) => {
            tracing::debug!(%remote, error = %e, "reading a request body failed");
            return Ok(refusal(
                StatusCode::BAD_REQUEST,
                "MALFORMED_REQUEST",
                "The request's body could not be read.",
            ));
        }
        Err(_) => {
            tracing::debug!(%remote, "a request body took too long");
            return Ok(refusal(
                StatusCode::REQUEST_TIMEOUT,
                "REQUEST_TIMEOUT",
                &format!(
                    "The request's body did not arrive within {} seconds.",
                    timeout.as_secs_f64()
                ),
            ));
        }
    };
    parts.extensions.insert(ConnectInfo(remote));
    let req = Request::from_parts(parts, axum::body::Body::from(bytes));
    Ok(router.oneshot(req).await.unwrap_or_else(|e| match e {}))
}

/// An error answer in the API's JSON shape that also closes the connection (the rest of a body that
/// was refused may still be on its way).
fn refusal(status: StatusCode, code: &str, message: &str) -> Response<axum::body::Body> {
    let body = serde_json::json!({"error": {"code": code, "message": message}});
    let mut response = (status, axum::Json(body)).into_response();
    response.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    response
}

/// A connection whose writes fail when they make no progress for `limit`: a peer that stops
/// reading would otherwise hold its connection (and a download's file) forever.
struct StallGuard<T> {
    inner: T,
    limit: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<T> StallGuard<T> {
    fn new(inner: T, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            stalled: None,
        }
    }

    /// Passes a write's result on; while it is pending, fails it once the stall lasts `limit`.
    fn watch<R>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<std::io::Result<R>>,
    ) -> Poll<std::io::Result<R>> {
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let limit = self.limit;
        let stall = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match stall.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client stopped reading",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StallGuard<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StallGuard<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
