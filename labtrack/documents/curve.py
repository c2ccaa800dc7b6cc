"""A leg's temperature curve, small enough for the batch card and the record (R-TMP-1).

One geometry (``Curve``) is drawn twice: as inline SVG for the pages (no script, so the
Content-Security-Policy needs nothing new) and with reportlab for the record PDF. The
transport range is a band; readings outside it are drawn in the alarm colour.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 320, 120
SHOWN_HEIGHT = 160  # px on the pages
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 34, 8, 8, 18
ALARM = "#b3261e"
LINE = "#1f4e79"
BAND = "#e3f1e6"


@dataclass(frozen=True)
class Curve:
    points: list[tuple[float, float, bool]]  # x, y in the drawing, out of range
    band: tuple[float, float]  # y of the range's high and low edges
    y_labels: list[tuple[float, str]]
    x_labels: list[tuple[float, str]]
    leg_span: tuple[float, float]  # x of hand-off and receipt


def curve(readings: list[list[float]], low: float, high: float, leg_seconds: float) -> Curve:
    """``readings`` as [seconds after hand-off, °C]; the leg runs from 0 to ``leg_seconds``."""
    times = [t for t, _ in readings] + [0.0, leg_seconds]
    values = [c for _, c in readings] + [low, high]
    t0, t1 = min(times), max(times)
    v0, v1 = min(values) - 1, max(values) + 1
    plot_w, plot_h = WIDTH - PAD_LEFT - PAD_RIGHT, HEIGHT - PAD_TOP - PAD_BOTTOM

    def x(t: float) -> float:
        return round(PAD_LEFT + (t - t0) / ((t1 - t0) or 1) * plot_w, 1)

    def y(v: float) -> float:
        return round(PAD_TOP + (v1 - v) / ((v1 - v0) or 1) * plot_h, 1)

    hours = leg_seconds / 3600
    return Curve(
        points=[(x(t), y(c), not low <= c <= high) for t, c in readings],
        band=(y(high), y(low)),
        y_labels=[(y(v), f"{v:g} °C") for v in (low, high)],
        x_labels=[(x(0), "hand-off"), (x(leg_seconds), f"receipt (+{hours:.1f} h)")],
        leg_span=(x(0), x(leg_seconds)),
    )


def svg(shape: Curve, title: str) -> str:
    """Inline SVG with a title for screen readers; the numbers are in the table beside it."""
    parts = [
        # A fixed height keeps the curve small on wide screens; the width follows it, shrinking on a phone.
        f'<svg class="temperature-curve" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" height="{SHOWN_HEIGHT}" '
        f'role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>',
        f'<rect x="{PAD_LEFT}" y="{shape.band[0]}" width="{WIDTH - PAD_LEFT - PAD_RIGHT}" '
        f'height="{round(shape.band[1] - shape.band[0], 1)}" fill="{BAND}"/>',
    ]
    for edge in shape.leg_span:
        parts.append(
            f'<line x1="{edge}" y1="{PAD_TOP}" x2="{edge}" y2="{HEIGHT - PAD_BOTTOM}" '
            'stroke="#888" stroke-dasharray="3 3"/>'
        )
    line = " ".join(f"{px},{py}" for px, py, _ in shape.points)
    parts.append(f'<polyline points="{line}" fill="none" stroke="{LINE}" stroke-width="1.5"/>')
    parts += [f'<circle cx="{px}" cy="{py}" r="2.5" fill="{ALARM}"/>' for px, py, out in shape.points if out]
    parts += [
        f'<text x="{PAD_LEFT - 3}" y="{ly + 3}" font-size="9" text-anchor="end">{escape(text)}</text>'
        for ly, text in shape.y_labels
    ]
    parts += [
        f'<text x="{lx}" y="{HEIGHT - 5}" font-size="9" text-anchor="{anchor}">{escape(text)}</text>'
        for (lx, text), anchor in zip(shape.x_labels, ("start", "end"), strict=True)
    ]
    parts.append("</svg>")
    return "".join(parts)


def drawing(shape: Curve):
    """The same curve as a reportlab Drawing, for the record PDF."""
    from reportlab.graphics.shapes import Circle, Drawing, Line, PolyLine, Rect, String
    from reportlab.lib.colors import HexColor

    def flip(py: float) -> float:  # reportlab's y grows upwards
        return HEIGHT - py

    art = Drawing(WIDTH, HEIGHT)
    band_top, band_bottom = shape.band
    art.add(Rect(PAD_LEFT, flip(band_bottom), WIDTH - PAD_LEFT - PAD_RIGHT, band_bottom - band_top,
                 fillColor=HexColor(BAND), strokeColor=None))  # fmt: skip
    for edge in shape.leg_span:
        art.add(Line(edge, flip(PAD_TOP), edge, flip(HEIGHT - PAD_BOTTOM), strokeColor=HexColor("#888888"),
                     strokeDashArray=[3, 3]))  # fmt: skip
    coords = [value for px, py, _ in shape.points for value in (px, flip(py))]
    art.add(PolyLine(coords, strokeColor=HexColor(LINE), strokeWidth=1.5))
    for px, py, out in shape.points:
        if out:
            art.add(Circle(px, flip(py), 2.5, fillColor=HexColor(ALARM), strokeColor=None))
    for ly, text in shape.y_labels:
        art.add(String(PAD_LEFT - 3, flip(ly) - 3, text, fontSize=7, textAnchor="end"))
    for (lx, text), anchor in zip(shape.x_labels, ("start", "end"), strict=True):
        art.add(String(lx, 4, text, fontSize=7, textAnchor=anchor))
    return art
