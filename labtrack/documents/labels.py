"""Container labels, 4 × 2 inches (requirements §8; 21 CFR 1271.90 "FOR AUTOLOGOUS USE ONLY").

The DIN is printed eye-readable with its check character boxed, as a Code 128 of
the ISBT 128 DIN data structure (``=`` + DIN + flags ``00``) and as a DataMatrix of
the same data. ppf-datamatrix draws the DataMatrix: reportlab's own encoder gets
``=`` wrong (requirements §8, measured).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from ppf.datamatrix import DataMatrix
from reportlab.graphics.barcode.code128 import Code128
from reportlab.lib.units import inch
from reportlab.pdfgen.canvas import Canvas

from labtrack.documents import fonts

WIDTH, HEIGHT = 4 * inch, 2 * inch
MARGIN = 0.12 * inch


@dataclass(frozen=True)
class LabelView:
    kind: str  # "product" (released) or "collection" (at registration, no product data)
    din: str
    din_body: str  # e.g. "A9999 26 000123"
    check_character: str
    barcode_data: str  # "=" + DIN + "00"
    patient_name: str
    birth_date: str
    facility: str
    clinic: str
    tissue: str
    product: str | None = None
    expires: str | None = None
    storage: str | None = None
    conditional: bool = False

    # The printed lines, shared by the PDF and the ZPL renderers (labtrack/documents/zpl.py).
    @property
    def heading(self) -> str:
        return f"FIN {self.facility} · {self.clinic}"

    @property
    def headline(self) -> str:
        return self.product or f"{self.tissue} — COLLECTION"

    @property
    def patient_line(self) -> str:
        return f"Patient: {self.patient_name}   DOB {self.birth_date}"

    @property
    def product_line(self) -> str | None:
        return f"EXP {self.expires}   Store {self.storage}" if self.product else None

    @property
    def conditional_line(self) -> str | None:
        return "CONDITIONAL RELEASE — STERILITY PENDING" if self.conditional else None


AUTOLOGOUS = "FOR AUTOLOGOUS USE ONLY"


def _datamatrix(canvas: Canvas, data: str, x: float, y: float, size: float) -> None:
    matrix = DataMatrix(data).matrix
    cell = size / len(matrix)
    for row_index, row in enumerate(matrix):
        for col_index, dark in enumerate(row):
            if dark:
                canvas.rect(x + col_index * cell, y + size - (row_index + 1) * cell, cell, cell, stroke=0, fill=1)


def render_label(view: LabelView) -> bytes:
    fonts.register()
    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=(WIDTH, HEIGHT))
    canvas.setTitle(f"{view.kind} label {view.din}")
    top = HEIGHT - MARGIN

    canvas.setFont(fonts.BOLD, 8)
    canvas.drawString(MARGIN, top - 8, view.heading)
    canvas.setFont(fonts.BOLD, 14 if view.product else 9)
    canvas.drawRightString(WIDTH - MARGIN, top - 12, view.headline)

    # DIN eye-readable, check character in a box
    canvas.setFont(fonts.BOLD, 13)
    din_y = top - 30
    canvas.drawString(MARGIN, din_y, view.din_body)
    box_x = MARGIN + canvas.stringWidth(view.din_body, fonts.BOLD, 13) + 5
    canvas.rect(box_x - 2, din_y - 3, 14, 16, stroke=1, fill=0)
    canvas.drawString(box_x + 1, din_y, view.check_character)

    barcode = Code128(view.barcode_data, barHeight=0.42 * inch, barWidth=0.011 * inch, quiet=True, lquiet=8, rquiet=8)
    barcode.drawOn(canvas, MARGIN - 8, din_y - 0.5 * inch)
    matrix_size = 0.62 * inch
    _datamatrix(canvas, view.barcode_data, WIDTH - MARGIN - matrix_size, din_y - 0.52 * inch, matrix_size)

    canvas.setFont(fonts.REGULAR, 8)
    line_y = din_y - 0.64 * inch
    canvas.drawString(MARGIN, line_y, view.patient_line)
    line_y -= 10
    if view.product_line:
        canvas.drawString(MARGIN, line_y, view.product_line)
        line_y -= 10
    canvas.setFont(fonts.BOLD, 9)
    canvas.drawString(MARGIN, line_y, AUTOLOGOUS)
    if view.conditional_line:
        canvas.setFont(fonts.BOLD, 7)
        canvas.drawString(MARGIN, MARGIN - 2, view.conditional_line)
    canvas.showPage()
    canvas.save()
    return buffer.getvalue()
