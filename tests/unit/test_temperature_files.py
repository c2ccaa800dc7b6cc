"""R-TMP-1: reading the common temperature-logger layouts, and refusing what cannot be read, by line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from labtrack.domain.temperature import Leg, LegNotCovered, LoggerFileInvalid, Reading, legs, read_file, summarise_leg

BERLIN = ZoneInfo("Europe/Berlin")


def test_r_tmp_1_iso_times_with_a_comma_separator():
    readings = read_file(b"time,temperature\n2026-12-01T10:00:00Z,5.5\n2026-12-01T10:01:00Z,6\n", UTC)
    assert readings == [
        Reading(datetime(2026, 12, 1, 10, 0, tzinfo=UTC), 5.5),
        Reading(datetime(2026, 12, 1, 10, 1, tzinfo=UTC), 6.0),
    ]


def test_r_tmp_1_european_layout_preamble_semicolons_decimal_commas_day_first():
    content = (
        "Logger;EL-USB-1\nSerial;123456\n\nNo.;Date/Time;Temperature (°C);Humidity (%rH)\n"
        "1;01.12.2026 11:00:00;4,5;40\n2;01.12.2026 11:05;-0,5;41\n"
    ).encode("cp1252")
    readings = read_file(content, BERLIN)
    assert [r.celsius for r in readings] == [4.5, -0.5]
    assert readings[0].at == datetime(2026, 12, 1, 10, 0, tzinfo=UTC)  # 11:00 in Berlin (CET)


def test_r_tmp_1_separate_date_and_time_columns_tab_separated():
    content = b"Date\tTime\tCelsius\n2026/12/01\t10:00:00\t3.0\n2026/12/01\t10:10:00\t3.5\n"
    readings = read_file(content, UTC)
    assert readings[1] == Reading(datetime(2026, 12, 1, 10, 10, tzinfo=UTC), 3.5)


def test_r_tmp_1_an_explicit_offset_beats_the_declared_zone_and_readings_come_out_in_order():
    content = b'"Timestamp","Temp"\n"2026-12-01 12:00:00+02:00","5.0"\n"2026-12-01 09:00","7"\n'
    readings = read_file(content, UTC)
    assert [r.at.hour for r in readings] == [9, 10]


def test_r_tmp_1_the_autumn_hour_keeps_readings_in_order_and_the_spring_gap_is_refused():
    autumn = b"time,temp\n2026-10-25 02:30,5\n2026-10-25 02:50,5\n2026-10-25 02:10,5\n"
    readings = read_file(autumn, BERLIN)
    assert readings[-1].at - readings[0].at == timedelta(minutes=40)  # the second 02:10 (CET) after 02:50 (CEST)
    with pytest.raises(LoggerFileInvalid) as refused:
        read_file(b"time,temp\n2026-03-29 01:50,5\n2026-03-29 02:30,5\n", BERLIN)
    assert refused.value.extra["line"] == 3
    assert "does not exist" in refused.value.detail


@pytest.mark.parametrize(
    ("content", "line", "words"),
    [
        (b"", 1, "empty"),
        (b"\n\n  \n", 1, "empty"),
        (b"2026-12-01T10:00Z,5\n2026-12-01T10:01Z,5\n", 1, "no header"),
        (b"time,humidity\n2026-12-01T10:00Z,40\n", 1, "no header"),
        (b"time,temperature\n", 1, "no readings"),
        (b"time,temperature\n2026-12-01T10:00Z,5\nyesterday,5\n", 3, "not a date"),
        (b"time,temperature\n2026-12-01T10:00Z,5\n2026-12-01T10:01Z,5\n2026-12-01T10:02Z,---\n", 4, "not a number"),
        (b"time,temperature\n2026-12-01T10:00Z,nan\n", 2, "not a temperature"),
        (b"time,temperature\n2026-12-01T10:00Z,500\n", 2, "not a temperature"),
        (b"time,temperature\n2026-12-01T10:00Z\n", 2, "columns"),
        (b"time,temperature (\xb0F)\n2026-12-01T10:00Z,41\n", 1, "°F"),
        (b"time,temperature\n12/31/2026 10:00,5\n", 2, "not a date"),  # month first is not guessed
    ],
)
def test_r_tmp_1_bad_files_are_refused_naming_the_line(content, line, words):
    with pytest.raises(LoggerFileInvalid) as refused:
        read_file(content, UTC)
    assert refused.value.extra["line"] == line
    assert refused.value.status == 422
    assert words in refused.value.detail
    assert refused.value.detail.startswith(f"Line {line}: ")


START = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
LEG = Leg(1, 5, START, 6, START + timedelta(hours=2))


def _every_10_minutes(*values: float, first: datetime = START - timedelta(minutes=10)) -> list[Reading]:
    return [Reading(first + timedelta(minutes=10 * i), v) for i, v in enumerate(values)]


def test_r_tmp_1_summary_over_the_leg_counts_minutes_out_of_range_sample_and_hold():
    readings = _every_10_minutes(5, 5, 5, 26, 27, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5)  # 09:50 .. 12:10
    summary = summarise_leg(readings, LEG, 2, 25)
    assert summary.minutes_out_of_range == 20  # 10:20 to 10:40
    assert (summary.minimum, summary.maximum) == (5, 27)
    assert summary.readings_out_of_range == 2
    assert summary.excursion(0)
    assert summary.excursion(19)
    assert not summary.excursion(20)
    assert summary.mean == round((5 * 11 + 26 + 27) / 13, 2)


def test_r_tmp_1_a_reading_before_the_leg_holds_into_it():
    readings = _every_10_minutes(30, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, first=START - timedelta(minutes=5))
    assert summarise_leg(readings, LEG, 2, 25).minutes_out_of_range == 5  # 10:00 to 10:05


@pytest.mark.parametrize(
    ("first", "last"),
    [(START + timedelta(minutes=16), START + timedelta(hours=2)), (START, START + timedelta(minutes=104))],
)
def test_r_tmp_1_readings_must_cover_the_leg_within_15_minutes(first, last):
    readings = [Reading(first, 5), Reading(last, 5)]
    with pytest.raises(LegNotCovered):
        summarise_leg(readings, LEG, 2, 25)
    summarise_leg([Reading(START + timedelta(minutes=15), 5), Reading(START + timedelta(minutes=105), 5)], LEG, 2, 25)


def test_r_tmp_1_legs_are_numbered_by_hand_off_each_ending_at_its_receipt():
    found = legs(
        [(2, "handoff", START), (3, "receipt", START + timedelta(hours=1)), (9, "handoff", START + timedelta(hours=5))]
    )
    assert [(leg.number, leg.handoff_seq, leg.receipt_seq) for leg in found] == [(1, 2, 3), (2, 9, None)]
