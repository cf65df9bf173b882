//! The client side of a relay connection, shared by the technician and the streamer.
//!
//! It opens TCP, completes TLS against a CA the caller trusts (the relay's development CA, or the
//! system's roots for a real certificate; never "accept any certificate"), upgrades to WebSocket at
//! the agent path, and sends and receives protocol frames, one per binary WebSocket message. It also
//! makes JSON API calls over the same kind of connection (sign-in, settings).

pub mod files;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use protocol::{
    decode_frame, encode_to_bytes, ClientEvent, ClientHandshake, ClientHandshakeError, Credential,
    Message, ProductVersion, Refusal, Role, WireError,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;

/// The agent endpoint's path on the relay (docs/PROTOCOL.md, Transport).
pub const AGENT_PATH: &str = "/v1/agent";

/// What went wrong on a relay connection.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The CA file could not be read or holds no certificate (user's fault).
    #[error("trusted CA: {0}")]
    Trust(String),
    /// TCP or TLS failed below the certificate check: the relay is unreachable (no such host,
    /// nothing listening, no route) or the connection broke during the TLS handshake.
    #[error("connecting to the relay: {0}")]
    Connect(#[source] std::io::Error),
    /// The relay answered, but its certificate does not chain to a CA this client trusts, or is not
    /// for the address dialled: a relay on its own CA needs that CA's certificate.
    #[error("the relay's certificate is not trusted: {0}")]
    Certificate(String),
    /// Sign-in is paused after too many wrong passwords (HTTP 429 `TOO_MANY_ATTEMPTS`), even with
    /// the right one; the message says for how long.
    #[error("{message}")]
    SignInPaused {
        /// The relay's sentence ("try again in 15 minutes").
        message: String,
    },
    /// The WebSocket layer failed.
    #[error("WebSocket: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    /// The relay sent bytes that are not a valid frame (relay's fault).
    #[error("the relay sent an invalid frame: {0}")]
    Wire(#[from] WireError),
    /// A message could not be encoded (caller's fault).
    #[error("cannot send: {0}")]
    Encode(WireError),
    /// The relay refused the connection.
    #[error("the relay refused the connection: {0}")]
    Refused(Refusal),
    /// The relay broke the protocol (relay's fault).
    #[error("the relay broke the protocol: {0}")]
    Protocol(String),
    /// The connection is closed.
    #[error("the connection is closed")]
    Closed,
    /// An HTTP API call failed below the JSON level.
    #[error("API call: {0}")]
    Api(String),
}

/// TLS settings for reaching a relay.
#[derive(Debug, Clone)]
pub struct Connector {
    tls: Arc<rustls::ClientConfig>,
}

impl Connector {
    /// Trusts exactly the CA certificates in a PEM file (the relay's development CA).
    pub fn trusting_ca_file(path: &std::path::Path) -> Result<Self, LinkError> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| LinkError::Trust(format!("{}: {e}", path.display())))?
            .collect::<Result<_, _>>()
            .map_err(|e| LinkError::Trust(format!("{}: {e}", path.display())))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| LinkError::Trust(format!("{}: {e}", path.display())))?;
        }
        if roots.is_empty() {
            return Err(LinkError::Trust(format!(
                "{} holds no certificate",
                path.display()
            )));
        }
        Self::trusting(roots)
    }

    /// Trusts the given roots.
    pub fn trusting(roots: rustls::RootCertStore) -> Result<Self, LinkError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| LinkError::Trust(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self { tls: Arc::new(tls) })
    }

    /// Opens TCP and TLS to `addr` (`host:port`), checking the certificate for `host`. The stream
    /// speaks no HTTP yet (tests use it to send raw bytes).
    pub async fn tls(&self, addr: &str) -> Result<TlsStream<TcpStream>, LinkError> {
        let host = addr
            .rsplit_once(':')
            .map_or(addr, |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let server_name = ServerName::try_from(host).map_err(|e| {
            LinkError::Connect(std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
        })?;
        let tcp = TcpStream::connect(addr).await.map_err(LinkError::Connect)?;
        let _ = tcp.set_nodelay(true);
        TlsConnector::from(self.tls.clone())
            .connect(server_name, tcp)
            .await
            .map_err(tls_error)
    }

    /// One HTTPS request with the given headers and body; returns the status, headers and body.
    pub async fn request(
        &self,
        addr: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<(u16, hyper::HeaderMap, Bytes), LinkError> {
        use http_body_util::BodyExt;
        let http = |e: hyper::Error| LinkError::Api(e.to_string());
        let tls = self.tls(addr).await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(http)?;
        tokio::spawn(conn);
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", addr);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(http_body_util::Full::new(body))
            .map_err(|e| LinkError::Api(e.to_string()))?;
        let resp = sender.send_request(req).await.map_err(http)?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.map_err(http)?.to_bytes();
        Ok((status, headers, bytes))
    }

    /// One JSON API request; returns the HTTP status and the body as JSON (`Null` when empty).
    pub async fn api(
        &self,
        addr: &str,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> Result<(u16, serde_json::Value), LinkError> {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let mut headers = Vec::new();
        if let Some(b) = &bearer {
            headers.push(("authorization", b.as_str()));
        }
        let payload = match body {
            Some(v) => {
                headers.push(("content-type", "application/json"));
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        let (status, _, bytes) = self.request(addr, method, path, &headers, payload).await?;
        let json = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .map_err(|e| LinkError::Api(format!("response is not JSON: {e}")))?
        };
        Ok((status, json))
    }

    /// Signs in with an e-mail address and password; returns the sign-in token.
    pub async fn sign_in(
        &self,
        addr: &str,
        email: &str,
        password: &str,
    ) -> Result<String, LinkError> {
        let body = serde_json::json!({ "email": email, "password": password });
        let (status, _, bytes) = self
            .request(
                addr,
                "POST",
                "/api/v1/sign-in",
                &[("content-type", "application/json")],
                Bytes::from(body.to_string()),
            )
            .await?;
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        if status == 429 && json["error"]["code"] == "TOO_MANY_ATTEMPTS" {
            return Err(LinkError::SignInPaused {
                message: json["error"]["message"]
                    .as_str()
                    .unwrap_or("Too many wrong passwords: sign-in is paused; try again later.")
                    .to_owned(),
            });
        }
        match (status, json["token"].as_str()) {
            (200, Some(token)) => Ok(token.to_owned()),
            _ => Err(LinkError::Refused(Refusal::new(
                protocol::ErrorCode::AuthenticationFailed,
                json["error"]["message"]
                    .as_str()
                    .unwrap_or("sign-in failed")
                    .to_owned(),
            ))),
        }
    }

    /// Connects to the relay's agent endpoint at `addr` (`host:port`).
    pub async fn connect(&self, addr: &str) -> Result<Connection, LinkError> {
        let tls = self.tls(addr).await?;
        let url = format!("wss://{addr}{AGENT_PATH}");
        let config = WebSocketConfig::default()
            .max_message_size(Some(protocol::max_frame_len()))
            .max_frame_size(Some(protocol::max_frame_len()));
        let (ws, _) = tokio_tungstenite::client_async_with_config(url, tls, Some(config)).await?;
        Ok(Connection {
            ws,
            heard: std::time::Instant::now(),
            agreed: None,
        })
    }
}

/// A TLS handshake's failure: a certificate the client does not trust is told apart from a broken
/// connection, since the technician's remedy differs (the relay's CA, against the network).
fn tls_error(e: std::io::Error) -> LinkError {
    let certificate = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .and_then(|r| match r {
            rustls::Error::InvalidCertificate(c) => Some(format!("{c:?}")),
            rustls::Error::NoCertificatesPresented => Some("the relay sent none".to_owned()),
            _ => None,
        });
    match certificate {
        Some(why) => LinkError::Certificate(why),
        None => LinkError::Connect(e),
    }
}

/// The `host:port` to dial for what a person typed as the relay's address: surrounding spaces, an
/// `https://` or `wss://` scheme and a trailing `/` are dropped, and a missing port means 443 (the
/// relay's HTTPS port in production). An IPv6 address goes in brackets (`[::1]:8443`). Anything
/// else (spaces inside, a path, a port that is not a number from 1 to 65535) is refused with the
/// reason.
pub fn relay_address(typed: &str) -> Result<String, String> {
    let mut s = typed.trim();
    for scheme in ["https://", "wss://"] {
        if s.len() >= scheme.len() && s[..scheme.len()].eq_ignore_ascii_case(scheme) {
            s = &s[scheme.len()..];
        }
    }
    let s = s.strip_suffix('/').unwrap_or(s);
    if s.is_empty() {
        return Err("Enter the relay's address, such as relay.example.com.".to_owned());
    }
    if s.contains('/') || s.chars().any(char::is_whitespace) || s.contains('@') {
        return Err(format!(
            "\"{typed}\" is not a relay address: give a host name, optionally with :port (such as \
             relay.example.com or relay.example.com:8443)."
        ));
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            return Err(format!("\"{typed}\": an IPv6 address needs its closing ]."));
        };
        match after {
            "" => (format!("[{host}]"), None),
            _ => match after.strip_prefix(':') {
                Some(p) => (format!("[{host}]"), Some(p)),
                None => return Err(format!("\"{typed}\": a port follows the ] after a colon.")),
            },
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, _)) if h.contains(':') => {
                return Err(format!(
                    "\"{typed}\": write an IPv6 address in brackets, such as [::1]:8443."
                ))
            }
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (s.to_owned(), None),
        }
    };
    if host.is_empty() || host == "[]" {
        return Err(format!("\"{typed}\" has no host name."));
    }
    let port = match port {
        None => 443,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => {
                return Err(format!(
                    "\"{typed}\": the port must be a number from 1 to 65535."
                ))
            }
        },
    };
    Ok(format!("{host}:{port}"))
}

