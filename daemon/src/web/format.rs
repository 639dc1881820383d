//! How values are written for people on the web pages, in e-mail and in
//! the CSV exports that share them: times in the reader's time zone (the
//! zone named), money and numbers with the locale's grouping, percentages
//! and durations in words of the reader's language.

use super::i18n::{self, Catalog, Lang};
use guanxi_protocol::money::{Currency, Money};
use jiff::tz::TimeZone;

/// The reader's language and time zone.
#[derive(Clone, Debug)]
pub struct Locale {
    pub lang: Lang,
    pub tz: TimeZone,
}

impl Locale {
    /// The zone a reader sees times in: their own choice, else their
    /// organization's, else the node's configured one, else Asia/Taipei
    /// for readers of Traditional Chinese and UTC for the rest. Names that
    /// are not in the time zone database are skipped.
    pub fn new(lang: Lang, choices: &[&str]) -> Locale {
        let tz = choices
            .iter()
            .filter(|name| !name.is_empty())
            .find_map(|name| TimeZone::get(name).ok())
            .unwrap_or_else(|| match lang {
                Lang::ZhTw => TimeZone::get("Asia/Taipei").unwrap_or(TimeZone::UTC),
                Lang::En => TimeZone::UTC,
            });
        Locale { lang, tz }
    }

    /// The message catalog of the reader's language.
    pub fn t(&self) -> &'static Catalog {
        i18n::catalog(self.lang)
    }

    /// The zone's name as shown next to times (`Asia/Taipei`, `UTC`).
    pub fn zone(&self) -> &str {
        self.tz.iana_name().unwrap_or("UTC")
    }

    /// A time for people, with its zone: `2026-11-27 05:48 Asia/Taipei`.
    pub fn when(&self, ms: i64) -> String {
        jiff::Timestamp::from_millisecond(ms)
            .map(|t| {
                let local = t.to_zoned_datetime(self.tz.clone());
                format!("{} {}", local.strftime("%Y-%m-%d %H:%M"), self.zone())
            })
            .unwrap_or_default()
    }

    /// The day a time falls on in the reader's zone: `2026-11-27`.
    pub fn day(&self, ms: i64) -> String {
        jiff::Timestamp::from_millisecond(ms)
            .map(|t| {
                t.to_zoned_datetime(self.tz.clone())
                    .strftime("%Y-%m-%d")
                    .to_string()
            })
            .unwrap_or_default()
    }

    /// The last millisecond of `date` (`2026-11-27`) in the reader's zone,
    /// as UTC milliseconds; `None` for a text that is no date.
    pub fn end_of_day(&self, date: &str) -> Option<i64> {
        let day: jiff::civil::Date = date.trim().parse().ok()?;
        let last = day.at(23, 59, 59, 999_000_000);
        self.tz.to_timestamp(last).ok().map(|t| t.as_millisecond())
    }

    /// Money with grouping: `TWD 1,200,000.00`.
    pub fn money(&self, m: &Money) -> String {
        format!("{} {}", m.currency, grouped(&m.decimal()))
    }

    /// Money for people, or empty.
    pub fn maybe_money(&self, m: &Option<Money>) -> String {
        m.as_ref().map(|m| self.money(m)).unwrap_or_default()
    }

    /// An amount of minor units in `currency`, with grouping.
    pub fn amount(&self, minor: i64, currency: &Currency) -> String {
        self.money(&Money {
            amount: minor,
            currency: currency.clone(),
        })
    }

    /// A whole number with grouping: `1,234,567`.
    pub fn number(&self, n: i64) -> String {
        grouped(&n.to_string())
    }

    /// Basis points as a percentage: `5.25 %` (English), `5.25%` (中文).
    pub fn percent_bp(&self, bp: i64) -> String {
        let digits = if bp % 100 == 0 {
            (bp / 100).to_string()
        } else {
            format!("{}.{:02}", bp / 100, (bp % 100).abs())
        };
        self.t().fill("units.percent", &[("n", &digits)])
    }

    /// Per mille as a percentage with one decimal: `12.5 %`.
    pub fn permille(&self, p: i64) -> String {
        let digits = format!("{}.{}", p / 10, (p % 10).abs());
        self.t().fill("units.percent", &[("n", &digits)])
    }

    /// A duration in words, the two largest units: `2 d 3 h`, `45 min`
    /// (`2 天 3 小時`, `45 分鐘`).
    pub fn duration(&self, ms: i64) -> String {
        let t = self.t();
        let minutes = ms.max(0) / 60_000;
        let (d, h, m) = (minutes / 1440, (minutes / 60) % 24, minutes % 60);
        let unit = |key: &str, n: i64| t.fill(key, &[("n", &n.to_string())]);
        let parts: Vec<String> = if d > 0 {
            [(d, "units.days"), (h, "units.hours")]
                .into_iter()
                .filter(|(n, _)| *n > 0)
                .map(|(n, k)| unit(k, n))
                .collect()
        } else if h > 0 {
            [(h, "units.hours"), (m, "units.minutes")]
                .into_iter()
                .filter(|(n, _)| *n > 0)
                .map(|(n, k)| unit(k, n))
                .collect()
        } else {
            vec![unit("units.minutes", m)]
        };
        parts.join(" ")
    }
}

