#!/usr/bin/env python3
"""Draw each dashboard's layout, rows and panels where their grid positions put them, as an SVG.

    scripts/dashboard-layout.py OUT_DIR FILE.json...

writes OUT_DIR/<file name without .json>.svg for each rendered dashboard JSON file. Grafana's grid
is 24 columns wide; a grid unit of height is 30 px there, drawn here as 20 px, a column as 40 px.
Each panel shows its title and type; a row is a band across the grid. The output depends on the
JSON alone, so the pictures in docs/dashboards/ can be checked against the templates
(tests/it/dashboards/ renders them and compares; `LABCTL_UPDATE_DOCS=1` rewrites them).
"""

import json
import os
import sys
from xml.sax.saxutils import escape

COLUMN = 40
UNIT = 20
PAD = 2
# Roughly what one character of the 11 px sans-serif labels takes.
CHAR = 6.2
COLOURS = {
    "row": "#d8dee9",
    "timeseries": "#cfe8fc",
    "stat": "#d5f5d5",
    "table": "#fdf0c8",
    "bargauge": "#e6dcf7",
    "state-timeline": "#fadadd",
    "logs": "#e0e0e0",
}


def fit(text, width):
    """`text` cut to what fits `width` px, with an ellipsis when cut."""
    room = int((width - 8) / CHAR)
    if room < 1:
        return ""
    return text if len(text) <= room else text[: max(room - 1, 0)] + "…"


def panels(dashboard):
    """Every panel with a grid position, panels of collapsed rows included, in order."""
    for p in dashboard.get("panels", []):
        yield p
        yield from p.get("panels", [])


def svg(dashboard):
    placed = [p for p in panels(dashboard) if "gridPos" in p]
    bottom = max((p["gridPos"]["y"] + p["gridPos"]["h"] for p in placed), default=0)
    width, height = 24 * COLUMN, bottom * UNIT + 28
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="4" y="17" font-size="14" font-weight="bold">'
        f'{escape(dashboard.get("title", ""))} ({escape(dashboard.get("uid", ""))})</text>',
    ]
    for p in placed:
        g = p["gridPos"]
        x, y = g["x"] * COLUMN + PAD, 24 + g["y"] * UNIT + PAD
        w, h = g["w"] * COLUMN - 2 * PAD, g["h"] * UNIT - 2 * PAD
        kind = p.get("type", "")
        colour = COLOURS.get(kind, "#eeeeee")
        out.append(
            f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="3" fill="{colour}" stroke="#4c566a"/>'
        )
        title = p.get("title", "")
        if kind == "row":
            out.append(
                f'<text x="{x + 6}" y="{y + h - 5}" font-weight="bold">{escape(fit(title, w))}</text>'
            )
            continue
        out.append(f'<text x="{x + 5}" y="{y + 14}">{escape(fit(title, w))}</text>')
        if h >= 36:
            out.append(f'<text x="{x + 5}" y="{y + 28}" fill="#5e6a80">{escape(fit(kind, w))}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(out_dir, files):
    os.makedirs(out_dir, exist_ok=True)
    for name in files:
        with open(name, encoding="utf-8") as f:
            dashboard = json.load(f)
        base = os.path.splitext(os.path.basename(name))[0]
        with open(os.path.join(out_dir, base + ".svg"), "w", encoding="utf-8") as f:
            f.write(svg(dashboard))


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
