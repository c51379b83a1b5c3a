"""A real browser: Playwright driving Debian's Chromium against pytest-django's live server."""

import os

import pytest

from tests.chromium import CHROMIUM, CHROMIUM_ARGS
from tests.conftest import PASSWORD


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} not found (make test installs Debian's chromium)")
    # Playwright's sync API runs an event loop; Django must still allow our DB calls in tests.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def watch_csp(context, refused: list[str]) -> None:
    """Collect every Content-Security-Policy refusal in this browser context's pages into
    `refused` (Chromium logs each as a console error: "Refused to execute inline script because
    it violates the following Content Security Policy directive ...")."""

    def on_console(msg):
        if "Content Security Policy" in msg.text:
            refused.append(f"{msg.location.get('url', '')}: {msg.text}")

    context.on("page", lambda page: page.on("console", on_console))


def logged_in_pages(browser, live_server, viewport: dict):
    """open(user) -> a Playwright page logged in as that user, each in its own browser context
    of this window size; yields the opener and closes the contexts afterwards. Every page runs
    under the site's Content-Security-Policy, and a test fails when the browser refused anything."""
    contexts = []
    refused: list[str] = []

    def open_page(user):
        context = browser.new_context(base_url=live_server.url, viewport=viewport)
        context.set_default_timeout(15_000)
        contexts.append(context)
        watch_csp(context, refused)
        page = context.new_page()
        page.goto("/accounts/login/")
        page.fill("#id_username", user.username)
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(lambda url: "/accounts/login/" not in url)
        return page

    yield open_page
    for context in contexts:
        context.close()
    assert refused == [], f"the Content-Security-Policy refused: {refused}"


@pytest.fixture
def new_page(browser, live_server):
    """new_page(user) -> a Playwright page logged in as that user, in its own browser context."""
    yield from logged_in_pages(browser, live_server, {"width": 1400, "height": 1000})
