//! Integration tests: one binary, a module per topic, shared set-up in `helpers`.

mod cli;
mod helpers;
mod hostile;
mod receiver;
mod tunnel;
