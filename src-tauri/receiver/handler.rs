//! The webhook handler: the steps listed in the module docs of `receiver`, in order.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::log_limit::Permit;
use super::verify::{self, VerifyError};
use super::{ConnectionInfo, Receiver, Sink, Via};
use crate::model;
use crate::store::now_ms;
use crate::store::writer::{Delivery, Outcome, Verdict};

/// Header names never stored in the delivery log.
const CREDENTIAL_HEADERS: [header::HeaderName; 3] = [
    header::AUTHORIZATION,
    header::PROXY_AUTHORIZATION,
    header::COOKIE,
];

/// A rejection before storage: outcome, status, and a reason safe to show the client.
struct Rejection {
    outcome: Outcome,
    status: StatusCode,
    reason: String,
}

impl Rejection {
    fn new(outcome: Outcome, status: StatusCode, reason: impl Into<String>) -> Self {
        Self {
            outcome,
            status,
            reason: reason.into(),
        }
    }
}

/// Facts of the request gathered before the body is read.
struct RequestFacts {
    received_ms: i64,
    remote_addr: String,
    via: Via,
    method: String,
    path: String,
}

pub(super) async fn handle(State(receiver): State<Arc<Receiver>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let info = parts.extensions.get::<ConnectionInfo>().copied();
    let facts = RequestFacts {
        received_ms: now_ms(),
        remote_addr: remote_address(info, &parts.headers),
        via: info.map_or(Via::Loopback, |info| info.via),
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
    };

    if parts.method != Method::POST {
        let rejection = Rejection::new(
            Outcome::MethodNotAllowed,
            StatusCode::METHOD_NOT_ALLOWED,
            format!(
                "method {} is not allowed; RealTheory sends POST",
                parts.method
            ),
        );
        let mut response = reject(&receiver, facts, None, rejection).await;
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }

    if let Some(encoding) = unsupported_encoding(&parts.headers) {
        let rejection = Rejection::new(
            Outcome::Unsupported,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Encoding {encoding:?} is not supported; send the body uncompressed"),
        );
        return reject(&receiver, facts, None, rejection).await;
    }

    let body = match read_body(&receiver, &parts.headers, body).await {
        Ok(body) => body,
        Err(rejection) => return reject(&receiver, facts, None, rejection).await,
    };

    if let Err(error) = authenticate(&receiver, &parts.headers, &body) {
        let outcome = if error.is_signature() {
            Outcome::BadSignature
        } else {
            Outcome::Unauthorized
        };
        let rejection = Rejection::new(outcome, StatusCode::UNAUTHORIZED, error.to_string());
        let mut response = reject(&receiver, facts, Some(&body), rejection).await;
        if !error.is_signature() {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"Alert Inbox\", charset=\"UTF-8\""),
            );
        }
        return response;
    }

    // Authenticated from here on: the log row keeps the body and headers.
    let headers = headers_json(&parts.headers);
    let alert = match model::parse(&body) {
        Ok(alert) => alert,
        Err(error) => {
            let rejection = Rejection::new(
                Outcome::Malformed,
                StatusCode::BAD_REQUEST,
                error.to_string(),
            );
            return reject_authenticated(&receiver, facts, body, headers, rejection).await;
        }
    };
    if let Some(reason) = check_age(&receiver, alert.sent, facts.received_ms) {
        let rejection = Rejection::new(Outcome::Stale, StatusCode::BAD_REQUEST, reason);
        return reject_authenticated(&receiver, facts, body, headers, rejection).await;
    }

    store(&receiver, facts, body, headers, alert).await
}

pub(super) async fn not_found() -> Response {
    error_response(StatusCode::NOT_FOUND, "not_found", "no such path")
}

async fn store(
    receiver: &Receiver,
    facts: RequestFacts,
    body: Bytes,
    headers: String,
    alert: model::AlertRecord,
) -> Response {
    let id = alert.id.clone();
    let writer = match &receiver.sink {
        Sink::Store(writer) => writer,
        Sink::Discard => return stored_response(Outcome::Accepted, &id),
    };
    let delivery = delivery(
        facts,
        Some(&body),
        Some(headers),
        Verdict::Alert(Box::new(alert)),
    );
    let remote_addr = delivery.remote_addr.clone();

    match writer.submit(delivery).await {
        Ok(outcome) => {
            tracing::info!(alert_id = %id, outcome = outcome.as_str(), remote_addr, "delivery journaled");
            stored_response(outcome, &id)
        }
        Err(error) => {
            // The writer logs the cause once per failing period.
            tracing::debug!(%error, alert_id = %id, "delivery not stored");
            let mut response = error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the alert could not be stored; retry later",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
            response
        }
    }
}

fn stored_response(outcome: Outcome, id: &str) -> Response {
    (
        StatusCode::OK,
        Json(json!({ "outcome": outcome.as_str(), "id": id })),
    )
        .into_response()
}

/// Logs and records a rejection of an unauthenticated request; the body is not kept.
async fn reject(
    receiver: &Receiver,
    facts: RequestFacts,
    body: Option<&Bytes>,
    rejection: Rejection,
) -> Response {
    let delivery = delivery_without_body(facts, body, &rejection);
    finish_rejection(receiver, delivery, rejection).await
}

/// Logs and records a rejection of an authenticated request, keeping body and headers.
async fn reject_authenticated(
    receiver: &Receiver,
    facts: RequestFacts,
    body: Bytes,
    headers: String,
    rejection: Rejection,
) -> Response {
    let verdict = verdict(&rejection);
    let delivery = delivery(facts, Some(&body), Some(headers), verdict);
    finish_rejection(receiver, delivery, rejection).await
}

