"""The adverse reaction worksheet (R-ADV-3): what a MedWatch 3500A report needs, gathered on one page.

A worksheet for whoever files the report, not a filing: the sections follow the form's
(patient, event, suspect product, reporter) so each fact is found where the form asks for it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer

from labtrack.documents.record import grid_table, paragraph_styles


@dataclass(frozen=True)
class WorksheetView:
    reaction_id: int
    din_display: str
    sections: list[tuple[str, list[tuple[str, str]]]]  # title, (label, value) rows
    generated: str


def render_worksheet(view: WorksheetView) -> bytes:
    styles = paragraph_styles()
    buffer = io.BytesIO()
    document = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=15 * mm,
        rightMargin=15 * mm,
        topMargin=15 * mm,
        bottomMargin=15 * mm,
        title=f"Adverse reaction {view.reaction_id} — MedWatch 3500A worksheet",
    )
    story = [
        Paragraph(f"Adverse reaction {view.reaction_id} — MedWatch 3500A worksheet", styles["h1"]),
        Paragraph(
            f"Product DIN {view.din_display}. A worksheet for the person filing the report with the FDA "
            "(21 CFR 1271.350(a)); it is not itself a filing.",
            styles["base"],
        ),
    ]
    for title, rows in view.sections:
        story += [Paragraph(title, styles["h2"]), grid_table([["Item", "Value"], *rows], [55 * mm, 125 * mm], styles)]
    story += [Spacer(1, 4 * mm), Paragraph(f"Generated {view.generated}", styles["small"])]
    document.build(story)
    return buffer.getvalue()
