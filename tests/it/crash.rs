//! Crash safety: `alert-inbox serve` killed with SIGKILL while deliveries stream in.
//!
//! Every delivery that received a 2xx response must be in the database after a restart,
//! and the database must pass `PRAGMA integrity_check`. The 2xx is sent only after the
//! commit, so a lost acknowledged delivery would mean the commit was not durable.
//! `alert-inbox-bench crash` runs the same check for many rounds.
//!
//! NOTE: SIGKILL ends the process but not the kernel, so data the process wrote is not
//! lost even without an fsync. These tests show atomic commits and clean recovery after a
//! process crash; losing power is not simulated.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alert_inbox::store::Store;

use crate::helpers::*;

/// Kill-and-restart rounds on one data directory.
const ROUNDS: usize = 3;
/// Concurrent sender tasks.
const SENDERS: usize = 4;

/// Sends unique signed deliveries from [`SENDERS`] tasks until the receiver goes away;
/// returns the ids that received a 2xx response.
async fn send_until_killed(url: &str, round: usize, child: &mut Child) -> Vec<String> {
    let template = fixture("documented-example.json");
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let first_success = Arc::new(tokio::sync::Notify::new());

    let mut senders = Vec::new();
    for sender in 0..SENDERS {
        let url = url.to_owned();
        let template = template.clone();
        let acknowledged = Arc::clone(&acknowledged);
        let first_success = Arc::clone(&first_success);
        senders.push(tokio::spawn(async move {
            for sequence in 0.. {
                let id = format!("crash-{round}-{sender}-{sequence}");
                let body = with_id(&template, &id);
                let request = alert_inbox::cli::send_test::build_request(
                    &config(Path::new("/nonexistent")),
                    url.parse().unwrap(),
                    String::from_utf8(body).unwrap(),
                );
                match request.send().await {
                    Ok(response) if response.status().is_success() => {
                        acknowledged.lock().unwrap().push(id);
                        first_success.notify_one();
                    }
                    Ok(response) => panic!("{id}: unexpected status {}", response.status()),
                    // The receiver was killed: stop sending.
                    Err(_) => return,
                }
            }
        }));
    }

    // Kill at a random moment after deliveries started to succeed.
    tokio::time::timeout(Duration::from_secs(20), first_success.notified())
        .await
        .expect("no delivery succeeded within 20 s");
    let delay = rand::random_range(20..600);
    tokio::time::sleep(Duration::from_millis(delay)).await;
    child.kill().unwrap();
    child.wait().unwrap();

    for sender in senders {
        sender.await.unwrap();
    }
    let ids = acknowledged.lock().unwrap().clone();
    ids
}

/// Returns every stored alert id and the result of `PRAGMA integrity_check`.
fn read_store(data_dir: &Path) -> (HashSet<String>, String) {
    let reader = Store::open_reader(data_dir).unwrap();
    let ids = reader
        .prepare("SELECT id FROM alerts")
        .unwrap()
        .query_map([], |row| row.get::<_, String>(0))
        .unwrap()
        .collect::<Result<HashSet<_>, _>>()
        .unwrap();
    let integrity: String = reader
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    (ids, integrity)
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_deliveries_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let mut all_acknowledged = Vec::new();

    for round in 0..ROUNDS {
        let (mut child, url) = spawn_serve(dir.path(), Stdio::null());
        let acknowledged = send_until_killed(&url, round, &mut child).await;
        assert!(
            !acknowledged.is_empty(),
            "round {round}: nothing acknowledged"
        );
        eprintln!(
            "round {round}: {} deliveries acknowledged before SIGKILL",
            acknowledged.len()
        );
        all_acknowledged.extend(acknowledged);

        // A restart recovers the WAL; the store must then hold every acknowledged id.
        let (child, url) = spawn_serve(dir.path(), Stdio::null());
        let (stored, integrity) = read_store(&data_dir);
        assert_eq!(integrity, "ok", "round {round}");
        let missing: Vec<&String> = all_acknowledged
            .iter()
            .filter(|id| !stored.contains(*id))
            .collect();
        assert!(missing.is_empty(), "round {round}: lost {missing:?}");

        // And it takes new deliveries.
        let after = with_id(
            &fixture("documented-example.json"),
            &format!("after-{round}"),
        );
        let status = post_signed_to(&url, &after).await.status();
        assert_eq!(status, 200, "round {round}");
        stop_serve(child);
    }
}
