//! Settings: defaults, then the TOML config file, then the environment, then flags.
//!
//! The file lives at `<config dir>/com.alertinbox.desktop/config.toml`
//! (`~/.config/com.alertinbox.desktop/config.toml` on Linux). It may hold secrets, so it is
//! written with mode 0600 and every secret field is a [`Secret`].

use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// The app's identifier; it names the data and config directories, as Tauri does.
pub const APP_IDENTIFIER: &str = "com.alertinbox.desktop";

pub const ENV_WEBHOOK_SECRET: &str = "ALERT_INBOX_WEBHOOK_SECRET";
pub const ENV_BASIC_USER: &str = "ALERT_INBOX_BASIC_USER";
pub const ENV_BASIC_PASSWORD: &str = "ALERT_INBOX_BASIC_PASSWORD";
pub const ENV_CONFIG: &str = "ALERT_INBOX_CONFIG";
pub const ENV_DATA_DIR: &str = "ALERT_INBOX_DATA_DIR";
pub const ENV_NGROK_AUTHTOKEN: &str = "NGROK_AUTHTOKEN";

/// Smallest accepted `max_database_pages`: the empty schema takes about 30 pages.
pub const MIN_DATABASE_PAGES: u64 = 64;
/// Largest `max_body_bytes` accepted. Alerts are a few KiB, and the intake journal reads
/// a record claiming more than 256 MiB as damaged, so a body must stay well below that.
pub const MAX_BODY_LIMIT: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("failed to read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("failed to write config file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid setting `{key}` = {value:?}: {reason}")]
    Invalid {
        key: &'static str,
        value: String,
        reason: String,
    },
    #[error(
        "no {what} directory is known for this platform; pass --data-dir or set {ENV_DATA_DIR}"
    )]
    NoDirectory { what: &'static str },
}

/// Every setting of the receiver, store, tunnel and notifier.
///
/// Field names are the keys of the config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address of the loopback listener.
    pub listen: SocketAddr,
    /// URL path of the webhook route; must start with `/`.
    pub path: String,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Secrets that RealTheory may sign with. Several allow a rotation without lost alerts.
    pub webhook_secrets: Vec<Secret>,
    /// Username that RealTheory sends with HTTP Basic auth.
    pub basic_user: Option<String>,
    /// Password that RealTheory sends with HTTP Basic auth.
    pub basic_password: Option<Secret>,
    /// Time a client has to send its request headers, in seconds.
    pub header_timeout_secs: u64,
    /// Time a client has to send its request body, in seconds.
    pub body_timeout_secs: u64,
    /// Connections served at once; more wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Days a delivery-log row is kept.
    pub delivery_retention_days: u32,
    /// Delivery-log rows kept at most; the oldest go first.
    pub delivery_retention_rows: u64,
    /// Largest accepted age of the payload's `timestamp`, in seconds; 0 turns the check off.
    pub max_payload_age_secs: u64,
    /// Safety limit on the size of `alerts.db`, in SQLite pages (4 KiB each by default);
    /// unset means SQLite's own limit. Past it, deliveries get 503 as they would on a full
    /// disk.
    pub max_database_pages: Option<u64>,
    /// Data directory; the platform's app data directory when unset.
    pub data_dir: Option<PathBuf>,
    pub tunnel: TunnelConfig,
    pub notifications: NotificationConfig,
}

/// Settings of the ngrok tunnel.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TunnelConfig {
    /// Opens the tunnel when the app or `serve` starts.
    pub enabled: bool,
    /// ngrok authtoken; `NGROK_AUTHTOKEN` overrides it.
    pub authtoken: Option<Secret>,
    /// Reserved ngrok domain, so the public URL stays the same across restarts.
    pub domain: Option<String>,
    /// ngrok server address; only tests set it.
    pub server_addr: Option<String>,
}

/// Rules for which alerts raise a desktop notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotificationConfig {
    pub enabled: bool,
    /// Lowest level that notifies: `Low`, `Medium`, `High` or `Critical`.
    pub min_level: String,
    pub muted_clusters: Vec<String>,
    pub muted_namespaces: Vec<String>,
    /// More new alerts than this within `storm_window_secs` become one summary.
    pub storm_threshold: u32,
    pub storm_window_secs: u64,
}

impl Default for NotificationConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            min_level: "Low".to_owned(),
            muted_clusters: Vec::new(),
            muted_namespaces: Vec::new(),
            storm_threshold: 5,
            storm_window_secs: 10,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8787)),
            path: "/webhook".to_owned(),
            max_body_bytes: 1024 * 1024,
            webhook_secrets: Vec::new(),
            basic_user: None,
            basic_password: None,
            header_timeout_secs: 10,
            body_timeout_secs: 30,
            max_connections: 1024,
            delivery_retention_days: 30,
            delivery_retention_rows: 200_000,
            max_payload_age_secs: 0,
            max_database_pages: None,
            data_dir: None,
            tunnel: TunnelConfig::default(),
            notifications: NotificationConfig::default(),
        }
    }
}

