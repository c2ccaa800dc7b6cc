"""The shapes of the names people type: usernames, e-mail addresses, clinic and equipment codes,
material kinds and lot numbers.

Each format is written once, here. The API's schemas validate with it (and publish its pattern in
OpenAPI), and the reference services check it again for every other way in (the CLI, the web forms,
the demo loader), so no entry point stores a name the others would refuse.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from labtrack.domain.errors import ValidationFailed


@dataclass(frozen=True)
class Format:
    """A named text format: its pattern (anchored, in a form both Python and JSON Schema read) and the
    words said when text does not match."""

    pattern: str
    message: str

    def matches(self, text: str) -> bool:
        return re.fullmatch(self.pattern, text) is not None

    def check(self, field: str, text: str) -> str:
        """``text`` if it has this format, else refused with the format's words under ``field``."""
        if not isinstance(text, str) or not self.matches(text):
            raise ValidationFailed({field: [self.message]})
        return text


USERNAME = Format(
    r"^[a-z0-9][a-z0-9._-]{1,63}$",
    "2 to 64 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit",
)
CLINIC_CODE = Format(r"^[A-Za-z0-9-]{2,16}$", "2 to 16 letters, digits or '-'")
EQUIPMENT_CODE = Format(r"^[A-Za-z0-9._-]{1,64}$", "1 to 64 letters, digits, '.', '_' or '-'")
KIND = Format(r"^[a-z][a-z0-9_]{1,63}$", "lower-case letters, digits and _ (e.g. collagenase)")
# A lot number is the supplier's, printed on the vial: any printable text on one line, up to 64 characters.
LOT_NUMBER = Format(r"^[^\u0000-\u001f\u007f-\u009f]{1,64}$", "1 to 64 characters on one line, no control characters")
# An address a mail server accepts: a dot-atom local part, and a domain of at least two labels.
EMAIL = Format(
    r"^(?=.{3,254}$)[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$",
    "must be an e-mail address such as name@example.org",
)
