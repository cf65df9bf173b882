//! The clipboard on X11: the `CLIPBOARD` selection, watched with XFixes and read as
//! `UTF8_STRING` (also in `INCR` chunks, as GTK and Qt send large texts), and both `CLIPBOARD`
//! and `PRIMARY` owned with the technician's text, answering `TARGETS`, `UTF8_STRING`, `TEXT`
//! and `STRING` requests (ICCCM section 2).
//!
//! One thread per session waits for the display's events on a connection of its own; `set`
//! writes from the session's thread through the same connection (x11rb's connection is shared
//! safely). Dropping the clipboard destroys its window, which ends the thread.

use std::sync::{Arc, Mutex};

use x11rb::connection::Connection;
use x11rb::protocol::xfixes::{ConnectionExt as _, SelectionEventMask};
use x11rb::protocol::xproto::{
    Atom, AtomEnum, ConnectionExt as _, CreateWindowAux, EventMask, PropMode, Property,
    SelectionNotifyEvent, SelectionRequestEvent, Window, WindowClass, SELECTION_NOTIFY_EVENT,
};
use x11rb::protocol::Event;
use x11rb::rust_connection::RustConnection;
use x11rb::wrapper::ConnectionExt as _;
use x11rb::CURRENT_TIME;

use super::{within_limit, Changes, Clipboard, ClipboardError, Last};

fn system<E: std::fmt::Display>(e: E) -> ClipboardError {
    ClipboardError::System(e.to_string())
}

#[derive(Debug, Clone, Copy)]
struct Atoms {
    clipboard: Atom,
    utf8: Atom,
    targets: Atom,
    text: Atom,
    incr: Atom,
    /// The property on our window that other programs' text is converted into.
    landing: Atom,
}

impl Atoms {
    fn intern(conn: &RustConnection) -> Result<Self, ClipboardError> {
        let atom = |name: &str| -> Result<Atom, ClipboardError> {
            Ok(conn
                .intern_atom(false, name.as_bytes())
                .map_err(system)?
                .reply()
                .map_err(system)?
                .atom)
        };
        Ok(Self {
            clipboard: atom("CLIPBOARD")?,
            utf8: atom("UTF8_STRING")?,
            targets: atom("TARGETS")?,
            text: atom("TEXT")?,
            incr: atom("INCR")?,
            landing: atom("REMOTE_SUPPORT_CLIPBOARD")?,
        })
    }
}

/// What both threads share.
#[derive(Debug, Default)]
struct Shared {
    /// The text this window owns the selections with (the technician's), if it still owns them.
    owned: Option<String>,
    /// The last text on the clipboard either way.
    last: Last,
}

