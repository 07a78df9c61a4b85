//! Hostile input: odd bodies, odd headers and misbehaving connections.
//!
//! Each case checks the status, that the receiver keeps serving, and the delivery-log row
//! the request left. Requests that the HTTP parser rejects before the webhook handler runs
//! (control characters in a header, headers not sent in time) get hyper's own response and
//! leave no row; the tests below say so where it applies. `receiver.rs` covers the plainer
//! cases (invalid JSON, 10,000 levels of nesting, a wrong type, two signature names).

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use alert_inbox::receiver::verify::{basic_header, sign, SIGNATURE_HEADER, SIGNATURE_HEADER_ALT};
use alert_inbox::secret::Secret;
use serde_json::{json, Value};

use crate::helpers::*;

/// A body case: name, body, expected status and a fragment of the reason (empty for 2xx).
type BodyCase = (&'static str, Vec<u8>, u16, &'static str);

/// Posts each case signed and checks the status, the reason and the new log row.
async fn check_body_cases(receiver: &TestReceiver, cases: Vec<BodyCase>) {
    for (name, body, status, reason) in cases {
        let rows_before = receiver.deliveries().len();
        let response = receiver.post_signed(&body).await;
        assert_eq!(response.status().as_u16(), status, "{name}");
        let answer: Value = response.json().await.unwrap();
        if status >= 400 {
            let error = answer["error"].as_str().unwrap_or_default();
            assert!(error.contains(reason), "{name}: {error}");
        }

        let rows = receiver.deliveries();
        assert_eq!(rows.len(), rows_before + 1, "{name}: no log row");
        assert_eq!(rows[0].status, status, "{name}");
        let expected_outcome = if status >= 400 { "malformed" } else { "stored" };
        assert_eq!(rows[0].outcome, expected_outcome, "{name}");
    }
}

/// Puts `value` under `content` in a copy of the documented example, keeping its id.
fn example_with(field: &str, value: Value) -> Vec<u8> {
    with_content_field(&fixture("documented-example.json"), field, value)
}

