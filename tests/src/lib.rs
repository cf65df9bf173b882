//! Tests across the relay, streamer agent and technician crates; the tests live in `tests/tests/`.
