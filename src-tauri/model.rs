//! The `SystemAlertPayload` that RealTheory posts, and the fields the store indexes.
//!
//! Parsing is strict about shape and lenient about vocabulary: a field of the wrong JSON
//! type or a timestamp that is not RFC 3339 is an error naming the field, while unknown
//! fields and unknown `type`, `action`, `level` or `state` values are accepted. The store
//! keeps the raw body, so nothing the sender wrote is lost even if this module ignores it.

use chrono::{DateTime, Utc};
use serde::Deserialize;

/// Longest accepted `content.id`, in bytes.
pub const MAX_ID_LEN: usize = 512;
/// Deepest accepted nesting of arrays and objects. RealTheory's payload nests three levels.
pub const MAX_DEPTH: usize = 64;

/// Alert severity, in RealTheory's vocabulary, ordered from least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, Deserialize)]
pub enum Level {
    Low,
    Medium,
    High,
    Critical,
}

impl Level {
    /// Parses a level name, ignoring case; unknown names are `None`.
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "low" | "info" | "informational" => Some(Self::Low),
            "medium" | "warning" => Some(Self::Medium),
            "high" | "error" => Some(Self::High),
            "critical" => Some(Self::Critical),
            _ => None,
        }
    }

    /// Returns the level as RealTheory spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Low => "Low",
            Self::Medium => "Medium",
            Self::High => "High",
            Self::Critical => "Critical",
        }
    }

    /// Ranks any level text; unknown levels rank 0, below `Low`.
    pub fn rank(name: &str) -> i64 {
        Self::parse(name).map_or(0, |level| level as i64 + 1)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PayloadError {
    #[error("body is empty")]
    Empty,
    #[error("body starts with a byte-order mark; send plain UTF-8 JSON")]
    ByteOrderMark,
    #[error("body is not valid UTF-8 (first invalid byte at offset {0})")]
    InvalidUtf8(usize),
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("{path}: {message}")]
    Field { path: String, message: String },
    #[error("JSON is nested more than {MAX_DEPTH} levels deep")]
    TooDeep,
    #[error("{0} must be a JSON object")]
    NotAnObject(&'static str),
    #[error("missing field `content`")]
    MissingContent,
    #[error("missing field `content.id`")]
    MissingId,
    #[error("`content.id` is empty")]
    EmptyId,
    #[error("`content.id` is longer than {MAX_ID_LEN} bytes")]
    IdTooLong,
    #[error("{field}: invalid timestamp {value:?}, expected RFC 3339 such as 2024-08-07T10:16:35.0176406Z")]
    Timestamp { field: &'static str, value: String },
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPayload<'a> {
    #[serde(borrow, default)]
    domain_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    domain_name: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    console_url: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    timestamp: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    content: Option<&'a serde_json::value::RawValue>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawAlert<'a> {
    #[serde(borrow, default)]
    id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    key: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    title: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    message: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    details: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    level: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    category: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    state: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    created: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    updated: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    expires: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    postponed_until: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    metadata: Option<&'a serde_json::value::RawValue>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawMetadata<'a> {
    #[serde(borrow, default)]
    object_type: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    object_name: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    cluster_name: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    namespace_name: Option<std::borrow::Cow<'a, str>>,
}

/// The fields of one delivery that the store indexes, filters and sorts on.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRecord {
    pub id: String,
    pub key: String,
    pub title: String,
    pub message: String,
    pub details: String,
    pub level: String,
    pub category: String,
    pub state: String,
    pub object_type: String,
    pub object_name: String,
    pub cluster: String,
    pub namespace: String,
    pub domain_id: String,
    pub domain_name: String,
    /// `consoleUrl` exactly as sent; see [`safe_console_url`] before using it.
    pub console_url: String,
    /// `created` in nanoseconds since the Unix epoch.
    pub created: Option<i64>,
    /// `updated` in nanoseconds since the Unix epoch; orders versions of one alert.
    pub updated: Option<i64>,
    pub expires: Option<i64>,
    pub postponed_until: Option<i64>,
    /// The payload's `timestamp`, when the delivery was sent.
    pub sent: Option<i64>,
    /// The whole body as received, so fields this module ignores are kept.
    pub payload: String,
}

/// Parses an authenticated body into the fields the store indexes.
pub fn parse(body: &[u8]) -> Result<AlertRecord, PayloadError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(PayloadError::Empty);
    }
    if body.starts_with(&[0xEF, 0xBB, 0xBF]) {
        return Err(PayloadError::ByteOrderMark);
    }
    let body_text = std::str::from_utf8(body)
        .map_err(|error| PayloadError::InvalidUtf8(error.valid_up_to()))?;

    if exceeds_depth(body, MAX_DEPTH) {
        return Err(PayloadError::TooDeep);
    }
    let raw: RawPayload<'_> = deserialize_object(body_text, "body", "")?;
    let content = raw.content.filter(|value| value.get() != "null");
    let content = content.ok_or(PayloadError::MissingContent)?;
    let content: RawAlert<'_> = deserialize_object(content.get(), "content", "content.")?;
    let id = content.id.ok_or(PayloadError::MissingId)?;
    if id.trim().is_empty() {
        return Err(PayloadError::EmptyId);
    }
    if id.len() > MAX_ID_LEN {
        return Err(PayloadError::IdTooLong);
    }
    let metadata = match content.metadata.filter(|value| value.get() != "null") {
        Some(value) => deserialize_object(value.get(), "content.metadata", "content.metadata.")?,
        None => RawMetadata::default(),
    };
    let text = |value: Option<std::borrow::Cow<'_, str>>| {
        value.map(|v| v.into_owned()).unwrap_or_default()
    };

    Ok(AlertRecord {
        created: parse_time("content.created", content.created.as_deref())?,
        updated: parse_time("content.updated", content.updated.as_deref())?,
        expires: parse_time("content.expires", content.expires.as_deref())?,
        postponed_until: parse_time("content.postponedUntil", content.postponed_until.as_deref())?,
        sent: parse_time("timestamp", raw.timestamp.as_deref())?,
        id: id.into_owned(),
        key: text(content.key),
        title: text(content.title),
        message: text(content.message),
        details: text(content.details),
        level: text(content.level),
        category: text(content.category),
        state: text(content.state),
        object_type: text(metadata.object_type),
        object_name: text(metadata.object_name),
        cluster: text(metadata.cluster_name),
        namespace: text(metadata.namespace_name),
        domain_id: text(raw.domain_id),
        domain_name: text(raw.domain_name),
        console_url: text(raw.console_url),
        payload: body_text.to_owned(),
    })
}

