"""Fixtures for the desktop end-to-end tests: a launched app in its own data directory,
a WebDriver session on its window, and a client that posts signed alerts to it."""

import hashlib
import hmac
import json
import os
import socket
import subprocess
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
import urllib.request
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.common.exceptions import StaleElementReferenceException, NoSuchElementException
from selenium.webdriver.common.options import ArgOptions
from selenium.webdriver.remote.client_config import ClientConfig
from selenium.webdriver.remote.remote_connection import RemoteConnection
from selenium.webdriver.support.ui import WebDriverWait

SECRET = "e2e-webhook-secret"
ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
# Maximum wait for one WebDriver command, so a hung window fails the test instead of
# blocking the run.
COMMAND_TIMEOUT_S = 60


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition, timeout=15.0, interval=0.1, message="condition"):
    """Polls `condition` until it returns a true value, which is returned."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except (StaleElementReferenceException, NoSuchElementException):
            # The window replaced the element between its lookup and its use, or has not
            # rendered it yet (the facets load after the list): poll again.
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


def running_app_pids():
    """Returns the pids of processes running the app binary under test."""
    target = os.path.realpath(os.environ["ALERT_INBOX_APP"])
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.path.realpath(entry / "exe") == target:
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def port_is_free(port):
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


class App:
    """One app instance: its config, receiver port and WebDriver session."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.port = free_port()
        self.config_path = directory / "config.toml"
        self.data_dir = directory / "data"
        self.config_path.write_text(
            f'listen = "127.0.0.1:{self.port}"\n'
            f'path = "/webhook"\n'
            f'webhook_secrets = ["{SECRET}"]\n'
            f'data_dir = "{self.data_dir}"\n'
            "\n[notifications]\n"
            "storm_threshold = 50\n"
        )
        self.driver = None

    def launch(self, listen_timeout=15, wait_for_receiver=True):
        """Starts the app and waits for its window, then for its receiver to listen."""
        options = ArgOptions()
        options.set_capability("browserName", "wry")
        options.set_capability(
            "tauri:options",
            {"application": os.environ["ALERT_INBOX_APP"], "args": ["--config", str(self.config_path)]},
        )
        config = ClientConfig(remote_server_addr=os.environ["ALERT_INBOX_DRIVER_URL"], timeout=COMMAND_TIMEOUT_S)
        self.driver = webdriver.Remote(command_executor=RemoteConnection(client_config=config), options=options)
        WebDriverWait(self.driver, 30).until(
            lambda d: d.execute_script("return document.body.dataset.ready === 'true'")
        )
        if wait_for_receiver:
            self.wait_for_receiver(listen_timeout)
        return self

    def wait_for_receiver(self, timeout=15):
        wait_until(lambda: not port_is_free(self.port), timeout=timeout, message="the receiver to listen")

    def quit(self):
        if self.driver is not None:
            self.driver.quit()
            self.driver = None
        # The next launch must not meet this instance through the single-instance lock:
        # the listener closes before the process releases its D-Bus name, and a launch in
        # between fails to forward its arguments and exits, so wait for the process itself.
        wait_until(lambda: port_is_free(self.port), timeout=20, message="the receiver to close")
        wait_until(lambda: not running_app_pids(), timeout=20, message="the app process to exit")

    def post(self, payload: dict) -> int:
        """Posts `payload` signed with the app's secret; returns the HTTP status."""
        body = json.dumps(payload).encode()
        signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/webhook",
            data=body,
            headers={"Content-Type": "application/json", "X-Hub-Signature-256": signature},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status

    # ---- window helpers ----

    def rows(self):
        return self.driver.find_elements(By.CSS_SELECTOR, ".alert-row")

    def row_titles(self):
        # textContent, because WebKitWebDriver's visible-text check skips ellipsised text.
        return self.driver.execute_script(
            "return [...document.querySelectorAll('.alert-row .title')].map(node => node.textContent)"
        )

    def row_text(self, index):
        return self.driver.execute_script(
            "return document.querySelectorAll('.alert-row')[arguments[0]]?.textContent || ''", index
        )

    def text_of(self, selector):
        """Returns the textContent of the first element matching `selector`, or None.

        One script call reads it, so a re-render of the detail pane between finding the
        element and reading it cannot make the element stale.
        """
        return self.driver.execute_script(
            "return document.querySelector(arguments[0])?.textContent ?? null", selector
        )

    def count(self, selector):
        """Returns how many elements match `selector`."""
        return self.driver.execute_script("return document.querySelectorAll(arguments[0]).length", selector)

    def detail_text(self):
        return self.text_of("#detail") or ""

    def click(self, find):
        """Clicks the element `find()` returns, looking it up again when it went stale.

        The list and the facets replace their elements on each live refresh, so an element
        found just before a refresh is stale by the click.
        """

        def attempt():
            find().click()
            return True

        wait_until(attempt, message="a clickable element")

    def open_row(self, index):
        """Clicks row `index` and waits for its detail pane."""
        self.click(lambda: self.rows()[index])
        wait_until(lambda: "Delivery history" in self.detail_text(), message="the detail pane")

    def wait_for_titles(self, predicate, message, timeout=15):
        return wait_until(lambda: predicate(self.row_titles()), timeout=timeout, message=message)

    def set_query(self, query):
        box = self.driver.find_element(By.ID, "query")
        box.clear()
        if query:
            box.send_keys(query)
        self.driver.execute_script("document.getElementById('search-form').requestSubmit()")

    def screenshot(self, name):
        DOCS.mkdir(exist_ok=True)
        self.driver.save_screenshot(str(DOCS / f"screenshot-{name}.png"))


def alert_payload(title, level="High", cluster="prod-eu-west", namespace="payments",
                  console_url=None, alert_id=None, object_name="checkout-7d9f", state="New",
                  message="Container restarted 5 times in 10 minutes.", updated=None):
    alert_id = alert_id or str(uuid.uuid4())
    now = updated or datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    return {
        "domainId": "8ca6aa4c-8c7d-9fb9-c751-3e038f90d283",
        "domainName": "Acme production",
        "version": "1.0",
        "type": "alert",
        "action": "create",
        "url": "",
        "consoleUrl": console_url if console_url is not None else f"https://app.realtheory.io/alerts/{alert_id}",
        "content": {
            "type": "System",
            "metadata": {
                "objectType": "Pod",
                "objectName": object_name,
                "clusterName": cluster,
                "namespaceName": namespace,
                "podName": object_name,
            },
            "id": alert_id,
            "key": f"PodRestarts::{object_name}",
            "title": title,
            "message": message,
            "details": "Last exit code 137 (OOMKilled).",
            "level": level,
            "category": "Health",
            "source": "e2e",
            "state": state,
            "created": now,
            "updated": now,
            "postponedUntil": None,
            "expires": None,
        },
        "timestamp": now,
    }


@pytest.fixture
def app(tmp_path):
    instance = App(tmp_path).launch()
    yield instance
    instance.quit()


@pytest.fixture
def opened_urls():
    """Returns a function listing the URLs the stub browser was asked to open."""
    path = Path(os.environ["ALERT_INBOX_E2E_OPENED"])
    path.write_text("")
    return lambda: [line for line in path.read_text().splitlines() if line]
