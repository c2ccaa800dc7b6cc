"""Container labels in ZPL II for Zebra-compatible thermal printers (R-ZPL-1).

The same label as the PDF (``labtrack.documents.labels``): the same lines, the DIN
eye-readable with its check character boxed, and the ISBT 128 DIN data structure
(``=`` + DIN + flags) as a Code 128 (``^BC``) and as a Data Matrix ECC 200
(``^BX…,200``). 4 × 2 inches at 203 dpi: 812 × 406 dots.

Field data is escaped twice over. First for the symbol: Code 128 reads ``>`` as the
start of an invocation code, so a literal ``>`` is ``><`` (the data starts with ``>:``,
subset B, which encodes every printable ASCII character); Data Matrix ECC 200 reads its
escape character (set here to ``_``, never ``~``, which would start a ZPL control
command) as the start of a control sequence, so a literal ``_`` is ``__``. Then for ZPL
itself: ``^`` and ``~`` start commands anywhere, so every field is sent with ``^FH`` and
those characters, the hex indicator ``_`` and every byte outside printable ASCII are
written as ``_XX`` (UTF-8 bytes, ``^CI28``). The printer undoes ``^FH`` before the
symbol's own escapes, as the ZPL II manual specifies.
"""

from __future__ import annotations

from labtrack.documents.labels import AUTOLOGOUS, LabelView

DPI = 203
WIDTH, HEIGHT = 4 * DPI, 2 * DPI  # 812 × 406 dots
MARGIN = 24  # 0.12 in, as on the PDF
HEX_INDICATOR = "_"
MATRIX_ESCAPE = "_"  # the default of older firmware, set explicitly: the same on every printer
CODE128_SUBSET_B = ">:"
MATRIX_MODULE = 6  # dots per Data Matrix module: 0.03 in, an 18 × 18 symbol is 0.53 in
MATRIX_SIZE = 18 * MATRIX_MODULE
_PLAIN = frozenset(chr(c) for c in range(0x20, 0x7F)) - {"^", "~", HEX_INDICATOR}


def field_hex(text: str) -> str:
    """``text`` safe inside ``^FH^FD…^FS``: command prefixes, the indicator and non-ASCII as ``_XX``."""
    out = []
    for char in text:
        if char in _PLAIN:
            out.append(char)
        else:
            out.extend(f"{HEX_INDICATOR}{byte:02X}" for byte in char.encode("utf-8"))
    return "".join(out)


def code128_data(data: str) -> str:
    """Code 128 field data: subset B, a literal ``>`` as ``><``."""
    return CODE128_SUBSET_B + data.replace(">", "><")


def datamatrix_data(data: str) -> str:
    """Data Matrix ECC 200 field data: the escape character doubled."""
    return data.replace(MATRIX_ESCAPE, MATRIX_ESCAPE * 2)


def _text(x: int, y: int, height: int, text: str, *, width: int | None = None, right: bool = False) -> str:
    font = f"^A0N,{height},{width or height}"
    block = f"^FB{WIDTH - x - MARGIN},1,0,R,0" if right else ""
    return f"^FO{x},{y}{font}{block}^FH{HEX_INDICATOR}^FD{field_hex(text)}^FS"


def render_zpl(view: LabelView) -> str:
    """One label as a ZPL II format (``^XA`` … ``^XZ``), ASCII only."""
    din_y = 62
    body_width = 15 * 23  # "A9999 26 000123" at 40-dot characters
    symbol_y = din_y + 52
    lines = [
        "^XA",
        "^CI28",  # field bytes (after ^FH) are UTF-8
        f"^PW{WIDTH}",
        f"^LL{HEIGHT}",
        "^LH0,0",
        _text(MARGIN, MARGIN, 20, view.heading),
        _text(MARGIN, MARGIN - 2, 34 if view.product else 22, view.headline, right=True),
        _text(MARGIN, din_y, 40, view.din_body),
        f"^FO{MARGIN + body_width + 8},{din_y - 6}^GB34,50,3^FS",
        _text(MARGIN + body_width + 16, din_y, 40, view.check_character),
        f"^FO{MARGIN},{symbol_y}^BY2,3,80^BCN,80,N,N,N,N^FH{HEX_INDICATOR}^FD{field_hex(code128_data(view.barcode_data))}^FS",
        f"^FO{WIDTH - MARGIN - MATRIX_SIZE},{symbol_y - 6}^BXN,{MATRIX_MODULE},200,0,0,6,{MATRIX_ESCAPE},1"
        f"^FH{HEX_INDICATOR}^FD{field_hex(datamatrix_data(view.barcode_data))}^FS",
    ]
    line_y = symbol_y + 100
    lines.append(_text(MARGIN, line_y, 22, view.patient_line))
    line_y += 28
    if view.product_line:
        lines.append(_text(MARGIN, line_y, 22, view.product_line))
        line_y += 28
    lines.append(_text(MARGIN, line_y, 28, AUTOLOGOUS))
    if view.conditional_line:
        lines.append(_text(MARGIN, HEIGHT - MARGIN - 20, 20, view.conditional_line))
    lines += ["^PQ1", "^XZ"]
    return "\n".join(lines) + "\n"
