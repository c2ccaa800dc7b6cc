"""Donation Identification Numbers (R-DIN-1..3).

A DIN is the ISBT 128-style identifier of one autologous product: facility
identification number (5) + two-digit year + six-digit sequence. It carries no
patient data (21 CFR 1271.290). The check character is ISO/IEC 7064 MOD 37-2.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from labtrack.domain.errors import InvalidDin

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ*"
FIN_PATTERN = re.compile(r"^[A-NP-Z][0-9]{4}$")
DIN_PATTERN = re.compile(r"^[A-NP-Z][0-9]{4}[0-9]{2}[0-9]{6}$")  # FIN (as above) + year + sequence
MAX_SEQUENCE = 999_999
BARCODE_FLAGS = "00"


def check_character(value: str) -> str:
    """ISO/IEC 7064 MOD 37-2 check character over ``value`` (R-DIN-2)."""
    product = 0
    for char in value:
        index = ALPHABET.find(char)
        if index < 0:
            raise InvalidDin(f"{char!r} is not an ISBT 128 character.")
        product = ((product + index) * 2) % 37
    return ALPHABET[(38 - product) % 37]


@dataclass(frozen=True)
class Din:
    value: str  # the 13 characters

    @property
    def check(self) -> str:
        return check_character(self.value)

    @property
    def display(self) -> str:
        """Eye-readable form, e.g. ``A9999 26 000123 P``."""
        v = self.value
        return f"{v[:5]} {v[5:7]} {v[7:]} {self.check}"

    @property
    def barcode_data(self) -> str:
        """ISBT 128 DIN data structure: ``=`` + DIN + flag characters."""
        return f"={self.value}{BARCODE_FLAGS}"

    def __str__(self) -> str:
        return self.value


def format_din(facility: str, year: int, sequence: int) -> Din:
    """Compose a DIN (R-DIN-1); ``year`` is the full year, e.g. 2026."""
    if not FIN_PATTERN.match(facility):
        raise ValueError(f"facility identification number {facility!r} is not valid")
    if not 1 <= sequence <= MAX_SEQUENCE:
        raise ValueError("DIN sequence exhausted for this year")
    return Din(f"{facility}{year % 100:02d}{sequence:06d}")


def parse_din(raw: str) -> Din:
    """Accept every R-DIN-3 form and return the 13-character DIN.

    Forms: the 13 characters; with spaces; with a trailing check character (which
    must be right); the barcode data structure ``=`` + 13 characters + 2 flags.
    """
    if not isinstance(raw, str):
        raise InvalidDin("A DIN must be text.")
    text = re.sub(r"\s+", "", raw).upper()
    if text.startswith("="):
        if len(text) != 16:
            raise InvalidDin(f"{raw!r} is not an ISBT 128 DIN data structure (= + 13 + 2 flags).")
        text = text[1:14]
    check = None
    if len(text) == 14:
        text, check = text[:13], text[13]
    if not DIN_PATTERN.match(text):
        raise InvalidDin(f"{raw!r} is not a DIN (13 characters: facility, year, sequence).")
    din = Din(text)
    if check is not None and check != din.check:
        raise InvalidDin(f"Check character {check!r} is wrong for DIN {text}.")
    return din
