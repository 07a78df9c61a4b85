//! A full disk and a read-only data directory, with `alert-inbox serve` as a user runs it.
//!
//! `max_database_pages` simulates a full disk: SQLite fails a write past the limit
//! with `SQLITE_FULL`, the error a full file system gives.

use std::path::Path;
use std::process::{Command, Stdio};

use alert_inbox::store::Store;

use crate::helpers::*;

/// Pages of a table that takes space before `serve` starts and is dropped to free it.
///
/// Deliveries acknowledged before the writer finds the store full wait in the journal and
/// need room when space returns. A sender that waits for each response gets about 200 ms
/// of them acknowledged, the writer's longest wait for a batch. The ballast frees far more
/// than they take.
const BALLAST_PAGES: usize = 2_000;
/// Room for deliveries above the database's starting size, in pages.
const ROOM_PAGES: i64 = 40;

/// Creates the store in `data_dir` with a ballast table; returns its size in pages.
fn store_with_ballast(data_dir: &Path) -> i64 {
    let (_, mut connection) = Store::open(data_dir).unwrap();
    let transaction = connection.transaction().unwrap();
    transaction
        .execute_batch("CREATE TABLE ballast (filler BLOB)")
        .unwrap();
    for _ in 0..BALLAST_PAGES {
        transaction
            .execute("INSERT INTO ballast VALUES (zeroblob(4000))", [])
            .unwrap();
    }
    transaction.commit().unwrap();
    connection
        .query_row("PRAGMA page_count", [], |row| row.get(0))
        .unwrap()
}

fn count_lines(log: &str, needle: &str) -> usize {
    log.lines().filter(|line| line.contains(needle)).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn full_disk_is_503_until_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let pages = store_with_ballast(&data_dir);
    std::fs::write(
        dir.path().join("config.toml"),
        format!("max_database_pages = {}\n", pages + ROOM_PAGES),
    )
    .unwrap();
    let log_path = dir.path().join("serve.stderr");
    let log_file = std::fs::File::create(&log_path).unwrap();
    let (child, url) = spawn_serve(dir.path(), Stdio::from(log_file));

    // Fill the room with deliveries until the store refuses one. The writer fails to apply
    // a journaled delivery first; from then on the journal refuses new ones.
    let template = fixture("documented-example.json");
    let mut stored = Vec::new();
    let refused_id = loop {
        let id = format!("fill-{}", stored.len());
        let response = post_signed_to(&url, &with_id(&template, &id)).await;
        if response.status() == 503 {
            assert_eq!(
                response
                    .headers()
                    .get("retry-after")
                    .map(|value| value.to_str().unwrap()),
                Some("30")
            );
            break id;
        }
        assert_eq!(response.status(), 200, "{id}");
        stored.push(id);
        assert!(stored.len() < 10_000, "the page limit never took effect");
    };
    assert!(!stored.is_empty());

    // Further deliveries fail the same way, spaced so that the writer also retries the
    // full-text index in between, and each failure is logged once.
    for attempt in 0..10 {
        let body = with_id(&template, &format!("while-full-{attempt}"));
        assert_eq!(post_signed_to(&url, &body).await.status(), 503);
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    }
    let log = std::fs::read_to_string(&log_path).unwrap();
    let commit_errors = count_lines(&log, "failed to commit deliveries");
    let index_warnings = count_lines(&log, "failed to update the full-text index");
    assert_eq!(commit_errors, 1, "{log}");
    assert!(index_warnings <= 1, "{log}");
    assert_eq!(
        count_lines(&log, "database or disk is full"),
        commit_errors + index_warnings,
        "{log}"
    );

    // Nothing of a refused delivery was written: no alert and no log row.
    let reader = Store::open_reader(&data_dir).unwrap();
    let orphans: i64 = reader
        .query_row(
            "SELECT (SELECT count(*) FROM alerts WHERE id = ?1 OR id LIKE 'while-full-%')
                  + (SELECT count(*) FROM deliveries WHERE alert_id = ?1 OR alert_id LIKE 'while-full-%')",
            [&refused_id],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(orphans, 0);
    // The deliveries acknowledged before the failure that did not fit wait in the journal.
    let alerts: i64 = reader
        .query_row("SELECT count(*) FROM alerts", [], |row| row.get(0))
        .unwrap();
    assert!(alerts < stored.len() as i64, "{alerts} of {}", stored.len());
    let integrity: String = reader
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");

    // Space returns: the same delivery is stored without a restart.
    let writer = rusqlite::Connection::open(data_dir.join("alerts.db")).unwrap();
    writer
        .busy_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    writer.execute_batch("DROP TABLE ballast").unwrap();
    drop(writer);
    // The writer retries within a tenth of a second; a sender retries until it gets a 2xx.
    // The deadline is generous because other tests load both cores meanwhile.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let response = post_signed_to(&url, &with_id(&template, &refused_id)).await;
        if response.status() == 200 {
            break;
        }
        assert_eq!(response.status(), 503);
        assert!(
            std::time::Instant::now() < deadline,
            "the store did not accept deliveries within 30 s of space returning"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // Every acknowledged delivery is stored, the journaled ones included.
    let reader = Store::open_reader(&data_dir).unwrap();
    let mut statement = reader
        .prepare("SELECT count(*) FROM alerts WHERE id = ?1")
        .unwrap();
    for id in stored.iter().chain([&refused_id]) {
        let count: i64 = statement.query_row([id], |row| row.get(0)).unwrap();
        assert_eq!(count, 1, "{id} is missing");
    }
    drop(statement);
    drop(reader);

    stop_serve(child);
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert_eq!(count_lines(&log, "store writes succeed again"), 1, "{log}");
    assert_eq!(count_lines(&log, "failed to commit deliveries"), 1, "{log}");
}

#[test]
fn too_small_page_limit_rejected() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.toml"), "max_database_pages = 10\n").unwrap();
    let output = Command::new(BIN)
        .env("ALERT_INBOX_CONFIG", dir.path().join("config.toml"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("max_database_pages"), "{error}");
    assert!(error.contains("at least 64"), "{error}");
}

/// Returns whether this process runs as root, which file permissions do not restrict.
fn running_as_root() -> bool {
    let output = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&output.stdout).trim() == "0"
}

#[test]
fn read_only_data_dir_named_with_fix() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;

    let dir = tempfile::tempdir().unwrap();
    let read_only = dir.path().join("read-only");
    std::fs::create_dir(&read_only).unwrap();
    std::fs::set_permissions(&read_only, std::fs::Permissions::from_mode(0o555)).unwrap();
    let root = running_as_root();
    let binary = if root {
        // Root may write anywhere, so the server runs as `nobody`. It gets its own copy of
        // the binary in the temporary directory, since the build directory may sit where
        // `nobody` cannot reach.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let copy = dir.path().join("alert-inbox");
        std::fs::copy(BIN, &copy).unwrap();
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
        copy
    } else {
        std::path::PathBuf::from(BIN)
    };
    let mut command = Command::new(binary);
    command
        .env("ALERT_INBOX_CONFIG", dir.path().join("config.toml"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&read_only);
    if root {
        command.uid(65534).gid(65534);
    }
    let output = command.output().unwrap();

    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(
        error.contains(&format!(
            "data directory {} is not writable",
            read_only.display()
        )),
        "{error}"
    );
    assert!(error.contains("--data-dir"), "{error}");
    assert!(!read_only.join("alerts.db").exists());
}