/// An open connection to the relay.
#[derive(Debug)]
pub struct Connection {
    ws: WebSocketStream<TlsStream<TcpStream>>,
    /// When the relay was last heard from (any WebSocket message, pongs included).
    heard: std::time::Instant,
    /// The protocol version agreed in [`Connection::handshake`]: no kind it lacks is sent.
    agreed: Option<semver::Version>,
}

/// What the handshake established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Established {
    /// The agreed protocol version.
    pub protocol_version: String,
    /// The team's id.
    pub team_id: String,
    /// The name the relay knows this client by.
    pub name: String,
    /// A device credential issued during the handshake (deployment-code registration).
    pub registered: Option<(String, String)>,
    /// A session code issued during the handshake (attended streamer), with seconds to expiry.
    pub session_code: Option<(String, u32)>,
}

impl Connection {
    /// The protocol version agreed in the handshake (none before it ends).
    pub fn agreed(&self) -> Option<&semver::Version> {
        self.agreed.as_ref()
    }

    /// Whether the agreed version has `kind` (true before the handshake ends).
    pub fn speaks(&self, kind: protocol::MessageKind) -> bool {
        self.agreed.as_ref().is_none_or(|v| kind.known_at(v))
    }

    /// Sends one message. A kind the agreed version lacks is not sent (the relay would take it for
    /// an unknown kind and close the connection): [`LinkError::Protocol`].
    pub async fn send(&mut self, msg: &Message) -> Result<(), LinkError> {
        if !self.speaks(msg.kind()) {
            let (major, minor) = msg.kind().since();
            return Err(LinkError::Protocol(format!(
                "{} needs protocol {major}.{minor}.0; the relay agreed on {}",
                msg.kind().name(),
                self.agreed
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default()
            )));
        }
        let bytes = encode_to_bytes(msg).map_err(LinkError::Encode)?;
        self.send_raw(bytes).await
    }

