//! The `alert-inbox` binary as a user runs it: `serve`, `send-test`, `alerts`, `deliveries`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::*;

const BIN: &str = env!("CARGO_BIN_EXE_alert-inbox");

/// Builds a command with a clean environment except the receiver's credentials.
fn command(config_dir: &Path) -> Command {
    let mut command = Command::new(BIN);
    command
        .env_remove("RUST_LOG")
        .env_remove("NGROK_AUTHTOKEN")
        .env("ALERT_INBOX_CONFIG", config_dir.join("config.toml"))
        .env("ALERT_INBOX_WEBHOOK_SECRET", SECRET)
        .env("ALERT_INBOX_BASIC_USER", USER)
        .env("ALERT_INBOX_BASIC_PASSWORD", PASSWORD);
    command
}

/// `alert-inbox serve` on a free port; the URL comes from its first line of output.
struct Serve {
    child: ServeProcess,
    url: String,
    stderr_path: std::path::PathBuf,
}

impl Serve {
    fn start(dir: &Path) -> Self {
        let stderr_path = dir.join("serve.stderr");
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let (child, url) = spawn_serve(dir, Stdio::from(stderr));
        Self {
            child,
            url,
            stderr_path,
        }
    }

    /// Sends SIGTERM and waits for a clean exit; returns the log.
    fn stop(mut self) -> String {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "serve exited with {status}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "serve did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        std::fs::read_to_string(&self.stderr_path).unwrap()
    }
}

fn run(command: &mut Command) -> Output {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{:?} failed: {}",
        command,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn alerts_json(dir: &Path, extra: &[&str]) -> Vec<Value> {
    let output = run(command(dir)
        .args(["alerts", "--json", "--data-dir"])
        .arg(dir.join("data"))
        .args(extra));
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn post(url: &str, body: &[u8]) -> u16 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let config = config(Path::new("/nonexistent"));
        alert_inbox::cli::send_test::build_request(
            &config,
            url.parse().unwrap(),
            String::from_utf8(body.to_vec()).unwrap(),
        )
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
    })
}

#[test]
fn send_test_reaches_serve_and_alerts_lists_it() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path());

    let output = run(command(dir.path()).args(["send-test", "--url", &serve.url]));
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(printed.contains("200 OK"), "{printed}");

    // Reading works while `serve` has the database open.
    let alerts = alerts_json(dir.path(), &[]);
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["title"], "Test alert from alert-inbox send-test");
    assert_eq!(alerts[0]["deliveryCount"], 1);
    assert_eq!(alerts[0]["level"], "High");

    // A level in another case is sent as RealTheory spells it, so it joins the same facet.
    run(command(dir.path()).args(["send-test", "--url", &serve.url, "--level", "critical"]));
    let critical = alerts_json(dir.path(), &["--level", "Critical"]);
    assert_eq!(critical.len(), 1);
    assert_eq!(critical[0]["level"], "Critical");
    serve.stop();
}

#[test]
fn send_test_rejects_unknown_level() {
    let dir = tempfile::tempdir().unwrap();
    let output = command(dir.path())
        .args([
            "send-test",
            "--url",
            "http://127.0.0.1:9/webhook",
            "--level",
            "severe",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("\"severe\""), "{error}");
    assert!(error.contains("Low, Medium, High or Critical"), "{error}");
}

#[test]
fn documented_example_listed_with_camel_case_fields() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path());
    assert_eq!(post(&serve.url, &fixture("documented-example.json")), 200);
    serve.stop();

    let alerts = alerts_json(dir.path(), &[]);
    let alert = &alerts[0];
    for field in [
        "id", "key", "title", "level", "state", "category", "created", "updated", "expires",
    ] {
        assert!(
            alert.get(field).is_some_and(|v| !v.is_null()),
            "missing {field}"
        );
    }
    for field in [
        "postponedUntil",
        "consoleUrl",
        "deliveryCount",
        "firstReceived",
        "lastReceived",
    ] {
        assert!(alert.get(field).is_some(), "missing {field}");
    }
    for field in ["read", "acknowledged", "snoozedUntil", "archived", "note"] {
        assert!(alert.get(field).is_some(), "missing {field}");
    }
    assert_eq!(alert["metadata"]["namespaceName"], "web-app");
}

