"""Structured logs (R-OPS-3): one JSON object per line, from the web, the CLI and the workers.

Every line carries ``time`` (UTC, ISO 8601), ``level``, ``logger`` and ``message``, and,
where known, ``request_id``, ``username`` and ``din``. Those three live in context
variables: the web sets them per request (``labtrack.ops``), a Celery task per task,
and the outbox sets a row's ``request_id`` while it logs that row's delivery, so one
id follows a change from the request that made it to the webhook that announced it.

Secrets stay out by construction: nothing logs a request body, a header, a query
string or a task's arguments; the access line names the path only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime

from flask import g, has_request_context
from pythonjsonlogger.json import JsonFormatter

REQUEST_ID: ContextVar[str | None] = ContextVar("labtrack_request_id", default=None)
USERNAME: ContextVar[str | None] = ContextVar("labtrack_username", default=None)
DIN: ContextVar[str | None] = ContextVar("labtrack_din", default=None)
CONTEXT = {"request_id": REQUEST_ID, "username": USERNAME, "din": DIN}
# What a client may send as X-Request-ID: a proxy's or a caller's id, short and printable (the outbox
# column holds 64). Anything else is replaced, so a header cannot inject text into the logs.
VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/+=@-]{0,63}")
FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s %(process)d"
RENAMED = {"asctime": "time", "levelname": "level", "name": "logger"}
_HANDLER_MARK = "labtrack_json"
ACCESS_LOGGER = "labtrack.access"
ACCESS_MESSAGE = "%s %s %s %.1f ms"
ACCESS_FIELDS = ("method", "path", "status", "duration_ms")


def request_id_from(header: str | None) -> str:
    """The client's ``X-Request-ID`` when it is a valid one, else a new id."""
    if header and VALID_REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


def current_request_id() -> str | None:
    return REQUEST_ID.get()


@contextlib.contextmanager
def context(**values: str | None) -> Iterator[None]:
    """Log under these ``request_id`` / ``username`` / ``din`` values inside the block."""
    tokens = [(CONTEXT[name], CONTEXT[name].set(value)) for name, value in values.items()]
    try:
        yield
    finally:
        for variable, token in reversed(tokens):
            variable.reset(token)


class ContextFilter(logging.Filter):
    """Adds the context variables to every record (a record's own ``extra`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, variable in CONTEXT.items():
            if getattr(record, name, None) is None:
                value = variable.get()
                if value is not None:
                    setattr(record, name, value)
        if getattr(record, "username", None) is None and has_request_context():
            who = g.get("actor")  # the request's authenticated user, once authentication has run
            if who is not None:
                record.username = who.username
        return True


class Formatter(JsonFormatter):
    """JSON lines; the access line, one per request, by a short path that writes the same fields."""

    def __init__(self) -> None:
        super().__init__(FIELDS, rename_fields=RENAMED)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def format(self, record: logging.LogRecord) -> str:
        if record.name != ACCESS_LOGGER or record.exc_info or record.stack_info:
            return super().format(record)
        # The fields are known: one dict and one json.dumps, instead of the general formatter's walk over
        # every attribute of the record looking for extras.
        line = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        line.update((name, getattr(record, name)) for name in ACCESS_FIELDS)
        line.update((name, value) for name in CONTEXT if (value := getattr(record, name, None)) is not None)
        return json.dumps(line)


def log_access(logger: logging.Logger, level: int, method: str, path: str, status: int, seconds: float) -> None:
    """Write one access line (the caller checks ``logger.isEnabledFor(level)`` first).

    The record is made directly, without the caller lookup (a walk up the stack) that ``Logger.log``
    does for every record: the access line names no source line.
    """
    milliseconds = seconds * 1000
    fields = {"method": method, "path": path, "status": status, "duration_ms": round(milliseconds, 2)}
    args = (method, path, status, milliseconds)
    logger.handle(logger.makeRecord(logger.name, level, __file__, 0, ACCESS_MESSAGE, args, None, extra=fields))


def handler(stream=None) -> logging.Handler:
    """A handler writing JSON lines to ``stream`` (stderr), with the context filter."""
    json_handler = logging.StreamHandler(stream or sys.stderr)
    json_handler.setFormatter(Formatter())
    json_handler.addFilter(ContextFilter())
    setattr(json_handler, _HANDLER_MARK, True)
    return json_handler


def configure(level: int = logging.INFO) -> None:
    """Make the root logger write JSON lines to stderr; idempotent (every app and worker calls it)."""
    root = logging.getLogger()
    if any(getattr(existing, _HANDLER_MARK, False) for existing in root.handlers):
        return
    for existing in list(root.handlers):
        if isinstance(existing, logging.StreamHandler) and getattr(existing, "stream", None) in (
            sys.stderr,
            sys.stdout,
        ):
            root.removeHandler(existing)  # a plain-text handler set up before us (basicConfig)
    root.addHandler(handler())
    root.setLevel(level)
    logging.captureWarnings(True)  # a library's warning is a JSON line too, not a stray text line
    # Set before labtrack.cli imports alembic, which logs its plugin set-up at INFO on import.
    logging.getLogger("alembic").setLevel(logging.WARNING)
