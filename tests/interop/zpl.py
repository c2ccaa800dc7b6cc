"""A small ZPL II reader for the tests: the label's fields, with ^FH hex and the symbols' escapes undone."""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass
class Field:
    commands: dict[str, str] = field(default_factory=dict)  # "BC" -> "N,80,N,N,N,N"
    raw: str = ""  # ^FD data as sent
    data: str = ""  # after ^FH and the symbol's own escapes

    @property
    def kind(self) -> str:
        return "BC" if "BC" in self.commands else "BX" if "BX" in self.commands else "text"


@dataclass
class Label:
    settings: dict[str, str]
    fields: list[Field]

    def texts(self) -> list[str]:
        return [f.data for f in self.fields if f.kind == "text"]

    def symbol(self, kind: str) -> Field:
        (found,) = [f for f in self.fields if f.kind == kind]
        return found


def _unhex(text: str, indicator: str) -> str:
    pattern = re.compile(re.escape(indicator) + r"([0-9A-Fa-f]{2})")
    raw = bytearray()
    position = 0
    for match in pattern.finditer(text):
        raw += text[position : match.start()].encode("ascii")
        raw.append(int(match.group(1), 16))
        position = match.end()
    raw += text[position:].encode("ascii")
    return raw.decode("utf-8")


def parse(zpl: str) -> Label:
    """Split on ^ (no raw ^ or ~ may appear in field data), collect each ^FO…^FS field."""
    assert zpl.isascii(), "ZPL is sent as ASCII; other bytes travel as ^FH hex"
    body = zpl.strip()
    assert body.startswith("^XA")
    assert body.endswith("^XZ")
    assert "~" not in body, "a raw ~ would start a control command"
    settings: dict[str, str] = {}
    fields: list[Field] = []
    current: Field | None = None
    for chunk in body.split("^")[1:]:
        chunk = chunk.rstrip("\n")
        name, rest = chunk[:2], chunk[2:]
        if name == "FO":
            current = Field()
            fields.append(current)
        if current is None:
            settings[name] = rest
            continue
        if name == "FD":
            current.raw = rest
            text = _unhex(rest, current.commands.get("FH") or "_") if "FH" in current.commands else rest
            if current.kind == "BC":
                assert text.startswith(">:"), "Code 128 data starts in subset B"
                text = text[2:].replace("><", ">")
            elif current.kind == "BX":
                escape = current.commands["BX"].split(",")[6]
                text = text.replace(escape * 2, escape)
            current.data = text
        elif name == "FS":
            current = None
        else:
            current.commands[name] = rest
    return Label(settings, fields)
