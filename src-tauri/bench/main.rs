//! `alert-inbox-bench`: measures ingest throughput and latency, and query times on a
//! large store. Method and results are in `docs/benchmarks.md`.
//!
//! `ingest` starts two receivers in this process, one storing deliveries and one with
//! storage switched off (the ceiling), and sends the same pre-signed deliveries to each
//! over loopback, so the result is a ratio measured on one machine in one run.
//! `query` fills a store with synthetic alerts once and times the inbox's queries on it.

mod crash;
mod ingest;
mod query;
mod stats;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "alert-inbox-bench",
    about = "Benchmarks of the Alert Inbox receiver and store"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Kill `alert-inbox serve` with SIGKILL during deliveries, many times, and check the store
    Crash(crash::CrashArgs),
    /// Send pre-signed deliveries over loopback to a storing receiver and to the ceiling
    Ingest(ingest::IngestArgs),
    /// Time inbox queries on a store of synthetic alerts
    Query(query::QueryArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crash(args) => crash::run(args),
        Command::Ingest(args) => ingest::run(args),
        Command::Query(args) => query::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
