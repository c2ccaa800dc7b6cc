"""Temperature-logger files for a transport leg (R-TMP-1): reading them, and what they say about the leg.

A leg is one hand-off and the receipt that ends it, numbered from 1 in the order of the
batch's hand-offs. A logger's CSV export gives a time and a temperature per line; the
layouts of the common loggers differ, so the reader accepts (docs/interoperability.md):

- up to 30 lines of preamble (device, serial, start delay...) before the header line;
- a header naming a time column (``time``, ``timestamp``, ``date/time``, ``datetime``,
  ``date time``, ``recorded``...) or separate ``date`` and ``time`` columns, and a
  temperature column (``temperature``, ``temp``, ``°C``, ``celsius``, ``value``, with or
  without a unit such as ``(°C)``); other columns (humidity, record number) are ignored;
  a temperature column in °F is refused (export in °C);
- ``,`` ``;`` or tab as separator; a decimal comma where the separator is not a comma
  (or the value is quoted);
- ISO 8601 times (``2026-12-01T14:05:00``, a space for the ``T``, seconds optional, an
  offset or ``Z`` honoured), ``yyyy/mm/dd``, and day-first ``dd/mm/yyyy``, ``dd.mm.yyyy``,
  ``dd-mm-yyyy`` (with ``HH:MM[:SS]``): loggers configured for the lab write day first;
  month-first US dates are not guessed;
- times without an offset are in the time zone declared with the file (an IANA name); a
  time that does not exist there (the spring-forward gap) is refused; an ambiguous one (the
  autumn hour) is read as the one that keeps the readings in order.

Every reading stands for the time until the next one (sample and hold), which is how the
minutes outside the transport range are counted.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from labtrack.domain.errors import DomainError, ValidationFailed

MAX_BYTES = 5 * 1024 * 1024
MAX_PREAMBLE_LINES = 30
COVERAGE_SLACK = timedelta(minutes=15)
PLAUSIBLE_C = (-100.0, 100.0)
TIME_NAMES = ("time", "timestamp", "date/time", "datetime", "date time", "date_time", "date-time", "recorded", "logged")
DATE_NAMES = ("date",)
TEMPERATURE_NAMES = ("temperature", "temp", "°c", "celsius", "value", "t", "ch1", "channel 1")
_UNIT = re.compile(r"\s*[\(\[].*?[\)\]]\s*")
_DAY_FIRST = re.compile(r"^(\d{1,2})[./-](\d{1,2})[./-](\d{4})[ T](\d{1,2}):(\d{2})(?::(\d{2})(?:[.,]\d+)?)?$")
_YEAR_SLASH = re.compile(r"^(\d{4})/(\d{1,2})/(\d{1,2})[ T](\d{1,2}):(\d{2})(?::(\d{2}))?$")


class LoggerFileInvalid(ValidationFailed):
    """A file that cannot be read, naming the line (422, nothing stored)."""

    code, title = "logger_file_invalid", "Logger file not readable"

    def __init__(self, line: int, message: str) -> None:
        super().__init__({"file": [f"line {line}: {message}"]}, detail=f"Line {line}: {message}")
        self.extra = {"line": line}


class LoggerFileTooLarge(DomainError):
    status, code, title = 413, "payload_too_large", "Payload too large"


class LegNotCovered(DomainError):
    status, code, title = 422, "leg_not_covered", "Readings do not cover the leg"


@dataclass(frozen=True)
class Reading:
    at: datetime  # UTC
    celsius: float


@dataclass(frozen=True)
class Leg:
    number: int
    handoff_seq: int
    handed_off_at: datetime
    receipt_seq: int | None
    received_at: datetime | None


@dataclass(frozen=True)
class LegSummary:
    readings: tuple[Reading, ...]  # those within the leg ± 15 min, for the curve
    minimum: float
    maximum: float
    mean: float
    minutes_out_of_range: float
    readings_out_of_range: int

    def excursion(self, allowed_minutes: float) -> bool:
        """Time out of range beyond the allowance; with no allowance, any reading out of range."""
        if allowed_minutes <= 0:
            return self.readings_out_of_range > 0
        return self.minutes_out_of_range > allowed_minutes


def legs(events: list[tuple[int, str, datetime]]) -> list[Leg]:
    """The batch's legs from its (seq, type, occurred_at) events: each hand-off with the receipt after it."""
    found: list[Leg] = []
    for seq, kind, at in events:
        if kind == "handoff":
            found.append(Leg(len(found) + 1, seq, at, None, None))
        elif kind == "receipt" and found and found[-1].receipt_seq is None:
            last = found[-1]
            found[-1] = Leg(last.number, last.handoff_seq, last.handed_off_at, seq, at)
    return found


