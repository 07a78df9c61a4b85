//! Which stored alerts raise a desktop notification, and storm batching.
//!
//! This module decides and words notices, and the desktop layer shows them. It does not use
//! Tauri or the notification daemon, so it builds and tests without the `desktop`
//! feature.
//!
//! A new alert notifies, and so does an update that raises an alert's level; a redelivery
//! or an update at the same or a lower level does not. When more than `storm_threshold`
//! alerts would notify within `storm_window_secs`, the first `storm_threshold` are shown
//! one by one and the rest are held, then shown as one summary when the window after the
//! first held alert ends. Times are milliseconds since the Unix epoch, passed in by the
//! caller so tests control the clock.

use std::collections::VecDeque;

use crate::config::NotificationConfig;
use crate::model::Level;
use crate::store::{AlertEvent, AlertEventKind};

/// The user's notification settings, checked once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub enabled: bool,
    pub min_level: Level,
    pub muted_clusters: Vec<String>,
    pub muted_namespaces: Vec<String>,
    /// Alerts shown one by one within a window; 0 turns batching off.
    pub storm_threshold: u32,
    pub storm_window_ms: i64,
}

impl Rules {
    /// Builds rules from the config; an unknown `min_level` counts as `Low`, so a typo
    /// never silences notifications.
    pub fn from_config(config: &NotificationConfig) -> Self {
        Self {
            enabled: config.enabled,
            min_level: Level::parse(&config.min_level).unwrap_or(Level::Low),
            muted_clusters: config.muted_clusters.clone(),
            muted_namespaces: config.muted_namespaces.clone(),
            storm_threshold: config.storm_threshold,
            storm_window_ms: i64::try_from(config.storm_window_secs.saturating_mul(1000))
                .unwrap_or(i64::MAX),
        }
    }
}

/// A notification to show. `title` is plain text; `body` is plain text too, and
/// [`escape_markup`] must be applied before handing it to a daemon that parses markup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub title: String,
    pub body: String,
    /// The alert a click should open; `None` for a storm summary.
    pub alert_id: Option<String>,
    /// `consoleUrl` when it is a safe http(s) URL.
    pub console_url: Option<String>,
}

/// One held alert of a storm, kept only for the summary.
#[derive(Debug, Clone)]
struct Held {
    level: String,
    cluster: String,
}

/// Applies [`Rules`] to the stream of stored alerts.
#[derive(Debug)]
pub struct Gate {
    rules: Rules,
    paused_until_ms: Option<i64>,
    /// When each recent notice was shown, oldest first.
    shown: VecDeque<i64>,
    held: Vec<Held>,
    held_since_ms: i64,
}

impl Gate {
    pub fn new(rules: Rules) -> Self {
        Self {
            rules,
            paused_until_ms: None,
            shown: VecDeque::new(),
            held: Vec::new(),
            held_since_ms: 0,
        }
    }

    /// Replaces the rules; a storm in progress keeps its held alerts.
    pub fn set_rules(&mut self, rules: Rules) {
        self.rules = rules;
    }

    /// Silences notifications until `until_ms`, or resumes them with `None`.
    pub fn pause_until(&mut self, until_ms: Option<i64>) {
        self.paused_until_ms = until_ms;
    }

    /// Returns the end of the current pause, if notifications are paused at `now_ms`.
    pub fn paused_until(&self, now_ms: i64) -> Option<i64> {
        self.paused_until_ms.filter(|until| *until > now_ms)
    }

    /// Returns the notice to show for `event` now, if any. A held alert returns `None`
    /// and appears later in the summary from [`Gate::flush`].
    pub fn offer(&mut self, event: &AlertEvent, now_ms: i64) -> Option<Notice> {
        let raised = is_raise(event);
        if !self.should_notify(event, raised, now_ms) {
            return None;
        }

        let window_start = now_ms.saturating_sub(self.rules.storm_window_ms);
        while self.shown.front().is_some_and(|time| *time <= window_start) {
            self.shown.pop_front();
        }
        let threshold = self.rules.storm_threshold as usize;
        let storming = threshold > 0 && (!self.held.is_empty() || self.shown.len() >= threshold);
        if storming {
            if self.held.is_empty() {
                self.held_since_ms = now_ms;
            }
            self.held.push(Held {
                level: event.level.clone(),
                cluster: event.cluster.clone(),
            });
            return None;
        }

        self.shown.push_back(now_ms);
        Some(alert_notice(event, raised))
    }

    /// Returns the storm summary once the window after the first held alert has ended.
    pub fn flush(&mut self, now_ms: i64) -> Option<Notice> {
        if self.held.is_empty() || now_ms < self.held_since_ms + self.rules.storm_window_ms {
            return None;
        }
        let held = std::mem::take(&mut self.held);
        // The summary fills the window, so a storm that goes on yields one summary per
        // window rather than a fresh run of single notices.
        self.shown.clear();
        self.shown.extend(std::iter::repeat_n(
            now_ms,
            self.rules.storm_threshold as usize,
        ));
        Some(summary_notice(&held))
    }

