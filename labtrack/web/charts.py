"""Charts as server-rendered SVG (pygal): trend I-MR charts and the outcomes charts.

Each chart is an image of its own (``<img src=….svg>``), so nothing on the page needs a
script to show it. pygal's output is cleaned before it leaves: its tooltip script (and the
CDN reference for it) is removed, so the SVG carries nothing but shapes, text and its own
``<style>``. SVG responses get a policy of their own that allows exactly that inline style
and nothing else (``SVG_CSP``): an image document cannot run scripts in any case.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from xml.etree import ElementTree

import pygal
from flask import Response
from pygal.style import Style

from labtrack.domain.spc import RULE_WORDS, TITLES, UNITS, Rule

SVG_NS = "http://www.w3.org/2000/svg"
SVG_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
# Colours chosen for contrast on white; flagged points in the warning red, never green.
STYLE = Style(
    background="#ffffff",
    plot_background="#ffffff",
    foreground="#1f2328",
    foreground_strong="#1f2328",
    foreground_subtle="#6e7781",
    font_family="system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
    colors=("#0a3069", "#6e7781", "#9a6700", "#9a6700", "#cf222e"),
    label_font_size=13,
    major_label_font_size=13,
    legend_font_size=14,
    title_font_size=17,
    value_font_size=12,
)
CONFIG = {
    "js": [],  # no tooltip script, no CDN
    "disable_xml_declaration": True,
    "style": STYLE,
    "width": 900,
    "height": 380,
    "legend_at_bottom": True,
    "legend_at_bottom_columns": 3,
    "truncate_label": -1,
    "show_minor_x_labels": False,
    "x_label_rotation": 0,
    "print_values": False,
    "margin_bottom": 10,
}


def svg_response(chart: pygal.graph.graph.Graph) -> Response:
    response = Response(render(chart), mimetype="image/svg+xml")
    response.headers["Content-Security-Policy"] = SVG_CSP
    return response


def render(chart: pygal.graph.graph.Graph) -> bytes:
    """The chart's SVG without any ``<script>`` element."""
    root = chart.render_tree()
    for parent in list(root.iter()):
        for child in list(parent):
            if child.tag in (f"{{{SVG_NS}}}script", "script"):
                parent.remove(child)
    ElementTree.register_namespace("", SVG_NS)
    ElementTree.register_namespace("xlink", "http://www.w3.org/1999/xlink")
    return ElementTree.tostring(root, encoding="utf-8")


def _sparse_labels(labels: Sequence[str], most: int = 10) -> list[str]:
    step = max(1, math.ceil(len(labels) / most))
    return [label if i % step == 0 else "" for i, label in enumerate(labels)]


def individuals(document: dict, *, moving_range: bool = False) -> pygal.graph.graph.Graph:
    """An I chart (or its MR chart): the values, centre and limits, flagged points marked."""
    metric = document["metric"]
    unit = UNITS[metric]
    points = document["points"]
    if moving_range:
        values = [p["moving_range"] for p in points]
        title = f"{TITLES[metric]}: moving range ({unit})"
    else:
        values = [p["value"] for p in points]
        title = f"{TITLES[metric]} ({unit})"
    chart = pygal.Line(title=title, dots_size=3, show_dots=True, **CONFIG)
    chart.x_labels = _sparse_labels(
        [p["at"].strftime("%d %b %y") if hasattr(p["at"], "strftime") else str(p["at"]) for p in points]
    )
    chart.add("Released batches", values, stroke_style={"width": 1.5})
    limits = (
        [("Mean moving range", document["mr_bar"]), ("Upper limit", document["mr_ucl"])]
        if moving_range
        else [
            ("Centre line", document["centre"]),
            ("Upper limit (3 σ)", document["ucl"]),
            ("Lower limit (3 σ)", document["lcl"]),
        ]
    )
    for label, level in limits:
        if level is not None:
            chart.add(label, [level] * len(points), show_dots=False, stroke_style={"width": 1.5, "dasharray": "6, 4"})
    if not moving_range:
        flagged = [p["value"] if p["flags"] else None for p in points]
        if any(v is not None for v in flagged):
            chart.add("Flagged (Nelson rules)", flagged, stroke=False, dots_size=7)
    return chart


def rule_words(code: str) -> str:
    return f"rule {code[-1]}: {RULE_WORDS[Rule(code)]}"


def change_by_visit(report: dict) -> pygal.graph.graph.Graph:
    """Change from baseline (%) at each visit: one line per batch, and the cohort's mean."""
    visits = ["baseline"]
    for cohort in report["cohorts"]:
        for summary in cohort["visits"]:
            if summary["visit"] not in visits:
                visits.append(summary["visit"])
    chart = pygal.Line(title="Change in hair density from baseline (%)", **(CONFIG | {"show_legend": True}))
    chart.x_labels = [v if v == "baseline" else f"{v[1:]} months" for v in visits]
    for row in report["batches"][:40]:  # beyond 40 lines the cohort means say more
        by_visit = {v["visit"]: v["change_pct"] for v in row["visits"]}
        chart.add(None, [0.0] + [by_visit.get(v) for v in visits[1:]], show_dots=False, stroke_style={"width": 1})
    for cohort in report["cohorts"]:
        means = {s["visit"]: s["mean"] for s in cohort["visits"]}
        if means:
            name = "SVF (adipose)" if cohort["tissue_source"] == "adipose" else "BMAC (bone marrow)"
            chart.add(
                f"Mean, {name}", [0.0] + [means.get(v) for v in visits[1:]], dots_size=5, stroke_style={"width": 3}
            )
    return chart


def dose_response(report: dict) -> pygal.graph.graph.Graph:
    """Viable-cell dose against the 6-month change, with each cohort's fitted line."""
    chart = pygal.XY(
        title="Viable-cell dose against the 6-month change",
        x_title="Viable cells (millions)",
        y_title="Change at 6 months (%)",
        stroke=False,
        **CONFIG,
    )
    for cohort in report["cohorts"]:
        points = [(p["viable_cells"] / 1e6, p["change_pct"]) for p in cohort["dose_points"]]
        if not points:
            continue
        name = "SVF (adipose)" if cohort["tissue_source"] == "adipose" else "BMAC (bone marrow)"
        chart.add(name, points, dots_size=5)
        fit = cohort["dose_response"]
        if fit["slope"] is not None:
            xs = [p[0] for p in points]
            line = [(x, fit["intercept"] + fit["slope"] * x * 1e6) for x in (min(xs), max(xs))]
            chart.add(f"Fitted line, {name}", line, stroke=True, show_dots=False, stroke_style={"width": 2})
    return chart