/// Values from the environment, read once so tests can pass their own.
#[derive(Debug, Default, Clone)]
pub struct Environment {
    pub webhook_secret: Option<Secret>,
    pub basic_user: Option<String>,
    pub basic_password: Option<Secret>,
    pub ngrok_authtoken: Option<Secret>,
    pub data_dir: Option<PathBuf>,
}

impl Environment {
    pub fn from_process() -> Self {
        let read = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        Self {
            webhook_secret: read(ENV_WEBHOOK_SECRET).map(Secret::new),
            basic_user: read(ENV_BASIC_USER),
            basic_password: read(ENV_BASIC_PASSWORD).map(Secret::new),
            ngrok_authtoken: read(ENV_NGROK_AUTHTOKEN).map(Secret::new),
            data_dir: read(ENV_DATA_DIR).map(PathBuf::from),
        }
    }
}

/// Describes a config file error with the line and key it is on. String values are left
/// out, because they may be secrets: serde quotes the value of a wrong type in its message.
fn parse_message(text: &str, error: &toml::de::Error) -> String {
    let message = &without_quoted(error.message());
    let Some(span) = error.span() else {
        return message.to_owned();
    };
    let start = span.start.min(text.len());
    let number = text[..start].matches('\n').count() + 1;
    let key = text
        .lines()
        .nth(number - 1)
        .and_then(|line| line.split_once('='))
        .map(|(key, _)| key.trim())
        .filter(|key| !key.is_empty());
    match key {
        Some("listen") => format!(
            "line {number}, `listen`: {message}; expected an address and port such as 127.0.0.1:8787"
        ),
        Some(key) => format!("line {number}, `{key}`: {message}"),
        None => format!("line {number}: {message}"),
    }
}

/// Replaces everything from the first to the last double quote of `message` with `"…"`,
/// so a quoted value is removed even when it contains escaped quotes.
fn without_quoted(message: &str) -> String {
    match (message.find('"'), message.rfind('"')) {
        (Some(first), Some(last)) if first < last => {
            format!("{}\"…\"{}", &message[..first], &message[last + 1..])
        }
        _ => message.to_owned(),
    }
}

