"""Browser tests: Debian's Chromium, driven by Playwright, against the app served on localhost.

The app is the test's own (``app`` from tests/conftest.py: a fresh database per
test), served by werkzeug in a thread. The browser is /usr/bin/chromium, never a
downloaded one. Without it the tests skip, except under CI=true, where a missing
browser fails the run. Every page a test visits is saved as a screenshot under
test-artifacts/screenshots/<test>/; ``Person.check`` (``check_widths``) saves it
at 390, 1024 and 1440 px and fails on sideways scrolling or a code shown to people.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask
from playwright.sync_api import Browser, Locator, Page, sync_playwright
from werkzeug.serving import make_server

from labtrack.glossary import codes_in
from tests.helpers import PASSWORD

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TABLET = {"width": 1280, "height": 800}  # a 10-inch bench tablet, landscape
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
TIMEOUT_MS = 15_000
WIDTHS = (390, 1024, 1440)  # a phone, a tablet in portrait-ish landscape (1024 × 768), a desktop
HEIGHTS = {390: 844, 1024: 768, 1440: 900}
OVERFLOW = """() => {
  const width = document.documentElement.clientWidth;
  const wide = Array.from(document.querySelectorAll('body *')).filter(el => {
    const box = el.getBoundingClientRect();
    return box.width > 0 && box.right > width + 1 && getComputedStyle(el).position !== 'fixed'
      && !el.closest('.table-wrap, dialog:not([open])');
  }).concat(Array.from(document.querySelectorAll('body *')).filter(el => el.scrollWidth > el.clientWidth + 1
      && getComputedStyle(el).overflowX === 'visible' && el.clientWidth > 0 && !el.closest('.table-wrap')))
    .slice(0, 5).map(el => el.tagName.toLowerCase() + (el.className ? '.' + el.className : ''));
  return {scroll: document.documentElement.scrollWidth, width, wide};
}"""


@pytest.fixture(scope="package")  # closed when the browser tests end, before the rest of the suite runs
def chromium() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        message = f"Debian's Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}: under CI the browser tests must run.")
        pytest.skip(message)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def live_server(app: Flask) -> Iterator[str]:
    """The test's app on a free localhost port, for the length of one test."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join()


@dataclass
class Album:
    """Numbered screenshots of one test's pages."""

    folder: Path
    count: int = 0

    def save(self, page: Page, label: str) -> None:
        self.count += 1
        name = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
        page.screenshot(path=str(self.folder / f"{self.count:02d}-{name}.png"), full_page=True)


def check_widths(page: Page, album: Album, label: str) -> None:
    """Screenshots of ``page`` at 390, 1024 and 1440 px wide. Fails if the page scrolls sideways at any
    of them or shows, as visible text, a code the glossary maps (or a number printed like 1e+07)."""
    original = page.viewport_size
    try:
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": HEIGHTS[width]})
            album.save(page, f"{label}-{width}px")
            measured = page.evaluate(OVERFLOW)
            assert measured["scroll"] <= measured["width"], (
                f"{label} scrolls sideways at {width} px: {measured['scroll']} px wide; wide: {measured['wide']}"
            )
        shown = codes_in(page.locator("body").inner_text())
        assert not shown, f"{label} shows codes where people read: {shown}"
    finally:
        if original:
            page.set_viewport_size(original)


@dataclass
class Person:
    """One user in a browser context of their own (their own cookies), signing in through the login page."""

    username: str
    page: Page
    album: Album

    def snap(self, label: str) -> None:
        self.album.save(self.page, f"{self.username}-{label}")

    def check(self, label: str) -> None:
        """This page at the three widths: no sideways scrolling, no code shown (``check_widths``)."""
        check_widths(self.page, self.album, f"{self.username}-{label}")

    def goto(self, path: str, label: str | None = None):
        response = self.page.goto(path)
        self.snap(label or path)
        return response

    def submit(self, button: Locator, label: str) -> None:
        """Click a submit button and wait for the page that answers."""
        with self.page.expect_navigation():
            button.click()
        self.snap(label)

    def form(self, form_id: str) -> Locator:
        """A form on the page, found by the id every LabTrack form carries."""
        return self.page.locator(f"form:has(input[name=form_id][value='{form_id}'])")

    def sign_in(self, password: str = PASSWORD) -> None:
        self.goto("/login", "login")
        self.page.get_by_label("Username").fill(self.username)
        self.page.get_by_label("Password").fill(password)
        self.submit(self.page.get_by_role("button", name="Sign in"), "home")

    def scan(self, text: str) -> None:
        """A keyboard-wedge scanner: the code typed into the focused field, then Enter."""
        self.page.keyboard.type(text)
        self.page.keyboard.press("Enter")

    def sign(self, opener: str, label: str, password: str = PASSWORD) -> Locator:
        """Open a signature dialog by its button, check it names the signer, sign; returns the dialog."""
        self.page.get_by_role("button", name=f"{opener}…").first.click()
        dialog = self.page.locator("dialog[open]")
        dialog.get_by_label("Your password").fill(password)
        self.snap(f"{label}-dialog")
        self.submit(dialog.get_by_role("button", name=re.compile("^Sign: ")), label)
        return dialog


@pytest.fixture
def people(chromium: Browser, live_server: str, request: pytest.FixtureRequest) -> Iterator:
    """``people("tech")`` -> a signed-in Person with a browser context of their own."""
    album = Album(SCREENSHOTS / re.sub(r"[^A-Za-z0-9_]+", "-", request.node.name))
    album.folder.mkdir(parents=True, exist_ok=True)
    for old in album.folder.glob("*.png"):
        old.unlink()
    contexts = []

    def open_as(username: str, *, sign_in: bool = True) -> Person:
        context = chromium.new_context(base_url=live_server, viewport=TABLET)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        person = Person(username, context.new_page(), album)
        if sign_in:
            person.sign_in()
        return person

    yield open_as
    for context in contexts:
        context.close()
