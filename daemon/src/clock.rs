//! The daemon's clock: UTC milliseconds, the one place "now" is read.
//!
//! Every timer (lead offer expiry, session expiry, delivery backoff) and every
//! envelope's `created` come from [`now_ms`]. Tests shift it with
//! [`set_offset_ms`] (the test build of the daemon reads the offset from a file
//! named by `GUANXI_TEST_CLOCK_FILE`); the `guanxi` binary never does.

use guanxi_protocol::Millis;
use std::sync::atomic::{AtomicI64, Ordering};

static OFFSET_MS: AtomicI64 = AtomicI64::new(0);

/// The current time, UTC milliseconds.
pub fn now_ms() -> Millis {
    jiff::Timestamp::now()
        .as_millisecond()
        .saturating_add(OFFSET_MS.load(Ordering::Relaxed))
}

/// Shifts [`now_ms`] by `offset` milliseconds (tests only).
#[doc(hidden)]
pub fn set_offset_ms(offset: i64) {
    OFFSET_MS.store(offset, Ordering::Relaxed);
}