/// Builds a JSON text by hand, for bodies `serde_json::Value` cannot represent.
fn content_body(id: &str, extra_members: &str) -> Vec<u8> {
    format!(r#"{{"content": {{"id": "{id}", "title": "hostile", {extra_members}}}}}"#).into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn encodings_rejected_with_reason() {
    let receiver = TestReceiver::start().await;
    let example = fixture("documented-example.json");
    let mut bom = vec![0xEF, 0xBB, 0xBF];
    bom.extend_from_slice(&example);
    let mut utf16 = vec![0xFF, 0xFE];
    for unit in String::from_utf8(example.clone()).unwrap().encode_utf16() {
        utf16.extend_from_slice(&unit.to_le_bytes());
    }
    let cases: Vec<BodyCase> = vec![
        ("byte-order mark", bom, 400, "byte-order mark"),
        ("UTF-16", utf16, 400, "not valid UTF-8"),
        (
            "overlong encoding",
            b"{\"content\": {\"id\": \"\xc0\xaf\"}}".to_vec(),
            400,
            "not valid UTF-8",
        ),
        (
            "encoded surrogate",
            b"{\"content\": {\"id\": \"\xed\xa0\x80\"}}".to_vec(),
            400,
            "not valid UTF-8",
        ),
        (
            "truncated sequence",
            b"{\"content\": {\"id\": \"a\"}, \"x\": \"\xe2\x82".to_vec(),
            400,
            "not valid UTF-8",
        ),
        (
            "only whitespace",
            b" \r\n\t ".to_vec(),
            400,
            "body is empty",
        ),
        ("NUL bytes", vec![0u8; 64], 400, "invalid JSON"),
    ];
    check_body_cases(&receiver, cases).await;
    assert_eq!(receiver.alert_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn deep_nesting_rejected_at_any_depth() {
    let receiver = TestReceiver::start().await;
    let depth = 100_000;
    let arrays = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let objects = format!(
        r#"{{"content": {{"id": "a", "x": {}1{}}}}}"#,
        r#"{"a":"#.repeat(depth),
        "}".repeat(depth)
    );
    let unclosed = format!(r#"{{"content": {{"id": "a", "x": {}"#, "[".repeat(depth));

    // The body and `content` are two levels, so 62 more reach the limit of 64 exactly.
    let at_limit = alert_inbox::model::MAX_DEPTH - 2;
    let deepest_accepted = content_body(
        "depth-at-limit",
        &format!(r#""x": {}{}"#, "[".repeat(at_limit), "]".repeat(at_limit)),
    );
    let one_too_deep = content_body(
        "depth-over-limit",
        &format!(
            r#""x": {}{}"#,
            "[".repeat(at_limit + 1),
            "]".repeat(at_limit + 1)
        ),
    );
    let cases: Vec<BodyCase> = vec![
        (
            "100,000 arrays",
            arrays.into_bytes(),
            400,
            "nested more than",
        ),
        (
            "100,000 objects",
            objects.into_bytes(),
            400,
            "nested more than",
        ),
        (
            "100,000 unclosed arrays",
            unclosed.into_bytes(),
            400,
            "nested more than",
        ),
        ("depth at the limit", deepest_accepted, 200, ""),
        (
            "depth over the limit",
            one_too_deep,
            400,
            "nested more than",
        ),
    ];
    check_body_cases(&receiver, cases).await;
    assert_eq!(receiver.alert_count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn huge_numbers_in_unknown_fields_stored() {
    let receiver = TestReceiver::start().await;
    let many_digits = "9".repeat(10_000);
    let cases: Vec<BodyCase> = vec![
        (
            "1e400",
            content_body("big-exponent", r#""x": 1e400"#),
            200,
            "",
        ),
        (
            "-1e400",
            content_body("negative-exponent", r#""x": -1e400"#),
            200,
            "",
        ),
        ("1e-400", content_body("tiny", r#""x": 1e-400"#), 200, ""),
        (
            "40 digits",
            content_body(
                "forty-digits",
                r#""x": 1234567890123456789012345678901234567890"#,
            ),
            200,
            "",
        ),
        (
            "10,000 digits",
            content_body("many-digits", &format!(r#""x": {many_digits}"#)),
            200,
            "",
        ),
        (
            "nested in metadata",
            content_body(
                "in-metadata",
                r#""metadata": {"clusterName": "c1", "usage": [1e400, {"y": -1e999}]}"#,
            ),
            200,
            "",
        ),
    ];
    check_body_cases(&receiver, cases).await;
    assert_eq!(receiver.alert_count(), 6);

    // The alert's JSON keeps its known fields and shows an unrepresentable number as text.
    let alert = receiver.alert("big-exponent").unwrap();
    assert_eq!(alert["title"], "hostile");
    assert_eq!(alert["x"], "1e400");
    let nested = receiver.alert("in-metadata").unwrap();
    assert_eq!(nested["metadata"]["clusterName"], "c1");
    assert_eq!(nested["metadata"]["usage"][1]["y"], "-1e999");
    let long = receiver.alert("many-digits").unwrap();
    assert_eq!(long["title"], "hostile");
}

#[tokio::test(flavor = "multi_thread")]
async fn huge_numbers_in_known_fields_rejected() {
    let receiver = TestReceiver::start().await;
    let cases: Vec<BodyCase> = vec![
        (
            "title 1e400",
            br#"{"content": {"id": "a", "title": 1e400}}"#.to_vec(),
            400,
            "number out of range",
        ),
        (
            "id as a number",
            br#"{"content": {"id": 123456789012345678901234567890}}"#.to_vec(),
            400,
            "content.id",
        ),
        (
            "year 9999",
            example_with("updated", json!("9999-12-31T23:59:59Z")),
            400,
            "content.updated: invalid timestamp",
        ),
        (
            "year 0",
            example_with("created", json!("0000-01-01T00:00:00Z")),
            400,
            "content.created: invalid timestamp",
        ),
    ];
    check_body_cases(&receiver, cases).await;
    assert_eq!(receiver.alert_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_types_name_the_field() {
    let receiver = TestReceiver::start().await;
    let example: Value = serde_json::from_slice(&fixture("documented-example.json")).unwrap();
    let top = |field: &str, value: Value| {
        let mut body = example.clone();
        body[field] = value;
        serde_json::to_vec(&body).unwrap()
    };
    let metadata_field = |field: &str, value: Value| {
        let mut body = example.clone();
        body["content"]["metadata"][field] = value;
        serde_json::to_vec(&body).unwrap()
    };
    let cases: Vec<BodyCase> = vec![
        (
            "body string",
            br#""alert""#.to_vec(),
            400,
            "body must be a JSON object",
        ),
        (
            "body number",
            b"42".to_vec(),
            400,
            "body must be a JSON object",
        ),
        (
            "content string",
            top("content", json!("x")),
            400,
            "content must be a JSON object",
        ),
        (
            "content true",
            top("content", json!(true)),
            400,
            "content must be a JSON object",
        ),
        (
            "content number",
            top("content", json!(7)),
            400,
            "content must be a JSON object",
        ),
        (
            "metadata number",
            example_with("metadata", json!(5)),
            400,
            "content.metadata must be a JSON object",
        ),
        (
            "id object",
            example_with("id", json!({})),
            400,
            "content.id",
        ),
        (
            "id array",
            example_with("id", json!(["a"])),
            400,
            "content.id",
        ),
        (
            "level array",
            example_with("level", json!(["High"])),
            400,
            "content.level",
        ),
        (
            "updated false",
            example_with("updated", json!(false)),
            400,
            "content.updated",
        ),
        (
            "timestamp object",
            top("timestamp", json!({})),
            400,
            "timestamp",
        ),
        (
            "consoleUrl number",
            top("consoleUrl", json!(5)),
            400,
            "consoleUrl",
        ),
        (
            "clusterName number",
            metadata_field("clusterName", json!(1)),
            400,
            "content.metadata.clusterName",
        ),
    ];
    check_body_cases(&receiver, cases).await;
    assert_eq!(receiver.alert_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_keys_of_known_fields_rejected() {
    let receiver = TestReceiver::start().await;
    let cases: Vec<BodyCase> = vec![
        (
            "content twice",
            br#"{"content": {"id": "a"}, "content": {"id": "b"}}"#.to_vec(),
            400,
            "duplicate field `content`",
        ),
        (
            "id twice",
            br#"{"content": {"id": "a", "id": "b"}}"#.to_vec(),
            400,
            "duplicate field `id`",
        ),
        (
            "clusterName twice",
            br#"{"content": {"id": "a", "metadata": {"clusterName": "x", "clusterName": "y"}}}"#
                .to_vec(),
            400,
            "duplicate field `clusterName`",
        ),
        // Unknown members are not interpreted, so a repeat there is kept as sent.
        (
            "unknown key twice",
            br#"{"extra": 1, "extra": 2, "content": {"id": "dup-unknown"}}"#.to_vec(),
            200,
            "",
        ),
    ];
    check_body_cases(&receiver, cases).await;
    assert_eq!(receiver.alert_count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn null_in_place_of_objects() {
    let receiver = TestReceiver::start().await;
    let cases: Vec<BodyCase> = vec![
        (
            "body null",
            b"null".to_vec(),
            400,
            "body must be a JSON object",
        ),
        (
            "content null",
            br#"{"content": null}"#.to_vec(),
            400,
            "missing field `content`",
        ),
        (
            "id null",
            br#"{"content": {"id": null}}"#.to_vec(),
            400,
            "missing field `content.id`",
        ),
        // An absent metadata object and a null one mean the same: no object facts.
        (
            "metadata null",
            br#"{"content": {"id": "null-metadata", "metadata": null}}"#.to_vec(),
            200,
            "",
        ),
        (
            "title null",
            br#"{"content": {"id": "null-title", "title": null}}"#.to_vec(),
            200,
            "",
        ),
    ];
    check_body_cases(&receiver, cases).await;
    assert_eq!(receiver.alert("null-title").unwrap()["id"], "null-title");
}

/// Sends `body` with Basic auth and the given signature headers, and checks the rejection.
async fn expect_signature_rejected(
    receiver: &TestReceiver,
    body: &[u8],
    headers: &[(&str, &str)],
    reason: &str,
) {
    let rows_before = receiver.deliveries().len();
    let mut request = receiver.request_unsigned(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 401, "{headers:?}");
    let answer: Value = response.json().await.unwrap();
    assert!(
        answer["error"].as_str().unwrap().contains(reason),
        "{headers:?}: {answer}"
    );

    let rows = receiver.deliveries();
    assert_eq!(rows.len(), rows_before + 1, "{headers:?}: no log row");
    assert_eq!(rows[0].outcome, "bad_signature", "{headers:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn several_signature_headers_rejected() {
    let receiver = TestReceiver::start().await;
    let body = fixture("documented-example.json");
    let good = sign(&Secret::new(SECRET), &body);
    let wrong = sign(&Secret::new("another secret"), &body);
    let joined = format!("{good}, {good}");
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![(SIGNATURE_HEADER, &good), (SIGNATURE_HEADER, &good)],
            "more than one signature header",
        ),
        (
            vec![(SIGNATURE_HEADER_ALT, &good), (SIGNATURE_HEADER_ALT, &good)],
            "more than one signature header",
        ),
        (
            vec![(SIGNATURE_HEADER, &wrong), (SIGNATURE_HEADER_ALT, &good)],
            "more than one signature header",
        ),
        (
            vec![
                (SIGNATURE_HEADER, &good),
                (SIGNATURE_HEADER, &wrong),
                (SIGNATURE_HEADER, &good),
            ],
            "more than one signature header",
        ),
        (
            vec![(SIGNATURE_HEADER, &joined)],
            "not sha256= followed by 64 hex digits",
        ),
    ];
    for (headers, reason) in cases {
        expect_signature_rejected(&receiver, &body, &headers, reason).await;
    }
    assert_eq!(receiver.alert_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn signature_of_wrong_length_rejected() {
    let receiver = TestReceiver::start().await;
    let body = fixture("documented-example.json");
    let good = sign(&Secret::new(SECRET), &body);
    let hex = &good["sha256=".len()..];
    let cases = [
        format!("sha256={}", &hex[..63]),
        format!("{good}0"),
        format!("{good}{hex}"),
        format!("sha256={}", &hex[..62]),
        format!("sha256={}", "0".repeat(4096)),
        format!("sha256:{hex}"),
        format!("sha256={hex}\t0"),
    ];
    for value in &cases {
        expect_signature_rejected(
            &receiver,
            &body,
            &[(SIGNATURE_HEADER, value)],
            "not sha256= followed by 64 hex digits",
        )
        .await;
    }
    assert_eq!(receiver.alert_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_basic_credentials_rejected() {
    use base64::Engine;
    let receiver = TestReceiver::start().await;
    let body = fixture("documented-example.json");
    let encode = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let cases = [
        "Basic".to_owned(),
        "Basic ".to_owned(),
        "Basic ====".to_owned(),
        // "user:pass" with a stray padding character, then with a character missing.
        "Basic dXNlcjpwYXNz=".to_owned(),
        "Basic dXNlcjpwYXM".to_owned(),
        "Basic dXNlcjpwYXNz\u{0009}dXNlcjpwYXNz".to_owned(),
        format!("Basic {}", encode(b"no colon here")),
        format!("Basic {}", encode(b"\xff\xfe:\x00\x01")),
        format!("Basic {}", "QUFB".repeat(4096)),
    ];
    for value in &cases {
        let rows_before = receiver.deliveries().len();
        let response = receiver
            .client()
            .post(&receiver.url)
            .header("authorization", value)
            .header(SIGNATURE_HEADER, sign(&Secret::new(SECRET), &body))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{value:?}");
        assert!(
            response.headers().contains_key("www-authenticate"),
            "{value:?}"
        );

        let rows = receiver.deliveries();
        assert_eq!(rows.len(), rows_before + 1, "{value:?}: no log row");
        assert_eq!(rows[0].outcome, "unauthorized", "{value:?}");
    }

    // Two Authorization headers, even if one is right.
    let right = basic_header(USER, &Secret::new(PASSWORD));
    let response = receiver
        .request(&body)
        .header("authorization", right)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(receiver.alert_count(), 0);
}

/// Opens a connection to `address` that gives up reading after `timeout`.
fn connect(address: &str, timeout: Duration) -> TcpStream {
    let stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(timeout)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Reads until the end of the response head or of the stream; returns the status code,
/// or 0 when the connection closed without one.
fn read_status(stream: &mut TcpStream) -> u16 {
    let mut reply = Vec::new();
    let mut buffer = [0u8; 1024];
    while !reply.windows(4).any(|window| window == b"\r\n\r\n") {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => reply.extend_from_slice(&buffer[..read]),
            Err(error) if error.kind() == ErrorKind::ConnectionReset => break,
            Err(error) => panic!("no response: {error}"),
        }
    }
    String::from_utf8_lossy(&reply)
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// Builds a complete signed request as raw bytes, with `extra_headers` lines inserted verbatim.
fn raw_signed_request(body: &[u8], extra_headers: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nAuthorization: {}\r\n{SIGNATURE_HEADER}: {}\r\nConnection: close\r\n",
        body.len(),
        basic_header(USER, &Secret::new(PASSWORD)),
        sign(&Secret::new(SECRET), body)
    )
    .into_bytes();
    request.extend_from_slice(extra_headers);
    request.extend_from_slice(b"\r\n");
    request.extend_from_slice(body);
    request
}

/// Sends `request` in one write and returns the status code.
async fn raw_status(receiver: &TestReceiver, request: Vec<u8>) -> u16 {
    let address = receiver.address();
    tokio::task::spawn_blocking(move || {
        let mut stream = connect(&address, Duration::from_secs(10));
        stream.write_all(&request).unwrap();
        read_status(&mut stream)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn control_characters_in_headers_rejected_by_parser() {
    let receiver = TestReceiver::start().await;
    let body = with_id(
        &fixture("documented-example.json"),
        "after-control-characters",
    );
    let headers: [&[u8]; 5] = [
        b"X-Note: a\x01b\r\n",
        b"X-Note: a\x00b\r\n",
        b"X-Note: a\x7fb\r\n",
        b"X-Note: a\rb\r\n",
        b"X-Note: a\x1b[31mred\r\n",
    ];
    for header in headers {
        let status = raw_status(&receiver, raw_signed_request(&body, header)).await;
        assert_eq!(status, 400, "{:?}", String::from_utf8_lossy(header));
    }
    // hyper rejects these before the route runs, so the delivery log has no row for them.
    assert_eq!(receiver.deliveries().len(), 0);

    let response = receiver.post_signed(&body).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn non_ascii_header_bytes_reach_the_checks() {
    let receiver = TestReceiver::start().await;
    let body = with_id(&fixture("documented-example.json"), "obs-text");

    // Bytes 0x80 to 0xFF are legal in a header value (obs-text) and must fail the checks.
    let mut bad_authorization =
        b"POST /webhook HTTP/1.1\r\nHost: x\r\nAuthorization: Basic \xff\xfe\r\n".to_vec();
    bad_authorization.extend_from_slice(
        format!(
            "{SIGNATURE_HEADER}: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            sign(&Secret::new(SECRET), &body),
            body.len()
        )
        .as_bytes(),
    );
    bad_authorization.extend_from_slice(&body);
    assert_eq!(raw_status(&receiver, bad_authorization).await, 401);
    assert_eq!(receiver.deliveries()[0].outcome, "unauthorized");

    let mut bad_signature = format!(
        "POST /webhook HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\n",
        basic_header(USER, &Secret::new(PASSWORD))
    )
    .into_bytes();
    bad_signature.extend_from_slice(format!("{SIGNATURE_HEADER}: sha256=").as_bytes());
    bad_signature.extend_from_slice(&[0xC3; 64]);
    bad_signature.extend_from_slice(
        format!(
            "\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    bad_signature.extend_from_slice(&body);
    assert_eq!(raw_status(&receiver, bad_signature).await, 401);
    assert_eq!(receiver.deliveries()[0].outcome, "bad_signature");

    // In a header the receiver does not read, such bytes are harmless and logged as text.
    let request = raw_signed_request(&body, b"X-Note: caf\xe9\r\n");
    assert_eq!(raw_status(&receiver, request).await, 200);
    let rows = receiver.deliveries();
    assert_eq!(rows[0].outcome, "stored");
    let logged = rows[0].headers.as_ref().unwrap()["x-note"]
        .as_str()
        .unwrap();
    assert!(logged.starts_with("caf"), "{logged}");
}

/// Writes `bytes` one at a time with `pause` between them until the peer closes; returns
/// how many were written.
fn trickle(stream: &mut TcpStream, bytes: &[u8], pause: Duration) -> usize {
    for (index, byte) in bytes.iter().enumerate() {
        if stream.write_all(std::slice::from_ref(byte)).is_err() {
            return index;
        }
        std::thread::sleep(pause);
    }
    bytes.len()
}

#[tokio::test(flavor = "multi_thread")]
async fn trickled_headers_cut_off_at_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.header_timeout_secs = 1;
    let receiver = TestReceiver::start_with(config).await;
    let address = receiver.address();
    let body = fixture("documented-example.json");
    let request = raw_signed_request(&body, b"");
    let head_len = request.windows(4).position(|w| w == b"\r\n\r\n").unwrap();

    let (elapsed, status) = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut stream = connect(&address, Duration::from_secs(10));
        // 100 ms a byte: the head alone would take over 30 s.
        let written = trickle(
            &mut stream,
            &request[..head_len],
            Duration::from_millis(100),
        );
        assert!(
            written < head_len,
            "the whole head was accepted byte by byte"
        );
        (started.elapsed(), read_status(&mut stream))
    })
    .await
    .unwrap();
    assert!(
        elapsed < Duration::from_secs(6),
        "cut off after {elapsed:?}"
    );
    // hyper sends 408 or closes the connection. Either way no route ran and no row was written.
    assert!(status == 408 || status == 0, "status {status}");
    assert_eq!(receiver.deliveries().len(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn trickled_body_cut_off_at_body_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.body_timeout_secs = 1;
    let receiver = TestReceiver::start_with(config).await;
    let address = receiver.address();
    let request = raw_signed_request(&fixture("documented-example.json"), b"");
    let head_end = request.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;

    let (elapsed, status) = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut stream = connect(&address, Duration::from_secs(10));
        stream.write_all(&request[..head_end]).unwrap();
        // Keep sending, slowly, so the connection is never idle.
        let mut sender = stream.try_clone().unwrap();
        let body = request[head_end..].to_vec();
        std::thread::spawn(move || trickle(&mut sender, &body, Duration::from_millis(50)));
        (started.elapsed(), read_status(&mut stream))
    })
    .await
    .unwrap();
    assert!(
        elapsed < Duration::from_secs(6),
        "cut off after {elapsed:?}"
    );
    assert_eq!(status, 408);
    let rows = receiver.deliveries();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].outcome, "timeout");
}

#[tokio::test(flavor = "multi_thread")]
async fn byte_by_byte_request_within_limits_stored() {
    let receiver = TestReceiver::start().await;
    let address = receiver.address();
    let body = with_id(&fixture("documented-example.json"), "byte-by-byte");
    let request = raw_signed_request(&body, b"");

    let status = tokio::task::spawn_blocking(move || {
        let mut stream = connect(&address, Duration::from_secs(20));
        let written = trickle(&mut stream, &request, Duration::from_micros(200));
        assert_eq!(written, request.len());
        read_status(&mut stream)
    })
    .await
    .unwrap();
    assert_eq!(status, 200);
    assert!(receiver.alert("byte-by-byte").is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_neither_block_nor_linger() {
    const IDLE: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.header_timeout_secs = 2;
    let receiver = TestReceiver::start_with(config).await;
    let address = receiver.address();

    let idle = tokio::task::spawn_blocking(move || {
        (0..IDLE)
            .map(|_| connect(&address, Duration::from_secs(10)))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();

    // A delivery while every idle connection is still open.
    let opened = Instant::now();
    let body = with_id(
        &fixture("documented-example.json"),
        "among-idle-connections",
    );
    let response = receiver.post_signed(&body).await;
    assert_eq!(response.status(), 200);
    assert!(
        opened.elapsed() < Duration::from_secs(2),
        "served only after {:?}",
        opened.elapsed()
    );

    // The server closes each idle connection, with or without a 408, within the header
    // timeout. A read that times out means the connection is still open.
    let first_open = tokio::task::spawn_blocking(move || {
        idle.into_iter().position(|mut stream| {
            let mut buffer = [0u8; 256];
            loop {
                match stream.read(&mut buffer) {
                    Ok(0) => return false,
                    Ok(_) => continue,
                    Err(error) if error.kind() == ErrorKind::ConnectionReset => return false,
                    Err(_) => return true,
                }
            }
        })
    })
    .await
    .unwrap();
    assert_eq!(first_open, None, "connection open after the header timeout");
    assert!(opened.elapsed() < Duration::from_secs(15));
}
