//! Shared set-up: a real receiver on a loopback port, a real SQLite file in a temp dir.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alert_inbox::config::Config;
use alert_inbox::receiver::verify::{basic_header, sign, SIGNATURE_HEADER};
use alert_inbox::runtime::Runtime;
use alert_inbox::secret::Secret;
use alert_inbox::store::{query, Store};

pub const SECRET: &str = "It's a Secret to Everybody";
pub const USER: &str = "realtheory";
pub const PASSWORD: &str = "p@ss:word with spaces";
pub const EXAMPLE_ID: &str = "12a3ae02-5b90-3701-6534-d4d9ab751e5d";

pub fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    std::fs::read(&path)
        .unwrap_or_else(|error| panic!("failed to read {}: {error}", path.display()))
}

/// Returns a config with a secret and Basic credentials, listening on a free loopback port.
pub fn config(data_dir: &Path) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: Some(data_dir.to_owned()),
        webhook_secrets: vec![Secret::new(SECRET)],
        basic_user: Some(USER.to_owned()),
        basic_password: Some(Secret::new(PASSWORD)),
        ..Config::default()
    }
}

/// A receiver running in this process.
pub struct TestReceiver {
    pub runtime: Option<Runtime>,
    pub url: String,
    pub data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    client: reqwest::Client,
}

impl TestReceiver {
    pub async fn start() -> Self {
        let temp = tempfile::tempdir().unwrap();
        let data_dir = temp.path().to_owned();
        let mut receiver = Self::start_with(config(&data_dir)).await;
        receiver._temp = Some(temp);
        receiver
    }

    pub async fn start_with(config: Config) -> Self {
        let data_dir = config.data_dir.clone().expect("tests set a data dir");
        let runtime = Runtime::start(&config).await.expect("receiver starts");
        let url = runtime.local_url();
        Self {
            runtime: Some(runtime),
            url,
            data_dir,
            _temp: None,
            client: reqwest::Client::new(),
        }
    }

    pub fn base_url(&self) -> String {
        let address = self.runtime.as_ref().unwrap().local_addr();
        format!("http://{address}")
    }

    /// Posts `body` signed and authenticated as RealTheory would.
    pub async fn post_signed(&self, body: &[u8]) -> reqwest::Response {
        self.request(body).send().await.expect("request completes")
    }

    /// Builds a signed, authenticated request that a test can still change.
    pub fn request(&self, body: &[u8]) -> reqwest::RequestBuilder {
        self.request_unsigned(body)
            .header(SIGNATURE_HEADER, sign(&Secret::new(SECRET), body))
    }

    /// Builds an authenticated request without a signature header, for tests that set their own.
    pub fn request_unsigned(&self, body: &[u8]) -> reqwest::RequestBuilder {
        self.client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("authorization", basic_header(USER, &Secret::new(PASSWORD)))
            .body(body.to_vec())
    }

    /// The listener's `host:port`, for raw TCP clients.
    pub fn address(&self) -> String {
        self.runtime.as_ref().unwrap().local_addr().to_string()
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub fn reader(&self) -> rusqlite::Connection {
        Store::open_reader(&self.data_dir).expect("database exists")
    }

    pub fn alert(&self, id: &str) -> Option<serde_json::Value> {
        query::alert_json(&self.reader(), id).unwrap()
    }

    pub fn alert_count(&self) -> i64 {
        query::count(&self.reader(), &Default::default()).unwrap()
    }

    pub fn deliveries(&self) -> Vec<alert_inbox::store::deliveries::DeliveryRow> {
        alert_inbox::store::deliveries::list(&self.reader(), None, 10_000).unwrap()
    }

    /// Returns the outcomes in the delivery log, oldest first.
    pub fn outcomes(&self) -> Vec<String> {
        let mut rows = self.deliveries();
        rows.reverse();
        rows.into_iter().map(|row| row.outcome).collect()
    }

    /// Waits until the writer has applied every acknowledged delivery, as a new reader does.
    pub fn wait_until_applied(&self) {
        drop(self.reader());
    }

    pub async fn stop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown().await;
        }
    }
}

/// Replaces `content.id` (and the console URL) so one fixture yields many alerts.
pub fn with_id(body: &[u8], id: &str) -> Vec<u8> {
    let mut value: serde_json::Value = serde_json::from_slice(body).unwrap();
    value["content"]["id"] = id.into();
    value["consoleUrl"] = format!("https://myendpoint.realtheory.io/alerts/{id}").into();
    serde_json::to_vec(&value).unwrap()
}

/// Sets one field of `content` in a fixture.
pub fn with_content_field(body: &[u8], field: &str, value: serde_json::Value) -> Vec<u8> {
    let mut parsed: serde_json::Value = serde_json::from_slice(body).unwrap();
    parsed["content"][field] = value;
    serde_json::to_vec(&parsed).unwrap()
}

/// The `alert-inbox` binary built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_alert-inbox");

/// A `serve` process that is killed when dropped, so a test that fails before stopping it
/// leaves no process behind.
pub struct ServeProcess(Child);

impl std::ops::Deref for ServeProcess {
    type Target = Child;

    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for ServeProcess {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        // Both fail harmlessly when the process has already exited and been waited for.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `alert-inbox serve` on a free loopback port with the test credentials in its
/// environment, `dir/config.toml` as its config file and `dir/data` as its data directory.
/// Returns the process and its webhook URL.
pub fn spawn_serve(dir: &Path, stderr: Stdio) -> (ServeProcess, String) {
    let mut child = ServeProcess(
        Command::new(BIN)
            .env_remove("RUST_LOG")
            .env_remove("NGROK_AUTHTOKEN")
            .env("ALERT_INBOX_CONFIG", dir.join("config.toml"))
            .env("ALERT_INBOX_WEBHOOK_SECRET", SECRET)
            .env("ALERT_INBOX_BASIC_USER", USER)
            .env("ALERT_INBOX_BASIC_PASSWORD", PASSWORD)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.join("data"))
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("Listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (child, url)
}

/// Stops a `serve` process with SIGTERM and waits for it to exit.
pub fn stop_serve(mut child: ServeProcess) {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "serve did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Posts `body` to `url` signed and authenticated with the test credentials.
pub async fn post_signed_to(url: &str, body: &[u8]) -> reqwest::Response {
    alert_inbox::cli::send_test::build_request(
        &config(Path::new("/nonexistent")),
        url.parse().unwrap(),
        String::from_utf8(body.to_vec()).unwrap(),
    )
    .send()
    .await
    .unwrap()
}
