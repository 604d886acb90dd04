"""One self-contained HTML file for a demo or evaluate run: plots inlined, tables, cluster cards.

No server, no network: images are ``data:`` URIs, the style is inline, and the one
script only counts the images that decoded (``data-images-loaded`` on ``<body>``, which
the tests read in a headless browser).

Examples
--------
>>> page = html_report("run", tables=["| a | b |\\n|---|---|\\n| 1 | 2 |"])
>>> "<td>1</td>" in page and page.startswith("<!DOCTYPE html>")
True
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from stream_dec.model.catalogue import Catalogue, ClusterCard

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 1em 0; }
td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f3f3f3; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }
ul.notes { font-size: 0.9em; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(320px, 1fr)); gap: 12px; }
.cluster-card { border: 1px solid #ccc; border-radius: 6px; padding: 10px 12px; font-size: 0.85em; }
.cluster-card h3 { margin: 0 0 4px 0; font-size: 1.05em; }
.cluster-card .figures { color: #555; }
.term { display: inline-block; background: #eef3fb; border-radius: 3px; padding: 1px 5px; margin: 2px 2px 0 0; }
.term.changed { background: #ffe9a8; }
.badge { background: #2a7; color: white; border-radius: 3px; padding: 0 5px; font-size: 0.8em; }
.cluster-card ul { padding-left: 1.2em; margin: 6px 0; }
.exemplars { color: #777; font-size: 0.9em; }
"""

COUNT_IMAGES = """
window.addEventListener("load", () => {
  const loaded = [...document.images].filter((image) => image.complete && image.naturalWidth > 0).length;
  document.body.dataset.imagesLoaded = String(loaded);
});
"""


def html_report(title: str, *, notes: list[str] = (), images: list[Path] = (), tables: list[str] = (),
                catalogue: Catalogue | None = None) -> str:
    """The page: ``notes`` (plain text lines), ``images`` (PNG files, inlined), ``tables``
    (markdown pipe tables) and the ``catalogue`` as one card per cluster."""
    parts = [f"<h1>{html.escape(title)}</h1>"]
    if notes:
        parts.append('<ul class="notes">' + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    for image in images:
        data = base64.b64encode(Path(image).read_bytes()).decode()
        parts.append(f'<img alt="{html.escape(Path(image).name)}" src="data:image/png;base64,{data}">')
    parts.extend(_table(table) for table in tables)
    if catalogue is not None:
        parent = f" (parent {catalogue.parent})" if catalogue.parent is not None else ""
        parts.append(f"<h2>Clusters of version {catalogue.version}{parent}, on {catalogue.samples} samples</h2>")
        parts.append('<div class="cards">' + "".join(_card(card) for card in catalogue.clusters) + "</div>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
            f"<body>{''.join(parts)}<script>{COUNT_IMAGES}</script></body></html>\n")


def _card(card: ClusterCard) -> str:
    changed = set(card.changed_terms)
    badge = ' <span class="badge">new</span>' if card.new else ""
    drift = "" if card.drift is None else f" · drift {card.drift:.3f}"
    terms = "".join(f'<span class="term{" changed" if t in changed else ""}">{html.escape(t)}</span>'
                    for t in card.terms)
    was = ""
    if changed and card.previous_terms:
        was = f'<div class="figures">was: {html.escape(", ".join(card.previous_terms))}</div>'
    texts = "".join(f"<li>{html.escape(t)}</li>" for t in card.texts)
    return (f'<article class="cluster-card" data-cluster="{card.cluster}">'
            f"<h3>cluster {card.cluster}{badge}</h3>"
            f'<div class="figures">{card.size} samples ({card.share:.1%}) · confidence {card.confidence:.2f}{drift}</div>'
            f"<div>{terms}</div>{was}"
            + (f"<ul>{texts}</ul>" if texts else "")
            + f'<div class="exemplars">exemplars: {html.escape(", ".join(card.exemplars))}</div></article>')


def _table(markdown: str) -> str:
    """A markdown pipe table (header, rule, rows) as HTML; other lines become paragraphs."""
    rows, out = [], []
    for line in markdown.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= set("-: ") for c in cells):
                rows.append(cells)
            continue
        if rows:
            out.append(_html_table(rows))
            rows = []
        if line.strip():
            out.append(f"<p>{html.escape(line.lstrip('- '))}</p>")
    if rows:
        out.append(_html_table(rows))
    return "".join(out)


def _html_table(rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
