//! `alert-inbox send-test`: one signed example alert, sent as RealTheory sends it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::config::Config;
use crate::model::Level;
use crate::receiver::verify::{basic_header, sign, SIGNATURE_HEADER};

#[derive(Debug, Args)]
pub struct SendTestArgs {
    /// Webhook URL to post to, such as http://127.0.0.1:8787/webhook or the public URL
    #[arg(long, value_name = "URL")]
    url: String,
    /// Level of the example alert: Low, Medium, High or Critical (any case)
    #[arg(long, default_value = "High", value_parser = parse_level)]
    level: Level,
}

/// Reads a level in any case, so the alert carries RealTheory's spelling.
pub fn parse_level(value: &str) -> Result<Level, String> {
    Level::parse(value)
        .ok_or_else(|| format!("invalid level {value:?}: use Low, Medium, High or Critical"))
}

pub fn run(config_path: Option<PathBuf>, args: SendTestArgs) -> anyhow::Result<ExitCode> {
    let (config, _) = super::load_config(config_path)?;
    let url = reqwest::Url::parse(&args.url).with_context(|| {
        format!(
            "invalid --url {:?}: expected a URL such as http://127.0.0.1:8787/webhook",
            args.url
        )
    })?;
    let body = example_payload(args.level);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (status, text) = runtime.block_on(async {
        let response = build_request(&config, url.clone(), body)
            .send()
            .await
            .with_context(|| {
                format!(
                    "failed to send the test alert to {url}; check that the receiver runs \
                     (`alert-inbox` or `alert-inbox serve`) and listens at that address"
                )
            })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        anyhow::Ok((status, text))
    })?;

    println!("{} answered {status}: {}", url, text.trim());
    if status.is_success() {
        Ok(ExitCode::SUCCESS)
    } else {
        if status == reqwest::StatusCode::UNAUTHORIZED {
            eprintln!(
                "hint: the receiver rejected the credentials or signature; run send-test with the \
                 same secret and Basic credentials as the receiver (config file or ALERT_INBOX_* variables)"
            );
        }
        Ok(ExitCode::FAILURE)
    }
}

/// Builds the POST exactly as RealTheory does: JSON body, Basic auth when configured, and
/// the signature header for the first configured secret.
pub fn build_request(config: &Config, url: reqwest::Url, body: String) -> reqwest::RequestBuilder {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("the HTTP client has a valid default configuration");
    let mut request = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json");
    if let (Some(user), Some(password)) = (&config.basic_user, &config.basic_password) {
        request = request.header(reqwest::header::AUTHORIZATION, basic_header(user, password));
    }
    if let Some(secret) = config.webhook_secrets.first() {
        request = request.header(
            SIGNATURE_HEADER.to_ascii_uppercase(),
            sign(secret, body.as_bytes()),
        );
    }
    request.body(body)
}

/// Builds a SystemAlertPayload shaped like RealTheory's documented example, with a fresh id and
/// the current time, so each test shows up as a new alert.
pub fn example_payload(level: Level) -> String {
    let id = random_uuid();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    let payload = serde_json::json!({
        "domainId": "8ca6aa4c-8c7d-9fb9-c751-3e038f90d283",
        "domainName": "Alert Inbox test",
        "version": "1.0",
        "type": "alert",
        "action": "create",
        "url": "",
        "consoleUrl": format!("https://app.realtheory.io/alerts/{id}"),
        "content": {
            "type": "System",
            "metadata": {
                "objectType": "Pod",
                "objectId": "14aecb16-ed6a-41f4-9be5-6e29b4e5cdce",
                "objectName": "send-test-pod",
                "clusterId": "f99e055f-b35d-208b-63b1-f4222b80151a",
                "clusterName": "send-test-cluster",
                "namespaceId": "0b3c50fe-5116-44bd-b229-543251be4e74",
                "namespaceName": "default",
                "podName": "send-test-pod"
            },
            "id": id,
            "key": format!("AlertInboxSendTest::{id}"),
            "title": "Test alert from alert-inbox send-test",
            "message": "If you can read this in Alert Inbox, the webhook path works end to end.",
            "details": "Sent by `alert-inbox send-test`.",
            "level": level.name(),
            "category": "Health",
            "source": "alert-inbox send-test",
            "sourceId": "00000000-0000-0000-0000-000000000000",
            "state": "New",
            "advisoryId": "00000000-0000-0000-0000-000000000000",
            "created": now,
            "updated": now,
            "postponedUntil": null,
            "expires": null
        },
        "timestamp": now
    });
    serde_json::to_string_pretty(&payload).expect("a JSON value always serializes")
}

fn random_uuid() -> String {
    let bytes: [u8; 16] = rand::random();
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}
