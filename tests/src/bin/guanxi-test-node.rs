//! The `guanxi` daemon, built inside the tests package so that its integration
//! tests can start it as a real process. Same entry point as the real binary,
//! plus one test hook: when `GUANXI_TEST_CLOCK_FILE` names a file, its content
//! (an integer of milliseconds) shifts the daemon's clock, re-read every 20 ms,
//! so tests can move time forward (offer expiry, SLA clocks) across restarts.
//! Once an offset is in force the daemon writes it to `<file>.applied`, so a
//! test waits for that instead of sleeping. `GUANXI_TEST_HEAL_PAGE` makes
//! its heal answers (SPEC §22) pages of that many items, so that tests
//! page through a history of a few hundred envelopes.
//! `GUANXI_TEST_READS_VERSIONS` (`2`, `1,2`) makes it play a node that
//! reads those protocol versions (SPEC §9).

use std::time::Duration;

fn read_offset(path: &str) -> Option<i64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn main() -> std::process::ExitCode {
    if let Some(items) = std::env::var("GUANXI_TEST_HEAL_PAGE")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        guanxi::heal::set_page_items(items);
    }
    if let Ok(list) = std::env::var("GUANXI_TEST_READS_VERSIONS") {
        guanxi::identity::set_reads_versions(
            list.split(',')
                .filter_map(|v| v.trim().parse().ok())
                .collect(),
        );
    }
    if let Ok(path) = std::env::var("GUANXI_TEST_CLOCK_FILE") {
        let applied = format!("{path}.applied");
        let mut current = None;
        let mut apply = move |path: &str| {
            if let Some(offset) = read_offset(path)
                && current != Some(offset)
            {
                guanxi::clock::set_offset_ms(offset);
                current = Some(offset);
                let _ = std::fs::write(&applied, offset.to_string());
            }
        };
        apply(&path);
        std::thread::spawn(move || {
            loop {
                apply(&path);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
    }
    guanxi::main_entry()
}