    fn should_notify(&self, event: &AlertEvent, raised: bool, now_ms: i64) -> bool {
        let wanted = match event.kind {
            AlertEventKind::New => true,
            AlertEventKind::Updated => raised,
            AlertEventKind::Repeated => false,
        };
        // Unknown levels count as Low, so they notify unless the user raised the bar.
        let level = Level::parse(&event.level).unwrap_or(Level::Low);
        wanted
            && self.rules.enabled
            && self.paused_until(now_ms).is_none()
            && level >= self.rules.min_level
            && !self.rules.muted_clusters.contains(&event.cluster)
            && !self.rules.muted_namespaces.contains(&event.namespace)
    }
}

fn is_raise(event: &AlertEvent) -> bool {
    event.kind == AlertEventKind::Updated
        && event
            .previous_level
            .as_deref()
            .is_some_and(|previous| Level::rank(&event.level) > Level::rank(previous))
}

fn alert_notice(event: &AlertEvent, raised: bool) -> Notice {
    let level = if event.level.is_empty() {
        "Alert"
    } else {
        &event.level
    };
    let title = if raised {
        format!("Raised to {level}: {}", event.title)
    } else {
        format!("{level}: {}", event.title)
    };
    Notice {
        title,
        body: describe_object(event),
        alert_id: Some(event.id.clone()),
        console_url: event.console_url.clone(),
    }
}

/// Words the object and where it runs, such as `Pod web-1 on prod-eu / payments`.
fn describe_object(event: &AlertEvent) -> String {
    let object = [event.object_type.as_str(), event.object_name.as_str()]
        .into_iter()
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let place = [event.cluster.as_str(), event.namespace.as_str()]
        .into_iter()
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" / ");
    match (object.is_empty(), place.is_empty()) {
        (false, false) => format!("{object} on {place}"),
        (false, true) => object,
        (true, false) => format!("on {place}"),
        (true, true) => String::new(),
    }
}

/// Words a storm, such as `23 new alerts, 3 High, on prod-eu-west`.
fn summary_notice(held: &[Held]) -> Notice {
    let top = held
        .iter()
        .filter_map(|alert| Level::parse(&alert.level))
        .max();
    let top_part = top.map(|level| {
        let count = held
            .iter()
            .filter(|alert| Level::parse(&alert.level) == Some(level))
            .count();
        format!(", {count} {level:?}")
    });

    let mut clusters: Vec<&str> = Vec::new();
    for alert in held {
        if !alert.cluster.is_empty() && !clusters.contains(&alert.cluster.as_str()) {
            clusters.push(&alert.cluster);
        }
    }
    let place = match clusters.as_slice() {
        [] => String::new(),
        [one] => format!(", on {one}"),
        [first, second] => format!(", on {first} and {second}"),
        more => format!(", on {} clusters", more.len()),
    };

    let count = held.len();
    let noun = if count == 1 { "alert" } else { "alerts" };
    Notice {
        title: format!("{count} new {noun}"),
        body: format!("{count} new {noun}{}{place}", top_part.unwrap_or_default()),
        alert_id: None,
        console_url: None,
    }
}

