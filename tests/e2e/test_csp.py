"""The window's Content-Security-Policy, checked in the real WebKit view."""

import time


def ran_within(check, seconds=1.0):
    """Polls `check` for `seconds`; returns True as soon as it is true."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def test_csp_blocks_inline_script(app):
    # An inline <script> added to the page must not run: script-src allows only the
    # app's own files. WebDriver's own script injection is not subject to the page's
    # CSP, so it can build the element and then read the marker back.
    app.driver.execute_script(
        """
        window.__inlineRan = false;
        const script = document.createElement('script');
        script.textContent = 'window.__inlineRan = true;';
        document.body.appendChild(script);
        """
    )
    assert not ran_within(lambda: app.driver.execute_script("return window.__inlineRan"))


def test_csp_blocks_inline_event_handler(app):
    app.driver.execute_script(
        """
        window.__handlerRan = false;
        const image = document.createElement('img');
        image.setAttribute('src', 'data:,not-an-image');
        image.setAttribute('onerror', 'window.__handlerRan = true');
        document.body.appendChild(image);
        """
    )
    assert not ran_within(lambda: app.driver.execute_script("return window.__handlerRan"))
