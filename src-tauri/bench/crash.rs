//! The crash benchmark: many rounds of SIGKILL during a stream of deliveries.
//!
//! Each round starts `alert-inbox serve` on one data directory, sends unique signed
//! deliveries from several tasks, kills the process with SIGKILL at a random moment,
//! restarts it (which recovers the WAL), and checks that every delivery that got a
//! 2xx is stored and that `PRAGMA integrity_check` returns `ok`. SIGKILL ends the process
//! but not the kernel, so this checks atomic commits and recovery, not power loss.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alert_inbox::cli::send_test::build_request;
use alert_inbox::config::Config;
use alert_inbox::secret::Secret;
use alert_inbox::store::Store;
use anyhow::{bail, Context};
use clap::Args;

const SECRET: &str = "crash benchmark secret";
const USER: &str = "realtheory";
const PASSWORD: &str = "crash benchmark password";

#[derive(Debug, Args)]
pub struct CrashArgs {
    /// Kill-and-restart rounds, all on one data directory
    #[arg(long, default_value_t = 50)]
    rounds: usize,
    /// Concurrent sender tasks
    #[arg(long, default_value_t = 4)]
    senders: usize,
    /// Maximum wait after the first acknowledged delivery before SIGKILL, in milliseconds
    #[arg(long, default_value_t = 1_000)]
    max_kill_delay_ms: u64,
    /// The `alert-inbox` binary [default: the one beside this benchmark]
    #[arg(long, value_name = "FILE")]
    binary: Option<PathBuf>,
}

pub fn run(args: CrashArgs) -> anyhow::Result<()> {
    let binary = match args.binary.clone() {
        Some(binary) => binary,
        None => std::env::current_exe()?.with_file_name("alert-inbox"),
    };
    if !binary.exists() {
        bail!(
            "{} not found; build it with `cargo build --release --no-default-features --bins` \
             or pass --binary",
            binary.display()
        );
    }
    let temp = tempfile::tempdir()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let template = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/documented-example.json"
    ))?;

    let started = Instant::now();
    let mut acknowledged = Vec::new();
    let mut replayed = 0;
    for round in 0..args.rounds {
        let (child, url) = start_serve(&binary, temp.path())?;
        let round_ids =
            runtime.block_on(send_until_killed(&args, &url, round, &template, child))?;
        // Acknowledged but not yet applied when the process died: the restarted writer
        // applies these from the journal.
        let pending = Store::pending(&temp.path().join("data"))?;
        replayed += pending;
        let (mut child, _) = start_serve(&binary, temp.path())?;
        let (stored, integrity) = read_store(&temp.path().join("data"))?;
        child.kill()?;
        child.wait()?;

        let lost = round_ids.iter().filter(|id| !stored.contains(*id)).count();
        println!(
            "round {round:>3}: {:>5} acknowledged, {pending} applied from the journal after the restart, {lost} lost, integrity {integrity}",
            round_ids.len()
        );
        acknowledged.extend(round_ids);
        if lost > 0 || integrity != "ok" {
            bail!("round {round} lost deliveries or failed the integrity check");
        }
    }

    let (stored, _) = read_store(&temp.path().join("data"))?;
    let lost = acknowledged
        .iter()
        .filter(|id| !stored.contains(*id))
        .count();
    println!(
        "{} rounds in {:.1} s: {} deliveries acknowledged before a SIGKILL, {replayed} applied from the journal after a restart, {lost} lost",
        args.rounds,
        started.elapsed().as_secs_f64(),
        acknowledged.len()
    );
    if lost > 0 {
        bail!("{lost} acknowledged deliveries are missing");
    }
    Ok(())
}

/// Starts `serve` on a free loopback port; returns the process and its webhook URL.
fn start_serve(binary: &Path, dir: &Path) -> anyhow::Result<(Child, String)> {
    let mut child = Command::new(binary)
        .env_remove("RUST_LOG")
        .env_remove("NGROK_AUTHTOKEN")
        .env("ALERT_INBOX_CONFIG", dir.join("config.toml"))
        .env("ALERT_INBOX_WEBHOOK_SECRET", SECRET)
        .env("ALERT_INBOX_BASIC_USER", USER)
        .env("ALERT_INBOX_BASIC_PASSWORD", PASSWORD)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.join("data"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("failed to start {}", binary.display()))?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("no stdout")?).read_line(&mut line)?;
    let Some(url) = line.trim().strip_prefix("Listening on ") else {
        bail!("unexpected first line from serve: {line:?}");
    };
    Ok((child, url.to_owned()))
}

/// Sends deliveries from `args.senders` tasks, kills `child` at a random moment, and
/// returns the ids that received a 2xx response.
async fn send_until_killed(
    args: &CrashArgs,
    url: &str,
    round: usize,
    template: &[u8],
    mut child: Child,
) -> anyhow::Result<Vec<String>> {
    let config = Config {
        webhook_secrets: vec![Secret::new(SECRET)],
        basic_user: Some(USER.to_owned()),
        basic_password: Some(Secret::new(PASSWORD)),
        ..Config::default()
    };
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let first_success = Arc::new(tokio::sync::Notify::new());

    let mut senders = Vec::new();
    for sender in 0..args.senders {
        let (config, url, template) = (config.clone(), url.to_owned(), template.to_vec());
        let acknowledged = Arc::clone(&acknowledged);
        let first_success = Arc::clone(&first_success);
        senders.push(tokio::spawn(async move {
            let mut body: serde_json::Value = serde_json::from_slice(&template)?;
            for sequence in 0.. {
                let id = format!("crash-{round}-{sender}-{sequence}");
                body["content"]["id"] = id.clone().into();
                let request = build_request(&config, url.parse()?, body.to_string());
                match request.send().await {
                    Ok(response) if response.status().is_success() => {
                        acknowledged.lock().unwrap().push(id);
                        first_success.notify_one();
                    }
                    Ok(response) => bail!("{id}: unexpected status {}", response.status()),
                    // The receiver was killed.
                    Err(_) => break,
                }
            }
            Ok(())
        }));
    }

    tokio::time::timeout(Duration::from_secs(20), first_success.notified())
        .await
        .context("no delivery succeeded within 20 s")?;
    let delay = rand::random_range(0..=args.max_kill_delay_ms);
    tokio::time::sleep(Duration::from_millis(delay)).await;
    child.kill()?;
    child.wait()?;
    for sender in senders {
        sender.await??;
    }
    let ids = acknowledged.lock().unwrap().clone();
    Ok(ids)
}

/// Returns every stored alert id and the result of `PRAGMA integrity_check`.
fn read_store(data_dir: &Path) -> anyhow::Result<(HashSet<String>, String)> {
    let reader = Store::open_reader(data_dir)?;
    let ids = reader
        .prepare("SELECT id FROM alerts")?
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<Result<HashSet<_>, _>>()?;
    let integrity = reader.query_row("PRAGMA integrity_check", [], |row| row.get(0))?;
    Ok((ids, integrity))
}
