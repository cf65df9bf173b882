//! The attended window on Linux: GTK 3, laid out as the Windows one (the same rectangles, so that a
//! test can click its button), in the bottom-right corner of the primary monitor, above other
//! windows and never taking the keyboard focus from the end user's programs when it appears (the
//! end user gives it the keyboard by clicking its chat line).
//!
//! GTK runs on the thread that calls [`run`] (its own), with the display in `$DISPLAY` (the
//! command line sets it from `--display`). Notices are read on a 100 ms timer, as on Windows.

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use gtk::prelude::*;
use tokio_util::sync::CancellationToken;

use super::{
    lines_for, Typed, CHAT, CHAT_INPUT, CHAT_SEND, CODE, CODE_PX, END_BUTTON, HEIGHT, MARGIN,
    RECORDED, STATUS, TEXT_PX, WHO, WIDTH,
};
use crate::agent::Notice;

fn label(fixed: &gtk::Fixed, class: &str, (x, y, w, h): (i32, i32, i32, i32)) -> gtk::Label {
    let label = gtk::Label::new(None);
    label.set_xalign(0.0);
    label.set_yalign(0.0);
    label.set_line_wrap(true);
    label.set_max_width_chars(1);
    label.set_size_request(w, h);
    label.style_context().add_class(class);
    fixed.put(&label, x, y);
    label
}

/// Shows the window until `done` is set; its End session button and closing it cancel `end`; its
/// chat line's text goes to `typed`.
pub fn run(
    notices: Receiver<Notice>,
    end: CancellationToken,
    done: Arc<AtomicBool>,
    typed: Option<Typed>,
) -> Result<()> {
    gtk::init().context("starting GTK (is $DISPLAY set?)")?;
    let css = gtk::CssProvider::new();
    css.load_from_data(
        format!(
            ".line {{ font-size: {TEXT_PX}px; }} \
             .code {{ font-size: {CODE_PX}px; font-weight: bold; }} \
             button {{ font-size: {TEXT_PX}px; }}"
        )
        .as_bytes(),
    )
    .context("the window's style")?;
    let screen = gtk::gdk::Screen::default().context("no default screen")?;
    gtk::StyleContext::add_provider_for_screen(
        &screen,
        &css,
        gtk::STYLE_PROVIDER_PRIORITY_APPLICATION,
    );

    let window = gtk::Window::new(gtk::WindowType::Toplevel);
    window.set_title(crate::PRODUCT_NAME);
    window.set_default_size(WIDTH, HEIGHT);
    window.set_size_request(WIDTH, HEIGHT);
    window.set_resizable(false);
    window.set_keep_above(true);
    // The keyboard only for writing to the technician, and only when the end user clicks there.
    window.set_accept_focus(typed.is_some());
    window.set_focus_on_map(false);
    window.set_type_hint(gtk::gdk::WindowTypeHint::Utility);
    let display = gtk::prelude::WidgetExt::display(&window);
    if let Some(monitor) = display.primary_monitor().or_else(|| display.monitor(0)) {
        let area = monitor.geometry();
        window.move_(
            area.x() + area.width() - WIDTH - MARGIN,
            area.y() + area.height() - HEIGHT - MARGIN,
        );
    }

    let fixed = gtk::Fixed::new();
    let status = label(&fixed, "line", STATUS);
    status.set_text("Connecting to the relay…");
    let code = label(&fixed, "code", CODE);
    let who = label(&fixed, "line", WHO);
    let recorded = label(&fixed, "line", RECORDED);
    // Plain text, never markup: the technician's words are shown as they are.
    let chat = label(&fixed, "line", CHAT);
    let button = gtk::Button::with_label("End session");
    let (bx, by, bw, bh) = END_BUTTON;
    button.set_size_request(bw, bh);
    button.set_can_focus(false);
    fixed.put(&button, bx, by);
    // The end user's answer: a line and its Send button, usable while the session allows chat.
    let input = gtk::Entry::new();
    input.set_placeholder_text(Some("Write to the technician…"));
    input.set_max_length(1000);
    input.set_sensitive(false);
    let (ix, iy, iw, ih) = CHAT_INPUT;
    input.set_size_request(iw, ih);
    let send = gtk::Button::with_label("Send");
    send.set_sensitive(false);
    send.set_can_focus(false);
    let (sx, sy, sw, sh) = CHAT_SEND;
    send.set_size_request(sw, sh);
    if let Some(typed) = typed {
        fixed.put(&input, ix, iy);
        fixed.put(&send, sx, sy);
        let send_line = Rc::new({
            let input = input.clone();
            move || {
                let line = input.text().trim().to_owned();
                if line.is_empty() {
                    return;
                }
                // The agent takes lines as fast as the session sends them; a full queue keeps
                // the line in the box to send again.
                if typed.try_send(line).is_ok() {
                    input.set_text("");
                }
            }
        });
        let on_enter = send_line.clone();
        input.connect_activate(move |_| on_enter());
        send.connect_clicked(move |_| send_line());
    }
    window.add(&fixed);

    let end_session = Rc::new({
        let (end, button, status) = (end.clone(), button.clone(), status.clone());
        move || {
            if !end.is_cancelled() {
                end.cancel();
                button.set_sensitive(false);
                status.set_text("Ending the session…");
            }
        }
    });
    let on_click = end_session.clone();
    button.connect_clicked(move |_| on_click());
    // The window goes when the agent has ended the session (the timer sees `done`).
    window.connect_delete_event(move |_, _| {
        end_session();
        gtk::glib::Propagation::Stop
    });

    let shown = window.clone();
    gtk::glib::timeout_add_local(Duration::from_millis(100), move || {
        while let Ok(notice) = notices.try_recv() {
            let lines = lines_for(&notice);
            for (label, text) in [
                (&status, lines.status),
                (&code, lines.code),
                (&who, lines.who),
                (&recorded, lines.recorded),
                (&chat, lines.chat),
            ] {
                if let Some(text) = text {
                    label.set_text(&text);
                }
            }
            if let Some(open) = lines.chat_open {
                input.set_sensitive(open);
                send.set_sensitive(open);
            }
        }
        if done.load(Ordering::Acquire) {
            shown.hide();
            gtk::main_quit();
            return gtk::glib::ControlFlow::Break;
        }
        gtk::glib::ControlFlow::Continue
    });
    window.show_all();
    gtk::main();
    Ok(())
}