impl Config {
    /// Loads the config file at `path`, or the defaults when it does not exist.
    pub fn load_file(path: &Path) -> Result<Self, ConfigError> {
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self::default())
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        toml::from_str(&text).map_err(|error| ConfigError::Parse {
            path: path.to_owned(),
            message: parse_message(&text, &error),
        })
    }

    /// Applies environment values over the file's. An environment secret replaces the
    /// file's list, so a process started with one secret accepts exactly that secret.
    pub fn apply_environment(&mut self, env: &Environment) {
        if let Some(secret) = &env.webhook_secret {
            self.webhook_secrets = vec![secret.clone()];
        }
        if let Some(user) = &env.basic_user {
            self.basic_user = Some(user.clone());
        }
        if let Some(password) = &env.basic_password {
            self.basic_password = Some(password.clone());
        }
        if let Some(token) = &env.ngrok_authtoken {
            self.tunnel.authtoken = Some(token.clone());
        }
        if let Some(dir) = &env.data_dir {
            self.data_dir = Some(dir.clone());
        }
    }

    /// Checks values that the types alone do not constrain.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.path.starts_with('/') || self.path.contains(['?', '#', ' ']) {
            return Err(ConfigError::Invalid {
                key: "path",
                value: self.path.clone(),
                reason: "must be a URL path such as /webhook".to_owned(),
            });
        }
        if !(1024..=MAX_BODY_LIMIT).contains(&self.max_body_bytes) {
            return Err(ConfigError::Invalid {
                key: "max_body_bytes",
                value: self.max_body_bytes.to_string(),
                reason: format!("must be between 1024 and {MAX_BODY_LIMIT} (64 MiB)"),
            });
        }
        if self
            .max_database_pages
            .is_some_and(|pages| pages < MIN_DATABASE_PAGES)
        {
            return Err(ConfigError::Invalid {
                key: "max_database_pages",
                value: self.max_database_pages.unwrap_or_default().to_string(),
                reason: format!("must be at least {MIN_DATABASE_PAGES}, or unset for no limit"),
            });
        }
        if self.max_connections == 0 {
            return Err(ConfigError::Invalid {
                key: "max_connections",
                value: "0".to_owned(),
                reason: "must be at least 1".to_owned(),
            });
        }
        if self.basic_user.is_some() != self.basic_password.is_some() {
            return Err(ConfigError::Invalid {
                key: "basic_user",
                value: self.basic_user.clone().unwrap_or_default(),
                reason: format!(
                    "Basic auth needs both a username and a password; set both \
                     ({ENV_BASIC_USER} and {ENV_BASIC_PASSWORD}) or neither"
                ),
            });
        }
        if self.webhook_secrets.iter().any(Secret::is_empty) {
            return Err(ConfigError::Invalid {
                key: "webhook_secrets",
                value: "\"\"".to_owned(),
                reason: "a webhook secret must not be empty".to_owned(),
            });
        }
        if crate::model::Level::parse(&self.notifications.min_level).is_none() {
            return Err(ConfigError::Invalid {
                key: "notifications.min_level",
                value: self.notifications.min_level.clone(),
                reason: "must be one of Low, Medium, High, Critical".to_owned(),
            });
        }
        Ok(())
    }

    /// Returns whether the receiver checks anything at all before storing a delivery.
    pub fn is_authenticated(&self) -> bool {
        !self.webhook_secrets.is_empty() || self.basic_user.is_some()
    }

    pub fn header_timeout(&self) -> Duration {
        Duration::from_secs(self.header_timeout_secs.max(1))
    }

    pub fn body_timeout(&self) -> Duration {
        Duration::from_secs(self.body_timeout_secs.max(1))
    }

    /// Resolves the data directory: the setting, else the platform's app data directory.
    pub fn resolve_data_dir(&self) -> Result<PathBuf, ConfigError> {
        if let Some(dir) = &self.data_dir {
            return Ok(dir.clone());
        }
        dirs::data_dir()
            .map(|dir| dir.join(APP_IDENTIFIER))
            .ok_or(ConfigError::NoDirectory { what: "data" })
    }

    /// Writes the config as commented TOML with mode 0600, replacing the file atomically.
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        let write_error = |source| ConfigError::Write {
            path: path.to_owned(),
            source,
        };
        let body = toml::to_string_pretty(self).map_err(|error| ConfigError::Parse {
            path: path.to_owned(),
            message: error.to_string(),
        })?;
        let text = format!("{}{}", CONFIG_HEADER, annotate(&body));

        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(write_error)?;
        }
        let temporary = path.with_extension("toml.tmp");
        let mut file = create_private(&temporary).map_err(write_error)?;
        file.write_all(text.as_bytes()).map_err(write_error)?;
        file.sync_all().map_err(write_error)?;
        fs::rename(&temporary, path).map_err(write_error)?;
        Ok(())
    }
}

/// Returns the config file path: `ALERT_INBOX_CONFIG`, else the platform config directory.
pub fn default_config_path() -> Result<PathBuf, ConfigError> {
    if let Some(path) = std::env::var_os(ENV_CONFIG).filter(|value| !value.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    dirs::config_dir()
        .map(|dir| dir.join(APP_IDENTIFIER).join("config.toml"))
        .ok_or(ConfigError::NoDirectory { what: "config" })
}

/// Creates (or truncates) a file readable and writable by its owner only.
pub fn create_private(path: &Path) -> std::io::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(path)?;
    // An existing file keeps its old mode through `open`, so set it again.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    Ok(file)
}

const CONFIG_HEADER: &str = "\
# Alert Inbox settings. Precedence: defaults, this file, the environment
# (ALERT_INBOX_WEBHOOK_SECRET, ALERT_INBOX_BASIC_USER, ALERT_INBOX_BASIC_PASSWORD,
# NGROK_AUTHTOKEN), then command-line flags. This file may hold secrets: keep it mode 0600.

";

