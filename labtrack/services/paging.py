"""Keyset pagination for every list that grows (R-SCL-4).

A list is read newest first by a unique key (its id); a page is ``limit`` rows (default
50, at most 200) after the row an opaque cursor names, plus one row read ahead to know
whether a next page exists. No ``COUNT(*)``, no ``OFFSET``: a page costs the same on
the first day and after ten years, served by the primary key's index.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute, Session

from labtrack.domain.errors import ValidationFailed

LIMIT_DEFAULT = 50
LIMIT_MAX = 200
T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list: its rows and the cursor of the following page (None on the last one)."""

    items: list[T]
    next: str | None


def encode(key: int) -> str:
    """The cursor after the row whose key is ``key``: opaque to clients (base64 of a small JSON)."""
    return base64.urlsafe_b64encode(json.dumps({"after": key}).encode()).decode().rstrip("=")


def decode(cursor: str) -> int:
    """The key a cursor names; anything else is refused with 422 on ``after``."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        key = json.loads(base64.urlsafe_b64decode(padded.encode()))["after"]
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeError):
        key = None
    if isinstance(key, bool) or not isinstance(key, int) or not 0 < key < 2**63:
        raise ValidationFailed({"after": ["This is not a cursor from this list: start again from the first page."]})
    return key


def page(
    session: Session,
    query: Select[Any],
    key: InstrumentedAttribute[int],
    *,
    limit: int = LIMIT_DEFAULT,
    after: str | None = None,
    unique: bool = False,
) -> Page[Any]:
    """``query``'s rows newest first (``key`` descending), ``limit`` of them after the cursor ``after``."""
    limit = max(1, min(limit, LIMIT_MAX))
    if after:
        query = query.where(key < decode(after))
    result = session.execute(query.order_by(key.desc()).limit(limit + 1))
    rows = list((result.unique() if unique else result).scalars())
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, encode(getattr(rows[-1], key.key)) if more else None)