def zone_of(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValidationFailed({"timezone": ["an IANA time zone name, e.g. Europe/Berlin or UTC"]}) from None


def _decode(content: bytes) -> str:
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError:
        return content.decode("cp1252", errors="replace")  # Windows logger software writes °C as 0xB0


def _separator(header: str) -> str:
    counts = {sep: header.count(sep) for sep in (";", "\t", ",")}
    best = max(counts, key=lambda sep: counts[sep])
    return best if counts[best] else ","


def _name(cell: str) -> str:
    return _UNIT.sub("", cell.strip().strip('"').lower()).strip()


@dataclass(frozen=True)
class _Columns:
    time: int
    date: int | None
    temperature: int


def _columns(cells: list[str]) -> _Columns | None:
    names = [_name(c) for c in cells]
    raw = [c.strip().lower() for c in cells]
    temperature = next((i for i, n in enumerate(names) if n in TEMPERATURE_NAMES or "°c" in raw[i]), None)
    if temperature is None:
        temperature = next((i for i, n in enumerate(names) if n.startswith(("temp", "temperature"))), None)
    moment = next((i for i, n in enumerate(names) if n in TIME_NAMES and i != temperature), None)
    day = next((i for i, n in enumerate(names) if n in DATE_NAMES), None)
    if moment is None and day is not None:
        moment, day = day, None  # one "date" column holding date and time
    if moment is None or temperature is None:
        return None
    if "°f" in raw[temperature] or "fahrenheit" in raw[temperature]:
        raise LoggerFileInvalid(0, "the temperature column is in °F; export the file in °C")
    return _Columns(moment, day if day != moment else None, temperature)


def _moment(text: str, zone: ZoneInfo) -> datetime:
    text = text.strip().strip('"')
    if match := _DAY_FIRST.match(text):
        day, month, year, hour, minute, second = match.groups()
        naive = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second or 0))
    elif match := _YEAR_SLASH.match(text):
        year, month, day, hour, minute, second = match.groups()
        naive = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second or 0))
    else:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if parsed.tzinfo is not None:
            return parsed.astimezone(UTC)
        naive = parsed
    local = naive.replace(tzinfo=zone)
    if local.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != naive:
        raise ValueError("this time does not exist in the declared time zone (clocks went forward)")
    return local


def _celsius(text: str, separator: str) -> float:
    value = text.strip().strip('"').replace("\u2212", "-").replace(" ", "")
    if "," in value and "." not in value and separator != ",":
        value = value.replace(",", ".")
    number = float(value)
    if not math.isfinite(number) or not PLAUSIBLE_C[0] <= number <= PLAUSIBLE_C[1]:
        raise ValueError(f"{text.strip()!r} °C is not a temperature a logger records")
    return number


