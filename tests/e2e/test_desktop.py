"""End-to-end tests of the desktop app: a real window under Xvfb, driven over WebDriver."""

import json
import sqlite3
import subprocess
import time

from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from conftest import App, alert_payload, wait_until


def dunst_history(after_id=0):
    """Returns the summaries and bodies of the notifications dunst has closed, newest first.

    Only notifications with a dunst id above `after_id` are listed: dunst 1.9 has no
    `dunstctl history-clear`, so its history keeps the notifications of earlier tests.
    """
    output = subprocess.run(["dunstctl", "history"], check=True, capture_output=True, text=True).stdout
    entries = json.loads(output)["data"][0]
    return [
        (entry["summary"]["data"], entry["body"]["data"])
        for entry in entries
        if entry["id"]["data"] > after_id
    ]


def dunst_summaries(after_id=0):
    return [summary for summary, _ in dunst_history(after_id)]


def dunst_displayed_count():
    output = subprocess.run(["dunstctl", "count", "displayed"], capture_output=True, text=True).stdout
    return int(output.strip() or 0)


def close_all_notifications():
    """Closes every notification on screen; returns the newest dunst id, for `dunst_history`."""
    subprocess.run(["dunstctl", "close-all"], check=False)
    wait_until(lambda: dunst_displayed_count() == 0, message="dunst to close its notifications")
    output = subprocess.run(["dunstctl", "history"], check=True, capture_output=True, text=True).stdout
    return max((entry["id"]["data"] for entry in json.loads(output)["data"][0]), default=0)


def wait_for_toast(app):
    """Waits until the window shows a toast; returns its message."""
    return wait_until(
        lambda: app.driver.execute_script(
            "const toast = document.getElementById('toast'); return toast.hidden ? '' : toast.textContent"
        ),
        message="a toast",
    )


def test_posted_alert_appears_live(app):
    assert app.rows() == []
    assert app.post(alert_payload("Pod checkout restarting")) == 200
    app.wait_for_titles(lambda titles: "Pod checkout restarting" in titles, "the new row")

    assert app.count(".alert-row.unread") == 1
    assert app.text_of(".alert-row .level") == "High"
    assert "prod-eu-west / payments" in app.row_text(0)
    assert "Pod checkout-7d9f" in app.row_text(0)


def test_update_moves_row_to_top(app):
    first = alert_payload("First alert", alert_id="alert-first")
    app.post(first)
    app.post(alert_payload("Second alert"))
    app.wait_for_titles(lambda titles: titles[:2] == ["Second alert", "First alert"], "two rows")

    time.sleep(0.01)
    updated = alert_payload("First alert, now critical", level="Critical", alert_id="alert-first",
                            updated="2099-01-01T00:00:00Z")
    app.post(updated)
    app.wait_for_titles(lambda titles: titles[0] == "First alert, now critical", "the update on top")
    assert len(app.rows()) == 2


def test_level_and_text_filters_narrow_list(app):
    app.post(alert_payload("Disk almost full", level="Medium", object_name="db-0"))
    app.post(alert_payload("Node not ready", level="Critical", object_name="node-3"))
    app.post(alert_payload("Pod restarting", level="High", object_name="web-1"))
    app.wait_for_titles(lambda titles: len(titles) == 3, "three rows")

    wait_until(lambda: app.text_of("#result-count") == "3 alerts", message="the count of three alerts")

    app.set_query("level>=High")
    app.wait_for_titles(lambda titles: sorted(titles) == ["Node not ready", "Pod restarting"], "two High+ rows")
    wait_until(lambda: app.text_of("#result-count") == "2 alerts", message="the count of two alerts")

    app.set_query("level>=High node")
    app.wait_for_titles(lambda titles: titles == ["Node not ready"], "one row for the text")
    wait_until(lambda: app.text_of("#result-count") == "1 alert", message="the count of one alert")

    app.set_query("lvl=High")
    error = wait_until(lambda: app.driver.find_element(By.ID, "query-error").text, message="a filter error")
    assert "lvl=High" in error

    app.set_query("")
    app.wait_for_titles(lambda titles: len(titles) == 3, "all rows again")
    app.click(lambda: app.driver.find_element(By.CSS_SELECTOR, '.facet[data-term="level=Medium"]'))
    app.wait_for_titles(lambda titles: titles == ["Disk almost full"], "the Medium row")
    app.screenshot("filter")


