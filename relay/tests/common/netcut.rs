//! A network path to the relay that can fail like a real one: a TCP forwarder whose `cut` stops
//! every byte both ways while neither socket closes (no FIN, no reset), as when a laptop leaves
//! the Wi-Fi. Only timeouts can tell.

#![allow(dead_code)]

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub struct NetPath {
    /// `localhost:PORT`, to connect to instead of the relay.
    pub addr: String,
    cut: CancellationToken,
    accept: tokio::task::JoinHandle<()>,
}

impl NetPath {
    /// Forwards connections made to `self.addr` to `relay_addr` (`host:port`).
    pub async fn to(relay_addr: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = CancellationToken::new();
        let target = relay_addr.to_owned();
        let token = cut.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let relay = TcpStream::connect(&target).await.unwrap();
                tokio::spawn(pipe(client, relay, token.clone()));
            }
        });
        Self {
            addr: format!("localhost:{port}"),
            cut,
            accept,
        }
    }

    /// The network fails: nothing more passes, nothing closes.
    pub fn cut(&self) {
        self.cut.cancel();
    }
}

impl Drop for NetPath {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn pipe(client: TcpStream, relay: TcpStream, cut: CancellationToken) {
    let (mut cr, mut cw) = client.into_split();
    let (mut rr, mut rw) = relay.into_split();
    let up = async {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = cr.read(&mut buf).await {
            if n == 0 || rw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    };
    let down = async {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = rr.read(&mut buf).await {
            if n == 0 || cw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    };
    tokio::select! {
        _ = async { tokio::join!(up, down) } => {}
        _ = cut.cancelled() => {
            // Hold all four halves open, silent, until the test's runtime ends.
            std::future::pending::<()>().await;
        }
    }
    drop((cr, cw, rr, rw));
}
