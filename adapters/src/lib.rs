//! How Guanxi touches what is not Guanxi.
//!
//! # Layout
//!
//! - [`store`]: the redb database: every table definition, the schema version,
//!   typed access. The only module that opens redb tables (with its
//!   `snapshot` submodule: backups and restores).
//! - [`peer_client`]: HTTPS to one peer: web PKI or a pinned certificate,
//!   connect and request timeouts.
//!
//! Later: CSV import/export, outbound webhooks.
//! This crate depends on `guanxi-protocol` only; it never decides business
//! rules, it stores and moves what the daemon's engine decided.

#![forbid(unsafe_code)]

pub mod peer_client;
pub mod store;