def test_counts_follow_triage(app):
    app.post(alert_payload("First High", level="High", alert_id="count-1"))
    app.post(alert_payload("Second High", level="High", alert_id="count-2"))
    app.post(alert_payload("Low one", level="Low", alert_id="count-3"))
    app.wait_for_titles(lambda titles: len(titles) == 3, "three rows")

    # Two conditions are counted from the in-memory copy once it is built, which then
    # catches up with the triage below before it counts again.
    app.set_query("level=High is:unread")
    app.wait_for_titles(lambda titles: sorted(titles) == ["First High", "Second High"], "two unread High rows")
    wait_until(lambda: app.text_of("#result-count") == "2 alerts", message="the count of two alerts")
    app.driver.execute_script(
        "return window.__TAURI__.core.invoke('apply_triage', {ids: ['count-1'], action: {action: 'markRead'}})"
    )
    app.wait_for_titles(lambda titles: titles == ["Second High"], "the unread High row")
    wait_until(lambda: app.text_of("#result-count") == "1 alert", message="the count of one alert")


def test_detail_pane_shows_fields(app):
    app.post(alert_payload("Pod restarting", message="Container restarted 5 times in 10 minutes."))
    app.wait_for_titles(lambda titles: titles == ["Pod restarting"], "the row")
    app.open_row(0)

    text = app.detail_text()
    assert "Pod restarting" in app.text_of("#detail .detail-title")
    assert "Container restarted 5 times in 10 minutes." in text
    assert "Last exit code 137 (OOMKilled)." in text
    assert "clusterName" in text
    assert "prod-eu-west" in text
    assert "namespaceName" in text
    assert "Created" in text
    assert "Delivery history (1)" in text
    assert "Open in RealTheory" in text


def test_markup_title_is_literal_text(app):
    title = "<img src=x onerror=alert(1)>"
    app.post(alert_payload(title, message="<b>bold?</b>"))
    app.wait_for_titles(lambda titles: titles == [title], "the literal title")
    assert app.count("#alert-list img") == 0

    app.open_row(0)
    assert app.text_of("#detail .detail-title") == title
    assert app.count("#detail img, #detail b") == 0


def test_notification_click_opens_console_url(app, opened_urls):
    baseline = close_all_notifications()
    url = "https://app.realtheory.io/alerts/e2e-click"
    app.post(alert_payload("Node ip-10-0-9-9 not ready", level="Critical", console_url=url, cluster="prod-us"))
    wait_until(lambda: dunst_displayed_count() == 1, message="the notification on screen")

    subprocess.run(["dunstctl", "action", "0"], check=True)
    assert wait_until(lambda: opened_urls(), message="the stub browser to open a URL") == [url]

    # The click closes the notification, so dunst's history now shows what was displayed.
    subprocess.run(["dunstctl", "close-all"], check=False)
    history = wait_until(lambda: dunst_history(baseline), message="dunst history")
    assert history[0][0] == "Critical: Node ip-10-0-9-9 not ready"
    assert "prod-us" in history[0][1]

    # The click also marks the alert read.
    wait_until(lambda: app.count(".alert-row.unread") == 0, message="the row to be read")


