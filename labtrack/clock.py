"""The server's clock: the application never trusts the client for time.

``frozen_at`` sets the clock for the current context only: the demo replays a year of
history through the services as it happened, and tests step through months of
follow-up. Nothing a client sends can reach it.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

_frozen: ContextVar[datetime | None] = ContextVar("labtrack_clock", default=None)


def utcnow() -> datetime:
    return _frozen.get() or datetime.now(UTC)


@contextmanager
def frozen_at(moment: datetime) -> Iterator[None]:
    """Within the block, ``utcnow()`` is ``moment`` (timezone-aware) in this thread or task."""
    if moment.tzinfo is None:
        raise ValueError("the clock is set with a timezone-aware time")
    token = _frozen.set(moment.astimezone(UTC))
    try:
        yield
    finally:
        _frozen.reset(token)
