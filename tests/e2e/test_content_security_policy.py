"""The strict Content-Security-Policy (labtrack/security.py) blocks nothing the pages need."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.e2e.conftest import TIMEOUT_MS

WATCH = "document.addEventListener('securitypolicyviolation', e => (window.__csp = window.__csp || []).push("
WATCH += "e.violatedDirective + ' ' + e.blockedURI))"


def watch(page: Page) -> list[str]:
    """Every CSP refusal the browser reports on this page from now on (console and DOM event)."""
    refused: list[str] = []
    page.on(
        "console", lambda message: refused.append(message.text) if "Content Security Policy" in message.text else None
    )
    page.context.add_init_script(WATCH)
    return refused


def violations(page: Page) -> list[str]:
    return page.evaluate("window.__csp || []")


def test_pages_scripts_and_signature_dialogs_run_under_the_strict_policy(people, lab):
    din = lab.awaiting_release()
    qa = people("qa", sign_in=False)
    refused = watch(qa.page)
    qa.sign_in()
    for path in ("/qa", f"/batches/{din}/record", "/audit?run=1", f"/batches/{din}"):
        assert qa.goto(path).status == 200, path
        assert violations(qa.page) == [], path
    qa.page.get_by_role("button", name="Release…").click()  # app.js opens the dialog and fills in the time
    expect(qa.page.locator("dialog[open] [data-utc-now]")).to_have_text(re.compile(r"^\d{4}-\d\d-\d\dT"))
    qa.snap("release-dialog")
    assert violations(qa.page) == []
    assert refused == []


def test_swagger_ui_renders_the_api_under_its_own_policy(people, live_server):
    reader = people("tech", sign_in=False)
    refused = watch(reader.page)
    reader.goto(f"{live_server}/api/docs", "api-docs")
    expect(reader.page.get_by_text("/api/v1/auth/token").first).to_be_visible(timeout=TIMEOUT_MS)
    assert violations(reader.page) == []
    assert refused == []