def test_unsafe_console_url_is_never_opened(app, opened_urls):
    close_all_notifications()
    app.post(alert_payload("Suspicious link", console_url="javascript:alert(1)"))
    app.wait_for_titles(lambda titles: titles == ["Suspicious link"], "the row")
    wait_until(lambda: dunst_displayed_count() == 1, message="the notification on screen")

    subprocess.run(["dunstctl", "action", "0"], check=True)
    # Without a safe URL, the click focuses the alert in the inbox instead.
    wait_until(lambda: "Suspicious link" in app.detail_text(), message="the alert in the detail pane")
    assert "javascript:alert(1)" in app.text_of("#detail .unsafe-url")

    # "o" asks the app to open the stored URL; the toast is its answer, so once it shows,
    # the app has decided and the stub browser would already have been started.
    app.driver.find_element(By.ID, "alert-list").send_keys("o")
    # The store keeps only http(s) consoleUrls as links, so the app reports no link.
    assert wait_for_toast(app) == "This alert has no RealTheory link"
    assert opened_urls() == []


def test_redelivery_raises_no_notification(app):
    baseline = close_all_notifications()
    payload = alert_payload("Once only")
    app.post(payload)
    wait_until(lambda: dunst_displayed_count() == 1, message="one notification on screen")
    app.post(payload)
    app.wait_for_titles(lambda titles: titles == ["Once only"], "the row")
    wait_until(lambda: "×2" in app.row_text(0), message="the delivery count")

    # Notices are raised in delivery order, so once a later alert's notification shows,
    # a notification for the redelivery would already be on screen.
    app.post(alert_payload("Later alert"))
    wait_until(lambda: dunst_displayed_count() >= 2, message="the later alert's notification")
    assert dunst_displayed_count() == 2

    subprocess.run(["dunstctl", "close-all"], check=False)
    summaries = wait_until(
        lambda: (found := dunst_summaries(baseline)) and len(found) >= 2 and found, message="dunst history"
    )
    assert sorted(summaries) == ["High: Later alert", "High: Once only"]


def test_keyboard_acknowledges_alert(app):
    app.post(alert_payload("Keyboard target"))
    app.wait_for_titles(lambda titles: titles == ["Keyboard target"], "the row")
    listbox = app.driver.find_element(By.ID, "alert-list")
    listbox.send_keys("j")
    listbox.send_keys("a")
    wait_until(lambda: "Ack" in app.row_text(0), message="the acknowledged mark")
    listbox.send_keys("/")
    assert app.driver.switch_to.active_element.get_attribute("id") == "query"
    app.driver.switch_to.active_element.send_keys(Keys.ESCAPE)


def test_triage_survives_restart(tmp_path):
    first = App(tmp_path).launch()
    try:
        first.post(alert_payload("Acknowledge me", alert_id="keep-1"))
        first.post(alert_payload("Archive me", alert_id="keep-2"))
        first.wait_for_titles(lambda titles: len(titles) == 2, "two rows")
        first.driver.execute_script(
            "return window.__TAURI__.core.invoke('apply_triage', {ids: ['keep-1'], action: {action: 'acknowledge'}})"
        )
        first.driver.execute_script(
            "return window.__TAURI__.core.invoke('apply_triage', {ids: ['keep-2'], action: {action: 'archive'}})"
        )
    finally:
        first.quit()

    second = App.__new__(App)
    second.__dict__.update(first.__dict__)
    second.launch()
    try:
        second.set_query("is:ack")
        second.wait_for_titles(lambda titles: titles == ["Acknowledge me"], "the acknowledged alert")
        second.set_query("is:archived")
        second.wait_for_titles(lambda titles: titles == ["Archive me"], "the archived alert")
    finally:
        second.quit()


# Reverts the last two migrations, so that the next start upgrades the store from schema 4 to 6.
UNDO_SCHEMAS_5_AND_6 = """
    DROP INDEX alerts_by_object_name;
    DROP INDEX alerts_by_key;
    DROP TRIGGER alert_changes_update;
    DROP TRIGGER alert_changes_delete;
    DROP TRIGGER alert_changes_trim;
    DROP TABLE alert_changes;
    DROP INDEX alerts_by_namespace_facets;
    DROP INDEX alerts_acknowledged_facets;
    DROP INDEX alerts_archived_facets;
    CREATE INDEX alerts_by_namespace ON alerts (namespace, last_received_ms DESC);
    CREATE INDEX alerts_acknowledged ON alerts (last_received_ms DESC) WHERE acknowledged_ms IS NOT NULL;
    CREATE INDEX alerts_archived ON alerts (last_received_ms DESC) WHERE archived_ms IS NOT NULL;
    PRAGMA user_version = 4;
"""


