"""A list of rows as a table that one statement joins against (set-based checkpoints, R-SCL-3).

On PostgreSQL the rows travel as one array per column and come back out of ``unnest``; on
SQLite as one JSON array of arrays read by ``json_each``. Either way a thousand streams
are one statement and one round trip, not a thousand, nor a long ``OR`` to plan.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Subquery, bindparam, func, select, type_coerce
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import TypeEngine


def rowset(connection: Connection, columns: dict[str, TypeEngine[Any]], rows: Sequence[Sequence[Any]]) -> Subquery:
    """``rows`` (tuples in the order of ``columns``) as a subquery with those columns."""
    if connection.dialect.name == "postgresql":
        arrays = [
            bindparam(None, [row[i] for row in rows], type_=ARRAY(kind)) for i, kind in enumerate(columns.values())
        ]
        unnested = func.unnest(*arrays).table_valued(*columns).render_derived()
        return select(*(type_coerce(unnested.c[name], kind).label(name) for name, kind in columns.items())).subquery()
    each = func.json_each(bindparam(None, json.dumps([list(row) for row in rows]))).table_valued("value")
    return select(
        *(
            type_coerce(func.json_extract(each.c.value, f"$[{i}]"), kind).label(name)
            for i, (name, kind) in enumerate(columns.items())
        )
    ).subquery()
