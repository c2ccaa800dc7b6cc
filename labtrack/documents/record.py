"""The batch record (requirements §8): everything QA sees, on paper, for an inspector.

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
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import KeepTogether, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from labtrack.documents import fonts
from labtrack.documents.curve import drawing
from labtrack.glossary import moment, words


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
    stages: list[Any] = field(default_factory=list)  # labtrack.domain.stages.Stage: the stepper
    sign_off: list[tuple[str, str]] = field(default_factory=list)  # the release or rejection signature
    temperatures: list[Any] = field(default_factory=list)  # services.temperatures.LegView, R-TMP-1
    zone: str = "UTC"  # the lab's time zone (LABTRACK_TIMEZONE), for the times printed here


def page_styles() -> dict[str, ParagraphStyle]:
    """The paragraph styles of the printed documents, in the bundled fonts."""
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
    """R-SIG-2: printed name, username, date and time (to the second, zone named), meaning."""
    text = signature.get("text") or (
        f"{signature['printed_name']} ({signature['username']}), {signature['signed_at']}, "
        f"meaning: {signature['meaning']}"
    )
    said = signature.get("what", "entry")
    what = f"{said[:1].upper()}{said[1:]} (entry {signature.get('seq', '—')})"
    return f"{what}: signed by {text}; record {signature['record_hash'][:16]}…" + covers_text(signature)


def covers_text(signature: dict[str, Any]) -> str:
    """A signature over several QC results names each of them and its record (R-SIG-3)."""
    covers = signature.get("covers") or []
    if not covers:
        return ""
    listed = "; ".join(f"{words(c['test'])} (record {c['record_hash'][:12]}…)" for c in covers)
    return f"; covers {len(covers)} results: {listed}"


SUPERSCRIPTS = {ord(c): str(i) for i, c in enumerate("⁰¹²³⁴⁵⁶⁷⁸⁹")}


def markup(text: Any) -> str:
    """Text for a Paragraph: escaped, powers of ten as superscripts (the font has no ⁷)."""
    escaped = escape(str(text))
    out, run = [], ""
    for char in escaped + "\0":
        if ord(char) in SUPERSCRIPTS or char == "⁻":
            run += "-" if char == "⁻" else SUPERSCRIPTS[ord(char)]
            continue
        if run:
            out.append(f"<super>{run}</super>")
            run = ""
        out.append(char)
    return "".join(out[:-1])


def _details(event: dict[str, Any]) -> str:
    lines = [f"<b>{markup(label)}</b> {markup(value)}" for label, value in event.get("details", [])]
    lines += [f"<b>{markup(note)}</b>" for note in event.get("corrections", [])]
    return "<br/>".join(lines) or "—"


def _stepper(stages: list[Any], width: float, styles: dict[str, ParagraphStyle]) -> Table:
    """Harvest → administration, the done stages ticked, the current one (or where it stopped) marked."""
    marks = {"done": "done", "current": "now", "stopped": "stopped", "todo": ""}
    cells = [Paragraph(f"<b>{escape(st.name)}</b><br/>{marks[st.state]}", styles["small"]) for st in stages]
    table = Table([cells], colWidths=[width / max(len(stages), 1)] * len(stages))
    shades = {
        "done": colors.Color(0.85, 0.95, 0.87),
        "current": colors.Color(0.8, 0.88, 0.97),
        "stopped": colors.Color(0.98, 0.85, 0.84),
        "todo": colors.white,
    }
    style = [("GRID", (0, 0), (-1, -1), 0.3, colors.grey), ("VALIGN", (0, 0), (-1, -1), "TOP")]
    style += [("BACKGROUND", (i, 0), (i, 0), shades[st.state]) for i, st in enumerate(stages)]
    table.setStyle(TableStyle(style))
    return table


def _heading(din_display: str, styles: dict[str, ParagraphStyle]) -> Table:
    """ "Batch record — DIN A9999 26 000001 [8]": the check character boxed, as on the label."""
    body, check = din_display[:-2], din_display[-1:]
    text = f"Batch record — DIN {body}"
    width = pdfmetrics.stringWidth(text, fonts.BOLD, styles["h1"].fontSize) + 6
    table = Table(
        [[Paragraph(escape(text), styles["h1"]), Paragraph(escape(check), styles["h1"])]],
        colWidths=[width, 7 * mm],
        hAlign="LEFT",
    )
    table.setStyle(
        TableStyle(
            [
                ("BOX", (1, 0), (1, 0), 1.2, colors.black),
                ("ALIGN", (1, 0), (1, 0), "CENTER"),
                ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
                ("LEFTPADDING", (0, 0), (0, 0), 0),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 3),
            ]
        )
    )
    return table


def _sign_off(view: RecordView, width: float, styles: dict[str, ParagraphStyle]) -> list[Any]:
    """The reviewer's block: the release or rejection as signed, then lines to sign the printed review."""
    rows = [[label, value] for label, value in view.sign_off] or [["Release", "not yet released or rejected"]]
    rows += [["Reviewed by (printed name)", ""], ["Signature", ""], ["Date and time", ""]]
    table = grid_table([["Reviewer sign-off", ""], *rows], [50 * mm, width - 50 * mm], styles)
    return [Paragraph("Reviewer sign-off", styles["h2"]), table]


