//! The webhook route over a real loopback listener, with a real SQLite file behind it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use alert_inbox::receiver::verify::{basic_header, sign, SIGNATURE_HEADER, SIGNATURE_HEADER_ALT};
use alert_inbox::secret::Secret;
use serde_json::Value;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread")]
async fn documented_example_is_stored() {
    let receiver = TestReceiver::start().await;
    let response = receiver
        .post_signed(&fixture("documented-example.json"))
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["outcome"], "accepted");
    assert_eq!(body["id"], EXAMPLE_ID);

    let alert = receiver.alert(EXAMPLE_ID).expect("alert stored");
    assert_eq!(receiver.outcomes(), ["stored"]);
    assert_eq!(alert["level"], "High");
    assert_eq!(
        alert["title"],
        "The pod has been recently terminated with the OOMKilled status."
    );
    assert_eq!(alert["metadata"]["clusterName"], "realtheory-cluster-01");
    assert_eq!(alert["created"], "2024-08-07T10:16:35.0176406Z");
    assert_eq!(
        alert["consoleUrl"],
        format!("https://myendpoint.realtheory.io/alerts/{EXAMPLE_ID}")
    );
    assert_eq!(alert["deliveryCount"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn github_vector_passes_signature_check() {
    // GitHub's published example: the signature is right, so the failure is the JSON.
    let receiver = TestReceiver::start().await;
    let body = b"Hello, World!";
    let signature = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    assert_eq!(sign(&Secret::new(SECRET), body), signature);

    let response = receiver
        .client()
        .post(&receiver.url)
        .header("authorization", basic_header(USER, &Secret::new(PASSWORD)))
        .header("X-Hub-Signature-256", signature)
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn both_signature_header_names_accepted() {
    let receiver = TestReceiver::start().await;
    for (index, name) in ["HTTP-X-HUB-SIGNATURE-256", "x-hub-signature-256"]
        .iter()
        .enumerate()
    {
        let body = with_id(
            &fixture("documented-example.json"),
            &format!("header-name-{index}"),
        );
        let response = receiver
            .client()
            .post(&receiver.url)
            .header("authorization", basic_header(USER, &Secret::new(PASSWORD)))
            .header(*name, sign(&Secret::new(SECRET), &body))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{name}");
    }
    assert_eq!(receiver.alert_count(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn upper_case_signature_hex_accepted() {
    let receiver = TestReceiver::start().await;
    let body = fixture("documented-example.json");
    let signature = sign(&Secret::new(SECRET), &body);
    let upper = format!(
        "sha256={}",
        signature["sha256=".len()..].to_ascii_uppercase()
    );
    let response = receiver
        .request_unsigned(&body)
        .header(SIGNATURE_HEADER, upper)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_signatures_are_401_without_expected_value() {
    let receiver = TestReceiver::start().await;
    let body = fixture("documented-example.json");
    let expected = sign(&Secret::new(SECRET), &body);
    let wrong_secret = sign(&Secret::new("not the secret"), &body);
    let cases = [
        Some(wrong_secret.as_str()),
        Some("sha256=abc"),
        Some("sha256=zz"),
        Some("md5=0123456789abcdef0123456789abcdef"),
        Some(""),
        None,
    ];
    for value in cases {
        let mut request = receiver
            .client()
            .post(&receiver.url)
            .header("authorization", basic_header(USER, &Secret::new(PASSWORD)))
            .body(body.clone());
        if let Some(value) = value {
            request = request.header(SIGNATURE_HEADER, value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{value:?}");
        let text = response.text().await.unwrap();
        assert!(!text.contains(&expected["sha256=".len()..]), "{text}");
        assert!(!text.contains(SECRET), "{text}");
    }
    assert_eq!(receiver.alert_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn tampered_body_rejected() {
    let receiver = TestReceiver::start().await;
    let body = fixture("documented-example.json");
    let signature = sign(&Secret::new(SECRET), &body);
    let tampered = String::from_utf8(body)
        .unwrap()
        .replace("\"High\"", "\"Low\"");
    let response = receiver
        .request_unsigned(tampered.as_bytes())
        .header(SIGNATURE_HEADER, signature)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(receiver.alert_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_signature_headers_rejected() {
    let receiver = TestReceiver::start().await;
    let body = fixture("documented-example.json");
    let signature = sign(&Secret::new(SECRET), &body);
    let response = receiver
        .request(&body)
        .header(SIGNATURE_HEADER_ALT, signature)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn rotated_secret_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.webhook_secrets = vec![Secret::new("new secret"), Secret::new(SECRET)];
    let receiver = TestReceiver::start_with(config).await;

    let old = with_id(&fixture("documented-example.json"), "signed-with-old");
    assert_eq!(receiver.post_signed(&old).await.status(), 200);

    let new = with_id(&fixture("documented-example.json"), "signed-with-new");
    let response = receiver
        .request_unsigned(&new)
        .header(SIGNATURE_HEADER, sign(&Secret::new("new secret"), &new))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(receiver.alert_count(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_auth_failures_are_401_with_challenge() {
    let receiver = TestReceiver::start().await;
    let body = fixture("documented-example.json");
    let cases = [
        None,
        Some(basic_header(USER, &Secret::new("wrong"))),
        Some(basic_header("someone", &Secret::new(PASSWORD))),
        Some("Basic %%%not-base64%%%".to_owned()),
        Some("Bearer token".to_owned()),
    ];
    for value in cases {
        let mut request = receiver
            .client()
            .post(&receiver.url)
            .header(SIGNATURE_HEADER, sign(&Secret::new(SECRET), &body))
            .body(body.clone());
        if let Some(value) = &value {
            request = request.header("authorization", value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{value:?}");
        let challenge = response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(
            challenge.as_deref(),
            Some("Basic realm=\"Alert Inbox\", charset=\"UTF-8\"")
        );
    }
    assert_eq!(receiver.alert_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_checked_before_json() {
    let receiver = TestReceiver::start().await;
    let body = b"{ this is not json";
    let response = receiver
        .client()
        .post(&receiver.url)
        .header(SIGNATURE_HEADER, sign(&Secret::new(SECRET), body))
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_bodies_are_400_with_reason() {
    let receiver = TestReceiver::start().await;
    let deep = format!(
        "{{\"content\": {{\"id\": \"x\", \"a\": {}{}}}}}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "invalid JSON",
            b"{\"type\": \"alert\", \"content\": {".to_vec(),
            "invalid JSON",
        ),
        (
            "no content",
            br#"{"type": "alert"}"#.to_vec(),
            "missing field `content`",
        ),
        (
            "no content.id",
            br#"{"content": {"title": "t"}}"#.to_vec(),
            "missing field `content.id`",
        ),
        ("deep nesting", deep.into_bytes(), "nested more than"),
        (
            "invalid UTF-8",
            b"{\"content\": {\"id\": \"\xc3\x28\"}}".to_vec(),
            "not valid UTF-8",
        ),
        (
            "wrong type",
            br#"{"content": {"id": "x", "title": 7}}"#.to_vec(),
            "content.title: invalid type",
        ),
        (
            "array body",
            br#"[1, 2]"#.to_vec(),
            "body must be a JSON object",
        ),
        ("empty body", Vec::new(), "body is empty"),
    ];
    for (name, body, reason) in cases {
        let response = receiver.post_signed(&body).await;
        assert_eq!(response.status(), 400, "{name}");
        let json: Value = response.json().await.unwrap();
        assert_eq!(json["outcome"], "malformed", "{name}");
        let error = json["error"].as_str().unwrap();
        assert!(error.contains(reason), "{name}: {error}");
    }
    assert_eq!(receiver.alert_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_fields_and_values_kept() {
    let receiver = TestReceiver::start().await;
    let response = receiver.post_signed(&fixture("unknown-fields.json")).await;
    assert_eq!(response.status(), 200);

    let alert = receiver
        .alert("e5a0c9d4-1f2b-4c3d-8e9f-0a1b2c3d4e5f")
        .expect("stored");
    assert_eq!(alert["level"], "Apocalyptic");
    assert_eq!(alert["state"], "Smouldering");
    assert_eq!(alert["runbook"]["steps"][2]["deep"], true);
    assert_eq!(alert["metadata"]["replicaSetName"], "logger-67b576f56b");
}

#[tokio::test(flavor = "multi_thread")]
async fn raw_utf8_and_escaped_bodies_stored_alike() {
    let receiver = TestReceiver::start().await;
    assert_eq!(
        receiver
            .post_signed(&fixture("unicode-raw.json"))
            .await
            .status(),
        200
    );
    assert_eq!(
        receiver
            .post_signed(&fixture("unicode-escaped.json"))
            .await
            .status(),
        200
    );

    let raw = receiver
        .alert("7c1e0f52-3d4a-4b8e-a1f0-5e6d7c8b9a01")
        .unwrap();
    let escaped = receiver
        .alert("7c1e0f52-3d4a-4b8e-a1f0-5e6d7c8b9a02")
        .unwrap();
    assert_eq!(raw["title"], "Knoten meldet Speicherdruck — 内存压力 ⚠️");
    assert_eq!(escaped["title"], raw["title"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn compressed_body_is_415() {
    let receiver = TestReceiver::start().await;
    let response = receiver
        .request(&fixture("documented-example.json"))
        .header("content-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
}

#[tokio::test(flavor = "multi_thread")]
async fn other_methods_are_405() {
    let receiver = TestReceiver::start().await;
    for method in [
        reqwest::Method::GET,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        let response = receiver
            .client()
            .request(method.clone(), &receiver.url)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "{method}");
        assert_eq!(response.headers()["allow"], "POST");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn other_paths_are_404_without_redirect() {
    let receiver = TestReceiver::start().await;
    let body = fixture("documented-example.json");
    for path in ["/webhook/", "/", "/webhooks", "/WEBHOOK", "/webhook/extra"] {
        let url = format!("{}{path}", receiver.base_url());
        let response = receiver
            .client()
            .post(&url)
            .header("authorization", basic_header(USER, &Secret::new(PASSWORD)))
            .header(SIGNATURE_HEADER, sign(&Secret::new(SECRET), &body))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{path}");
        assert!(response.headers().get("location").is_none(), "{path}");
    }
    assert_eq!(receiver.alert_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn configured_path_is_the_only_route() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.path = "/realtheory/alerts".to_owned();
    let receiver = TestReceiver::start_with(config).await;
    assert!(receiver.url.ends_with("/realtheory/alerts"));
    assert_eq!(
        receiver
            .post_signed(&fixture("documented-example.json"))
            .await
            .status(),
        200
    );

    let old_path = format!("{}/webhook", receiver.base_url());
    let response = receiver
        .client()
        .post(old_path)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

/// Sends raw bytes and returns the status line's code, 0 if none came.
fn raw_exchange(address: &str, request: &[u8], then_send: Option<&[u8]>) -> u16 {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request).unwrap();
    if let Some(rest) = then_send {
        // The receiver may already have responded and closed, which is the point.
        let _ = stream.write_all(rest);
    }
    let mut reply = Vec::new();
    let mut buffer = [0u8; 1024];
    while !reply.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => reply.extend_from_slice(&buffer[..read]),
        }
    }
    let text = String::from_utf8_lossy(&reply);
    text.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn declared_oversize_refused_before_body() {
    let receiver = TestReceiver::start().await;
    let address = receiver.runtime.as_ref().unwrap().local_addr().to_string();
    let head = format!(
        "POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nAuthorization: {}\r\n\r\n",
        8 * 1024 * 1024,
        basic_header(USER, &Secret::new(PASSWORD))
    );
    // No body is sent at all, so the response must come from the header alone.
    let status = tokio::task::spawn_blocking(move || raw_exchange(&address, head.as_bytes(), None))
        .await
        .unwrap();
    assert_eq!(status, 413);
    let rows = receiver.deliveries();
    assert_eq!(rows[0].outcome, "too_large");
}

#[tokio::test(flavor = "multi_thread")]
async fn chunked_oversize_refused() {
    let receiver = TestReceiver::start().await;
    let address = receiver.runtime.as_ref().unwrap().local_addr().to_string();
    let head = "POST /webhook HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_owned();
    let chunk = vec![b'a'; 256 * 1024];
    let mut body = Vec::new();
    for _ in 0..8 {
        body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        body.extend_from_slice(&chunk);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let status =
        tokio::task::spawn_blocking(move || raw_exchange(&address, head.as_bytes(), Some(&body)))
            .await
            .unwrap();
    assert_eq!(status, 413);
}

#[tokio::test(flavor = "multi_thread")]
async fn body_just_under_limit_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.max_body_bytes = 4096;
    let receiver = TestReceiver::start_with(config).await;

    let small = fixture("documented-example.json");
    assert!(small.len() < 4096);
    assert_eq!(receiver.post_signed(&small).await.status(), 200);

    let padded = with_content_field(&small, "details", "x".repeat(4096).into());
    assert_eq!(receiver.post_signed(&padded).await.status(), 413);
}

#[tokio::test(flavor = "multi_thread")]
async fn redelivery_counted_not_duplicated() {
    let receiver = TestReceiver::start().await;
    let body = fixture("documented-example.json");
    assert_eq!(receiver.post_signed(&body).await.status(), 200);
    assert_eq!(receiver.post_signed(&body).await.status(), 200);
    assert_eq!(receiver.outcomes(), ["stored", "duplicate"]);
    assert_eq!(receiver.alert_count(), 1);
    assert_eq!(receiver.alert(EXAMPLE_ID).unwrap()["deliveryCount"], 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn newer_version_replaces_older() {
    let receiver = TestReceiver::start().await;
    receiver
        .post_signed(&fixture("documented-example.json"))
        .await;
    let response = receiver
        .post_signed(&fixture("documented-example-postponed.json"))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(receiver.outcomes(), ["stored", "stored"]);
    let alert = receiver.alert(EXAMPLE_ID).unwrap();
    assert_eq!(alert["state"], "Postponed");
    assert_eq!(alert["level"], "Critical");
    assert_eq!(alert["postponedUntil"], "2024-09-06T09:00:00Z");
}

#[tokio::test(flavor = "multi_thread")]
async fn out_of_order_update_never_overwrites() {
    let receiver = TestReceiver::start().await;
    receiver
        .post_signed(&fixture("documented-example-postponed.json"))
        .await;
    let response = receiver
        .post_signed(&fixture("documented-example.json"))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(receiver.outcomes(), ["stored", "outdated"]);
    let alert = receiver.alert(EXAMPLE_ID).unwrap();
    assert_eq!(alert["state"], "Postponed");
    assert_eq!(alert["deliveryCount"], 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn update_keeps_triage() {
    use alert_inbox::store::{triage, Store};
    let receiver = TestReceiver::start().await;
    receiver
        .post_signed(&fixture("documented-example.json"))
        .await;

    receiver.wait_until_applied();
    let store = receiver.runtime.as_ref().unwrap().store().clone();
    let mut connection = Store::open_connection(&store).unwrap();
    let ids = [EXAMPLE_ID.to_owned()];
    triage::apply(&mut connection, &ids, &triage::TriageAction::Acknowledge).unwrap();
    let note = triage::TriageAction::SetNote {
        note: "paged the owner".to_owned(),
    };
    triage::apply(&mut connection, &ids, &note).unwrap();

    receiver
        .post_signed(&fixture("documented-example-postponed.json"))
        .await;
    let alert = receiver.alert(EXAMPLE_ID).unwrap();
    assert_eq!(alert["state"], "Postponed");
    assert_eq!(alert["acknowledged"], true);
    assert_eq!(alert["read"], true);
    assert_eq!(alert["note"], "paged the owner");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_deliveries_all_stored() {
    let receiver = TestReceiver::start().await;
    let template = fixture("documented-example.json");
    let mut tasks = Vec::new();
    for index in 0..500 {
        let body = with_id(&template, &format!("concurrent-{index:03}"));
        let request = receiver.request(&body);
        tasks.push(tokio::spawn(async move {
            request.send().await.map(|r| r.status().as_u16())
        }));
    }
    let mut ok = 0;
    for task in tasks {
        if task.await.unwrap().unwrap() == 200 {
            ok += 1;
        }
    }
    assert_eq!(ok, 500);
    assert_eq!(receiver.alert_count(), 500);
}

#[tokio::test(flavor = "multi_thread")]
async fn data_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut receiver = TestReceiver::start_with(config(dir.path())).await;
    receiver
        .post_signed(&fixture("documented-example.json"))
        .await;
    receiver.stop().await;

    let receiver = TestReceiver::start_with(config(dir.path())).await;
    assert_eq!(receiver.alert_count(), 1);
    let response = receiver
        .post_signed(&fixture("documented-example.json"))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(receiver.outcomes(), ["stored", "duplicate"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_request_leaves_a_log_row() {
    let receiver = TestReceiver::start().await;
    let body = fixture("documented-example.json");
    receiver.post_signed(&body).await;
    receiver
        .client()
        .post(&receiver.url)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    receiver.client().get(&receiver.url).send().await.unwrap();
    receiver.post_signed(b"{not json").await;

    let rows = receiver.deliveries();
    let outcomes: Vec<&str> = rows.iter().rev().map(|row| row.outcome.as_str()).collect();
    assert_eq!(
        outcomes,
        ["stored", "unauthorized", "method_not_allowed", "malformed"]
    );
    let statuses: Vec<u16> = rows.iter().rev().map(|row| row.status).collect();
    assert_eq!(statuses, [200, 401, 405, 400]);
    assert!(rows
        .iter()
        .all(|row| row.remote_addr.starts_with("127.0.0.1:")));
}

#[tokio::test(flavor = "multi_thread")]
async fn log_keeps_body_but_never_credentials() {
    let receiver = TestReceiver::start().await;
    let body = fixture("documented-example.json");
    receiver.post_signed(&body).await;
    receiver
        .client()
        .post(&receiver.url)
        .body(body.clone())
        .send()
        .await
        .unwrap();

    let rows = receiver.deliveries();
    let (rejected, stored) = (&rows[0], &rows[1]);
    assert_eq!(
        stored.body.as_deref().map(str::as_bytes),
        Some(body.as_slice())
    );
    let headers = stored.headers.as_ref().unwrap();
    assert!(headers.get("authorization").is_none(), "{headers}");
    assert!(headers.get(SIGNATURE_HEADER).is_some(), "{headers}");
    assert_eq!(stored.body_sha256.len(), 64);
    assert!(rejected.body.is_none());
    assert!(rejected.headers.is_none());

    let raw = std::fs::read(receiver.data_dir.join("alerts.db")).unwrap();
    let needle = basic_header(USER, &Secret::new(PASSWORD));
    assert!(!raw.windows(needle.len()).any(|w| w == needle.as_bytes()));
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_for_ignored_on_loopback() {
    let receiver = TestReceiver::start().await;
    receiver
        .request(&fixture("documented-example.json"))
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .unwrap();
    let rows = receiver.deliveries();
    assert!(
        rows[0].remote_addr.starts_with("127.0.0.1:"),
        "{}",
        rows[0].remote_addr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unauthenticated_receiver_stores_anything() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.webhook_secrets.clear();
    config.basic_user = None;
    config.basic_password = None;
    let receiver = TestReceiver::start_with(config).await;
    let response = receiver
        .client()
        .post(&receiver.url)
        .body(fixture("documented-example.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_payload_rejected_when_age_limited() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.max_payload_age_secs = 300;
    let receiver = TestReceiver::start_with(config).await;

    // The fixture's timestamp is from 2024.
    let response = receiver
        .post_signed(&fixture("documented-example.json"))
        .await;
    assert_eq!(response.status(), 400);
    let json: Value = response.json().await.unwrap();
    assert_eq!(json["outcome"], "stale");
    assert!(json["error"]
        .as_str()
        .unwrap()
        .contains("max_payload_age_secs"));

    let mut fresh: Value = serde_json::from_slice(&fixture("documented-example.json")).unwrap();
    fresh["timestamp"] = chrono::Utc::now().to_rfc3339().into();
    let fresh = serde_json::to_vec(&fresh).unwrap();
    assert_eq!(receiver.post_signed(&fresh).await.status(), 200);

    let mut future: Value = serde_json::from_slice(&fresh).unwrap();
    future["timestamp"] = (chrono::Utc::now() + chrono::Duration::hours(1))
        .to_rfc3339()
        .into();
    let future = serde_json::to_vec(&future).unwrap();
    assert_eq!(receiver.post_signed(&future).await.status(), 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_body_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.body_timeout_secs = 1;
    let receiver = TestReceiver::start_with(config).await;
    let address = receiver.runtime.as_ref().unwrap().local_addr().to_string();
    let head = "POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"con";
    let status = tokio::task::spawn_blocking(move || raw_exchange(&address, head.as_bytes(), None))
        .await
        .unwrap();
    assert_eq!(status, 408);
    assert_eq!(receiver.deliveries()[0].outcome, "timeout");
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_connection_closed_after_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.header_timeout_secs = 1;
    let receiver = TestReceiver::start_with(config).await;
    let address = receiver.runtime.as_ref().unwrap().local_addr().to_string();
    let closed = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(address).unwrap();
        stream.write_all(b"POST /webhook HTTP/1.1\r\nHost").unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        let mut buffer = [0u8; 512];
        // The server closes (or responds 408) instead of waiting for the rest forever.
        stream.read(&mut buffer).is_ok()
    })
    .await
    .unwrap();
    assert!(closed, "connection still open after the header timeout");
}

#[tokio::test(flavor = "multi_thread")]
async fn search_finds_alert_while_running() {
    use alert_inbox::store::{query, AlertFilter};
    let receiver = TestReceiver::start().await;
    receiver.post_signed(&fixture("unicode-raw.json")).await;

    // The full-text index is filled in batches a moment after the commit.
    let filter = AlertFilter {
        text: "speicherdruck".to_owned(),
        ..AlertFilter::default()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let found = query::list(&receiver.reader(), &filter, None, 10).unwrap();
        if found.len() == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "alert never became searchable"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn replaced_version_kept_in_log() {
    let receiver = TestReceiver::start().await;
    let first = fixture("documented-example.json");
    let second = fixture("documented-example-postponed.json");
    receiver.post_signed(&first).await;
    receiver.post_signed(&second).await;

    let rows = receiver.deliveries();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0].body.as_deref().map(str::as_bytes),
        Some(second.as_slice())
    );
    assert_eq!(
        rows[1].body.as_deref().map(str::as_bytes),
        Some(first.as_slice())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn delivery_log_bounded_by_retention() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.delivery_retention_rows = 3;
    let mut receiver = TestReceiver::start_with(config.clone()).await;
    let template = fixture("documented-example.json");
    for index in 0..6 {
        receiver
            .post_signed(&with_id(&template, &format!("retained-{index}")))
            .await;
    }
    receiver.stop().await;

    let rows = alert_inbox::store::deliveries::list(
        &alert_inbox::store::Store::open_reader(dir.path()).unwrap(),
        None,
        100,
    )
    .unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].alert_id.as_deref(), Some("retained-5"));
    // Pruning the log never removes alerts, nor the payload they keep.
    let receiver = TestReceiver::start_with(config).await;
    assert_eq!(receiver.alert_count(), 6);
    assert!(receiver.alert("retained-0").unwrap()["title"].is_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn alert_history_lists_its_deliveries() {
    let receiver = TestReceiver::start().await;
    let example = fixture("documented-example.json");
    receiver.post_signed(&example).await;
    receiver.post_signed(&fixture("unicode-raw.json")).await;
    receiver.post_signed(&example).await;
    receiver
        .post_signed(&fixture("documented-example-postponed.json"))
        .await;

    let history =
        alert_inbox::store::deliveries::list(&receiver.reader(), Some(EXAMPLE_ID), 10).unwrap();
    let outcomes: Vec<&str> = history.iter().map(|row| row.outcome.as_str()).collect();
    assert_eq!(outcomes, ["stored", "duplicate", "stored"]);
    assert!(history
        .iter()
        .all(|row| row.alert_id.as_deref() == Some(EXAMPLE_ID)));

    let none = alert_inbox::store::deliveries::list(&receiver.reader(), Some("no-such-alert"), 10)
        .unwrap();
    assert!(none.is_empty());
}
