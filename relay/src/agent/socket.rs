//! The agent connections' WebSocket, upgraded here rather than by axum's extractor so that what a
//! connection may send before its handshake ends is bounded in bytes (docs/SECURITY.md, review
//! finding 11).
//!
//! The WebSocket library's message limit is fixed at the upgrade and must allow the largest frame
//! (8 MiB) for a session; without more, an unauthenticated connection could make the relay buffer a
//! message that large before its 5-byte header is read. [`Budgeted`] sits under the library and
//! counts the bytes read until the handshake opens its [`Gate`]: past [`BEFORE_HANDSHAKE`] it fails
//! the read (refused `MESSAGE_TOO_LARGE`), so the library never holds more than that for a stranger.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

/// An agent connection's WebSocket.
pub(crate) type Socket = WebSocketStream<Budgeted<TokioIo<hyper::upgrade::Upgraded>>>;

/// What a connection may send (WebSocket framing, pings and all) before its handshake ends. A
/// handshake's messages are a few hundred bytes (`Hello` is at most 4 KiB).
pub(crate) const BEFORE_HANDSHAKE: usize = 64 * 1024;

/// The WebSocket read and write buffer sizes: 16 KiB rather than the library's 128 KiB each way. A
/// relay holds two connections a session, and at the default sizes they were most of its memory per
/// session (measured with the relay_load benchmark, docs/PERFORMANCE.md). Larger messages still
/// arrive whole; the buffers only start smaller. Writes are flushed per batch of queued frames.
const WS_BUFFER: usize = 16 * 1024;

/// Opened when the handshake has established who the peer is: from then on the connection's reads
/// are bounded by the protocol's frame limits and rates alone.
#[derive(Clone, Default)]
pub(crate) struct Gate(Arc<AtomicBool>);

impl Gate {
    pub(crate) fn open(&self) {
        self.0.store(true, Ordering::Release);
    }

    fn is_open(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// The error a read returns when a connection sent more than [`BEFORE_HANDSHAKE`] bytes before its
/// handshake ended.
#[derive(Debug)]
pub(crate) struct TooMuchBeforeHandshake;

impl std::fmt::Display for TooMuchBeforeHandshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "more than {BEFORE_HANDSHAKE} bytes were sent before the handshake ended"
        )
    }
}

impl std::error::Error for TooMuchBeforeHandshake {}

/// True when `e` is the [`TooMuchBeforeHandshake`] read error.
pub(crate) fn is_too_much_before_handshake(e: &io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.is::<TooMuchBeforeHandshake>())
}

/// A stream that counts the bytes read until its gate opens, and fails the read that passes the
/// budget. After that failure it reads and drops what the peer still sends (so that closing does
/// not reset the connection before the refusal is read), returning nothing until the peer closes.
pub(crate) struct Budgeted<S> {
    inner: S,
    gate: Gate,
    budget: usize,
    read: usize,
    tripped: bool,
}