def grid_table(rows: list[list[Any]], widths: list[float], styles: dict[str, ParagraphStyle]) -> Table:
    """A ruled table of the printed documents, its first row the header (repeated on each page)."""

    def cell(value: Any, header: bool) -> Paragraph:
        if isinstance(value, Paragraph):
            return value
        return Paragraph(markup(value), styles["cell_bold" if header else "base"])

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
                self.drawString(MARGIN, 10 * mm, f"Batch record {din_display}")
                self.drawRightString(width - MARGIN, 10 * mm, f"page {self._pageNumber} of {total}")
                super().showPage()
            super().save()

    return NumberedCanvas


MARGIN = 15 * mm
TEXT_WIDTH = A4[0] - 2 * MARGIN


def a4_document(buffer: io.BytesIO, title: str) -> SimpleDocTemplate:
    """The page set-up of every LabTrack PDF: A4, 15 mm margins, room at the foot for a page line."""
    return SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=MARGIN,
        rightMargin=MARGIN,
        topMargin=MARGIN,
        bottomMargin=MARGIN + 3 * mm,
        title=title,
        author="LabTrack",
    )


def render_record(view: RecordView) -> bytes:
    styles = page_styles()
    buffer = io.BytesIO()
    document = a4_document(buffer, f"Batch record {view.din}")
    width = TEXT_WIDTH
    story: list[Any] = [
        _heading(view.din_display, styles),
        Paragraph(escape(f"Generated {view.generated}. FOR AUTOLOGOUS USE ONLY."), styles["small"]),
        Spacer(0, 4),
        *([_stepper(view.stages, width, styles), Spacer(0, 4)] if view.stages else []),
        grid_table([["Field", "Value"], *[[k, v] for k, v in view.facts]], [45 * mm, width - 45 * mm], styles),
        *_custody(view, width, styles),
        *_temperatures(view, width, styles),
        *_qc_and_deviations(view, width, styles),
        *_signatures_and_timeline(view, width, styles),
        KeepTogether(_sign_off(view, width, styles)),
        KeepTogether(_closing(view, width, styles)),
    ]
    document.build(story, canvasmaker=_numbered_canvas(view.din_display))
    return buffer.getvalue()


def _custody(view: RecordView, width: float, styles: dict[str, ParagraphStyle]) -> list[Any]:
    rows = [
        [c["seq"], c["type"], c["occurred_at"], c["actor"], Paragraph(_details(c), styles["base"])]
        for c in view.custody
    ]
    return [
        Paragraph("Chain of custody", styles["h2"]),
        grid_table(
            [["Entry", "Event", "When", "By", "Details"], *rows]
            if view.custody
            else [["Custody"], ["No custody events."]],
            [10 * mm, 18 * mm, 38 * mm, 40 * mm, width - 106 * mm] if view.custody else [width],
            styles,
        ),
    ]