/// The X11 clipboard of one display, for one session.
#[derive(Debug)]
pub struct X11Clipboard {
    conn: Arc<RustConnection>,
    window: Window,
    atoms: Atoms,
    shared: Arc<Mutex<Shared>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl X11Clipboard {
    /// Connects to `display` (or `$DISPLAY`) and reports other programs' new clipboard text to
    /// `changes`.
    pub fn connect(display: Option<&str>, changes: Changes) -> Result<Self, ClipboardError> {
        let (conn, screen) = x11rb::connect(display).map_err(system)?;
        let conn = Arc::new(conn);
        let root = conn
            .setup()
            .roots
            .get(screen)
            .map(|s| s.root)
            .ok_or_else(|| ClipboardError::System("no screen".into()))?;
        conn.xfixes_query_version(5, 0)
            .map_err(system)?
            .reply()
            .map_err(|e| ClipboardError::System(format!("no XFixes extension: {e}")))?;
        let atoms = Atoms::intern(&conn)?;
        let window = conn.generate_id().map_err(system)?;
        conn.create_window(
            0,
            window,
            root,
            0,
            0,
            1,
            1,
            0,
            WindowClass::INPUT_ONLY,
            0,
            &CreateWindowAux::new()
                .event_mask(EventMask::PROPERTY_CHANGE | EventMask::STRUCTURE_NOTIFY),
        )
        .map_err(system)?
        .check()
        .map_err(system)?;
        conn.xfixes_select_selection_input(
            window,
            atoms.clipboard,
            SelectionEventMask::SET_SELECTION_OWNER,
        )
        .map_err(system)?
        .check()
        .map_err(system)?;
        let shared = Arc::new(Mutex::new(Shared::default()));
        let watcher = Watcher {
            conn: conn.clone(),
            window,
            atoms,
            shared: shared.clone(),
            changes,
            incoming: None,
        };
        let thread = std::thread::Builder::new()
            .name("clipboard".into())
            .spawn(move || watcher.run())
            .map_err(system)?;
        Ok(Self {
            conn,
            window,
            atoms,
            shared,
            thread: Some(thread),
        })
    }
}

impl Clipboard for X11Clipboard {
    fn set(&mut self, text: &str) -> Result<(), ClipboardError> {
        {
            let mut shared = self.shared.lock().map_err(system)?;
            shared.owned = Some(text.to_owned());
            shared.last.is_new(text);
        }
        for selection in [self.atoms.clipboard, AtomEnum::PRIMARY.into()] {
            self.conn
                .set_selection_owner(self.window, selection, CURRENT_TIME)
                .map_err(system)?;
        }
        let owner = self
            .conn
            .get_selection_owner(self.atoms.clipboard)
            .map_err(system)?
            .reply()
            .map_err(system)?
            .owner;
        if owner != self.window {
            return Err(ClipboardError::System(
                "another program kept the clipboard".into(),
            ));
        }
        Ok(())
    }
}

impl Drop for X11Clipboard {
    fn drop(&mut self) {
        // The watcher ends on its window's DestroyNotify.
        let _ = self.conn.destroy_window(self.window);
        let _ = self.conn.flush();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Text arriving in `INCR` chunks.
struct Incoming {
    bytes: Vec<u8>,
    utf8: bool,
}

struct Watcher {
    conn: Arc<RustConnection>,
    window: Window,
    atoms: Atoms,
    shared: Arc<Mutex<Shared>>,
    changes: Changes,
    incoming: Option<Incoming>,
}

impl Watcher {
    fn run(mut self) {
        loop {
            let event = match self.conn.wait_for_event() {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(error = %e, "the clipboard's display connection failed");
                    return;
                }
            };
            let result = match event {
                Event::DestroyNotify(e) if e.window == self.window => return,
                Event::XfixesSelectionNotify(e)
                    if e.selection == self.atoms.clipboard
                        && e.owner != self.window
                        && e.owner != x11rb::NONE =>
                {
                    self.convert(e.selection_timestamp)
                }
                Event::SelectionNotify(e) if e.requestor == self.window => {
                    if e.property == x11rb::NONE {
                        // The owner has no text (an image, say): nothing to send.
                        Ok(())
                    } else {
                        self.read()
                    }
                }
                Event::PropertyNotify(e)
                    if e.window == self.window
                        && e.atom == self.atoms.landing
                        && e.state == Property::NEW_VALUE
                        && self.incoming.is_some() =>
                {
                    self.read_chunk()
                }
                Event::SelectionRequest(e) => self.answer(&e),
                Event::SelectionClear(e) if e.selection == self.atoms.clipboard => {
                    if let Ok(mut shared) = self.shared.lock() {
                        shared.owned = None;
                    }
                    Ok(())
                }
                _ => Ok(()),
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "clipboard");
            }
        }
    }

    fn convert(&mut self, time: u32) -> Result<(), ClipboardError> {
        self.incoming = None;
        self.conn
            .convert_selection(
                self.window,
                self.atoms.clipboard,
                self.atoms.utf8,
                self.atoms.landing,
                time,
            )
            .map_err(system)?;
        self.conn.flush().map_err(system)
    }

    /// The whole property, deleting it (which also asks an `INCR` sender for the next chunk).
    fn take_property(&self) -> Result<(Atom, Vec<u8>), ClipboardError> {
        let max_words =
            u32::try_from(protocol::codec::limits::CLIPBOARD / 4 + 1).unwrap_or(u32::MAX);
        let reply = self
            .conn
            .get_property(
                true,
                self.window,
                self.atoms.landing,
                AtomEnum::ANY,
                0,
                max_words,
            )
            .map_err(system)?
            .reply()
            .map_err(system)?;
        if reply.bytes_after > 0 {
            return Err(ClipboardError::System(
                "the clipboard holds more text than a session carries; not sending it".into(),
            ));
        }
        Ok((reply.type_, reply.value))
    }

