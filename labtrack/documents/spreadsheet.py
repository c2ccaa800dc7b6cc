"""CSV for spreadsheets (R-EXP-1): RFC 4180, UTF-8 with a byte-order mark, formula injection neutralised.

A spreadsheet runs a cell that begins with ``=``, ``+``, ``-`` or ``@`` as a formula, and
some treat a leading tab or carriage return the same way; such text is written with a
leading apostrophe, which the spreadsheet shows as the text itself (the OWASP advice).
Numbers stay numbers (a temperature of -0.5 is not a formula); times are ISO 8601 UTC;
yes/no for booleans; an empty cell for nothing. The byte-order mark makes Excel read the
file as UTF-8 (names with accents, °C).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Generic, TypeVar

from labtrack.domain.hashing import iso_utc

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
BOM = "\ufeff"
Row = TypeVar("Row")


def cell(value: Any) -> str | int | float:
    """One value as a spreadsheet should read it, never as a formula."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return value
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, date):
        return value.isoformat()
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


@dataclass(frozen=True)
class Column(Generic[Row]):
    header: str
    value: Callable[[Row], Any]


def lines(columns: list[Column[Row]], rows: Iterable[Row]) -> Iterator[str]:
    """The header, then one line per row, each as soon as it is read (for a streamed response)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def take() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow([column.header for column in columns])
    yield BOM + take()
    for row in rows:
        writer.writerow([cell(column.value(row)) for column in columns])
        yield take()
