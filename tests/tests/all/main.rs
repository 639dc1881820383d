//! Every integration test of real daemons, as one test binary (one link of
//! the whole daemon instead of one per area). A module per area:
//!
//! - `daemon`: `serve` on defaults and from `init`, shutdown, bad configs;
//! - `federation`, `inbox`: two daemons exchanging signed envelopes, and a
//!   hand-made peer probing the inbox;
//! - `crossing`: both companies acting while their link is cut (SPEC §12.1);
//! - `leads`, `orders`, `service`, `mdf`, `library`: each record family end
//!   to end;
//! - `api`, `web`, `browser`: the JSON API, the web view over HTTPS, and the
//!   web view in a real headless Chromium.

mod announcements;
mod api;
mod applications;
mod backup;
mod browser;
mod courses;
mod crossing;
mod daemon;
mod demo;
mod federation;
mod handover;
mod heal;
mod inbox;
mod invitations;
mod journey;
mod keys;
mod leads;
mod library;
mod mdf;
mod notify;
mod orders;
mod scorecards;
mod service;
mod surveys;
mod web;
