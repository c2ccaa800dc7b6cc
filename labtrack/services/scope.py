"""R-ACC-1 in SQL: the clinic scoping of every list, search and report, from ``domain.actors.clinic_scope``.

A clinic user's query keeps the rows of their own clinic; a lab user's is left as it is. Single things are
checked with ``sees_clinic`` (``batches.get`` and ``require``); this is the same rule for many rows at once.
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select

from labtrack.domain.actors import Actor, clinic_scope

Query = TypeVar("Query", bound=Select[Any])


def visible(
    query: Query,
    actor: Actor,
    clinic_id: ColumnElement[int],
    *,
    join: Any = None,
    on: ColumnElement[bool] | None = None,
) -> Query:
    """``query`` kept to the rows whose ``clinic_id`` the actor sees. ``join`` (``on``) is what holds
    ``clinic_id``, joined only when the query is narrowed, so a lab user's query stays as it was, with no
    join that could repeat its rows."""
    scope = clinic_scope(actor)
    if scope is None:
        return query
    if join is not None:
        query = query.join(join) if on is None else query.join(join, on)
    return query.where(clinic_id == scope)
