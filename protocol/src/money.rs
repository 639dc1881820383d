//! Money and calendar dates as the wire carries them.
//!
//! Money is an integer count of the currency's minor units (cents, fen, ...)
//! with an ISO 4217 alphabetic code; there are no floats anywhere. Sums and
//! products are checked: a result beyond ±(2^53−1) is an error, never a wrap.
//! A date (a calendar day with no time zone, like an invoice date) is
//! `YYYY-MM-DD`.

use crate::canonical::MAX_SAFE_INTEGER;
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;
use std::str::FromStr;

/// An ISO 4217 alphabetic currency code: three uppercase ASCII letters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Currency(String);

impl Currency {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Digits after the decimal point (ISO 4217 exponent): 0 for JPY or
    /// KRW, 3 for BHD or KWD, 4 for CLF and UYW, 2 for every other code.
    pub fn minor_digits(&self) -> u32 {
        match self.0.as_str() {
            "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF"
            | "UGX" | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
            "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
            "CLF" | "UYW" => 4,
            _ => 2,
        }
    }
}

impl Money {
    /// Reads a decimal amount as people type it (`1234.5`, `1,234.50`,
    /// `-3`) in `currency`'s minor units. Refuses more decimals than the
    /// currency has, anything but digits, and amounts beyond ±(2^53−1).
    pub fn parse_decimal(text: &str, currency: Currency) -> Result<Money, String> {
        let t = text.trim().replace(',', "");
        let (negative, t) = match t.strip_prefix('-') {
            Some(rest) => (true, rest.to_string()),
            None => (false, t),
        };
        let (whole, frac) = t.split_once('.').unwrap_or((t.as_str(), ""));
        let digits = currency.minor_digits() as usize;
        if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{text:?} is not an amount like 1234.50"));
        }
        if !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{text:?} is not an amount like 1234.50"));
        }
        if frac.len() > digits {
            return Err(format!(
                "{currency} has {digits} decimal places; {text:?} has {}",
                frac.len()
            ));
        }
        let too_large = || format!("{text:?} is too large");
        let mut amount: i64 = whole.parse().map_err(|_| too_large())?;
        for _ in 0..digits {
            amount = mul(amount, 10).map_err(|_| too_large())?;
        }
        let frac_value: i64 = if frac.is_empty() {
            0
        } else {
            format!("{frac:0<digits$}")
                .parse()
                .map_err(|_| too_large())?
        };
        amount = add(amount, frac_value).map_err(|_| too_large())?;
        Ok(Money {
            amount: if negative { -amount } else { amount },
            currency,
        })
    }

    /// The amount as a decimal with the currency's places, like `1234.50`.
    pub fn decimal(&self) -> String {
        let digits = self.currency.minor_digits();
        let sign = if self.amount < 0 { "-" } else { "" };
        let abs = self.amount.unsigned_abs();
        if digits == 0 {
            return format!("{sign}{abs}");
        }
        let scale = 10u64.pow(digits);
        format!(
            "{sign}{}.{:0width$}",
            abs / scale,
            abs % scale,
            width = digits as usize
        )
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.currency, self.decimal())
    }
}

impl FromStr for Currency {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Currency(s.to_string()))
        } else {
            Err(format!(
                "currency {s:?} is not an ISO 4217 code (three uppercase letters)"
            ))
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// An amount of money: integer minor units and a currency.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Money {
    /// Minor units (for TWD and EUR alike: hundredths), within ±(2^53−1).
    pub amount: i64,
    pub currency: Currency,
}

/// An arithmetic result left the exact integer range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("amount exceeds ±(2^53−1) minor units")]
pub struct Overflow;

/// `a + b`, refusing results outside ±(2^53−1).
pub fn add(a: i64, b: i64) -> Result<i64, Overflow> {
    in_range(a.checked_add(b).ok_or(Overflow)?)
}

/// `a × b`, refusing results outside ±(2^53−1).
pub fn mul(a: i64, b: i64) -> Result<i64, Overflow> {
    in_range(a.checked_mul(b).ok_or(Overflow)?)
}

fn in_range(v: i64) -> Result<i64, Overflow> {
    if (-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).contains(&v) {
        Ok(v)
    } else {
        Err(Overflow)
    }
}

/// A calendar date, `YYYY-MM-DD`, validated (no 2026-02-30).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Date(String);

impl Date {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Date {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let well_formed = s.len() == 10
            && s.bytes().enumerate().all(|(i, b)| {
                if i == 4 || i == 7 {
                    b == b'-'
                } else {
                    b.is_ascii_digit()
                }
            });
        if well_formed && s.parse::<jiff::civil::Date>().is_ok() {
            Ok(Date(s.to_string()))
        } else {
            Err(format!("date {s:?} is not a valid YYYY-MM-DD date"))
        }
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Date {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_follow_the_currency() {
        let c = |s: &str| s.parse::<Currency>().expect("code");
        let m = |t: &str, cur: &str| Money::parse_decimal(t, c(cur)).map(|m| m.amount);
        assert_eq!(m("1,234.5", "TWD"), Ok(123_450));
        assert_eq!(m("1234", "JPY"), Ok(1234));
        assert!(m("12.5", "JPY").is_err());
        assert_eq!(m("1.005", "KWD"), Ok(1005));
        assert_eq!(m("-0.07", "EUR"), Ok(-7));
        assert!(m("1e3", "EUR").is_err());
        assert!(m("", "EUR").is_err());
        assert!(m("90071992547409.92", "EUR").is_err());
        let back = Money::parse_decimal("1234.05", c("EUR")).expect("parse");
        assert_eq!(back.decimal(), "1234.05");
        assert_eq!(back.to_string(), "EUR 1234.05");
        assert_eq!(
            Money {
                amount: -5,
                currency: c("BHD")
            }
            .decimal(),
            "-0.005"
        );
    }

    #[test]
    fn arithmetic_is_checked_at_the_safe_range() {
        assert_eq!(add(MAX_SAFE_INTEGER - 1, 1), Ok(MAX_SAFE_INTEGER));
        assert_eq!(add(MAX_SAFE_INTEGER, 1), Err(Overflow));
        assert_eq!(mul(i64::MAX, 2), Err(Overflow));
        assert_eq!(mul(-3, 7), Ok(-21));
    }

    #[test]
    fn currencies_and_dates_are_validated() {
        assert!("TWD".parse::<Currency>().is_ok());
        assert!("twd".parse::<Currency>().is_err());
        assert!("2026-02-28".parse::<Date>().is_ok());
        assert!("2026-02-30".parse::<Date>().is_err());
        assert!("2026-2-28".parse::<Date>().is_err());
    }
}