/// A decimal (`-1234567.50`) with its whole part grouped by thousands
/// (`-1,234,567.50`). Both languages here group with a comma.
fn grouped(decimal: &str) -> String {
    let (sign, rest) = match decimal.strip_prefix('-') {
        Some(r) => ("-", r),
        None => ("", decimal),
    };
    let (whole, fraction) = match rest.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (rest, None),
    };
    let mut out = String::with_capacity(decimal.len() + whole.len() / 3);
    out.push_str(sign);
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if let Some(f) = fraction {
        out.push('.');
        out.push_str(f);
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_grouped_and_times_carry_their_zone() {
        let en = Locale::new(Lang::En, &[]);
        let twd: Currency = "TWD".parse().expect("TWD");
        assert_eq!(en.amount(120_000_000, &twd), "TWD 1,200,000.00");
        assert_eq!(en.amount(-100_050, &twd), "TWD -1,000.50");
        assert_eq!(
            en.amount(99_900, &"JPY".parse().expect("JPY")),
            "JPY 99,900"
        );
        assert_eq!(en.number(1_234_567), "1,234,567");
        assert_eq!(en.number(123), "123");
        // 2026-11-26 21:48 UTC is 05:48 the next day in Taipei.
        let ms = 1_795_729_680_000;
        assert_eq!(en.when(ms), "2026-11-26 21:48 UTC");
        let zh = Locale::new(Lang::ZhTw, &["", "Not/AZone"]);
        assert_eq!(zh.when(ms), "2026-11-27 05:48 Asia/Taipei");
        assert_eq!(zh.day(ms), "2026-11-27");
        let chosen = Locale::new(Lang::ZhTw, &["Europe/Berlin", "Asia/Taipei"]);
        assert_eq!(chosen.when(ms), "2026-11-26 22:48 Europe/Berlin");
    }

    #[test]
    fn durations_and_percentages_in_words() {
        let en = Locale::new(Lang::En, &[]);
        let zh = Locale::new(Lang::ZhTw, &[]);
        let ms = |d: i64, h: i64, m: i64| ((d * 24 + h) * 60 + m) * 60_000;
        assert_eq!(en.duration(ms(2, 3, 10)), "2 d 3 h");
        assert_eq!(en.duration(ms(0, 5, 7)), "5 h 7 min");
        assert_eq!(en.duration(ms(0, 0, 45)), "45 min");
        assert_eq!(en.duration(ms(1, 0, 0)), "1 d");
        assert_eq!(zh.duration(ms(2, 3, 0)), "2 天 3 小時");
        assert_eq!(en.percent_bp(525), "5.25 %");
        assert_eq!(en.percent_bp(500), "5 %");
        assert_eq!(zh.permille(125), "12.5%");
    }
}