#[test]
fn alerts_filters_narrow_the_list() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path());
    assert_eq!(post(&serve.url, &fixture("documented-example.json")), 200);
    assert_eq!(post(&serve.url, &fixture("unicode-raw.json")), 200);
    serve.stop();

    let ids = |extra: &[&str]| -> Vec<String> {
        alerts_json(dir.path(), extra)
            .iter()
            .map(|alert| alert["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let unicode_id = "7c1e0f52-3d4a-4b8e-a1f0-5e6d7c8b9a01".to_owned();
    assert_eq!(ids(&[]).len(), 2);
    assert_eq!(ids(&["--level", "high"]), [EXAMPLE_ID.to_owned()]);
    assert_eq!(ids(&["--level", "Medium,High"]).len(), 2);
    assert_eq!(
        ids(&["--cluster", "prod-eu-west"]),
        std::slice::from_ref(&unicode_id)
    );
    assert_eq!(ids(&["--namespace", "web-app"]), [EXAMPLE_ID.to_owned()]);
    assert_eq!(ids(&["--state", "Postponed"]), Vec::<String>::new());
    assert_eq!(
        ids(&["--search", "speicher"]),
        std::slice::from_ref(&unicode_id)
    );
    assert_eq!(ids(&["--search", "recently"]), [EXAMPLE_ID.to_owned()]);
    assert_eq!(ids(&["--search", "OOMKill"]).len(), 2);
    assert_eq!(ids(&["--since", "1h"]).len(), 2);
    assert_eq!(ids(&["--since", "2100-01-01T00:00:00Z"]).len(), 0);
    assert_eq!(ids(&["--limit", "1"]), [unicode_id]);
}

#[test]
fn alerts_table_is_readable() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path());
    post(&serve.url, &fixture("documented-example.json"));
    serve.stop();

    let output = run(command(dir.path())
        .args(["alerts", "--data-dir"])
        .arg(dir.path().join("data")));
    let table = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("LAST RECEIVED"), "{table}");
    assert!(lines[1].contains("High"), "{table}");
    assert!(
        lines[1].contains("realtheory-cluster-01/web-app"),
        "{table}"
    );
}

#[test]
fn deliveries_lists_rejections_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path());
    let mut tampered = fixture("documented-example.json");
    let status = {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let config = config(Path::new("/nonexistent"));
            let request = alert_inbox::cli::send_test::build_request(
                &config,
                serve.url.parse().unwrap(),
                String::from_utf8(tampered.clone()).unwrap(),
            );
            tampered.extend_from_slice(b" ");
            request
                .body(tampered.clone())
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    assert_eq!(status, 401);
    serve.stop();

    let output = run(command(dir.path())
        .args(["deliveries", "--json", "--data-dir"])
        .arg(dir.path().join("data")));
    let rows: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["outcome"], "bad_signature");
    assert_eq!(rows[0]["status"], 401);
    assert_eq!(rows[0]["reason"], "signature does not match the body");
}

#[test]
fn secrets_never_reach_output() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path());
    let body = fixture("documented-example.json");
    let expected_signature =
        alert_inbox::receiver::verify::sign(&alert_inbox::secret::Secret::new(SECRET), &body);
    post(&serve.url, &body);
    // Wrong password, wrong signature and no credentials, to exercise every rejection log.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::new();
        for _ in 0..3 {
            client
                .post(&serve.url)
                .basic_auth(USER, Some("wrong password"))
                .header(
                    "x-hub-signature-256",
                    "sha256=".to_owned() + &"0".repeat(64),
                )
                .body(body.clone())
                .send()
                .await
                .unwrap();
            client
                .post(&serve.url)
                .body(body.clone())
                .send()
                .await
                .unwrap();
        }
    });
    let log = serve.stop();
    let shown = run(command(dir.path()).args(["config", "show"]));
    let shown = String::from_utf8_lossy(&shown.stdout).into_owned();

    let basic = alert_inbox::receiver::verify::basic_header(
        USER,
        &alert_inbox::secret::Secret::new(PASSWORD),
    );
    for text in [&log, &shown] {
        assert!(!text.contains(SECRET), "secret leaked:\n{text}");
        assert!(!text.contains(PASSWORD), "password leaked:\n{text}");
        assert!(
            !text.contains(&basic["Basic ".len()..]),
            "Authorization leaked:\n{text}"
        );
        assert!(
            !text.contains(&expected_signature["sha256=".len()..]),
            "signature leaked:\n{text}"
        );
    }
    assert!(log.contains("delivery rejected"), "{log}");
    assert!(shown.contains("[redacted]"), "{shown}");
}

#[test]
fn serve_logs_checks_and_warns_without_auth() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path());
    let log = serve.stop();
    assert!(log.contains("basic auth, signature (1 secret(s))"), "{log}");
    assert!(!log.contains("anyone who can reach"), "{log}");

    let open = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .env("ALERT_INBOX_CONFIG", open.path().join("config.toml"))
        .env_remove("ALERT_INBOX_WEBHOOK_SECRET")
        .env_remove("ALERT_INBOX_BASIC_USER")
        .env_remove("ALERT_INBOX_BASIC_PASSWORD")
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(open.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        log.contains("anyone who can reach the receiver can post alerts"),
        "{log}"
    );
}

