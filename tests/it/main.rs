//! Integration tests: one binary, a module per topic, shared set-up in `helpers`.

mod cli;
mod crash;
mod disk_full;
mod helpers;
mod hostile;
mod receiver;
mod secrets;
mod store;
mod tunnel;
