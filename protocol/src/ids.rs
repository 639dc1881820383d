//! Identifiers on the wire: node ids and record ids, each with its grammar.
//!
//! A node id names a daemon (a company): 1–63 characters of lowercase ASCII
//! letters, digits, `-` and `.`, starting with a letter or digit. A record id
//! names a lead, order, claim or request: 1–128 characters of ASCII letters,
//! digits and `-._:@`. Both are opaque: nothing may be read into them.

use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;
use std::str::FromStr;

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {value:?} is invalid: {rule}")]
pub struct IdError {
    pub what: &'static str,
    pub value: String,
    pub rule: &'static str,
}

macro_rules! id_type {
    ($name:ident, $what:literal, $check:ident) => {
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                match $check(s) {
                    Ok(()) => Ok($name(s.to_string())),
                    Err(rule) => Err(IdError {
                        what: $what,
                        value: s.chars().take(80).collect(),
                        rule,
                    }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

fn check_node_id(s: &str) -> Result<(), &'static str> {
    let first_ok = s
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if s.is_empty() || s.len() > 63 || !first_ok {
        return Err("1 to 63 characters, starting with a lowercase letter or digit");
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    {
        return Err("only lowercase letters, digits, '-' and '.'");
    }
    Ok(())
}

fn check_record_id(s: &str) -> Result<(), &'static str> {
    if s.is_empty() || s.len() > 128 {
        return Err("1 to 128 characters");
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._:@".contains(&b))
    {
        return Err("only ASCII letters, digits and '-._:@'");
    }
    Ok(())
}

id_type!(NodeId, "node id", check_node_id);
id_type!(RecordId, "record id", check_record_id);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_follow_the_grammar() {
        assert!("acme".parse::<NodeId>().is_ok());
        assert!("acme-tw.example".parse::<NodeId>().is_ok());
        for bad in [
            "",
            "Acme",
            "-acme",
            "acme corp",
            "ａｃｍｅ",
            &"a".repeat(64),
        ] {
            assert!(bad.parse::<NodeId>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn record_ids_follow_the_grammar() {
        assert!("L-2026-0001".parse::<RecordId>().is_ok());
        assert!(
            "0190f0d2-7c1e-7000-8000-000000000001"
                .parse::<RecordId>()
                .is_ok()
        );
        for bad in ["", "a b", "a/b", "線索", &"x".repeat(129)] {
            assert!(bad.parse::<RecordId>().is_err(), "{bad:?} accepted");
        }
    }
}
