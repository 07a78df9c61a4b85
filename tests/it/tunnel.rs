//! The tunnel up to the ngrok service, which these machines cannot reach: a closed
//! loopback port replaces the service, so the connection fails at once.

use std::time::Duration;

use alert_inbox::secret::Secret;
use alert_inbox::store::outages;
use alert_inbox::tunnel::TunnelStatus;

use crate::helpers::*;

/// Returns a port on loopback that nothing listens on.
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

/// Serves one in-memory connection as if it came through the tunnel, and sends `request`.
async fn through_tunnel(receiver: &TestReceiver, request: String) -> String {
    use alert_inbox::receiver::server::{ConnectionLimits, ConnectionServer};
    use alert_inbox::receiver::{router, Receiver, Sink, Via};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    // The same router function the tunnel uses, over the receiver's own store.
    let store = receiver.runtime.as_ref().unwrap().store().clone();
    let connection = store.open_connection().unwrap();
    let (writer, _thread) = alert_inbox::store::WriterHandle::spawn(
        &store,
        connection,
        alert_inbox::store::writer::Retention {
            max_age: Duration::from_secs(86_400),
            max_rows: 1000,
        },
    )
    .unwrap();
    let config = config(&receiver.data_dir);
    let app = router(Arc::new(Receiver::new(&config, Sink::Store(writer))));
    let server = ConnectionServer::new(
        app,
        ConnectionLimits {
            header_timeout: Duration::from_secs(5),
            max_connections: 4,
        },
    );
    let (mut client, server_side) = tokio::io::duplex(64 * 1024);
    let slot = server.reserve().await;
    server.serve(
        server_side,
        "198.51.100.1:443".parse().unwrap(),
        Via::Tunnel,
        slot,
    );

    client.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&response).contains("\r\n\r\n") {
        let read = client.read(&mut buffer).await.unwrap();
        if read == 0 {
            break;
        }
        response.extend_from_slice(&buffer[..read]);
    }
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn tunnel_router_serves_only_webhook() {
    let receiver = TestReceiver::start().await;
    for path in ["/", "/api/alerts", "/health", "/webhook/"] {
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: x.ngrok.app\r\nConnection: close\r\n\r\n");
        let response = through_tunnel(&receiver, request).await;
        assert!(response.starts_with("HTTP/1.1 404"), "{path}: {response}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tunnel_delivery_logs_forwarded_address() {
    use alert_inbox::receiver::verify::{basic_header, sign, SIGNATURE_HEADER};
    let receiver = TestReceiver::start().await;
    let body = String::from_utf8(fixture("documented-example.json")).unwrap();
    let request = format!(
        "POST /webhook HTTP/1.1\r\nHost: x.ngrok.app\r\nConnection: close\r\n\
         Content-Length: {}\r\nAuthorization: {}\r\n{}: {}\r\n\
         X-Forwarded-For: 10.9.9.9, 203.0.113.7\r\n\r\n{body}",
        body.len(),
        basic_header(USER, &Secret::new(PASSWORD)),
        SIGNATURE_HEADER,
        sign(&Secret::new(SECRET), body.as_bytes()),
    );
    let response = through_tunnel(&receiver, request).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    let rows = receiver.deliveries();
    assert_eq!(rows[0].via, "tunnel");
    // The last hop is the address ngrok saw; earlier entries could be forged.
    assert_eq!(rows[0].remote_addr, "203.0.113.7");
}
