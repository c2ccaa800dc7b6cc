"""Which database errors are an outage (503, saying which) and which stay faults of the code (500).

The fault tests produce these errors for real; this pins the classification for the ones they cannot
provoke on demand (a server refusing connections while starting, a lost socket) and for the errors
that must not be dressed up as an outage.
"""

from __future__ import annotations

import sqlite3

import psycopg
import pytest
from sqlalchemy.exc import DataError, IntegrityError, InterfaceError, InternalError, OperationalError

from labtrack.db import outage


def sqlite_error(kind: type[sqlite3.Error], code: int) -> sqlite3.Error:
    error = kind("as raised by SQLite")
    error.sqlite_errorcode = code
    return error


@pytest.mark.parametrize(
    ("wrapped", "reason"),
    [
        (InternalError("COMMIT", {}, psycopg.errors.ReadOnlySqlTransaction()), "read_only"),
        (OperationalError("INSERT", {}, psycopg.errors.DiskFull()), "full"),
        (OperationalError("SELECT", {}, psycopg.errors.AdminShutdown()), "unreachable"),
        (OperationalError("SELECT", {}, psycopg.errors.CannotConnectNow()), "unreachable"),
        (
            OperationalError(None, None, psycopg.OperationalError("connection refused")),
            "unreachable",
        ),
        (InterfaceError("SELECT", {}, psycopg.InterfaceError("closed"), connection_invalidated=True), "unreachable"),
        (OperationalError("SELECT", {}, psycopg.errors.QueryCanceled()), "unavailable"),
        (OperationalError("INSERT", {}, sqlite_error(sqlite3.OperationalError, 8)), "read_only"),
        (OperationalError("INSERT", {}, sqlite_error(sqlite3.OperationalError, 13)), "full"),
        (OperationalError(None, None, sqlite_error(sqlite3.OperationalError, 14)), "unreachable"),
        (OperationalError("INSERT", {}, sqlite_error(sqlite3.OperationalError, 5)), "unavailable"),  # busy
    ],
)
def test_an_outage_answers_503_saying_which(wrapped, reason):
    unavailable = outage(wrapped)
    assert unavailable is not None
    assert unavailable.status == 503
    assert unavailable.code == "unavailable"
    assert unavailable.extra == {"reason": reason}
    assert "nothing was recorded" in unavailable.detail
    assert "psycopg" not in unavailable.detail
    assert "SQL" not in unavailable.detail


@pytest.mark.parametrize(
    "wrapped",
    [
        IntegrityError("INSERT", {}, psycopg.errors.UniqueViolation()),
        IntegrityError("INSERT", {}, sqlite_error(sqlite3.IntegrityError, 19)),
        DataError("INSERT", {}, psycopg.errors.NumericValueOutOfRange()),
        InternalError("SELECT", {}, psycopg.errors.DataCorrupted()),
    ],
)
def test_faults_of_the_request_or_the_code_are_not_called_an_outage(wrapped):
    assert outage(wrapped) is None
