"""Web pages through Flask's test client: one cookie jar per signed-in user (``sign_in``, tests/fixtures.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from flask.testing import FlaskClient

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(html: str) -> str:
    match = CSRF.search(html)
    assert match, "the page has no form with a CSRF token"
    return match.group(1)


@dataclass
class Browser:
    """A signed-in user's session: pages are fetched, and forms submitted with the page's CSRF token."""

    client: FlaskClient
    username: str

    def get(self, path: str, **kwargs: Any):
        return self.client.get(path, **kwargs)

    def submit(self, path: str, data: dict[str, Any], **kwargs: Any):
        """Open the page, then post a form on it as a browser would."""
        page = self.client.get(path)
        return self.client.post(path, data=data | {"csrf_token": csrf_token(page.text)}, **kwargs)


def error_beside(html: str, form_id: str, name: str) -> str:
    """The rule's message shown beside one field of one form ('' when there is none)."""
    ident = f"{form_id}-{name}".replace(":", "-").replace(".", "-")
    found = re.findall(rf'<p class="field-error" id="{re.escape(ident)}-error">(.*?)</p>', html, re.S)
    return " ".join(found)
