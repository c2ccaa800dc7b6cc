"""The batch record (SPEC §8): everything QA sees, on paper, for an inspector.

Every signature prints its manifestation (R-SIG-2); corrected entries are marked
with the original value (R-COR-1); the chain verification result and the latest
checkpoint close the record. Every page carries the DIN and "page x of y".
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import KeepTogether, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from labtrack.documents import fonts
from labtrack.glossary import words


@dataclass(frozen=True)
class RecordView:
    din: str
    din_display: str
    facts: list[tuple[str, str]]  # label, value: product, patient, clinic, status, ...
    events: list[dict[str, Any]]  # seq, type, occurred_at, recorded_at, actor, summary, corrected_by, signature
    qc: list[dict[str, Any]]
    custody: list[dict[str, Any]]
    deviations: list[dict[str, Any]]
    signatures: list[dict[str, Any]]
    verification: str
    checkpoint: list[tuple[str, str]] = field(default_factory=list)
    generated: str = ""


def _styles() -> dict[str, ParagraphStyle]:
    fonts.register()
    base = ParagraphStyle("base", fontName=fonts.REGULAR, fontSize=7.5, leading=9.5)
    return {
        "base": base,
        "small": ParagraphStyle("small", parent=base, fontSize=6.5, leading=8),
        "h1": ParagraphStyle("h1", parent=base, fontName=fonts.BOLD, fontSize=14, leading=18, spaceAfter=4),
        "h2": ParagraphStyle(
            "h2", parent=base, fontName=fonts.BOLD, fontSize=10, leading=13, spaceBefore=8, spaceAfter=3
        ),
        "cell_bold": ParagraphStyle("cell_bold", parent=base, fontName=fonts.BOLD),
    }


def manifestation_text(signature: dict[str, Any]) -> str:
    """R-SIG-2: printed name, username, date and time (UTC), meaning."""
    return (
        f"Signed by {signature['printed_name']} ({signature['username']}) at {signature['signed_at']} — "
        f"meaning: {signature['meaning']}; record {signature['record_hash'][:16]}…"
    ) + covers_text(signature)


def covers_text(signature: dict[str, Any]) -> str:
    """A signature over several QC results names each of them and its record (R-SIG-3)."""
    covers = signature.get("covers") or []
    if not covers:
        return ""
    listed = "; ".join(f"{words(c['test'])} (record {c['record_hash'][:12]}…)" for c in covers)
    return f"; covers {len(covers)} results: {listed}"


def _table(rows: list[list[Any]], widths: list[float], styles: dict[str, ParagraphStyle]) -> Table:
    def cell(value: Any, header: bool) -> Paragraph:
        return Paragraph(escape(str(value)), styles["cell_bold" if header else "base"])

    data = [[cell(v, index == 0) for v in row] for index, row in enumerate(rows)]
    table = Table(data, colWidths=widths, repeatRows=1)
    table.setStyle(
        TableStyle(
            [
                ("GRID", (0, 0), (-1, -1), 0.3, colors.grey),
                ("BACKGROUND", (0, 0), (-1, 0), colors.Color(0.9, 0.9, 0.9)),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LEFTPADDING", (0, 0), (-1, -1), 2),
                ("RIGHTPADDING", (0, 0), (-1, -1), 2),
            ]
        )
    )
    return table


def _numbered_canvas(din_display: str) -> type[Canvas]:
    """A canvas that writes "page x of y" once the page count is known."""

    class NumberedCanvas(Canvas):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._pages: list[dict[str, Any]] = []

        def showPage(self) -> None:
            self._pages.append(dict(self.__dict__))
            self._startPage()

        def save(self) -> None:
            total = len(self._pages)
            for state in self._pages:
                self.__dict__.update(state)
                self.setFont(fonts.REGULAR, 7)
                width, _height = self._pagesize
                self.drawString(15 * mm, 10 * mm, f"Batch record {din_display}")
                self.drawRightString(width - 15 * mm, 10 * mm, f"page {self._pageNumber} of {total}")
                super().showPage()
            super().save()

    return NumberedCanvas


def render_record(view: RecordView) -> bytes:
    styles = _styles()
    buffer = io.BytesIO()
    document = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=15 * mm,
        rightMargin=15 * mm,
        topMargin=15 * mm,
        bottomMargin=18 * mm,
        title=f"Batch record {view.din}",
        author="LabTrack",
    )
    width = A4[0] - 30 * mm
    story: list[Any] = [
        Paragraph(escape(f"Batch record — DIN {view.din_display}"), styles["h1"]),
        Paragraph(escape(f"Generated {view.generated}. FOR AUTOLOGOUS USE ONLY."), styles["small"]),
        Spacer(0, 4),
        _table([["Field", "Value"], *[[k, v] for k, v in view.facts]], [45 * mm, width - 45 * mm], styles),
        Paragraph("Chain of custody", styles["h2"]),
        _table(
            [
                ["Seq", "Event", "When (UTC)", "By", "Details"],
                *[[c["seq"], c["type"], c["occurred_at"], c["actor"], c["details"]] for c in view.custody],
            ]
            if view.custody
            else [["Custody"], ["No custody events."]],
            [10 * mm, 18 * mm, 38 * mm, 40 * mm, width - 106 * mm] if view.custody else [width],
            styles,
        ),
        Paragraph("QC results against the specification", styles["h2"]),
        _table(
            [
                ["Test", "Value", "Specification", "Within", "Entered by", "Verified (signature)"],
                *[[q["test"], q["value"], q["spec"], q["within"], q["entered"], q["verified"]] for q in view.qc],
            ]
            if view.qc
            else [["QC"], ["No QC results recorded."]],
            [25 * mm, 28 * mm, 40 * mm, 12 * mm, 28 * mm, width - 133 * mm] if view.qc else [width],
            styles,
        ),
        Paragraph("Deviations", styles["h2"]),
        _table(
            [
                ["Id", "Kind", "Description", "Status", "Disposition"],
                *[[d["id"], d["kind"], d["description"], d["status"], d["disposition"]] for d in view.deviations],
            ]
            if view.deviations
            else [["Deviations"], ["No deviations."]],
            [10 * mm, 28 * mm, 55 * mm, 14 * mm, width - 107 * mm] if view.deviations else [width],
            styles,
        ),
        Paragraph("Electronic signatures", styles["h2"]),
    ]
    story.extend(Paragraph(escape(manifestation_text(s)), styles["base"]) for s in view.signatures)
    if not view.signatures:
        story.append(Paragraph("No signatures.", styles["base"]))
    story.append(Paragraph("Event timeline", styles["h2"]))
    story.append(
        _table(
            [
                ["Seq", "Type", "Occurred / recorded (UTC)", "By", "Data"],
                *[
                    [e["seq"], e["type"], f"{e['occurred_at']}\n{e['recorded_at']}", e["actor"], e["summary"]]
                    for e in view.events
                ],
            ],
            [10 * mm, 24 * mm, 36 * mm, 34 * mm, width - 104 * mm],
            styles,
        )
    )
    closing = [
        Paragraph("Audit trail verification", styles["h2"]),
        Paragraph(escape(view.verification), styles["base"]),
    ]
    if view.checkpoint:
        closing.append(
            _table([["Checkpoint", ""], *[[k, v] for k, v in view.checkpoint]], [35 * mm, width - 35 * mm], styles)
        )
    story.append(KeepTogether(closing))
    document.build(story, canvasmaker=_numbered_canvas(view.din_display))
    return buffer.getvalue()
