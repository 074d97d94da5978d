"""The report as one self-contained HTML page (``--format html``): no script, no network,
inline CSS and SVG, so it opens anywhere and can be attached to a CI run or a dataset card.

It shows what the table shows and more: the class shares as a log-scale bar chart, the
weights of every method side by side (derived again from the document's counts), images per
class, the settings and the warnings.
"""

from __future__ import annotations

import json
import math
from html import escape

from .report import _from_document, left_out_parts
from .weights import METHODS, compute_weights

#: The share axis: from 10^-DECADES to 1, on a log scale, so a class of 0.01% still shows.
DECADES = 6
BAR_WIDTH = 240  # px

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 1.6em; }
table { border-collapse: collapse; }
th, td { padding: 2px 8px; border-bottom: 1px solid #ddd; text-align: right; }
th { background: #f4f4f4; } td.name, th.name { text-align: left; }
td.chosen, th.chosen { background: #eef4ff; font-weight: 600; }
tr.absent td { color: #999; }
.warnings li { color: #8a5a00; }
svg text { font: 11px system-ui, sans-serif; fill: #555; }
"""


def render(doc: dict) -> str:
    """Return a report document as one HTML page (the ``--format html`` writer)."""
    result = _from_document(doc)
    others = {
        name: compute_weights(
            result.counts, name, normalize=doc["normalize"], missing=_missing(doc)
        ).weights
        for name in METHODS
    }
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>classweights: {_title(doc)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Class weights: {_title(doc)}</h1>",
        _classes(doc, others),
        _warnings(doc),
        _settings(doc),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _missing(doc: dict) -> str:
    # "error" would refuse the other methods for the same absent classes the report has.
    return "zero" if doc["missing"] == "error" else doc["missing"]


def _title(doc: dict) -> str:
    totals = doc["totals"]
    return escape(
        f"{doc['num_classes']} classes, {totals['files']:,} masks, "
        f"{totals['pixels']:,} pixels counted"
    )


def share_bar(share: float) -> str:
    """Return an inline SVG bar of ``share`` on a log scale (``DECADES`` decades below 1)."""
    width = 0.0
    if share > 0:
        width = max(1.0, BAR_WIDTH * (1 + math.log10(share) / DECADES))
    return (
        f'<svg width="{BAR_WIDTH + 60}" height="14" role="img" '
        f'aria-label="share {share:.4%}">'
        f'<rect class="bar" x="0" y="2" width="{min(width, BAR_WIDTH):.1f}" height="10" '
        'fill="#4a7bd0"/>'
        f'<text x="{min(width, BAR_WIDTH) + 4:.1f}" y="11">{100 * share:.3g}%</text></svg>'
    )


def _classes(doc: dict, others: dict) -> str:
    method = doc["method"]
    axis = f"share (log scale, 10<sup>-{DECADES}</sup> to 1)"
    head = ["id", "name", "pixels", "images", axis]
    cells = "".join(
        f'<th class="name">{h}</th>' if h in ("name", axis) else f"<th>{h}</th>" for h in head
    )
    for name in others:
        chosen = ' class="chosen"' if name == method else ""
        cells += f"<th{chosen}>{escape(name)}</th>"
    rows = [f"<h2>Classes and weights (normalize {escape(doc['normalize'])})</h2>"]
    rows.append(f'<table class="classes"><thead><tr>{cells}</tr></thead><tbody>')
    for c in doc["classes"]:
        absent = "" if c["pixels"] else ' class="absent"'
        row = (
            f"<td>{c['id']}</td><td class=\"name\">{escape(c['name'] or '')}</td>"
            f"<td>{c['pixels']:,}</td><td>{c['images']:,}</td>"
            f'<td class="name">{share_bar(c["frequency"])}</td>'
        )
        for name, weights in others.items():
            value = c["weight"] if name == method else float(weights[c["id"]])
            chosen = ' class="chosen"' if name == method else ""
            row += f"<td{chosen}>{value:.4g}</td>"
        rows.append(f"<tr{absent}>{row}</tr>")
    rows.append("</tbody></table>")
    rows.append(
        f"<p>The report's weights are {escape(method)}'s (highlighted); the other methods are "
        "derived from the same counts with the same normalisation.</p>"
    )
    return "\n".join(rows)


def _warnings(doc: dict) -> str:
    messages = list(doc.get("warnings", []))
    if doc["absent"]:
        messages.append(f"classes with no pixels: {doc['absent']} (weight: {doc['missing']})")
    messages += [f"skipped {e['file']}: {e['error']}" for e in doc.get("errors", [])]
    if not messages:
        return '<h2>Warnings</h2><p class="warnings">none</p>'
    items = "".join(f"<li>{escape(m)}</li>" for m in messages)
    return f'<h2>Warnings</h2><ul class="warnings">{items}</ul>'


def _text(value: object) -> str:
    # As the JSON report writes it: null, false, {"min": null}.
    return value if isinstance(value, str) else json.dumps(value)


def _settings(doc: dict) -> str:
    source = doc["source"]
    settings = [
        ("method", doc["method"]),
        ("normalize", doc["normalize"]),
        ("missing", doc["missing"]),
        ("params", doc["params"]),
        ("clip", doc["clip"]),
        ("num_classes", doc["num_classes"]),
        ("ignore_index", doc["ignore_index"]),
        ("map", f"{len(doc['map'])} values" if doc["map"] else "none"),
        ("reduce_zero_label", doc["reduce_zero_label"]),
        ("colors", f"{len(doc['colors'])} colours" if doc["colors"] else "none"),
        ("pixels ignored", f"{doc['totals']['ignored']:,}"),
        ("left out", "; ".join(left_out_parts(doc)) or "nothing"),
        ("paths", ", ".join(source["paths"])),
        ("masks", f"{source['files']:,}"),
        ("fingerprint", source["fingerprint"]),
        ("classweights", doc["classweights"]),
    ]
    rows = "".join(
        f'<tr><th class="name">{escape(k)}</th><td class="name">{escape(_text(v))}</td></tr>'
        for k, v in settings
    )
    return f'<h2>Settings</h2><table class="settings">{rows}</table>'
