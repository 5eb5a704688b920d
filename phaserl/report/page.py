"""One self-contained HTML page from a report payload: inline CSS and JS (report/assets/), data as JSON.

The scripts in SCRIPTS share one function scope (wrapped here), so each file holds one part of the page.

Nothing is fetched at view time: curves are drawn as SVG by the page's own script, thumbnails are data URIs.
The same page shows a training run (payload kind "run") or an evaluation (kind "eval").
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

ASSETS = Path(__file__).parent / "assets"
SCRIPTS = ("common.js", "chart.js", "sections.js", "browser.js", "main.js")  # one scope, in this order


def _json_for_script(payload: dict) -> str:
    """JSON that cannot end its <script> element early (`</` is escaped as `<\\/`)."""
    return json.dumps(
        payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=str
    ).replace("</", "<\\/")


def _finite(x):
    """NaN/inf become None (JSON has no NaN), recursively."""
    if isinstance(x, float) and (x != x or x in (float("inf"), float("-inf"))):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    return x


def render_page(payload: dict) -> str:
    css = (ASSETS / "report.css").read_text(encoding="utf-8")
    js = (
        '"use strict";\n(function () {\n'
        + "\n".join((ASSETS / name).read_text(encoding="utf-8") for name in SCRIPTS)
        + "})();\n"
    )
    refresh = (
        f'<meta http-equiv="refresh" content="{max(1, round(payload["watch"]))}">'
        if payload.get("watch")
        else ""
    )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">{refresh}'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(payload.get('title', 'phaserl report'))}</title>\n<style>{css}</style></head>\n"
        f'<body><div id="app"><p class="loading">loading report...</p></div>\n'
        f'<script id="payload" type="application/json">{_json_for_script(_finite(payload))}</script>\n'
        f"<script>{js}</script></body></html>\n"
    )


def write_page(payload: dict, path: Path) -> Path:
    """Write the page atomically (a browser refreshing during --watch never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(render_page(payload), encoding="utf-8")
    os.replace(tmp, path)
    return path
