//! What the app remembers between runs, in `settings.json` in the platform's config folder (Linux
//! `~/.config/<identifier>/`, Windows `%APPDATA%\<identifier>\`, macOS `~/Library/Application
//! Support/<identifier>/`): the relay's address, the e-mail address, and for each device the last
//! frame rate and monitor chosen, and the folder files from remote computers go into. Never the
//! password or the sign-in token.
//!
//! A file that cannot be read as settings is not overwritten: it is moved aside to
//! `settings.json.unreadable` (what a person may want to look at), and the app starts from defaults.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The file's name in the config folder.
pub const FILE: &str = "settings.json";

/// How many devices the file remembers choices for: the most recently used ones are kept.
pub const MAX_DEVICES: usize = 200;

/// The remembered settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Settings {
    /// The relay's address as last signed in to (`host:port`).
    pub relay: String,
    /// The e-mail address last signed in with.
    pub email: String,
    /// Choices per device id.
    pub devices: BTreeMap<String, DeviceChoice>,
    /// Where files fetched from remote computers go (`None`: the Downloads folder).
    pub files_folder: Option<PathBuf>,
}

/// What was last chosen for one device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DeviceChoice {
    /// Frames a second.
    pub frame_rate: Option<u16>,
    /// The monitor's id.
    pub monitor_id: Option<u32>,
    /// When it was last used (milliseconds since the epoch), to keep the most recent.
    pub used_at_ms: u64,
}

/// The settings file in `dir`, loaded and saved as a whole.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
}

impl Store {
    /// The settings in `dir` (created when saving).
    pub fn new(dir: &Path) -> Self {
        Self {
            path: dir.join(FILE),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The settings: defaults when there is no file; when the file is unreadable, defaults and the
    /// file moved aside, with a sentence saying so.
    pub fn load(&self) -> (Settings, Option<String>) {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return (Settings::default(), None)
            }
            Err(e) => {
                return (
                    Settings::default(),
                    Some(format!("{} cannot be read: {e}", self.path.display())),
                )
            }
        };
        match serde_json::from_slice::<Settings>(&bytes) {
            Ok(s) => (s, None),
            Err(e) => {
                let aside = self.path.with_extension("json.unreadable");
                let moved = std::fs::rename(&self.path, &aside);
                let what = match moved {
                    Ok(()) => format!("moved to {}", aside.display()),
                    Err(m) => format!("left in place ({m})"),
                };
                (
                    Settings::default(),
                    Some(format!(
                        "{} is not a settings file ({e}); {what}, and the app starts from defaults",
                        self.path.display()
                    )),
                )
            }
        }
    }

    /// Writes the settings whole (a temporary file renamed over the old one, so that a crash
    /// leaves the old or the new file, never half of one).
    pub fn save(&self, settings: &Settings) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = self.path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(settings).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &self.path)
    }
}

impl Settings {
    /// Notes a choice for `device` at `now_ms`, forgetting the least recently used devices past
    /// [`MAX_DEVICES`].
    pub fn choose(&mut self, device: &str, now_ms: u64, change: impl FnOnce(&mut DeviceChoice)) {
        let choice = self.devices.entry(device.to_owned()).or_default();
        change(choice);
        choice.used_at_ms = now_ms;
        while self.devices.len() > MAX_DEVICES {
            let oldest = self
                .devices
                .iter()
                .min_by_key(|(_, c)| c.used_at_ms)
                .map(|(id, _)| id.clone());
            match oldest {
                Some(id) => self.devices.remove(&id),
                None => break,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn settings_round_trip_and_a_missing_file_is_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(&dir.path().join("nested"));
        assert_eq!(store.load(), (Settings::default(), None));
        let mut s = Settings {
            relay: "relay.example.com:443".into(),
            email: "ada@acme.example".into(),
            ..Settings::default()
        };
        s.choose("dev-1", 5, |c| c.frame_rate = Some(15));
        s.choose("dev-1", 6, |c| c.monitor_id = Some(1));
        store.save(&s).unwrap();
        let (back, warning) = store.load();
        assert_eq!((back.clone(), warning), (s, None));
        assert_eq!(
            back.devices["dev-1"],
            DeviceChoice {
                frame_rate: Some(15),
                monitor_id: Some(1),
                used_at_ms: 6
            }
        );
        let text = std::fs::read_to_string(store.path()).unwrap();
        assert!(
            !text.contains("password") && !text.contains("token"),
            "{text}"
        );
    }

    #[test]
    fn an_unreadable_file_is_moved_aside_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        std::fs::write(store.path(), b"{\"relay\": 42").unwrap();
        let (s, warning) = store.load();
        assert_eq!(s, Settings::default());
        let warning = warning.unwrap();
        assert!(warning.contains("settings.json.unreadable"), "{warning}");
        assert_eq!(
            std::fs::read(dir.path().join("settings.json.unreadable")).unwrap(),
            b"{\"relay\": 42"
        );
        assert!(!store.path().exists());
    }

    #[test]
    fn only_the_most_recently_used_devices_are_kept() {
        let mut s = Settings::default();
        for i in 0..(MAX_DEVICES as u64 + 5) {
            s.choose(&format!("dev-{i}"), i, |c| c.frame_rate = Some(30));
        }
        assert_eq!(s.devices.len(), MAX_DEVICES);
        assert!(!s.devices.contains_key("dev-4"));
        assert!(s.devices.contains_key("dev-5"));
    }
}
