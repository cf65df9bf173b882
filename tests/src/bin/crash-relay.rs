//! A relay in a process of its own, for tests that kill it without warning (a crash is a process
//! disappearing, which a relay inside the test's process cannot do). Serves the relay library on
//! the data directory given first, on 127.0.0.1 and the port given second (0 for any; the same
//! port again after a restart keeps a browser's origin), and prints `listening on PORT` when ready.

use std::path::PathBuf;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let data_dir = PathBuf::from(args.next().context("usage: crash-relay DATA_DIR PORT")?);
    let port: u16 = args
        .next()
        .context("usage: crash-relay DATA_DIR PORT")?
        .parse()
        .context("PORT is a number")?;
    let config = relay::Config {
        data_dir,
        listen: format!("127.0.0.1:{port}").parse()?,
        ..relay::Config::default()
    };
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    // Prepared (recovery included) before it says it is ready.
    let relay = relay::Relay::prepare(config, std::sync::Arc::new(relay::SystemClock)).await?;
    println!("listening on {}", listener.local_addr()?.port());
    relay.serve(listener, CancellationToken::new()).await
}