def read_file(content: bytes, zone: ZoneInfo) -> list[Reading]:
    """The readings of a logger's CSV, in time order; ``LoggerFileInvalid`` names the first bad line."""
    if len(content) > MAX_BYTES:
        raise LoggerFileTooLarge("The logger file is larger than 5 MB.")
    lines = _decode(content).splitlines()
    if not any(line.strip() for line in lines):
        raise LoggerFileInvalid(1, "the file is empty")
    header_at, columns, separator = None, None, ","
    for index, line in enumerate(lines[:MAX_PREAMBLE_LINES]):
        if not line.strip():
            continue
        separator = _separator(line)
        try:
            columns = _columns(next(csv.reader([line], delimiter=separator)))
        except LoggerFileInvalid as error:
            raise LoggerFileInvalid(index + 1, error.errors["file"][0].split(": ", 1)[1]) from None
        if columns is not None:
            header_at = index
            break
    if header_at is None or columns is None:
        raise LoggerFileInvalid(
            1, "no header line naming a time column and a temperature column (°C) in the first 30 lines"
        )
    readings: list[Reading] = []
    widest = max(columns.time, columns.temperature, columns.date if columns.date is not None else -1)
    for index, row in enumerate(csv.reader(lines[header_at + 1 :], delimiter=separator), start=header_at + 2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= widest:
            raise LoggerFileInvalid(index, f"expected at least {widest + 1} columns, found {len(row)}")
        stamp = (
            row[columns.time] if columns.date is None else f"{row[columns.date].strip()} {row[columns.time].strip()}"
        )
        try:
            at = _moment(stamp, zone)
        except ValueError as error:
            reason = str(error) if "does not exist" in str(error) else "is not a date and time this reader knows"
            raise LoggerFileInvalid(index, f"{stamp.strip()!r} {reason}") from None
        try:
            celsius = _celsius(row[columns.temperature], separator)
        except ValueError as error:
            reason = str(error) if "°C" in str(error) else f"{row[columns.temperature].strip()!r} is not a number"
            raise LoggerFileInvalid(index, reason) from None
        readings.append(Reading(_in_order(at, readings), celsius))
    if not readings:
        raise LoggerFileInvalid(header_at + 1, "the header is followed by no readings")
    return sorted(readings, key=lambda r: r.at)


def _in_order(local: datetime, before: list[Reading]) -> datetime:
    """In the autumn hour a local time happens twice: take the one after the previous reading."""
    moment = local.astimezone(UTC)
    if before and local.tzinfo is not UTC and moment < before[-1].at:
        later = local.replace(fold=1).astimezone(UTC)
        if later >= before[-1].at:
            return later
    return moment


def summarise_leg(readings: list[Reading], leg: Leg, low: float, high: float) -> LegSummary:
    """R-TMP-1: the readings must cover the leg (± 15 min); min, max, mean and time out of range over it."""
    assert leg.received_at is not None
    start, end = leg.handed_off_at, leg.received_at
    if readings[0].at > start + COVERAGE_SLACK or readings[-1].at < end - COVERAGE_SLACK:
        raise LegNotCovered(
            f"The readings run from {_utc(readings[0].at)} to {_utc(readings[-1].at)}; leg {leg.number} ran from "
            f"{_utc(start)} (hand-off) to {_utc(end)} (receipt): they must cover it within 15 minutes. "
            "Check the file's time zone.",
        )
    kept = tuple(r for r in readings if start - COVERAGE_SLACK <= r.at <= end + COVERAGE_SLACK)
    during = [r for r in kept if start <= r.at <= end] or list(kept)
    out_seconds = 0.0
    # sample and hold: the reading before the leg began stands for its first moments
    holding = [r for r in readings if r.at <= start][-1:] + [r for r in readings if start < r.at < end]
    for index, reading in enumerate(holding):
        began = max(reading.at, start)
        until = holding[index + 1].at if index + 1 < len(holding) else end
        if not low <= reading.celsius <= high:
            out_seconds += max((min(until, end) - began).total_seconds(), 0.0)
    values = [r.celsius for r in during]
    return LegSummary(
        readings=kept,
        minimum=min(values),
        maximum=max(values),
        mean=round(sum(values) / len(values), 2),
        minutes_out_of_range=round(out_seconds / 60, 1),
        readings_out_of_range=sum(1 for r in during if not low <= r.celsius <= high),
    )


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
