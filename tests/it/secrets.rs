//! Secrets never reach output: `send-test` on success and failure, and `serve --tunnel`
//! with an ngrok authtoken, at the default log level and with every log line switched on.
//! `cli.rs` covers the receiver's own log and `config show`.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use alert_inbox::receiver::verify::{basic_header, sign};
use alert_inbox::secret::Secret;

use crate::helpers::*;

const AUTHTOKEN: &str = "2fAkEaUtHtOkEn_for_alert_inbox_tests";

/// Log filters: the default, and everything from every crate.
const LOG_LEVELS: [Option<&str>; 2] = [None, Some("trace")];

/// `alert-inbox` with the test credentials in its environment and `dir/config.toml`.
fn command(dir: &Path, log_level: Option<&str>) -> Command {
    let mut command = Command::new(BIN);
    command
        .env_remove("RUST_LOG")
        .env_remove("NGROK_AUTHTOKEN")
        .env("ALERT_INBOX_CONFIG", dir.join("config.toml"))
        .env("ALERT_INBOX_WEBHOOK_SECRET", SECRET)
        .env("ALERT_INBOX_BASIC_USER", USER)
        .env("ALERT_INBOX_BASIC_PASSWORD", PASSWORD);
    if let Some(level) = log_level {
        command.env("RUST_LOG", level);
    }
    command
}

/// Asserts that neither stream of `output` contains a secret or a value derived from one.
fn assert_no_secrets(output: &Output, what: &str) {
    let example_signature = sign(&Secret::new(SECRET), &fixture("documented-example.json"));
    let basic = basic_header(USER, &Secret::new(PASSWORD));
    let forbidden = [
        SECRET,
        PASSWORD,
        &basic["Basic ".len()..],
        &example_signature["sha256=".len()..],
        AUTHTOKEN,
    ];
    for (stream, bytes) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
        let text = String::from_utf8_lossy(bytes);
        for secret in forbidden {
            assert!(
                !text.contains(secret),
                "{what} {stream} contains {secret:?}:\n{text}"
            );
        }
    }
}

/// Returns a port on loopback that nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn send_test_output_hides_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let (serve, url) = spawn_serve(dir.path(), Stdio::null());

    for level in LOG_LEVELS {
        let output = command(dir.path(), level)
            .args(["send-test", "--url", &url])
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        assert!(String::from_utf8_lossy(&output.stdout).contains("200 OK"));
        assert_no_secrets(&output, &format!("send-test with RUST_LOG={level:?}"));

        let closed = format!("http://127.0.0.1:{}/webhook", closed_port());
        let failed = command(dir.path(), level)
            .args(["send-test", "--url", &closed])
            .output()
            .unwrap();
        assert!(!failed.status.success());
        assert!(!failed.stderr.is_empty());
        assert_no_secrets(
            &failed,
            &format!("failed send-test with RUST_LOG={level:?}"),
        );
    }
    stop_serve(serve);
}

#[test]
fn tunnel_log_hides_authtoken() {
    for level in LOG_LEVELS {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.toml"),
            format!("[tunnel]\nserver_addr = \"127.0.0.1:{}\"\n", closed_port()),
        )
        .unwrap();
        let serve = command(dir.path(), level)
            .env("NGROK_AUTHTOKEN", AUTHTOKEN)
            .args(["serve", "--tunnel", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Long enough for the first attempt and the first reconnect (after 1 s).
        std::thread::sleep(Duration::from_secs(3));
        Command::new("kill")
            .args(["-TERM", &serve.id().to_string()])
            .status()
            .unwrap();
        let output = serve.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains("Tunnel: "), "{stdout}");
        assert_no_secrets(&output, &format!("serve --tunnel with RUST_LOG={level:?}"));
    }
}
