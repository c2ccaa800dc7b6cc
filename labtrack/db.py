"""Engines, sessions and the unit of work.

The request (or task, or CLI command) is the unit of work: services never commit.
``Database.write`` runs one piece of work in a transaction, commits once, and on a
unique-constraint collision (two writers racing on one batch's ``(batch_id, seq)``
or one idempotency key) rolls back and runs the work again, so the loser re-reads
and re-validates. SQLite writes begin IMMEDIATE so concurrent writers queue on the
busy timeout instead of failing with "database is locked".

A database out of service (unreachable, restarting, read-only, out of space) is
not a fault of the request: ``outage`` turns the driver's error into a 503
``unavailable`` saying which, for writes here and for reads in the error handlers.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from flask import current_app, g
from sqlalchemy import Engine, Row, Select, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from labtrack.domain.errors import Conflict, DomainError, Unavailable

T = TypeVar("T")
WRITE_OPTION = "labtrack_write"
MAX_ATTEMPTS = 8
AFTER_COMMIT = "labtrack_after_commit"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})  # requests that write nothing
ROWS_PER_STATEMENT = 50_000  # rows handed to one statement as parameters (the first build of a large tree)
IDS_PER_STATEMENT = 1000  # ids per statement reading rows by primary key
log = logging.getLogger(__name__)


def chunks(rows: Sequence[Any], size: int = ROWS_PER_STATEMENT) -> Iterator[Sequence[Any]]:
    """``rows`` in slices of at most ``size``, in order: one statement's worth of parameters each."""
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def rows_by_id(session: Session, statement: Callable[[Sequence[int]], Select], ids: Sequence[int]) -> Iterator[Row]:
    """The rows of ``statement(part)`` for each slice of ``ids``, ``IDS_PER_STATEMENT`` at a time, in turn.

    A finding taken from an index (the ids first) reaches its rows by primary key, so the cost follows the
    rows found; joined in one statement, they would be hashed against a scan of the whole table."""
    for part in chunks(ids, IDS_PER_STATEMENT):
        yield from session.execute(statement(part))


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run ``callback`` once this unit of work has committed; never if it rolls back or is retried.

    For work outside the transaction (enqueueing a Celery task): its failure is
    logged and swallowed, since the commit has already happened.
    """
    session.info.setdefault(AFTER_COMMIT, []).append(callback)


def _run_after_commit(session: Session) -> None:
    for callback in session.info.pop(AFTER_COMMIT, []):
        try:
            callback()
        except Exception:
            log.exception("after-commit callback failed (the commit stands)")


def normalise_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL whatever the URL's scheme says."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection):
        write = connection.get_execution_options().get(WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def make_engine(url: str) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        _configure_sqlite(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


# SQLite's primary result codes (the low byte of ``sqlite3.Error.sqlite_errorcode``).
_SQLITE_READONLY, _SQLITE_FULL, _SQLITE_CANTOPEN = 8, 13, 14
_OUTAGES = {
    "read_only": "The database is read-only at the moment; nothing was recorded. Try again later.",
    "full": "The database is out of storage space; nothing was recorded. Tell the system administrator.",
    "unreachable": "The database cannot be reached; nothing was recorded. Try again in a moment.",
    "unavailable": "The database is unavailable; nothing was recorded. Try again.",
}


def _outage_reason(error: DBAPIError) -> str | None:
    original = error.orig
    sqlstate = getattr(original, "sqlstate", None) or ""
    sqlite_code = (getattr(original, "sqlite_errorcode", None) or 0) & 0xFF
    if sqlstate == "25006" or sqlite_code == _SQLITE_READONLY:  # read_only_sql_transaction
        return "read_only"
    if sqlstate == "53100" or sqlite_code == _SQLITE_FULL:  # disk_full
        return "full"
    # connection exceptions (08), the server shutting down or starting up (57P), or no answer at all
    if error.connection_invalidated or sqlstate.startswith(("08", "57P")) or sqlite_code == _SQLITE_CANTOPEN:
        return "unreachable"
    if isinstance(error, OperationalError):
        no_answer = not sqlstate and not hasattr(original, "sqlite_errorcode")
        return "unreachable" if no_answer else "unavailable"
    return None


def outage(error: DBAPIError) -> Unavailable | None:
    """The 503 for a database out of service, saying which when the error tells; None for any other error.

    psycopg raises a read-only transaction as an InternalError, not an OperationalError,
    hence the look at SQLSTATEs (and SQLite's result codes) rather than at classes only.
    """
    reason = _outage_reason(error)
    if reason is None:
        return None
    return Unavailable(_OUTAGES[reason], extra={"reason": reason})


def close_session(session: Session) -> None:
    """Close a session at the end of a request or task, whose answer is already made.

    When the database went away meanwhile, the rollback that closing does fails: the
    connection is dropped instead (the pool replaces it), rather than turning the
    answer into an error.
    """
    try:
        session.close()
    except DBAPIError as error:
        unavailable = outage(error)
        if unavailable is None:
            raise
        log.warning("database out of service at the end of a unit of work (%s)", unavailable.extra["reason"])
        session.invalidate()


def is_unique_violation(error: IntegrityError) -> bool:
    """Racing writers collide on a unique constraint; any other integrity error is a bug."""
    sqlstate = getattr(error.orig, "sqlstate", None)
    if sqlstate is not None:
        return sqlstate == "23505"
    return "UNIQUE constraint failed" in str(error.orig)


class Database:
    def __init__(self, url: str) -> None:
        self.url = normalise_url(url)
        self.engine = make_engine(self.url)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self.reader = sessionmaker(self.engine, expire_on_commit=False)
        self.writer = sessionmaker(self.engine.execution_options(**{WRITE_OPTION: True}), expire_on_commit=False)
        # What the app lends every unit of work (its session.info), e.g. how to reach the broker.
        self.session_info: dict[str, Any] = {}

    def write_session(self) -> Session:
        """A new session for one attempt of a unit of work."""
        session = self.writer()
        session.info.update(self.session_info)
        return session

    def write(self, work: Callable[[Session], T], session: Session | None = None) -> T:
        """Run ``work`` in one write transaction; commit once; retry on collisions.

        ``session``, when given, is the first attempt's: one from ``write_session`` whose
        transaction has already begun (the request's authentication ran in it); a retry
        starts afresh. A DomainError rolls everything back. When the error carries a
        ``record`` callable (a refusal that must itself be recorded, R-COI-1 and R-SIG-1),
        it runs in a transaction of its own after the rollback.
        """
        first = session
        for attempt in range(MAX_ATTEMPTS):
            session = first if first is not None and attempt == 0 else self.write_session()
            try:
                result = work(session)
                session.commit()
                _run_after_commit(session)
                return result
            except IntegrityError as error:
                session.rollback()
                if not is_unique_violation(error):
                    raise
                time.sleep(random.uniform(0, 0.005 * (attempt + 1)))
            except DomainError as error:
                session.rollback()
                if error.record is not None:
                    self.write(error.record)
                raise
            except DBAPIError as error:
                session.rollback()
                unavailable = outage(error)
                if unavailable is None:
                    raise
                # one line per refused write: during an outage, a traceback each would drown the log
                log.warning("database out of service (%s): %s", unavailable.extra["reason"], error.orig)
                raise unavailable from error
            except BaseException:
                session.rollback()
                raise
            finally:
                session.close()
        raise Conflict("Too many concurrent changes to the same record; nothing was recorded. Try again.")

    def rows(self, query: Any) -> list[Row[Any]]:
        """A plain read, in a read session of its own (what a job finds due)."""
        session = self.reader()
        try:
            return list(session.execute(query))
        finally:
            session.close()

    def scalars(self, query: Any) -> list[Any]:
        """A plain read of one column's values (``rows``' first column)."""
        return [row[0] for row in self.rows(query)]

    def dispose(self) -> None:
        self.engine.dispose()


def database() -> Database:
    """The running app's Database (made by ``create_app``): for every adapter, API, pages, CLI and tasks."""
    return current_app.extensions["labtrack.db"]


def read_session() -> Session:
    """One read session per request, closed at teardown."""
    if "db_session" not in g:
        g.db_session = database().reader()
    return g.db_session


def autocommit_read(view: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a view whose reads may run, on PostgreSQL, on the authentication's connection in autocommit.

    For a view that only reads: at READ COMMITTED a transaction gives each statement its own
    snapshot anyway, so leaving it out changes nothing it sees, and saves a second pool
    checkout (its ping), BEGIN and ROLLBACK. Not for streamed reads (server-side cursors need
    a transaction).
    """
    view.autocommit_read = True
    return view


def begin_authentication_read(view: Callable[..., Any] | None) -> bool:
    """Ready the request's read session for the token lookup: on PostgreSQL in autocommit (one SELECT
    needs no transaction: no BEGIN, no ROLLBACK). True when ``view`` is marked ``autocommit_read`` and so
    keeps that connection for its own reads; else the caller ends the read after the lookup."""
    if database().is_sqlite:
        return False
    read_session().connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    return getattr(view, "autocommit_read", False)


def request_write_session() -> Session:
    """The session this request's write will run in, begun before the view (its authentication
    runs in it, so a write makes one pool checkout and one transaction); closed at teardown if
    the view never wrote."""
    if "write_session" not in g:
        g.write_session = database().write_session()
    return g.write_session


def take_request_write_session() -> Session | None:
    """The session ``request_write_session`` began, for ``Database.write`` (None when there is none)."""
    return g.pop("write_session", None)


def close_read_session(_exc: BaseException | None = None) -> None:
    for name in ("db_session", "write_session"):
        session = g.pop(name, None)
        if session is not None:
            close_session(session)