    /// Sends bytes as one binary WebSocket message, whatever they hold (tests of bad input).
    pub async fn send_raw(&mut self, bytes: Bytes) -> Result<(), LinkError> {
        self.ws.send(WsMessage::Binary(bytes)).await?;
        Ok(())
    }

    /// Sends a text WebSocket message (tests of bad input).
    pub async fn send_text(&mut self, text: &str) -> Result<(), LinkError> {
        self.ws.send(WsMessage::Text(text.into())).await?;
        Ok(())
    }

    /// Sends a WebSocket ping; the relay's pong counts as hearing from it ([`Connection::heard`]).
    pub async fn ping(&mut self) -> Result<(), LinkError> {
        self.ws.send(WsMessage::Ping(Bytes::new())).await?;
        Ok(())
    }

    /// When the relay was last heard from: any message received, pings and pongs included (set at
    /// the connection's opening before the first).
    pub fn heard(&self) -> std::time::Instant {
        self.heard
    }

    /// Receives the next message; `LinkError::Closed` when the relay closed the connection.
    pub async fn recv(&mut self) -> Result<Message, LinkError> {
        loop {
            let next = self.ws.next().await;
            if let Some(Ok(_)) = &next {
                self.heard = std::time::Instant::now();
            }
            match next {
                None | Some(Ok(WsMessage::Close(_))) => return Err(LinkError::Closed),
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(WsMessage::Binary(bytes))) => return Ok(decode_frame(bytes)?),
                Some(Ok(WsMessage::Text(_))) => {
                    return Err(LinkError::Protocol("the relay sent a text message".into()))
                }
                Some(Ok(_)) => {}
            }
        }
    }

    /// Runs the handshake as `role` with `credential`.
    pub async fn handshake(
        &mut self,
        role: Role,
        version: ProductVersion,
        credential: Credential,
    ) -> Result<Established, LinkError> {
        let (mut machine, hello) = ClientHandshake::start(role, version, credential);
        self.send(&hello).await?;
        let mut registered = None;
        let mut session_code = None;
        loop {
            let msg = self.recv().await?;
            match machine.receive(msg) {
                Ok(ClientEvent::Send(next)) => self.send(&next).await?,
                Ok(ClientEvent::Registered { device_id, secret }) => {
                    registered = Some((device_id, secret))
                }
                Ok(ClientEvent::SessionCode {
                    code,
                    expires_in_secs,
                }) => session_code = Some((code, expires_in_secs)),
                Ok(ClientEvent::Established {
                    protocol_version,
                    team_id,
                    name,
                }) => {
                    self.agreed = Some(protocol_version.clone());
                    return Ok(Established {
                        protocol_version: protocol_version.to_string(),
                        team_id,
                        name,
                        registered,
                        session_code,
                    });
                }
                Err(ClientHandshakeError::Refused(r)) => return Err(LinkError::Refused(r)),
                Err(ClientHandshakeError::Protocol(r)) => {
                    return Err(LinkError::Protocol(r.to_string()))
                }
            }
        }
    }

    /// Closes the connection politely.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::relay_address;

    #[test]
    fn a_typed_address_gets_port_443_and_loses_its_scheme() {
        for (typed, want) in [
            ("relay.example.com", "relay.example.com:443"),
            ("  relay.example.com:8443 ", "relay.example.com:8443"),
            ("https://relay.example.com/", "relay.example.com:443"),
            ("WSS://relay.example.com:9000", "relay.example.com:9000"),
            ("[::1]", "[::1]:443"),
            ("[::1]:8443", "[::1]:8443"),
            ("127.0.0.1:1", "127.0.0.1:1"),
        ] {
            assert_eq!(relay_address(typed).as_deref(), Ok(want), "{typed}");
        }
    }

    #[test]
    fn a_malformed_address_is_refused_with_its_reason() {
        for (typed, why) in [
            ("", "Enter the relay's address"),
            ("   ", "Enter the relay's address"),
            ("relay.example.com:0", "from 1 to 65535"),
            ("relay.example.com:99999", "from 1 to 65535"),
            ("relay.example.com:https", "from 1 to 65535"),
            ("relay.example.com/console", "not a relay address"),
            ("relay example.com", "not a relay address"),
            ("ada@relay.example.com", "not a relay address"),
            ("::1", "in brackets"),
            ("[::1", "closing ]"),
            ("[::1]8443", "after a colon"),
            (":8443", "no host name"),
        ] {
            let err = relay_address(typed).unwrap_err();
            assert!(err.contains(why), "{typed:?}: {err}");
        }
    }
}