/// Comments for each key, written above it by [`Config::save`].
const KEY_COMMENTS: &[(&str, &str)] = &[
    ("listen", "Address of the loopback listener."),
    ("path", "URL path of the webhook route."),
    ("max_body_bytes", "Largest accepted request body, in bytes."),
    (
        "webhook_secrets",
        "Secrets RealTheory may sign with; list two while rotating.",
    ),
    (
        "basic_user",
        "Username RealTheory sends with HTTP Basic auth.",
    ),
    (
        "basic_password",
        "Password RealTheory sends with HTTP Basic auth.",
    ),
    (
        "header_timeout_secs",
        "Seconds a client has to send its headers.",
    ),
    (
        "body_timeout_secs",
        "Seconds a client has to send its body.",
    ),
    ("max_connections", "Connections served at once."),
    (
        "delivery_retention_days",
        "Days a delivery-log row is kept.",
    ),
    ("delivery_retention_rows", "Delivery-log rows kept at most."),
    (
        "max_payload_age_secs",
        "Reject payloads whose timestamp is older (or further ahead) than this; 0 is off.",
    ),
    (
        "max_database_pages",
        "Safety limit on the size of alerts.db, in pages; past it deliveries get 503.",
    ),
    (
        "data_dir",
        "Data directory; the platform's app data directory when unset.",
    ),
    ("enabled", "Turns this section on."),
    (
        "authtoken",
        "ngrok authtoken; NGROK_AUTHTOKEN overrides it.",
    ),
    (
        "domain",
        "Reserved ngrok domain, so the public URL stays the same.",
    ),
    ("server_addr", "ngrok server address; only tests set it."),
    (
        "min_level",
        "Lowest level that notifies: Low, Medium, High or Critical.",
    ),
    ("muted_clusters", "Clusters that never notify."),
    ("muted_namespaces", "Namespaces that never notify."),
    (
        "storm_threshold",
        "More new alerts than this within storm_window_secs become one summary.",
    ),
    (
        "storm_window_secs",
        "Length of the storm window, in seconds.",
    ),
];

fn annotate(body: &str) -> String {
    let mut out = String::with_capacity(body.len() * 2);
    for line in body.lines() {
        let key = line.split('=').next().unwrap_or_default().trim();
        if let Some((_, comment)) = KEY_COMMENTS.iter().find(|(name, _)| *name == key) {
            out.push_str("# ");
            out.push_str(comment);
            out.push('\n');
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_overrides_file() {
        let mut config = Config {
            webhook_secrets: vec![Secret::new("from-file")],
            ..Config::default()
        };
        let env = Environment {
            webhook_secret: Some(Secret::new("from-env")),
            ..Environment::default()
        };
        config.apply_environment(&env);
        assert_eq!(config.webhook_secrets, vec![Secret::new("from-env")]);
    }

    #[test]
    fn half_basic_auth_is_invalid() {
        let config = Config {
            basic_user: Some("realtheory".to_owned()),
            ..Config::default()
        };
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("both a username and a password"), "{error}");
    }

    #[test]
    fn body_limit_out_of_range_is_invalid() {
        for max_body_bytes in [1023, MAX_BODY_LIMIT + 1] {
            let config = Config {
                max_body_bytes,
                ..Config::default()
            };
            let error = config.validate().unwrap_err().to_string();
            assert!(error.contains(&max_body_bytes.to_string()), "{error}");
            assert!(error.contains("between 1024 and"), "{error}");
        }
        let largest = Config {
            max_body_bytes: MAX_BODY_LIMIT,
            ..Config::default()
        };
        assert!(largest.validate().is_ok());
    }

    #[test]
    fn relative_path_is_invalid() {
        let config = Config {
            path: "webhook".to_owned(),
            ..Config::default()
        };
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("\"webhook\""), "{error}");
    }

    #[test]
    fn debug_redacts_secrets() {
        let config = Config {
            webhook_secrets: vec![Secret::new("topsecret-value")],
            basic_user: Some("user".to_owned()),
            basic_password: Some(Secret::new("pa55word-value")),
            ..Config::default()
        };
        let debug = format!("{config:?}");
        assert!(!debug.contains("topsecret-value"));
        assert!(!debug.contains("pa55word-value"));
    }

    #[test]
    fn saved_file_round_trips_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join("config.toml");
        let config = Config {
            webhook_secrets: vec![Secret::new("s1"), Secret::new("s2")],
            ..Config::default()
        };
        config.save(&path).unwrap();

        let loaded = Config::load_file(&path).unwrap();
        assert_eq!(loaded, config);
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains("# Largest accepted request body"), "{text}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    /// Returns the error of loading a config file that contains `text`.
    fn load_error(text: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        fs::write(&path, text).unwrap();
        Config::load_file(&path).unwrap_err().to_string()
    }

    #[test]
    fn bad_listen_names_line_and_example() {
        let error = load_error("path = \"/webhook\"\nlisten = \"127.0.0.1:99999\"\n");
        assert!(error.contains("line 2, `listen`"), "{error}");
        assert!(error.contains("127.0.0.1:8787"), "{error}");
    }

    #[test]
    fn type_error_hides_value() {
        let error = load_error("webhook_secrets = \"hunter2 \\\"quoted\\\" secret\"\n");
        assert!(error.contains("line 1, `webhook_secrets`"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
        assert!(!error.contains("quoted"), "{error}");
    }

    #[test]
    fn unknown_key_names_itself() {
        let error = load_error("lisen = \"127.0.0.1:1\"\n");
        assert!(error.contains("lisen"), "{error}");
    }
}
