"""Donation Identification Numbers: format, check character, accepted forms (R-DIN-1..3)."""

from __future__ import annotations

import inspect
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labtrack.domain.din import ALPHABET, Din, check_character, format_din, parse_din
from labtrack.domain.errors import InvalidDin

DIN_CHARACTERS = ALPHABET[:36]  # 0-9 and A-Z; '*' only ever appears as a check character

facilities = st.from_regex(r"[A-NP-Z][0-9]{4}", fullmatch=True)
years = st.integers(min_value=2000, max_value=2099)
sequences = st.integers(min_value=1, max_value=999_999)
dins = st.builds(format_din, facilities, years, sequences)


def test_r_din_1_format_is_facility_year_sequence():
    din = format_din("A9999", 2026, 123)
    assert din.value == "A999926000123"
    assert len(din.value) == 13
    assert str(din) == "A999926000123"


def test_r_din_1_is_built_only_from_facility_year_and_sequence():
    # No parameter through which a patient's name or MRN could reach the DIN (21 CFR 1271.290).
    assert list(inspect.signature(format_din).parameters) == ["facility", "year", "sequence"]


@pytest.mark.parametrize(
    ("facility", "year", "sequence"),
    [("A9999", 2026, 0), ("A9999", 2026, 1_000_000), ("O1234", 2026, 1), ("A999", 2026, 1), ("a9999", 2026, 1)],
)
def test_r_din_1_refuses_bad_facility_or_exhausted_sequence(facility, year, sequence):
    with pytest.raises(ValueError):  # noqa: PT011 - the message is not part of the contract
        format_din(facility, year, sequence)


@given(facility=facilities, year=years, sequence=sequences)
@settings(max_examples=100)
def test_r_din_1_every_din_is_thirteen_characters_in_order(facility, year, sequence):
    din = format_din(facility, year, sequence)
    assert re.fullmatch(r"[A-NP-Z][0-9]{4}[0-9]{2}[0-9]{6}", din.value)
    assert din.value == facility + f"{year % 100:02d}" + f"{sequence:06d}"


@pytest.mark.parametrize(
    ("value", "check"),
    [
        ("G123498654321", "H"),  # the standard's worked example (R-DIN-2; the UK transfusion guidelines)
        ("A999921123456", "3"),
    ],
)
def test_r_din_2_check_character_matches_standard_vectors(value, check):
    assert check_character(value) == check


def test_r_din_2_check_character_outside_alphabet_is_invalid_din():
    with pytest.raises(InvalidDin):
        check_character("a999926000123")


@given(din=dins, position=st.integers(min_value=0, max_value=12), replacement=st.sampled_from(DIN_CHARACTERS))
@settings(max_examples=200)
def test_r_din_2_any_single_substitution_changes_the_check_character(din, position, replacement):
    value = din.value
    if value[position] == replacement:
        replacement = DIN_CHARACTERS[(DIN_CHARACTERS.index(replacement) + 1) % len(DIN_CHARACTERS)]
    changed = value[:position] + replacement + value[position + 1 :]
    assert check_character(changed) != check_character(value)


@given(din=dins, position=st.integers(min_value=0, max_value=11))
@settings(max_examples=200)
def test_r_din_2_any_adjacent_transposition_changes_the_check_character(din, position):
    value = din.value
    swapped = value[:position] + value[position + 1] + value[position] + value[position + 2 :]
    if swapped != value:  # transposing two equal characters is no error at all
        assert check_character(swapped) != check_character(value)


def test_r_din_2_display_form():
    din = format_din("A9999", 2026, 123)
    assert din.display == "A9999 26 000123 P"  # the requirements' example
    assert din.check == "P"


@given(din=dins)
@settings(max_examples=50)
def test_r_din_2_display_form_groups_facility_year_sequence_check(din):
    facility, year, sequence, check = din.display.split(" ")
    assert (facility, year, sequence) == (din.value[:5], din.value[5:7], din.value[7:])
    assert check == check_character(din.value)


def _accepted_forms(din: Din) -> list[str]:
    v, c = din.value, din.check
    return [
        v,
        v.lower(),
        f"{v[:5]} {v[5:7]} {v[7:]}",
        din.display,
        din.display.lower(),
        v + c,
        f"  {v}{c}\n",
        din.barcode_data,
        f"={v}{c}7",  # a scanner's flags are any two characters
    ]


@given(din=dins)
@settings(max_examples=100)
def test_r_din_3_every_accepted_form_parses_to_the_same_din(din):
    for form in _accepted_forms(din):
        assert parse_din(form) == din, form


def test_r_din_3_barcode_data_structure():
    din = format_din("A9999", 2026, 123)
    assert din.barcode_data == "=A99992600012300"
    assert parse_din("=A99992600012300") == din


@given(din=dins, wrong=st.sampled_from(ALPHABET))
@settings(max_examples=100)
def test_r_din_3_wrong_check_character_is_invalid_din(din, wrong):
    if wrong == din.check:
        wrong = ALPHABET[(ALPHABET.index(wrong) + 1) % len(ALPHABET)]
    for form in (din.value + wrong, f"{din.value[:5]} {din.value[5:7]} {din.value[7:]} {wrong}"):
        with pytest.raises(InvalidDin) as refused:
            parse_din(form)
        assert refused.value.status == 422
        assert refused.value.code == "invalid_din"


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "hello",
        "A99992600012",  # 12 characters
        "A999926000123PP",  # 15 characters
        "=A999926000123",  # barcode without its flags
        "=A9999260001230",  # one flag short
        "A9999X6000123",  # letter in the year
        "A999926O00123",  # letter O in the sequence
        "A9999-26-000123",
        "A999926000123?",  # not an ISBT 128 check character
        "9999260001233",  # a scan that lost the facility's letter and caught the check character
        "O999926000123",  # facility numbers never start with O (read as zero)
        None,
        1234567890123,
    ],
)
def test_r_din_3_garbage_is_invalid_din(raw):
    with pytest.raises(InvalidDin):
        parse_din(raw)


@given(raw=st.text(max_size=40))
@settings(max_examples=300)
def test_r_din_3_parse_din_raises_nothing_but_invalid_din(raw):
    try:
        din = parse_din(raw)
    except InvalidDin:
        return
    assert len(din.value) == 13


@given(din=dins, noise=st.text(alphabet=" \t", min_size=1, max_size=3))
@settings(max_examples=100)
def test_r_din_3_mangled_scans_of_a_real_din(din, noise):
    assert parse_din(noise.join(din.value)) == din  # spaces anywhere are ignored
    for raw in (din.value[:-1], din.value * 2, "=" + din.value + noise, din.value[1:] + din.check):
        with pytest.raises(InvalidDin):
            parse_din(raw)
