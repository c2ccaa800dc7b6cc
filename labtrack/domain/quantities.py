"""Numbers as people read them: a measured value with its unit and a sensible precision, and a
specification's limit with its units ("≥ 1 × 10⁷ cells").

The domain's own sentences (a release blocker naming the value and the limit it misses) and the
glossary's words for pages, PDFs and e-mails format numbers here, one way. Text is left as it is:
saying codes in words ("no_growth" → "no growth") is the glossary's part.
"""

from __future__ import annotations

import math
import re
from typing import Any

SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")

# A compared number without a unit of its own ("≥ 1e+07"; not "≤ 5 EU/kg", which says its unit already).
LIMIT = re.compile(
    r"(?P<op>[≥≤<>=]+)\s*(?P<num>[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?)(?!\d|\.\d|e[-+]?\d|\s*(?!and\b|or\b)[A-Za-z%µ])",
    re.IGNORECASE,
)


def is_number(value: Any) -> bool:
    """Whether ``value`` is a measured number (a bool is not one)."""
    return not isinstance(value, bool) and isinstance(value, int | float)


def scientific(value: float, digits: int = 2) -> str:
    """36000000 → "3.6 × 10⁷" (two significant digits by default), 450 → "450"."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    exponent = math.floor(math.log10(abs(value)))
    if -2 <= exponent < 4:
        return number(value)
    mantissa = round(value / 10**exponent, digits - 1)
    if abs(mantissa) >= 10:
        mantissa, exponent = mantissa / 10, exponent + 1
    text = f"{mantissa:.{digits - 1}f}".rstrip("0").rstrip(".")
    return f"{text} × 10{str(exponent).translate(SUPERSCRIPT)}"


def number(value: int | float) -> str:
    """A measured number without float noise: 6.0 → "6", 37.25 → "37.25", 0.123456 → "0.1235"."""
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}".replace(",", " ") if abs(value) >= 10_000 else str(int(value))
    return f"{value:.4g}" if abs(value) < 1000 else f"{value:.0f}"


def quantity(value: Any, unit: str | None = None) -> str:
    """A value with its unit: cell counts in powers of ten (3.6 × 10⁷ cells), percentages as 85 %; a text
    result as it is."""
    if not is_number(value):
        return "" if value is None else str(value)
    if unit == "cells":
        return f"{scientific(float(value))} cells"
    text = scientific(float(value)) if abs(value) >= 10_000 else number(value)
    return f"{text} {unit}" if unit else text


def limit(text: str | None, unit: str | None = None) -> str:
    """A specification limit as stored ("≥ 1e+07") with its numbers in units ("≥ 1 × 10⁷ cells"); "—" for none."""
    if not text:
        return "—"
    return LIMIT.sub(lambda m: f"{m['op']} {quantity(float(m['num']), unit)}", text)
