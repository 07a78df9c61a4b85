//! The tunnel up to the ngrok service, which these machines cannot reach: a closed
//! loopback port stands in for the service, so the connection fails at once.

use std::time::Duration;

use alert_inbox::secret::Secret;
use alert_inbox::store::outages;
use alert_inbox::tunnel::TunnelStatus;

use crate::helpers::*;

/// A port on loopback that nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

async fn wait_for(
    status: &mut tokio::sync::watch::Receiver<TunnelStatus>,
    wanted: impl Fn(&TunnelStatus) -> bool,
) -> TunnelStatus {
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let current = status.borrow_and_update().clone();
            if wanted(&current) {
                return current;
            }
            status.changed().await.unwrap();
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("status never matched; last was {}", *status.borrow()))
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_service_reconnects_while_loopback_works() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.tunnel.enabled = true;
    config.tunnel.authtoken = Some(Secret::new("test-authtoken"));
    config.tunnel.server_addr = Some(format!("127.0.0.1:{}", closed_port()));
    let receiver = TestReceiver::start_with(config).await;

    let tunnel = receiver
        .runtime
        .as_ref()
        .unwrap()
        .tunnel()
        .expect("tunnel started");
    let mut status = tunnel.watch();
    let reconnecting = wait_for(&mut status, |s| {
        matches!(s, TunnelStatus::Reconnecting { .. })
    })
    .await;
    let TunnelStatus::Reconnecting { attempt, error, .. } = reconnecting else {
        unreachable!()
    };
    assert_eq!(attempt, 1);
    assert!(
        error.contains("Connection refused") || error.contains("connection refused"),
        "{error}"
    );
    assert!(!error.contains("test-authtoken"), "{error}");

    // The loopback receiver is unaffected.
    assert_eq!(
        receiver
            .post_signed(&fixture("documented-example.json"))
            .await
            .status(),
        200
    );

    // The gap is on record for the inbox.
    let reader = receiver.reader();
    let gaps = outages::list(&reader, 0).unwrap();
    assert_eq!(gaps.len(), 1);
    assert!(gaps[0].ended_ms.is_none());

    // Asking for a retry starts the next attempt without waiting out the backoff.
    tunnel.retry_now();
    wait_for(&mut status, |s| {
        matches!(s, TunnelStatus::Reconnecting { attempt: 2, .. })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_token_fails_with_fix() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.tunnel.enabled = true;
    config.tunnel.authtoken = None;
    let receiver = TestReceiver::start_with(config).await;

    let mut status = receiver.runtime.as_ref().unwrap().tunnel().unwrap().watch();
    let failed = wait_for(&mut status, |s| matches!(s, TunnelStatus::Failed { .. })).await;
    let text = failed.to_string();
    assert!(text.contains("no ngrok authtoken"), "{text}");
    assert!(text.contains("NGROK_AUTHTOKEN"), "{text}");
    assert_eq!(
        receiver
            .post_signed(&fixture("documented-example.json"))
            .await
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_server_address_fails_with_fix() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.tunnel.enabled = true;
    config.tunnel.authtoken = Some(Secret::new("test-authtoken"));
    config.tunnel.server_addr = Some("not a host:port".to_owned());
    let receiver = TestReceiver::start_with(config).await;

    let mut status = receiver.runtime.as_ref().unwrap().tunnel().unwrap().watch();
    let failed = wait_for(&mut status, |s| matches!(s, TunnelStatus::Failed { .. })).await;
    assert!(
        failed.to_string().contains("tunnel.server_addr"),
        "{failed}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_stops_reconnecting() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.tunnel.enabled = true;
    config.tunnel.authtoken = Some(Secret::new("test-authtoken"));
    config.tunnel.server_addr = Some(format!("127.0.0.1:{}", closed_port()));
    let mut receiver = TestReceiver::start_with(config).await;
    let mut status = receiver.runtime.as_ref().unwrap().tunnel().unwrap().watch();
    wait_for(&mut status, |s| {
        matches!(s, TunnelStatus::Reconnecting { .. })
    })
    .await;

    tokio::time::timeout(Duration::from_secs(20), receiver.stop())
        .await
        .expect("shutdown finishes while the tunnel is reconnecting");
    assert_eq!(*status.borrow(), TunnelStatus::Off);
}
