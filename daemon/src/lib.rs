//! The Guanxi daemon: the application behind the `guanxi` binary.
//!
//! # Layout
//!
//! - [`cli`]: command-line parsing and each command (`init`, `keygen`,
//!   `config check`, `serve`); the binary's edge, where errors become exit codes.
//! - [`identity`]: the node's signing key and its published key document.
//! - [`tls`]: rustls provider, self-signed certificates, certificate loading.
//! - [`server`]: HTTPS routes and serving them until shutdown.
//! - [`logging`]: tracing setup (human or JSON).
//!
//! The engine (apply a message through the protocol's state machine, write
//! record and outbox in one transaction), delivery workers, the web view and
//! the JSON API join this crate in later issues.

#![forbid(unsafe_code)]

pub mod cli;
pub mod identity;
pub mod logging;
pub mod server;
pub mod tls;

pub use cli::main_entry;
