"""Data Docs: one self-contained static HTML page (plus JSON) of suite results that opens offline.

GX's own Data Docs renderer links its CSS and JavaScript from CDNs, so a page opened on an
air-gapped host or from an archived lake renders unstyled or not at all. This page inlines its
style and uses no script, image or font from anywhere.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Sequence
from dataclasses import asdict
from html import escape
from pathlib import Path
from typing import Any

from quality.result import CheckResult, SuiteResult

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1d2125}
h1{font-size:22px}h2{font-size:18px;margin-top:28px}
table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #ccd;padding:4px 8px;text-align:left;
vertical-align:top}th{background:#eef}.pass{color:#146c2e;font-weight:600}.fail{color:#b3261e;font-weight:600}
.skip{color:#777}details{margin:2px 0}code,pre{font:12px ui-monospace,Menlo,Consolas,monospace}
pre{white-space:pre-wrap;max-width:1100px;margin:4px 0}
"""


def write_data_docs(results: SuiteResult | Sequence[SuiteResult], out_dir: Path, *,
                    title: str = "tapeflow data quality") -> Path:
    """Write ``index.html`` and ``results.json`` for ``results`` under ``out_dir``.

    The page lists every check of every suite with pass/fail, unexpected and element counts,
    the threshold details and up to 5 example rows; it references nothing outside itself.

    Args:
        results: one or more suite results (e.g. every dataset of one partition day).
        out_dir: folder to write into (created); an existing page there is replaced atomically.
        title: page heading.

    Returns:
        The path of ``index.html``.
    """
    suites = [results] if isinstance(results, SuiteResult) else list(results)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = [asdict(s) | {"passed": s.passed} for s in suites]
    _write(out_dir / "results.json", json.dumps(payload, indent=1, default=str))
    page = out_dir / "index.html"
    _write(page, render(suites, title=title))
    return page


def _write(path: Path, text: str) -> None:
    # temp file + rename: a reader (or a browser) never sees half a page
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def render(suites: Sequence[SuiteResult], *, title: str = "tapeflow data quality") -> str:
    """The page for ``suites`` as one HTML string (inline CSS, no external reference)."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    failed = sum(len(s.failed) for s in suites)
    total = sum(len(s.checks) for s in suites)
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1><p>{total - failed} of {total} checks passed in {len(suites)} suite(s);"
        f" written {stamp}.</p>",
        "<table><tr><th>suite</th><th>day</th><th>rows</th><th>result</th><th>failed checks</th></tr>",
    ]
    for i, s in enumerate(suites):
        names = ", ".join(c.name for c in s.failed) or "-"
        parts.append(f"<tr><td><a href='#suite-{i}'>{escape(s.dataset)}</a></td>"
                     f"<td>{escape(str(s.partition_day))}</td><td>{s.row_count}</td>"
                     f"<td>{_verdict(s.passed)}</td><td>{escape(names)}</td></tr>")
    parts.append("</table>")
    for i, s in enumerate(suites):
        parts.append(f"<h2 id='suite-{i}'>{escape(s.dataset)} &mdash; {escape(str(s.partition_day))}"
                     f" ({s.row_count} rows) {_verdict(s.passed)}</h2>")
        parts.append("<table><tr><th>check</th><th>result</th><th>unexpected</th><th>elements</th>"
                     "<th>what</th><th>details and examples</th></tr>")
        parts.extend(_check_row(c) for c in s.checks)
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _verdict(passed: bool, skipped: bool = False) -> str:
    if skipped:
        return "<span class='skip'>SKIPPED</span>"
    return "<span class='pass'>PASS</span>" if passed else "<span class='fail'>FAIL</span>"


def _check_row(c: CheckResult) -> str:
    skipped = "skipped" in c.details
    detail = {k: v for k, v in c.details.items() if k != "expectations"}
    cells = [
        f"<td><code>{escape(c.name)}</code></td>",
        f"<td>{_verdict(c.passed, skipped and c.passed)}</td>",
        f"<td>{c.unexpected_count}</td><td>{c.element_count}</td>",
        f"<td>{escape(c.description)}</td>",
        "<td>" + _block("details", detail)
        + _block("Great Expectations results", c.details.get("expectations"))
        + (_block(f"examples ({len(c.examples)})", c.examples, open_=not c.passed) if c.examples else "")
        + "</td>",
    ]
    return "<tr>" + "".join(cells) + "</tr>"


def _block(summary: str, value: Any, *, open_: bool = False) -> str:
    if not value:
        return ""
    text = json.dumps(value, indent=1, default=str)
    return (f"<details{' open' if open_ else ''}><summary>{escape(summary)}</summary>"
            f"<pre>{escape(text)}</pre></details>")