/// Returns whether arrays and objects in `json` nest deeper than `limit`; brackets inside strings
/// do not count. serde_json skips unknown fields without a depth limit, and the stored
/// payload is parsed again later, so the depth is checked up front.
fn exceeds_depth(json: &[u8], limit: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in json {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Deserializes `text` as `T`, which must be a JSON object: serde's derived structs would
/// also accept an array of the fields in order, which no sender means.
fn deserialize_object<'a, T: Deserialize<'a>>(
    text: &'a str,
    name: &'static str,
    path_prefix: &str,
) -> Result<T, PayloadError> {
    if !text.trim_start().starts_with('{') {
        // Leave syntax errors to the parser, which names their position.
        if serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() {
            return Err(PayloadError::NotAnObject(name));
        }
    }
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if path == "." || inner.is_syntax() || inner.is_eof() {
            PayloadError::Json(inner.to_string())
        } else {
            PayloadError::Field {
                path: format!("{path_prefix}{path}"),
                message: strip_position(&inner.to_string()),
            }
        }
    })?;
    deserializer
        .end()
        .map_err(|error| PayloadError::Json(error.to_string()))?;
    Ok(value)
}

/// Parses an RFC 3339 timestamp into nanoseconds since the Unix epoch; empty is `None`.
fn parse_time(field: &'static str, value: Option<&str>) -> Result<Option<i64>, PayloadError> {
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let invalid = || PayloadError::Timestamp {
        field,
        value: value.chars().take(64).collect(),
    };
    let parsed = DateTime::parse_from_rfc3339(value).map_err(|_| invalid())?;
    let nanos = parsed
        .with_timezone(&Utc)
        .timestamp_nanos_opt()
        .ok_or_else(invalid)?;
    Ok(Some(nanos))
}

/// serde_json appends "at line 1 column 42" to field errors; the path already locates them.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_owned(),
        None => message.to_owned(),
    }
}

/// Returns `url` if it is an absolute `https://` or `http://` URL, the only kinds the app
/// opens or shows as a link. Anything else, `javascript:` and `file:` included, is `None`.
pub fn safe_console_url(url: &str) -> Option<&str> {
    let parsed = url::Url::parse(url).ok()?;
    let web = matches!(parsed.scheme(), "https" | "http") && parsed.host().is_some();
    web.then_some(url)
}