def _qc_and_deviations(view: RecordView, width: float, styles: dict[str, ParagraphStyle]) -> list[Any]:
    return [
        Paragraph("QC results against the specification", styles["h2"]),
        grid_table(
            [
                ["Test", "Result", "Specification", "Verdict", "Entered", "Verified (signature)"],
                *[[q["test"], q["value"], q["spec"], q["within"], q["entered"], q["verified"]] for q in view.qc],
            ]
            if view.qc
            else [["QC"], ["No QC results recorded."]],
            [25 * mm, 26 * mm, 34 * mm, 18 * mm, 32 * mm, width - 135 * mm] if view.qc else [width],
            styles,
        ),
        Paragraph("Deviations", styles["h2"]),
        grid_table(
            [
                ["No.", "Kind", "Description", "Status", "Disposition"],
                *[[d["id"], d["kind"], d["description"], d["status"], d["disposition"]] for d in view.deviations],
            ]
            if view.deviations
            else [["Deviations"], ["No deviations."]],
            [10 * mm, 28 * mm, 55 * mm, 14 * mm, width - 107 * mm] if view.deviations else [width],
            styles,
        ),
    ]


def _signatures_and_timeline(view: RecordView, width: float, styles: dict[str, ParagraphStyle]) -> list[Any]:
    signatures = [Paragraph(markup(manifestation_text(s)), styles["base"]) for s in view.signatures]
    events = [
        [
            e["seq"],
            e["type"],
            Paragraph(f"{markup(e['occurred_at'])}<br/>{markup(e['recorded_at'])}", styles["base"]),
            e["actor"],
            Paragraph(_details(e), styles["base"]),
        ]
        for e in view.events
    ]
    return [
        Paragraph("Electronic signatures", styles["h2"]),
        *(signatures or [Paragraph("No signatures.", styles["base"])]),
        Paragraph("Event timeline", styles["h2"]),
        grid_table(
            [["Entry", "Event", "Happened / recorded", "By", "Details"], *events],
            [11 * mm, 24 * mm, 36 * mm, 32 * mm, width - 103 * mm],
            styles,
        ),
    ]


def _closing(view: RecordView, width: float, styles: dict[str, ParagraphStyle]) -> list[Any]:
    closing = [
        Paragraph("Audit trail verification", styles["h2"]),
        Paragraph(escape(view.verification), styles["base"]),
    ]
    if view.checkpoint:
        closing.append(
            grid_table([["Checkpoint", ""], *[[k, v] for k, v in view.checkpoint]], [35 * mm, width - 35 * mm], styles)
        )
    return closing


def _temperatures(view: RecordView, width: float, styles: dict[str, ParagraphStyle]) -> list[Any]:
    """Each transport leg's logger summary and curve (R-TMP-1); nothing when the batch has no leg."""
    if not view.temperatures:
        return []
    story: list[Any] = [Paragraph("Transport temperatures", styles["h2"])]
    for leg in view.temperatures:
        log = leg.log
        title = f"Leg {leg.number}: handed off {moment(leg.handed_off_at, view.zone)}"
        title += f", received {moment(leg.received_at, view.zone)}" if leg.received_at else " (not received yet)"
        if log is None:
            story.append(Paragraph(escape(f"{title}. No logger file imported."), styles["base"]))
            continue
        rows = [
            ["Lowest", "Highest", "Mean", f"Outside {log.low_c:g}–{log.high_c:g} °C", "Logger file"],
            [f"{log.min_c:g} °C", f"{log.max_c:g} °C", f"{log.mean_c:g} °C", f"{log.minutes_out_of_range:g} min",
             f"{log.filename} ({log.timezone}), SHA-256 {log.file_sha256[:16]}…, event {log.event_seq}"],
        ]  # fmt: skip
        story += [
            Paragraph(escape(title), styles["cell_bold"]),
            grid_table(rows, [18 * mm, 18 * mm, 18 * mm, 30 * mm, width - 84 * mm], styles),
            drawing(leg.curve),
        ]
    return story
