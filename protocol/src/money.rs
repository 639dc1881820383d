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
