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

/// One thing waiting in an inbox: its message key and what it names, each
/// as (label, link to its page; empty when it has none).
pub type InboxItem = (&'static str, Vec<(String, String)>);

/// An inbox item naming records, each with its page, and "…" when the
/// index holds more than were read.
pub fn linked(key: &'static str, mut names: Vec<(String, String)>, more: bool) -> InboxItem {
    if more {
        names.push(("…".to_string(), String::new()));
    }
    (key, names)
}

/// An inbox item with one text and no page.
pub fn plain(key: &'static str, text: String) -> InboxItem {
    (key, vec![(text, String::new())])
}
