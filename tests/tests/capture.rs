//! X11 capture on a virtual display (Xorg with the dummy driver): images come through MIT-SHM, and
//! after the first capture only what the DAMAGE extension reports is read again; a still screen is
//! reported as unchanged, and the frame kept up to date equals a whole capture after every change.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use streamer_agent::capture::x11::X11Source;
use streamer_agent::capture::{Change, Frame, Monitor, Rect, ScreenSource};
use system_tests::content::Canvas;
use system_tests::XDisplay;

const W: u16 = 640;
const H: u16 = 480;

fn solid(width: u16, height: u16, bgrx: [u8; 4]) -> Vec<u8> {
    bgrx.repeat(usize::from(width) * usize::from(height))
}

/// The next capture that sees a change: the server's "something changed" event may reach this
/// client a moment after the drawing client's reply.
fn next_change(source: &mut X11Source, monitor: &Monitor, frame: &mut Frame) -> Change {
    for _ in 0..100 {
        let change = source.capture_changes(monitor, frame).unwrap();
        if change != Change::Unchanged {
            return change;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("no change seen in a second");
}

#[test]
fn only_what_changed_is_read_again_and_a_still_screen_reads_nothing() {
    let display = XDisplay::start(W, H);
    let canvas = Canvas::open(&display.name, W, H).unwrap();
    canvas.show(&solid(W, H, [200, 100, 50, 0])).unwrap();
    let mut source = X11Source::connect(Some(&display.name)).unwrap();
    let monitor = source.monitors().unwrap().remove(0);
    assert!(
        source.uses_shared_memory(&monitor),
        "Xorg offers MIT-SHM to a local client"
    );
    assert!(source.reports_changes(), "Xorg offers DAMAGE and XFixes");

    let mut frame = Frame::empty();
    assert_eq!(
        source.capture_changes(&monitor, &mut frame).unwrap(),
        Change::Whole
    );
    assert_eq!(frame, source.capture(&monitor).unwrap());
    assert_eq!(&frame.bgra[..3], &[200, 100, 50]);

    // Nothing drawn: nothing read.
    assert_eq!(
        source.capture_changes(&monitor, &mut frame).unwrap(),
        Change::Unchanged
    );
    assert_eq!(
        source.capture_changes(&monitor, &mut frame).unwrap(),
        Change::Unchanged
    );

    // A small change: that rectangle is read, and the frame is the screen again.
    canvas
        .show_rect((100, 40, 30, 8), &solid(30, 8, [1, 2, 3, 0]))
        .unwrap();
    let change = source.capture_changes(&monitor, &mut frame).unwrap();
    let Change::Regions(rects) = &change else {
        panic!("a small change read as {change:?}");
    };
    let covers = |r: &Rect| r.x <= 100 && r.y <= 40 && r.x + r.width >= 130 && r.y + r.height >= 48;
    assert!(rects.iter().any(covers), "{rects:?} miss the change");
    let area: u32 = rects
        .iter()
        .map(|r| u32::from(r.width) * u32::from(r.height))
        .sum();
    assert!(
        area < u32::from(W) * u32::from(H) / 10,
        "{rects:?} read far more than changed"
    );
    assert_eq!(change.rows(H), Some((40, 48)));
    assert_eq!(frame, source.capture(&monitor).unwrap());
    let at = 44 * frame.stride + 110 * 4;
    assert_eq!(&frame.bgra[at..at + 3], &[1, 2, 3]);

    // Many scattered changes at once (past the number read one by one) still end in the screen.
    for i in 0..40i16 {
        canvas
            .show_rect(
                (i * 15, (i * 11) % 470, 5, 5),
                &solid(5, 5, [9, 9, u8::try_from(i).unwrap(), 0]),
            )
            .unwrap();
    }
    assert!(matches!(
        next_change(&mut source, &monitor, &mut frame),
        Change::Regions(_)
    ));
    assert_eq!(frame, source.capture(&monitor).unwrap());
    assert_eq!(
        source.capture_changes(&monitor, &mut frame).unwrap(),
        Change::Unchanged
    );

    // A frame that is not this source's last (another size) is read whole.
    let mut other = Frame::empty();
    assert_eq!(
        source.capture_changes(&monitor, &mut other).unwrap(),
        Change::Whole
    );
    assert_eq!(other, frame);
}