/// Escapes `&`, `<` and `>` so a daemon that parses body markup shows the text as sent.
pub fn escape_markup(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW_MS: i64 = 10_000;

    fn rules() -> Rules {
        Rules {
            enabled: true,
            min_level: Level::Low,
            muted_clusters: Vec::new(),
            muted_namespaces: Vec::new(),
            storm_threshold: 3,
            storm_window_ms: WINDOW_MS,
        }
    }

    fn event(kind: AlertEventKind, level: &str, previous: Option<&str>) -> AlertEvent {
        AlertEvent {
            kind,
            id: "a1".to_owned(),
            title: "Pod restarting".to_owned(),
            level: level.to_owned(),
            previous_level: previous.map(str::to_owned),
            cluster: "prod-eu-west".to_owned(),
            namespace: "payments".to_owned(),
            object_type: "Pod".to_owned(),
            object_name: "web-1".to_owned(),
            console_url: Some("https://app.example/alerts/a1".to_owned()),
        }
    }

    fn new_alert(level: &str) -> AlertEvent {
        event(AlertEventKind::New, level, None)
    }

    #[test]
    fn new_alert_notifies() {
        let notice = Gate::new(rules()).offer(&new_alert("High"), 0).unwrap();
        assert_eq!(notice.title, "High: Pod restarting");
        assert_eq!(notice.body, "Pod web-1 on prod-eu-west / payments");
        assert_eq!(notice.alert_id.as_deref(), Some("a1"));
    }

    #[test]
    fn redelivery_is_silent() {
        let repeated = event(AlertEventKind::Repeated, "High", Some("High"));
        assert_eq!(Gate::new(rules()).offer(&repeated, 0), None);
    }

    #[test]
    fn level_rise_notifies() {
        let raised = event(AlertEventKind::Updated, "Critical", Some("Medium"));
        let notice = Gate::new(rules()).offer(&raised, 0).unwrap();
        assert_eq!(notice.title, "Raised to Critical: Pod restarting");
    }

    #[test]
    fn update_at_same_level_is_silent() {
        let updated = event(AlertEventKind::Updated, "High", Some("High"));
        assert_eq!(Gate::new(rules()).offer(&updated, 0), None);
    }

    #[test]
    fn level_fall_is_silent() {
        let lowered = event(AlertEventKind::Updated, "Low", Some("High"));
        assert_eq!(Gate::new(rules()).offer(&lowered, 0), None);
    }

    #[test]
    fn below_min_level_is_silent() {
        let mut gate = Gate::new(Rules {
            min_level: Level::High,
            ..rules()
        });
        assert_eq!(gate.offer(&new_alert("Medium"), 0), None);
        assert!(gate.offer(&new_alert("Critical"), 0).is_some());
    }

    #[test]
    fn muted_cluster_is_silent() {
        let mut gate = Gate::new(Rules {
            muted_clusters: vec!["prod-eu-west".to_owned()],
            ..rules()
        });
        assert_eq!(gate.offer(&new_alert("High"), 0), None);
    }

    #[test]
    fn muted_namespace_is_silent() {
        let mut gate = Gate::new(Rules {
            muted_namespaces: vec!["payments".to_owned()],
            ..rules()
        });
        assert_eq!(gate.offer(&new_alert("High"), 0), None);
    }

    #[test]
    fn disabled_is_silent() {
        let mut gate = Gate::new(Rules {
            enabled: false,
            ..rules()
        });
        assert_eq!(gate.offer(&new_alert("High"), 0), None);
    }

    #[test]
    fn pause_silences_until_its_end() {
        let mut gate = Gate::new(rules());
        gate.pause_until(Some(5_000));
        assert_eq!(gate.offer(&new_alert("High"), 1_000), None);
        assert!(gate.offer(&new_alert("High"), 5_000).is_some());
    }

    #[test]
    fn storm_becomes_one_summary() {
        let mut gate = Gate::new(rules());
        let mut shown = 0;
        for index in 0..23 {
            let level = if index % 8 == 0 { "High" } else { "Low" };
            if gate.offer(&new_alert(level), index * 100).is_some() {
                shown += 1;
            }
        }
        assert_eq!(shown, 3);
        assert_eq!(gate.flush(5_000), None);

        let summary = gate.flush(2_300 + WINDOW_MS).unwrap();
        assert_eq!(summary.body, "20 new alerts, 2 High, on prod-eu-west");
        assert_eq!(summary.alert_id, None);
        assert_eq!(gate.flush(2_300 + 2 * WINDOW_MS), None);
    }

    #[test]
    fn storm_continuing_after_summary_is_held() {
        let mut gate = Gate::new(rules());
        for index in 0..5 {
            gate.offer(&new_alert("Low"), index);
        }
        assert!(gate.flush(3 + WINDOW_MS).is_some());
        assert_eq!(gate.offer(&new_alert("Low"), 4 + WINDOW_MS), None);
    }

    #[test]
    fn quiet_window_resets_storm() {
        let mut gate = Gate::new(rules());
        for index in 0..3 {
            assert!(gate.offer(&new_alert("Low"), index).is_some());
        }
        assert!(gate.offer(&new_alert("Low"), WINDOW_MS + 10).is_some());
    }

    #[test]
    fn zero_threshold_never_batches() {
        let mut gate = Gate::new(Rules {
            storm_threshold: 0,
            ..rules()
        });
        for index in 0..50 {
            assert!(gate.offer(&new_alert("Low"), index).is_some());
        }
    }

    #[test]
    fn summary_names_cluster_count() {
        let held: Vec<Held> = ["a", "b", "c"]
            .iter()
            .map(|cluster| Held {
                level: "Medium".to_owned(),
                cluster: cluster.to_string(),
            })
            .collect();
        assert_eq!(
            summary_notice(&held).body,
            "3 new alerts, 3 Medium, on 3 clusters"
        );
    }

    #[test]
    fn markup_is_escaped() {
        assert_eq!(
            escape_markup("<img src=x onerror=alert(1)> & co"),
            "&lt;img src=x onerror=alert(1)&gt; &amp; co"
        );
    }

    #[test]
    fn unknown_min_level_counts_as_low() {
        let config = NotificationConfig {
            min_level: "loud".to_owned(),
            ..NotificationConfig::default()
        };
        assert_eq!(Rules::from_config(&config).min_level, Level::Low);
    }
}
