//! How values are written for people on the web pages (and in the CSV
//! exports that share them): times and money.

use guanxi_protocol::money::Money;

/// A time for people: `2026-11-26 21:48 UTC`.
pub fn when(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

/// Money for people, or empty.
pub fn money(m: &Option<Money>) -> String {
    m.as_ref().map(Money::to_string).unwrap_or_default()
}