/// Formats nanoseconds since the Unix epoch as RFC 3339 with the precision it has.
pub fn format_time(nanos: i64) -> String {
    DateTime::<Utc>::from_timestamp_nanos(nanos)
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str =
        r#"{"content": {"id": "a1", "level": "High", "updated": "2024-09-05T16:20:09.6787782Z"}}"#;

    #[test]
    fn minimal_payload_parses() {
        let alert = parse(MINIMAL.as_bytes()).unwrap();
        assert_eq!(alert.id, "a1");
        assert_eq!(alert.level, "High");
        assert_eq!(alert.updated, Some(1_725_553_209_678_778_200));
    }

    #[test]
    fn seven_fraction_digits_order_correctly() {
        let earlier = parse_time("t", Some("2024-08-07T10:16:35.01Z")).unwrap();
        let later = parse_time("t", Some("2024-08-07T10:16:35.0176406Z")).unwrap();
        assert!(earlier < later);
    }

    #[test]
    fn wrong_type_names_field() {
        let body = br#"{"content": {"id": "a1", "level": 5}}"#;
        let error = parse(body).unwrap_err().to_string();
        assert!(
            error.starts_with("content.level: invalid type: integer"),
            "{error}"
        );
    }

    #[test]
    fn missing_content_rejected() {
        assert_eq!(
            parse(br#"{"type": "alert"}"#),
            Err(PayloadError::MissingContent)
        );
        assert_eq!(
            parse(br#"{"content": null}"#),
            Err(PayloadError::MissingContent)
        );
    }

    #[test]
    fn missing_id_rejected() {
        assert_eq!(parse(br#"{"content": {}}"#), Err(PayloadError::MissingId));
        assert_eq!(
            parse(br#"{"content": {"id": " "}}"#),
            Err(PayloadError::EmptyId)
        );
    }

    #[test]
    fn deep_nesting_rejected_without_overflow() {
        let depth = 100_000;
        let body = format!(
            "{{\"content\": {{\"id\": \"a1\", \"extra\": {}{}}}}}",
            "[".repeat(depth),
            "]".repeat(depth)
        );
        let result = parse(body.as_bytes());
        assert!(
            matches!(result, Err(PayloadError::TooDeep)),
            "nesting accepted"
        );
    }

    #[test]
    fn brackets_in_strings_not_counted() {
        let body = format!(
            r#"{{"content": {{"id": "a1", "title": "{}\"{}"}}}}"#,
            "[".repeat(100),
            "{".repeat(100)
        );
        assert_eq!(parse(body.as_bytes()).unwrap().id, "a1");
    }

    #[test]
    fn arrays_in_place_of_objects_rejected() {
        assert_eq!(parse(b"[]"), Err(PayloadError::NotAnObject("body")));
        let body = br#"["d", "n", "u", "t", ["a1"]]"#;
        assert_eq!(parse(body), Err(PayloadError::NotAnObject("body")));
        let body = br#"{"content": ["a1"]}"#;
        assert_eq!(parse(body), Err(PayloadError::NotAnObject("content")));
        let body = br#"{"content": {"id": "a1", "metadata": ["Pod"]}}"#;
        assert_eq!(
            parse(body),
            Err(PayloadError::NotAnObject("content.metadata"))
        );
    }

    #[test]
    fn byte_order_mark_rejected() {
        let mut body = vec![0xEF, 0xBB, 0xBF];
        body.extend_from_slice(MINIMAL.as_bytes());
        assert_eq!(parse(&body), Err(PayloadError::ByteOrderMark));
    }

    #[test]
    fn invalid_utf8_rejected() {
        let body = b"{\"content\": {\"id\": \"\xff\"}}";
        assert_eq!(parse(body), Err(PayloadError::InvalidUtf8(20)));
    }

    #[test]
    fn duplicate_key_rejected() {
        let body = br#"{"content": {"id": "a1", "id": "a2"}}"#;
        let error = parse(body).unwrap_err().to_string();
        assert!(error.contains("duplicate field `id`"), "{error}");
    }

    #[test]
    fn escaped_unicode_decoded() {
        let body = br#"{"content": {"id": "a1", "title": "\u78c1\u76d8 \ud83d\udea8"}}"#;
        assert_eq!(parse(body).unwrap().title, "磁盘 🚨");
    }

    #[test]
    fn unknown_values_kept() {
        let body = br#"{"type": "x", "content": {"id": "a1", "level": "Catastrophic", "extra": {"deep": [1, 2e400, 123456789012345678901234567890]}}}"#;
        assert_eq!(parse(body).unwrap().level, "Catastrophic");
    }

    #[test]
    fn bad_timestamp_names_field() {
        let body = br#"{"content": {"id": "a1", "updated": "yesterday"}}"#;
        let error = parse(body).unwrap_err().to_string();
        assert!(
            error.starts_with("content.updated: invalid timestamp \"yesterday\""),
            "{error}"
        );
    }

    #[test]
    fn trailing_data_rejected() {
        let body = br#"{"content": {"id": "a1"}} {}"#;
        assert!(matches!(parse(body), Err(PayloadError::Json(_))));
    }

    #[test]
    fn console_url_schemes() {
        assert!(safe_console_url("https://portal.example/alerts/1").is_some());
        assert!(safe_console_url("http://portal.example/alerts/1").is_some());
        assert!(safe_console_url("javascript:alert(1)").is_none());
        assert!(safe_console_url("file:///etc/passwd").is_none());
        assert!(safe_console_url("/alerts/1").is_none());
        assert!(safe_console_url("").is_none());
    }

    #[test]
    fn level_ranks() {
        assert!(Level::rank("Critical") > Level::rank("high"));
        assert_eq!(Level::rank("Catastrophic"), 0);
    }
}
