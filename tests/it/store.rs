//! Store queries against alerts that went through the real receiver.

use alert_inbox::store::query::{self, Facet};
use alert_inbox::store::triage::{self, TriageAction};
use alert_inbox::store::{AlertFilter, Store};

use crate::helpers::*;

/// Facets from the trigger-kept counters, next to the same counts from a scan: a filter
/// that matches every alert but is not empty takes the scanning path.
fn both_facets(receiver: &TestReceiver) -> (Vec<Facet>, Vec<Facet>) {
    let reader = receiver.reader();
    let counted = query::facets(&reader, &AlertFilter::default()).unwrap();
    let everything = AlertFilter {
        since_ms: Some(0),
        ..AlertFilter::default()
    };
    let scanned = query::facets(&reader, &everything).unwrap();
    (counted, scanned)
}

fn sorted(facets: Vec<Facet>) -> Vec<Facet> {
    facets
        .into_iter()
        .map(|mut facet| {
            facet.values.retain(|(_, count)| *count > 0);
            facet.values.sort();
            facet
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn facet_counters_match_scan() {
    let receiver = TestReceiver::start().await;
    let template = fixture("documented-example.json");
    for (index, level) in ["High", "Low", "Low", "Critical"].iter().enumerate() {
        let body = with_id(&template, &format!("facet-{index}"));
        let body = with_content_field(&body, "level", (*level).into());
        receiver.post_signed(&body).await;
    }
    receiver.post_signed(&fixture("unicode-raw.json")).await;
    let (counted, scanned) = both_facets(&receiver);
    assert_eq!(sorted(counted), sorted(scanned));

    // A newer version with another level moves one count.
    let update = with_id(&template, "facet-1");
    let update = with_content_field(&update, "level", "High".into());
    let update = with_content_field(&update, "updated", "2025-01-01T00:00:00Z".into());
    receiver.post_signed(&update).await;

    // Triage moves the status counts.
    let store = receiver.runtime.as_ref().unwrap().store().clone();
    let mut connection = Store::open_connection(&store).unwrap();
    let ids = ["facet-0".to_owned(), "facet-2".to_owned()];
    triage::apply(&mut connection, &ids, &TriageAction::Acknowledge).unwrap();
    triage::apply(&mut connection, &ids[..1], &TriageAction::Archive).unwrap();
    triage::apply(&mut connection, &ids[1..], &TriageAction::MarkUnread).unwrap();
    let until = alert_inbox::store::now_ms() + 3_600_000;
    triage::apply(
        &mut connection,
        &ids[1..],
        &TriageAction::Snooze { until_ms: until },
    )
    .unwrap();

    let (counted, scanned) = both_facets(&receiver);
    let level = counted
        .iter()
        .find(|f| f.field == query::Field::Level)
        .unwrap();
    assert!(level.values.contains(&("High".to_owned(), 2)), "{level:?}");
    let status = counted
        .iter()
        .find(|f| f.field == query::Field::Status)
        .unwrap();
    assert!(
        status.values.contains(&("archived".to_owned(), 1)),
        "{status:?}"
    );
    assert!(
        status.values.contains(&("snoozed".to_owned(), 1)),
        "{status:?}"
    );
    assert!(
        status.values.contains(&("acknowledged".to_owned(), 2)),
        "{status:?}"
    );
    assert_eq!(sorted(counted), sorted(scanned));
}

#[tokio::test(flavor = "multi_thread")]
async fn triage_of_unknown_alert_changes_nothing() {
    let receiver = TestReceiver::start().await;
    receiver
        .post_signed(&fixture("documented-example.json"))
        .await;
    receiver.wait_until_applied();
    let store = receiver.runtime.as_ref().unwrap().store().clone();
    let mut connection = Store::open_connection(&store).unwrap();

    let ids = [EXAMPLE_ID.to_owned(), "no-such-alert".to_owned()];
    let error = triage::apply(&mut connection, &ids, &TriageAction::Archive).unwrap_err();
    assert!(error.to_string().contains("no-such-alert"), "{error}");
    assert_eq!(receiver.alert(EXAMPLE_ID).unwrap()["archived"], false);
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_continue_after_cursor() {
    use alert_inbox::store::query::Cursor;
    let receiver = TestReceiver::start().await;
    let template = fixture("documented-example.json");
    for index in 0..25 {
        receiver
            .post_signed(&with_id(&template, &format!("page-{index:02}")))
            .await;
    }
    let reader = receiver.reader();
    let filter = AlertFilter::default();
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = query::list(&reader, &filter, cursor, 10).unwrap();
        let Some(last) = page.last() else { break };
        cursor = Some(Cursor {
            last_received_ms: last.last_received_ms,
            seq: last.seq,
        });
        seen.extend(page.into_iter().map(|alert| alert.id));
    }
    assert_eq!(seen.len(), 25);
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 25);
    assert_eq!(seen[0], "page-24");
}
