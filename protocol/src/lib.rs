//! Guanxi's wire protocol: what two daemons say to each other, and what it means.
//!
//! # Layout
//!
//! - [`canonical`]: strict JSON parsing and RFC 8785 canonical form.
//! - [`crypto`]: Ed25519 keys, key ids, signatures with domain separation, SHA-256.
//! - [`ids`]: node ids and record ids.
//! - [`money`]: integer money with a currency, calendar dates.
//! - [`envelope`]: the signed envelope and the receiver's checks on its bytes.
//! - [`receipt`]: the receiver's signed receipt.
//! - [`certification`]: a vendor's signed certification of a person (SPEC §16).
//! - [`fetch`]: a node's signed request for a resource file's bytes (SPEC §17).
//! - [`invitation`]: invitation codes and the signed introductions of SPEC §21.
//! - [`heal`]: healing after a restore (SPEC §22): the signed request, the answer, the replay order.
//! - [`rotation`]: a node's new signing key announced to its peers (SPEC §23).
//! - `signed`: what both share: signing, strict decoding and verifying of an object with a `sig`.
//! - [`reason`]: machine-readable reason codes.
//! - [`messages`]: the request kinds and their typed bodies.
//! - [`pricing`]: price lists in force, order lines against the catalog, the total rule.
//! - [`state`]: the state machines of leads, registrations, orders, catalogs, MDF budgets, warranty claims, service requests, library resources and announcements;
//!   [`state::authority`]: one authority per record, and how the other node's copy follows it.
//!
//! This crate is pure: no IO, no threads, no clock reads, no randomness. Time
//! and key seeds are passed in. `SPEC.md` beside this crate is the normative
//! description of the wire; this code is one implementation of it.

#![forbid(unsafe_code)]

pub mod canonical;
pub mod certification;
pub mod crypto;
pub mod envelope;
pub mod fetch;
pub mod heal;
pub mod ids;
pub mod invitation;
pub mod messages;
pub mod money;
pub mod pricing;
pub mod quiz;
pub mod reason;
pub mod receipt;
pub mod rotation;
pub mod scorecard;
mod signed;
pub mod state;

pub use crypto::{KeyId, NodeKey, PublicKey, Sha256Hash};
pub use envelope::{Envelope, EnvelopeError, EnvelopeFields, Millis, SignedEnvelope};
pub use ids::{NodeId, RecordId};
pub use messages::{BodyError, Message};
pub use reason::ReasonCode;
pub use receipt::{ReceiptFields, ReceiptStatus, Rejection, SignedReceipt};