def test_window_shows_store_upgrade(tmp_path):
    first = App(tmp_path).launch()
    try:
        first.post(alert_payload("Kept through the upgrade"))
        first.wait_for_titles(lambda titles: titles == ["Kept through the upgrade"], "the stored alert")
    finally:
        first.quit()
    database = first.data_dir / "alerts.db"
    with sqlite3.connect(database) as connection:
        connection.executescript(UNDO_SCHEMAS_5_AND_6)

    second = App.__new__(App)
    second.__dict__.update(first.__dict__)
    # The write lock holds the upgrade back until the window has shown it. The app waits
    # up to 5 s for a lock, so the checks below run as soon as the banner is seen.
    lock = sqlite3.connect(database, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        second.launch(wait_for_receiver=False)
        wait_until(
            lambda: "Upgrading the alert store from schema 4 to 6" in (second.text_of("#banners") or ""),
            message="the upgrade banner",
        )
        assert second.text_of("#receiver-status") == "Upgrading the alert store…"
        assert second.text_of("#empty-list") == "Opening the alert store…"
        assert second.driver.execute_script("return document.getElementById('query-error').hidden")
    finally:
        lock.rollback()
        lock.close()
    try:
        second.wait_for_receiver()
        second.wait_for_titles(lambda titles: titles == ["Kept through the upgrade"], "the alert after the upgrade")
        wait_until(lambda: "Upgrading" not in (second.text_of("#banners") or ""), message="the banner to go")
        with sqlite3.connect(database) as connection:
            assert connection.execute("PRAGMA user_version").fetchone()[0] == 6
    finally:
        second.quit()


def test_screenshots(app):
    samples = [
        ("Node ip-10-0-3-17 not ready", "Critical", "prod-eu-west", "kube-system", "ip-10-0-3-17"),
        ("Pod checkout restarting repeatedly", "High", "prod-eu-west", "payments", "checkout-7d9f"),
        ("PersistentVolume 85% full", "Medium", "prod-us-east", "databases", "pg-data-0"),
        ("Deployment replicas unavailable", "High", "staging", "web", "frontend"),
        ("Certificate expires in 14 days", "Low", "prod-us-east", "ingress", "wildcard-tls"),
        ("CPU throttling above 40%", "Medium", "prod-eu-west", "search", "search-api-2"),
    ]
    for title, level, cluster, namespace, name in samples:
        app.post(alert_payload(title, level=level, cluster=cluster, namespace=namespace, object_name=name))
    app.wait_for_titles(lambda titles: len(titles) == len(samples), "the sample rows")
    app.screenshot("inbox")

    app.open_row(1)
    app.screenshot("detail")

    app.driver.find_element(By.ID, "tab-settings").click()
    wait_until(lambda: app.driver.find_element(By.CSS_SELECTOR, '[name="listen"]').get_attribute("value"),
               message="the settings form")
    app.screenshot("settings")

    app.driver.find_element(By.ID, "tab-deliveries").click()
    wait_until(lambda: app.driver.find_elements(By.CSS_SELECTOR, "#delivery-table tbody tr"), message="deliveries")
    app.screenshot("deliveries")


def invoke_outcome(app, command):
    """Invokes `command` from the window; returns "ok" or the rejection message."""
    return app.driver.execute_async_script(
        """
        const [command, done] = arguments;
        window.__TAURI__.core.invoke(command).then(() => done("ok"), (error) => done(String(error)));
        """,
        command,
    )


def test_capability_limits_commands(app):
    assert invoke_outcome(app, "app_info") == "ok"
    # The clipboard plugin is loaded, but the window's capability grants none of its
    # commands, so reading the clipboard is rejected.
    assert "not allowed" in invoke_outcome(app, "plugin:clipboard-manager|read_text")