    fn read(&mut self) -> Result<(), ClipboardError> {
        let (kind, value) = self.take_property()?;
        if kind == self.atoms.incr {
            // The owner sends the text in chunks, one per deletion of the property.
            self.incoming = Some(Incoming {
                bytes: Vec::new(),
                utf8: true,
            });
            return self.conn.flush().map(|_| ()).map_err(system);
        }
        self.deliver(value, kind != u32::from(AtomEnum::STRING));
        Ok(())
    }

    fn read_chunk(&mut self) -> Result<(), ClipboardError> {
        let (kind, value) = self.take_property()?;
        self.conn.flush().map_err(system)?;
        let Some(incoming) = self.incoming.as_mut() else {
            return Ok(());
        };
        if value.is_empty() {
            // A chunk of length 0 ends the transfer.
            let Incoming { bytes, utf8 } = self.incoming.take().unwrap_or(Incoming {
                bytes: Vec::new(),
                utf8: true,
            });
            self.deliver(bytes, utf8);
            return Ok(());
        }
        incoming.utf8 = kind != u32::from(AtomEnum::STRING);
        incoming.bytes.extend_from_slice(&value);
        if incoming.bytes.len() > protocol::codec::limits::CLIPBOARD {
            // Read on to the end (the owner waits for each deletion), but send nothing.
            incoming.bytes.clear();
            incoming.bytes.shrink_to_fit();
            tracing::info!("the clipboard holds more text than a session carries; not sending it");
        }
        Ok(())
    }

    fn deliver(&mut self, bytes: Vec<u8>, utf8: bool) {
        let text = if utf8 {
            String::from_utf8_lossy(&bytes).into_owned()
        } else {
            // STRING is Latin-1.
            bytes.iter().map(|&b| char::from(b)).collect()
        };
        let Some(text) = within_limit(text) else {
            return;
        };
        let new = self.shared.lock().map(|mut s| s.last.is_new(&text));
        if new.unwrap_or(false) {
            // The session reads these as fast as it sends them; when it has ended, nobody wants
            // the text.
            let _ = self.changes.blocking_send(text);
        }
    }

    /// Another program pastes: hands it the technician's text (ICCCM 2.2).
    fn answer(&self, e: &SelectionRequestEvent) -> Result<(), ClipboardError> {
        let a = self.atoms;
        let owned = self.shared.lock().ok().and_then(|s| s.owned.clone());
        // Obsolete requestors name no property: the target is the property then.
        let property = if e.property == x11rb::NONE {
            e.target
        } else {
            e.property
        };
        let ours = e.owner == self.window
            && (e.selection == a.clipboard || e.selection == u32::from(AtomEnum::PRIMARY));
        let answered = match owned {
            Some(text) if ours => {
                if e.target == a.targets {
                    let targets = [a.targets, a.utf8, a.text, AtomEnum::STRING.into()];
                    self.conn
                        .change_property32(
                            PropMode::REPLACE,
                            e.requestor,
                            property,
                            AtomEnum::ATOM,
                            &targets,
                        )
                        .map_err(system)?;
                    true
                } else if e.target == a.utf8 || e.target == a.text {
                    self.conn
                        .change_property8(
                            PropMode::REPLACE,
                            e.requestor,
                            property,
                            a.utf8,
                            text.as_bytes(),
                        )
                        .map_err(system)?;
                    true
                } else if e.target == u32::from(AtomEnum::STRING) {
                    let latin1: Vec<u8> = text
                        .chars()
                        .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
                        .collect();
                    self.conn
                        .change_property8(
                            PropMode::REPLACE,
                            e.requestor,
                            property,
                            AtomEnum::STRING,
                            &latin1,
                        )
                        .map_err(system)?;
                    true
                } else {
                    false
                }
            }
            _ => false,
        };
        let notify = SelectionNotifyEvent {
            response_type: SELECTION_NOTIFY_EVENT,
            sequence: 0,
            time: e.time,
            requestor: e.requestor,
            selection: e.selection,
            target: e.target,
            property: if answered { property } else { x11rb::NONE },
        };
        self.conn
            .send_event(false, e.requestor, EventMask::NO_EVENT, notify)
            .map_err(system)?;
        self.conn.flush().map_err(system)
    }
}
