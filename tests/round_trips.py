"""Counting database round trips: a statement, a COMMIT or ROLLBACK, or the pre-ping of a pool checkout."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import Engine, event


@dataclass
class Trips:
    kinds: Counter = field(default_factory=Counter)
    statements: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.kinds.values())


@contextmanager
def counting(engine: Engine) -> Iterator[Trips]:
    """``with counting(engine) as trips:`` counts what the engine sends to the database meanwhile."""
    trips = Trips()

    def statement(_conn, _cursor, sql, *_args) -> None:
        trips.kinds[sql.split(None, 1)[0].upper()] += 1
        trips.statements.append(sql)

    def checkout(*_args) -> None:
        trips.kinds["pre-ping"] += 1

    listeners = [
        (engine, "before_cursor_execute", statement),
        (engine, "commit", lambda *_: trips.kinds.update(["COMMIT"])),
        (engine, "rollback", lambda *_: trips.kinds.update(["ROLLBACK"])),
        (engine.pool, "checkout", checkout),
    ]
    for target, name, listener in listeners:
        event.listen(target, name, listener)
    try:
        yield trips
    finally:
        for target, name, listener in listeners:
            event.remove(target, name, listener)
