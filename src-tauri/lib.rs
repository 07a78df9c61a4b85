//! Alert Inbox: receives RealTheory system-alert webhooks, verifies and stores them, and
//! shows them in a desktop inbox with notifications.
//!
//! The receiver ([`receiver`]), store ([`store`]), tunnel ([`tunnel`]) and command line
//! ([`cli`]) know nothing of Tauri and build without the `desktop` feature; the window,
//! tray and notifications live in `desktop`.

pub mod cli;
pub mod config;
pub mod filter;
pub mod model;
pub mod notify_rules;
pub mod receiver;
pub mod runtime;
pub mod secret;
pub mod store;
pub mod tunnel;

#[cfg(feature = "desktop")]
pub mod desktop;