#[test]
fn alerts_without_database_explains() {
    let dir = tempfile::tempdir().unwrap();
    let output = command(dir.path())
        .args(["alerts", "--data-dir"])
        .arg(dir.path().join("nothing-here"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("no database at"), "{error}");
    assert!(error.contains("--data-dir"), "{error}");
}

#[test]
fn data_dir_that_is_a_file_explained() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"").unwrap();
    let output = command(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(
        error.contains(&format!("{} is a file", file.display())),
        "{error}"
    );
    assert!(error.contains("--data-dir"), "{error}");
}

#[test]
fn send_test_without_receiver_hints() {
    let dir = tempfile::tempdir().unwrap();
    // A port that was free a moment ago, so nothing listens there.
    let address = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://{address}/webhook");
    let output = command(dir.path())
        .args(["send-test", "--url", &url])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains(&url), "{error}");
    assert!(error.contains("check that the receiver runs"), "{error}");
}

#[test]
fn busy_port_error_names_address() {
    let dir = tempfile::tempdir().unwrap();
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = holder.local_addr().unwrap().to_string();
    let output = command(dir.path())
        .args(["serve", "--listen", &address, "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(
        error.contains(&format!("failed to listen on {address}")),
        "{error}"
    );
}

#[test]
fn config_init_writes_private_file() {
    let dir = tempfile::tempdir().unwrap();
    run(command(dir.path()).args(["config", "init"]));
    let path = dir.path().join("config.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("webhook_secrets"), "{text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    let again = command(dir.path())
        .args(["config", "init"])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
}

#[test]
fn tunnel_without_auth_refused() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(BIN)
        .env("ALERT_INBOX_CONFIG", dir.path().join("config.toml"))
        .env_remove("ALERT_INBOX_WEBHOOK_SECRET")
        .env_remove("ALERT_INBOX_BASIC_USER")
        .env_remove("ALERT_INBOX_BASIC_PASSWORD")
        .env("NGROK_AUTHTOKEN", "test-token")
        .args(["serve", "--tunnel", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(
        error.contains("refusing to open a public tunnel"),
        "{error}"
    );
    assert!(error.contains("ALERT_INBOX_WEBHOOK_SECRET"), "{error}");
}

#[test]
fn tunnel_given_records_url() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();

    let none = command(dir.path())
        .args(["tunnel", "given", "--data-dir", data])
        .output()
        .unwrap();
    assert!(!none.status.success());
    assert!(String::from_utf8_lossy(&none.stderr).contains("no public URL is known yet"));

    run(command(dir.path()).args([
        "tunnel",
        "given",
        "--url",
        "https://a.ngrok.app",
        "--data-dir",
        data,
    ]));
    let status = run(command(dir.path()).args(["tunnel", "status", "--data-dir", data]));
    let text = String::from_utf8(status.stdout).unwrap();
    assert!(
        text.contains("given to RealTheory: https://a.ngrok.app"),
        "{text}"
    );
}

#[test]
fn sigterm_finishes_delivery_in_flight() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path());
    let address = serve
        .url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();

    let body = fixture("documented-example.json");
    let secret = alert_inbox::secret::Secret::new(SECRET);
    let head = format!(
        "POST /webhook HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\
         Authorization: {}\r\nX-Hub-Signature-256: {}\r\n\r\n",
        body.len(),
        alert_inbox::receiver::verify::basic_header(
            USER,
            &alert_inbox::secret::Secret::new(PASSWORD)
        ),
        alert_inbox::receiver::verify::sign(&secret, &body),
    );
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&body[..100]).unwrap();
    // A connection whose request the server has not begun to read is idle, and shutdown
    // closes idle connections, so the signal waits until the server has read what was sent.
    wait_until_read(&stream);

    // The request is in flight when the signal arrives; the rest of the body follows.
    Command::new("kill")
        .args(["-TERM", &serve.child.id().to_string()])
        .status()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    stream.write_all(&body[100..]).unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    serve.stop();
    let alerts = alerts_json(dir.path(), &[]);
    assert_eq!(alerts.len(), 1);
}

/// Waits until the server has read everything sent on `stream`: its end of the connection,
/// listed in `/proc/net/tcp`, has nothing left in its receive queue.
fn wait_until_read(stream: &std::net::TcpStream) {
    // `/proc/net/tcp` writes an IPv4 address as the hex of its bytes in memory order, which
    // is little-endian on the machines the tests run on, then a colon and the port.
    let hex = |address: std::net::SocketAddr| match address {
        std::net::SocketAddr::V4(v4) => format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(v4.ip().octets()),
            v4.port()
        ),
        std::net::SocketAddr::V6(_) => panic!("the test server listens on IPv4"),
    };
    let server = hex(stream.peer_addr().unwrap());
    let client = hex(stream.local_addr().unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
        let unread = table.lines().skip(1).find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, remote, queues) = (fields.get(1)?, fields.get(2)?, fields.get(4)?);
            if *local != server || *remote != client {
                return None;
            }
            let receive = queues.split(':').nth(1)?;
            u64::from_str_radix(receive, 16).ok()
        });
        if unread == Some(0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not read the request within 20 s: {unread:?} bytes left"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
