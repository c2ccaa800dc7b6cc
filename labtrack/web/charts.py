"""Charts as server-rendered SVG (pygal): trend I-MR charts and the outcomes charts.

Each chart is an image of its own (``<img src=….svg>``), so nothing on the page needs a
script to show it. pygal's output is cleaned before it leaves: its tooltip script (and the
CDN reference for it) is removed, so the SVG carries nothing but shapes, text and its own
``<style>``. SVG responses get a policy of their own that allows exactly that inline style
and nothing else (``SVG_CSP``): an image document cannot run scripts in any case.
"""

from __future__ import annotations

from xml.etree import ElementTree

import pygal
from flask import Response
from pygal.style import Style

from labtrack.domain.spc import TITLES, UNITS
from labtrack.glossary import visit_words

SVG_NS = "http://www.w3.org/2000/svg"
DOTS_UP_TO = 120
PRODUCTS = {"adipose": "SVF (adipose)", "bone_marrow": "BMAC (bone marrow)"}
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
    "height": 420,
    "legend_at_bottom": True,
    "legend_at_bottom_columns": 3,
    "truncate_label": -1,
    "x_label_rotation": 0,
    "print_values": False,
}


def svg_response(chart: pygal.graph.graph.Graph) -> Response:
    response = Response(render(chart), mimetype="image/svg+xml")
    response.headers["Content-Security-Policy"] = SVG_CSP
    return response


def render(chart: pygal.graph.graph.Graph) -> bytes:
    """The chart's SVG without any ``<script>`` element (nor pygal's comments, which name its web site)."""
    root = chart.render_tree()
    for parent in list(root.iter()):
        for child in list(parent):
            if child.tag in (f"{{{SVG_NS}}}script", "script", ElementTree.Comment):
                parent.remove(child)
    ElementTree.register_namespace("", SVG_NS)
    ElementTree.register_namespace("xlink", "http://www.w3.org/1999/xlink")
    return ElementTree.tostring(root, encoding="utf-8")


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
    # Dots for each point while they can be told apart; beyond that the line alone, flagged points still dotted.
    chart = pygal.DateTimeLine(
        title=title,
        dots_size=3,
        show_dots=len(points) <= DOTS_UP_TO,
        x_value_formatter=lambda moment: moment.strftime("%d %b %Y"),
        **CONFIG,
    )
    times = [p["at"] for p in points]
    chart.add("Released batches", list(zip(times, values, strict=True)), stroke_style={"width": 1.5})
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
        if level is not None and times:
            ends = [(times[0], level), (times[-1], level)]
            chart.add(label, ends, show_dots=False, stroke_style={"width": 2.5, "dasharray": "8, 4"})
    if not moving_range:
        flagged = [(p["at"], p["value"]) for p in points if p["flags"]]
        if flagged:
            chart.add("Flagged (Nelson rules)", flagged, stroke=False, show_dots=True, dots_size=7)
    return chart


def change_by_visit(report: dict) -> pygal.graph.graph.Graph:
    """Mean change from baseline (%) at each visit per product, with its 95 % confidence interval."""
    visits: list[str] = []
    for cohort in report["cohorts"]:
        visits += [s["visit"] for s in cohort["visits"] if s["visit"] not in visits]
    visits.sort(key=lambda name: int(name[1:]))
    chart = pygal.Line(title="Change in hair density from baseline (%), mean and 95 % CI", **CONFIG)
    chart.x_labels = [visit_words(name) for name in ("baseline", *visits)]
    for cohort in report["cohorts"]:
        found = {s["visit"]: s for s in cohort["visits"]}
        if not found:
            continue
        name = PRODUCTS[cohort["tissue_source"]]

        def series(key: str, found: dict = found) -> list[float | None]:
            return [0.0] + [found[v][key] if v in found else None for v in visits]

        chart.add(f"Mean, {name}", series("mean"), dots_size=5, stroke_style={"width": 3})
        chart.add(
            f"95 % CI, {name}", series("ci_low"), show_dots=False, stroke_style={"width": 1.5, "dasharray": "6, 4"}
        )
        chart.add(None, series("ci_high"), show_dots=False, stroke_style={"width": 1.5, "dasharray": "6, 4"})
    return chart


def dose_response(report: dict, tissue_source: str) -> pygal.graph.graph.Graph:
    """One product's viable-cell dose against the 6-month change, with the fitted line."""
    name = PRODUCTS[tissue_source]
    chart = pygal.XY(
        title=f"{name}: viable-cell dose against the 6-month change",
        x_title="Viable cells (millions)",
        y_title="Change at 6 months (%)",
        stroke=False,
        **CONFIG,
    )
    for cohort in report["cohorts"]:
        if cohort["tissue_source"] != tissue_source or not cohort["dose_points"]:
            continue
        points = [(p["viable_cells"] / 1e6, p["change_pct"]) for p in cohort["dose_points"]]
        chart.add("Patients", points, dots_size=5)
        fit = cohort["dose_response"]
        if fit["slope"] is not None:
            xs = [p[0] for p in points]
            line = [(x, fit["intercept"] + fit["slope"] * x * 1e6) for x in (min(xs), max(xs))]
            chart.add("Fitted line", line, stroke=True, show_dots=False, stroke_style={"width": 2})
    return chart
