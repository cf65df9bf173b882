//! Settings kept in a file beside the streamer, so that an end user can start the attended
//! streamer with a double click: the team hands out the program together with its
//! `streamer-settings.toml` (relay, CA, attended key) and the CA certificate.
//!
//! ```toml
//! relay = "relay.example.com:443"
//! ca = "relay-ca.pem"          # relative to the file's folder
//! team_key = "..."             # attended: the team's access key
//! name = "Reception PC"        # optional
//! ```
//!
//! The command line and the environment win over the file. Unknown keys are refused, so that a
//! misspelt setting is not silently ignored.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

/// The file's name, looked for in the folder of the running program.
pub const FILE_NAME: &str = "streamer-settings.toml";

/// What the file may set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    /// The relay, `host:port`.
    pub relay: Option<String>,
    /// The relay's CA certificate; a relative path is taken from the file's folder.
    pub ca: Option<PathBuf>,
    /// The team's attended-access key.
    pub team_key: Option<String>,
    /// The computer's name as technicians see it.
    pub name: Option<String>,
}

impl FileSettings {
    /// Parses `text`, the content of the file at `path` (for relative paths and messages).
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let mut settings: FileSettings =
            toml::from_str(text).with_context(|| format!("{} is not valid", path.display()))?;
        if let (Some(ca), Some(dir)) = (&settings.ca, path.parent()) {
            if ca.is_relative() {
                settings.ca = Some(dir.join(ca));
            }
        }
        Ok(settings)
    }

    /// The file at `path`, or `None` when there is none.
    pub fn load(path: &Path) -> Result<Option<Self>> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, path).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// The file beside the running program, or `None` when there is none.
    pub fn beside_program() -> Result<Option<Self>> {
        match std::env::current_exe() {
            Ok(exe) => match exe.parent() {
                Some(dir) => Self::load(&dir.join(FILE_NAME)),
                None => Ok(None),
            },
            Err(_) => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relative_ca_is_beside_the_file_and_unknown_keys_are_refused() {
        let path = Path::new("/opt/support/streamer-settings.toml");
        let s = FileSettings::parse(
            "relay = \"relay.example.com:443\"\nca = \"relay-ca.pem\"\nteam_key = \"k\"\n",
            path,
        )
        .unwrap();
        assert_eq!(s.relay.as_deref(), Some("relay.example.com:443"));
        assert_eq!(s.ca, Some(PathBuf::from("/opt/support/relay-ca.pem")));
        assert_eq!(s.team_key.as_deref(), Some("k"));
        assert_eq!(s.name, None);

        let absolute = FileSettings::parse("ca = \"/etc/ca.pem\"", path).unwrap();
        assert_eq!(absolute.ca, Some(PathBuf::from("/etc/ca.pem")));

        let err = format!(
            "{:#}",
            FileSettings::parse("relay = \"r:1\"\nteam-key = \"k\"\n", path).unwrap_err()
        );
        assert!(
            err.contains("streamer-settings.toml") && err.contains("team-key"),
            "{err}"
        );
        assert!(FileSettings::parse("relay = 443", path).is_err());
    }

    #[test]
    fn no_file_is_no_settings() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            FileSettings::load(&dir.path().join(FILE_NAME)).unwrap(),
            None
        );
    }
}
