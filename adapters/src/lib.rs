//! How Guanxi touches what is not Guanxi.
//!
//! # Layout
//!
//! - [`store`]: the redb database: every table definition, the schema version,
//!   typed access. The only module that opens redb tables.
//!
//! Later: the HTTPS peer client, CSV import/export, outbound webhooks.
//! This crate depends on `guanxi-protocol` only; it never decides business
//! rules, it stores and moves what the daemon's engine decided.

#![forbid(unsafe_code)]

pub mod store;
