//! The relay's command line. The server itself is issue 3; until then this reports the version.

use std::process::ExitCode;

fn main() -> ExitCode {
    let version = match relay::product_version() {
        Ok(v) => v,
        Err(e) => {
            eprintln!("relay: {e}");
            return ExitCode::FAILURE;
        }
    };
    if std::env::args().nth(1).as_deref() == Some("--version") {
        println!("relay {version}");
        return ExitCode::SUCCESS;
    }
    eprintln!(
        "relay {version}: the relay server is not built yet (issue 3); only --version works."
    );
    ExitCode::from(2)
}
