//! The Guanxi daemon: the application behind the `guanxi` binary.
//!
//! # Layout
//!
//! - [`cli`]: command-line parsing and each command (`init`, `keygen`,
//!   `config check`, `serve`, `peers`, `outbox`, `rejected`, `ping`, `send`);
//!   the binary's edge, where errors become exit codes.
//! - [`records`]: where shared records are kept and who may see them.
//! - [`clock`]: "now" (UTC milliseconds), shiftable by tests.
//! - [`engine`]: the only writer of the store: applies messages through the
//!   protocol's state machines and writes record, envelope, receipt and
//!   outbox in one transaction per group of jobs (group commit).
//! - [`inbox`]: the federation endpoints; checks that need no store.
//! - [`delivery`]: one worker per peer sending the outbox in order, with backoff.
//! - [`node`]: what handlers, workers and admin share; config reload.
//! - [`admin`]: the admin Unix socket the CLI talks to.
//! - [`accounts`]: web-view users (admin, staff, partner), argon2id passwords.
//! - [`identity`]: the node's signing key and its published key document.
//! - [`tls`]: rustls provider, self-signed certificates, certificate loading.
//! - [`server`]: HTTPS routes and serving them until shutdown.
//! - [`logging`]: tracing setup (human or JSON).
//!
//! - [`web`]: the web view (askama templates, sessions, CSRF, en and zh-TW).
//! - [`directory`]: the partner directory.
//! - [`notify`]: notifications, written with the message that causes them,
//!   and the durable mail queue; [`mailer`] sends it over SMTP.
//!
//! - [`api`]: the admin JSON API under /api/v1 (bearer tokens, OpenAPI).

#![forbid(unsafe_code)]
// The OpenAPI document is one large `json!` literal.
#![recursion_limit = "1024"]

pub mod accounts;
pub mod admin;
pub mod announcements;
pub mod api;
pub mod applications;
pub mod attachments;
pub mod backup;
pub mod certifications;
pub mod cli;
pub mod clock;
pub mod courses;
pub mod delivery;
pub mod demo;
pub mod directory;
pub mod engine;
pub mod goals;
pub mod handover;
pub mod heal;
pub mod idempotency;
pub mod identity;
pub mod inbox;
pub mod invitations;
pub mod journey;
pub mod keys;
pub mod leads;
pub mod library;
pub mod logging;
pub mod mailer;
pub mod mdf;
pub mod metrics;
pub mod migrate;
pub mod node;
pub mod notify;
pub mod orders;
pub mod record_index;
pub mod records;
pub mod rules;
pub mod scorecards;
pub mod serials;
pub mod server;
pub mod service;
pub mod surveys;
pub mod tls;
pub mod verify;
pub mod web;

pub use cli::main_entry;
