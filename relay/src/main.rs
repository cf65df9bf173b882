//! The relay's command line: settings from defaults, a TOML file, environment and flags; signals.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use relay::{Config, Relay, SystemClock};
use tokio_util::sync::CancellationToken;

/// Relay for recorded remote support: pairs technicians and streamers, forwards and records sessions.
#[derive(Debug, Parser)]
#[command(version = concat!(env!("CARGO_PKG_VERSION"), " (four-part version: see --product-version)"))]
struct Args {
    /// TOML settings file (keys as in relay::Config; unset keys keep their defaults).
    #[arg(long, env = "RELAY_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory: TLS material, the recordings' spool, and by default the database and the
    /// recordings.
    #[arg(long, env = "RELAY_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The database (postgres://USER:PASSWORD@HOST/NAME or sqlite://PATH); unset, relay.db in the
    /// data directory. Prefer the variable or the settings file to a password on the command line.
    #[arg(long, env = "RELAY_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Where recordings are kept: s3://BUCKET[/PREFIX] (the AWS_* variables or the settings file
    /// say where and with which keys); unset, recordings/ in the data directory.
    #[arg(long, env = "RELAY_RECORDINGS_URL")]
    recordings_url: Option<String>,
    /// Address of the HTTPS port (agents and console).
    #[arg(long, env = "RELAY_LISTEN")]
    listen: Option<SocketAddr>,
    /// Address where /metrics is served (Prometheus text, plain HTTP; an internal address).
    #[arg(long, env = "RELAY_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Host names for the development certificate (repeat, or comma-separated in the variable).
    #[arg(
        long = "server-name",
        env = "RELAY_SERVER_NAMES",
        value_delimiter = ','
    )]
    server_names: Vec<String>,
    /// A real certificate chain (PEM) instead of the development CA.
    #[arg(long, env = "RELAY_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "RELAY_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Print the four-part product version and exit.
    #[arg(long)]
    product_version: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// The operator's commands, on the data directory (the relay may be stopped).
    #[command(subcommand)]
    Admin(Admin),
}

#[derive(Debug, clap::Subcommand)]
enum Admin {
    /// Makes a team with no member yet and prints its first owner's invitation link.
    CreateTeam {
        /// The team's name.
        #[arg(long)]
        name: String,
        /// The first owner's e-mail address.
        #[arg(long)]
        owner_email: String,
    },
    /// Lists every team on this relay.
    ListTeams,
    /// Gets a locked-out team owner back in: a password-reset link for the owner, or with
    /// --new-owner-email an invitation whose acceptor becomes the owner (the old owner an admin).
    ResetOwner {
        /// The team's id (see list-teams).
        #[arg(long)]
        team: String,
        /// A new owner's e-mail address instead of the current owner's.
        #[arg(long)]
        new_owner_email: Option<String>,
    },
    /// Makes a fleet CA in a directory: fleet-ca.pem (every relay's fleet_ca) and
    /// fleet-ca-key.pem (keep it with the operator: it issues relay certificates).
    FleetCa {
        /// Where to write them.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Issues a relay's certificate (fleet_cert, fleet_key) from the fleet CA, for the host names
    /// its peers dial (its announce_address's host first).
    FleetCert {
        /// The directory holding the fleet CA (fleet-ca-key.pem).
        #[arg(long)]
        ca_dir: PathBuf,
        /// A host name or address of the relay; repeat for more.
        #[arg(long = "name", required = true)]
        names: Vec<String>,
        /// Where to write NAME.pem and NAME-key.pem.
        #[arg(long)]
        out: PathBuf,
    },
}

impl Args {
    fn into_config(self) -> anyhow::Result<Config> {
        let mut config = match &self.config {
            Some(path) => Config::from_toml_file(path)?,
            None => Config::default(),
        };
        if let Some(v) = self.data_dir {
            config.data_dir = v;
        }
        if let Some(v) = self.database_url {
            config.database_url = Some(v);
        }
        if let Some(v) = self.recordings_url {
            config.recordings_url = Some(v);
        }
        if let Some(v) = self.listen {
            config.listen = v;
        }
        if let Some(v) = self.metrics_listen {
            config.metrics_listen = Some(v);
        }
        if !self.server_names.is_empty() {
            config.server_names = self.server_names;
        }
        if self.tls_cert.is_some() {
            config.tls_cert = self.tls_cert;
            config.tls_key = self.tls_key;
        }
        config.validate()?;
        Ok(config)
    }
}

fn to_command(a: Admin) -> relay::admin::Command {
    match a {
        Admin::CreateTeam { name, owner_email } => {
            relay::admin::Command::CreateTeam { name, owner_email }
        }
        Admin::ListTeams => relay::admin::Command::ListTeams,
        Admin::FleetCa { .. } | Admin::FleetCert { .. } => {
            unreachable!("fleet certificates are made without a relay database")
        }
        Admin::ResetOwner {
            team,
            new_owner_email,
        } => relay::admin::Command::ResetOwner {
            team,
            new_owner_email,
        },
    }
}

async fn shutdown_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    token.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    token.cancel();
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let config = args.into_config()?;
    let listen = config.listen;
    let metrics_listen = config.metrics_listen;
    let (peer_listen, announce) = (config.peer_listen, config.announce_address.clone());
    let mut relay = Relay::prepare(config, Arc::new(SystemClock)).await?;
    if let Some(first) = relay.bootstrap_if_empty().await? {
        println!("First start: created a team and its owner.");
        println!("  sign in as:       {}", first.email);
        println!("  password:         {}", first.password);
        println!("  deployment code:  {}", first.deployment_code);
        println!("  attended key:     {}", first.attended_key);
        println!("  (also written to {})", first.written_to.display());
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let local = listener.local_addr()?;
    println!(
        "Relay {} listening on https://{local}",
        relay::product_version()?
    );
    if let Some(ca) = relay.dev_ca_cert() {
        println!("  clients trust the development CA in {}", ca.display());
    }
    if let Some(addr) = metrics_listen {
        let metrics = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening for metrics on {addr}"))?;
        println!("  metrics on http://{}/metrics", metrics.local_addr()?);
        relay = relay.with_metrics_listener(metrics);
    }
    if let (Some(peer), Some(announce)) = (peer_listen, &announce) {
        println!("  peer links of the fleet on {peer}, announced as {announce}");
    }
    let token = CancellationToken::new();
    tokio::spawn(shutdown_signal(token.clone()));
    relay.serve(listener, token).await
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut args = Args::parse();
    if args.product_version {
        return match relay::product_version() {
            Ok(v) => {
                println!("{v}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("relay: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("relay: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(Command::Admin(admin)) = args.command.take() {
        let made = match &admin {
            Admin::FleetCa { dir } => Some(relay::tls::make_fleet_ca(dir)),
            Admin::FleetCert { ca_dir, names, out } => {
                Some(relay::tls::make_fleet_cert(ca_dir, names, out))
            }
            _ => None,
        };
        if let Some(made) = made {
            return match made {
                Ok((cert, key)) => {
                    println!(
                        "certificate: {}\nprivate key: {}",
                        cert.display(),
                        key.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("relay admin: {e:#}");
                    ExitCode::from(2)
                }
            };
        }
        let result = args
            .into_config()
            .and_then(|config| runtime.block_on(relay::admin::run(&config, &to_command(admin))));
        return match result {
            Ok(out) => {
                print!("{out}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("relay admin: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("relay: {e:#}");
            ExitCode::FAILURE
        }
    }
}
