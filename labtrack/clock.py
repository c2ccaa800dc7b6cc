"""The server's clock: the application never trusts the client for time."""

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)