impl<S> Budgeted<S> {
    pub(crate) fn new(inner: S, gate: Gate, budget: usize) -> Self {
        Self {
            inner,
            gate,
            budget,
            read: 0,
            tripped: false,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Budgeted<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.tripped {
            // Drop what comes, a bounded amount per poll, until the peer closes.
            let mut scratch = [0u8; 8 * 1024];
            for _ in 0..16 {
                let mut sink = ReadBuf::new(&mut scratch);
                match Pin::new(&mut this.inner).poll_read(cx, &mut sink) {
                    Poll::Ready(Ok(())) if sink.filled().is_empty() => return Poll::Ready(Ok(())),
                    Poll::Ready(Ok(())) => continue,
                    other => return other,
                }
            }
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && !this.gate.is_open() {
            this.read = this.read.saturating_add(buf.filled().len() - before);
            if this.read > this.budget {
                this.tripped = true;
                buf.set_filled(before);
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    TooMuchBeforeHandshake,
                )));
            }
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Budgeted<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Answers a WebSocket upgrade request (RFC 6455 section 4.2) and runs `serve` on the socket once
/// the connection is switched. `budget` bounds the bytes read before `serve` opens the gate; `None`
/// opens it at once (a peer link, whose TLS client certificate already says who it is).
pub(crate) fn upgrade<F, Fut>(mut request: Request, budget: Option<usize>, serve: F) -> Response
where
    F: FnOnce(Socket, Gate) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let accept = match accept_key(request.headers()) {
        Ok(accept) => accept,
        Err(refusal) => return *refusal,
    };
    let on_upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                tracing::debug!(error = %e, "the WebSocket upgrade did not complete");
                return;
            }
        };
        let gate = Gate::default();
        if budget.is_none() {
            gate.open();
        }
        let io = Budgeted::new(
            TokioIo::new(upgraded),
            gate.clone(),
            budget.unwrap_or(usize::MAX),
        );
        let max = protocol::max_frame_len();
        let config = WebSocketConfig::default()
            .max_message_size(Some(max))
            .max_frame_size(Some(max))
            .read_buffer_size(WS_BUFFER)
            .write_buffer_size(WS_BUFFER);
        let socket = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
        serve(socket, gate).await;
    });
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    response
}

/// The `Sec-WebSocket-Accept` value for a valid upgrade request, or the answer to an invalid one.
fn accept_key(headers: &HeaderMap) -> Result<HeaderValue, Box<Response>> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value.to_str().is_ok_and(|v| {
                v.split(',')
                    .any(|part| part.trim().eq_ignore_ascii_case(token))
            })
        })
    };
    if !has_token(header::CONNECTION, "upgrade") || !has_token(header::UPGRADE, "websocket") {
        return Err((
            StatusCode::UPGRADE_REQUIRED,
            [(header::UPGRADE, "websocket")],
            "this path takes WebSocket connections only (RFC 6455)",
        )
            .into_response()
            .into());
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return Err((
            StatusCode::UPGRADE_REQUIRED,
            [(header::SEC_WEBSOCKET_VERSION, "13")],
            "only WebSocket version 13 is spoken here",
        )
            .into_response()
            .into());
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return Err((StatusCode::BAD_REQUEST, "Sec-WebSocket-Key is missing")
            .into_response()
            .into());
    };
    HeaderValue::from_str(&derive_accept_key(key.as_bytes())).map_err(|_| {
        (StatusCode::BAD_REQUEST, "Sec-WebSocket-Key is not valid")
            .into_response()
            .into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    #[tokio::test]
    async fn reads_past_the_budget_fail_until_the_gate_opens() {
        let (mut client, server) = tokio::io::duplex(256 * 1024);
        let gate = Gate::default();
        let mut budgeted = Budgeted::new(server, gate.clone(), 1000);
        client.write_all(&[7u8; 600]).await.unwrap();
        let mut buf = vec![0u8; 4096];
        assert_eq!(budgeted.read(&mut buf).await.unwrap(), 600);
        client.write_all(&[7u8; 600]).await.unwrap();
        let err = budgeted.read(&mut buf).await.unwrap_err();
        assert!(is_too_much_before_handshake(&err), "{err}");
        // What still comes is dropped, and the peer's close reads as the end.
        client.write_all(&[7u8; 100_000]).await.unwrap();
        drop(client);
        assert_eq!(budgeted.read(&mut buf).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn an_open_gate_reads_without_a_budget() {
        let (mut client, server) = tokio::io::duplex(256 * 1024);
        let gate = Gate::default();
        let mut budgeted = Budgeted::new(server, gate.clone(), 1000);
        gate.open();
        let writer = tokio::spawn(async move {
            client.write_all(&[7u8; 100_000]).await.unwrap();
        });
        let mut all = Vec::new();
        budgeted.read_to_end(&mut all).await.unwrap();
        writer.await.unwrap();
        assert_eq!(all.len(), 100_000);
    }
}
