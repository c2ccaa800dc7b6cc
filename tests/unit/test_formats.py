"""The formats of typed names (labtrack.domain.formats), as every entry point checks them."""

from __future__ import annotations

import re

import pytest

from labtrack.domain import formats
from labtrack.domain.errors import ValidationFailed

CASES = {
    formats.USERNAME: (
        ["qa", "tech2", "h.okoro", "clinic_b", "a-b", "x" * 64],
        ["q", "Tech", "nina smith", "-tech", ".tech", "x" * 65, "ni\nna", "tech\n", "", "tëch"],
    ),
    formats.CLINIC_CODE: (
        ["C1", "RHC", "north-2", "A" * 16],
        ["C", "C 1", "C_1", "A" * 17, "C1\n", ""],
    ),
    formats.EQUIPMENT_CODE: (
        ["C", "CEN-1", "inc.2", "EQ_3", "E" * 64],
        ["CEN 1", "CEN/1", "E" * 65, "CEN-1\n", ""],
    ),
    formats.KIND: (
        ["collagenase", "separation_kit", "bd2"],
        ["c", "Collagenase", "2kit", "separation-kit", "kit\n", "k" * 65],
    ),
    formats.LOT_NUMBER: (
        ["CG-1", "Lot 2026/07 A", "L" * 64, "Ä-1"],
        ["", "L" * 65, "CG\n1", "CG\t1", "CG\x001", "CG-1\n"],
    ),
    formats.EMAIL: (
        ["qa@lab.example", "clara.c+labtrack@clinic.example.org", "o'neil@x.io"],
        ["nina@", "@lab.example", "nina@lab", "nina lab@x.io", "nina@@x.io", "nina@x.io\n", "a@b.c", "nina@-x.io"],
    ),
}


@pytest.mark.parametrize("format", list(CASES), ids=lambda f: f.message[:30])
def test_a_format_accepts_its_names_and_refuses_the_rest(format):
    good, bad = CASES[format]
    assert [text for text in good if not format.matches(text)] == []
    assert [text for text in bad if format.matches(text)] == []


def test_check_refuses_with_the_formats_words_under_the_field():
    assert formats.USERNAME.check("username", "nina") == "nina"
    with pytest.raises(ValidationFailed) as refused:
        formats.USERNAME.check("username", "Nina Smith")
    assert refused.value.errors == {"username": [formats.USERNAME.message]}
    assert refused.value.status == 422


def test_patterns_are_anchored_for_json_schema_too():
    """OpenAPI publishes the pattern: a JSON Schema pattern is unanchored, so each is anchored itself."""
    for format in CASES:
        assert format.pattern.startswith("^")
        assert format.pattern.endswith("$")
        re.compile(format.pattern)