async fn finish_rejection(
    receiver: &Receiver,
    delivery: Delivery,
    rejection: Rejection,
) -> Response {
    if let Permit::Log { suppressed_before } = receiver.rejection_log.check() {
        tracing::warn!(
            outcome = rejection.outcome.as_str(),
            status = rejection.status.as_u16(),
            reason = %rejection.reason,
            remote_addr = %delivery.remote_addr,
            via = delivery.via.as_str(),
            suppressed_before,
            "delivery rejected"
        );
    }
    if let Sink::Store(writer) = &receiver.sink {
        if let Err(error) = writer.submit(delivery).await {
            tracing::debug!(%error, "rejected delivery not recorded");
        }
    }
    error_response(
        rejection.status,
        rejection.outcome.as_str(),
        &rejection.reason,
    )
}

fn verdict(rejection: &Rejection) -> Verdict {
    Verdict::Rejected {
        outcome: rejection.outcome,
        status: rejection.status.as_u16(),
        reason: rejection.reason.clone(),
    }
}

fn delivery_without_body(
    facts: RequestFacts,
    body: Option<&Bytes>,
    rejection: &Rejection,
) -> Delivery {
    let mut delivery = delivery(facts, body, None, verdict(rejection));
    delivery.body = None;
    delivery
}

fn delivery(
    facts: RequestFacts,
    body: Option<&Bytes>,
    headers: Option<String>,
    verdict: Verdict,
) -> Delivery {
    let (body_size, body_sha256) = match body {
        Some(body) => (body.len(), hex::encode(Sha256::digest(body))),
        None => (0, String::new()),
    };
    Delivery {
        received_ms: facts.received_ms,
        remote_addr: facts.remote_addr,
        via: facts.via,
        method: facts.method,
        path: facts.path,
        body_size,
        body_sha256,
        headers,
        body: body.cloned(),
        verdict,
    }
}

fn error_response(status: StatusCode, outcome: &str, reason: &str) -> Response {
    (status, Json(json!({ "outcome": outcome, "error": reason }))).into_response()
}

/// Reads the whole body within the size and time limits.
async fn read_body(
    receiver: &Receiver,
    headers: &HeaderMap,
    body: Body,
) -> Result<Bytes, Rejection> {
    let limit = receiver.max_body_bytes;
    let too_large = || {
        Rejection::new(
            Outcome::TooLarge,
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body is larger than the limit of {limit} bytes"),
        )
    };

    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }

    let collect = Limited::new(body, limit).collect();
    match tokio::time::timeout(receiver.body_timeout, collect).await {
        Err(_) => Err(Rejection::new(
            Outcome::Timeout,
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "body not received within {} s",
                receiver.body_timeout.as_secs()
            ),
        )),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Ok(Err(error)) => Err(Rejection::new(
            Outcome::Malformed,
            StatusCode::BAD_REQUEST,
            format!("failed to read the body: {error}"),
        )),
    }
}

fn authenticate(receiver: &Receiver, headers: &HeaderMap, body: &[u8]) -> Result<(), VerifyError> {
    if let Some(basic) = &receiver.basic {
        basic.verify(headers)?;
    }
    if !receiver.secrets.is_empty() {
        verify::verify_signature(&receiver.secrets, headers, body)?;
    }
    Ok(())
}

/// Returns the encoding if the body is compressed or otherwise encoded.
fn unsupported_encoding(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .map(|value| String::from_utf8_lossy(value.as_bytes()).trim().to_owned())
        .find(|value| !value.is_empty() && !value.eq_ignore_ascii_case("identity"))
}

/// Checks the payload's `timestamp` against the accepted age, both ways.
fn check_age(receiver: &Receiver, sent_ns: Option<i64>, received_ms: i64) -> Option<String> {
    let max_age = receiver.max_payload_age?;
    let Some(sent_ns) = sent_ns else {
        return Some(
            "payload has no `timestamp`, which the configured max_payload_age_secs requires"
                .to_owned(),
        );
    };
    let sent_ms = sent_ns / 1_000_000;
    let skew_ms = received_ms - sent_ms;
    let limit_ms = max_age.as_millis() as i64;
    if skew_ms > limit_ms {
        Some(format!(
            "payload timestamp is {} s old, more than the {} s allowed by max_payload_age_secs",
            skew_ms / 1000,
            max_age.as_secs()
        ))
    } else if -skew_ms > limit_ms {
        Some(format!(
            "payload timestamp is {} s in the future, more than the {} s allowed by max_payload_age_secs",
            -skew_ms / 1000,
            max_age.as_secs()
        ))
    } else {
        None
    }
}

/// Returns the client's address: the TCP peer, or for tunnel traffic the address ngrok appended
/// to `X-Forwarded-For`. The header is ignored on loopback, where anyone could set it.
fn remote_address(info: Option<ConnectionInfo>, headers: &HeaderMap) -> String {
    let Some(info) = info else {
        return "unknown".to_owned();
    };
    if info.via == Via::Tunnel {
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .rfind(|value| !value.is_empty());
        if let Some(address) = forwarded {
            return address.chars().take(64).collect();
        }
    }
    info.remote.to_string()
}

/// Request headers as a JSON object, without credentials.
fn headers_json(headers: &HeaderMap) -> String {
    let mut object = serde_json::Map::new();
    for name in headers.keys() {
        if CREDENTIAL_HEADERS.contains(name) {
            continue;
        }
        let values: Vec<String> = headers
            .get_all(name)
            .iter()
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
            .collect();
        object.insert(name.as_str().to_owned(), values.join(", ").into());
    }
    serde_json::Value::Object(object).to_string()
}
