"""The adverse reaction worksheet (R-ADV-3): what a MedWatch 3500A report needs, gathered on one page.

A worksheet for whoever files the report, not a filing: the sections follow the form's
(patient, event, suspect product, reporter) so each fact is found where the form asks for it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, Spacer

from labtrack.documents.record import TEXT_WIDTH, a4_document, grid_table, page_styles


@dataclass(frozen=True)
class WorksheetView:
    reaction_id: int
    din_display: str
    sections: list[tuple[str, list[tuple[str, str]]]]  # title, (label, value) rows
    generated: str


def render_worksheet(view: WorksheetView) -> bytes:
    styles = page_styles()
    buffer = io.BytesIO()
    document = a4_document(buffer, f"Adverse reaction {view.reaction_id} — MedWatch 3500A worksheet")
    story = [
        Paragraph(f"Adverse reaction {view.reaction_id} — MedWatch 3500A worksheet", styles["h1"]),
        Paragraph(
            f"Product DIN {view.din_display}. A worksheet for the person filing the report with the FDA "
            "(21 CFR 1271.350(a)); it is not itself a filing.",
            styles["base"],
        ),
    ]
    for title, rows in view.sections:
        rows_table = grid_table([["Item", "Value"], *rows], [55 * mm, TEXT_WIDTH - 55 * mm], styles)
        story += [Paragraph(title, styles["h2"]), rows_table]
    story += [Spacer(1, 4 * mm), Paragraph(f"Generated {view.generated}", styles["small"])]
    document.build(story)
    return buffer.getvalue()
