//! The `guanxi` daemon, built inside the tests package so that its integration
//! tests can start it as a real process. Same entry point as the real binary,
//! plus one test hook: when `GUANXI_TEST_CLOCK_FILE` names a file, its content
//! (an integer of milliseconds) shifts the daemon's clock, re-read every 20 ms,
//! so tests can move time forward (offer expiry, SLA clocks) across restarts.

use std::time::Duration;

fn read_offset(path: &str) -> Option<i64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn main() -> std::process::ExitCode {
    if let Ok(path) = std::env::var("GUANXI_TEST_CLOCK_FILE") {
        if let Some(offset) = read_offset(&path) {
            guanxi::clock::set_offset_ms(offset);
        }
        std::thread::spawn(move || {
            loop {
                if let Some(offset) = read_offset(&path) {
                    guanxi::clock::set_offset_ms(offset);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
    }
    guanxi::main_entry()
}
