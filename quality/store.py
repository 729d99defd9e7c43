"""Suite results kept under the lake, and their Data Docs pages, per instrument-day.

Results are JSON under ``<lake>/_quality/date=<day>/<instrument key>/<asset>.json`` (replaced on
re-materialization); each instrument-day's page is
``<lake>/_data_docs/date=<day>/<instrument key>/index.html`` (static HTML that opens offline),
holding every suite run on it so far, and ``<lake>/_data_docs/index.html`` links them all.
"""

from __future__ import annotations

import dataclasses
import html
import json
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from quality.docs import write_data_docs
from quality.result import CheckResult, SuiteResult
from tapeflow.batch.targets import Target, instrument_key, parse_instrument_key

RESULTS_DIR = "_quality"
DOCS_DIR = "_data_docs"


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _result_path(lake: Path, asset: str, t: Target) -> Path:
    return Path(lake) / RESULTS_DIR / f"date={t.date}" / instrument_key(t.venue, t.symbol) / f"{asset}.json"


def save(lake: Path, asset: str, t: Target, result: SuiteResult) -> Path:
    """Keep one suite result as JSON (replaced on re-materialization)."""
    path = _result_path(lake, asset, t)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(_plain(dataclasses.asdict(result)), indent=1))
    os.replace(tmp, path)
    return path


def load(lake: Path, targets: Iterable[Target] | None = None) -> dict[tuple[Target, str], SuiteResult]:
    """Suite results kept under the lake, by (instrument-day, asset); every one when ``targets`` is None."""
    root = Path(lake) / RESULTS_DIR
    if targets is None:
        paths = sorted(root.glob("date=*/*/*.json"))
    else:
        paths = sorted(p for t in set(targets) for p in _result_path(lake, "x", t).parent.glob("*.json"))
    out = {}
    for path in paths:
        venue, symbol = parse_instrument_key(path.parent.name)
        raw = json.loads(path.read_text())
        checks = [CheckResult(**c) for c in raw.pop("checks")]
        target = Target(path.parent.parent.name[5:], venue, symbol)
        out[(target, path.stem)] = SuiteResult(**raw, checks=checks)
    return out


def publish(lake: Path, targets: Iterable[Target]) -> list[Path]:
    """Render each instrument-day's kept results as its Data Docs page; returns the pages written."""
    kept = load(lake, targets)
    pages = []
    for t in sorted(set(targets)):
        suites = [dataclasses.replace(r, dataset=f"{asset} ({r.dataset})")
                  for (target, asset), r in sorted(kept.items(), key=lambda kv: kv[0][1]) if target == t]
        if suites:
            title = f"tapeflow data quality: {t.venue} {t.symbol} {t.date}"
            pages.append(write_data_docs(suites, docs_dir(lake, t), title=title))
    return pages


def docs_dir(lake: Path, t: Target) -> Path:
    """The Data Docs folder of one instrument-day."""
    return Path(lake) / DOCS_DIR / f"date={t.date}" / instrument_key(t.venue, t.symbol)


def write_index(lake: Path) -> Path:
    """``<lake>/_data_docs/index.html``: every instrument-day page with its failed-check count."""
    kept = load(lake)
    failed_by_day: Counter[Target] = Counter()
    for (t, _), r in kept.items():
        failed_by_day[t] += len(r.failed)
    rows = []
    for t in sorted(failed_by_day):
        failed = failed_by_day[t]
        link = docs_dir(lake, t).relative_to(Path(lake) / DOCS_DIR) / "index.html"
        state = f'<span class="fail">{failed} failed</span>' if failed else '<span class="pass">passed</span>'
        rows.append(f'<tr><td>{html.escape(t.date)}</td><td>{html.escape(t.venue)}</td>'
                    f'<td><a href="{html.escape(str(link))}">{html.escape(t.symbol)}</a></td>'
                    f'<td>{state}</td></tr>')
    page = ("<!doctype html><meta charset=utf-8><title>tapeflow data quality</title>"
            "<style>body{font:14px system-ui,sans-serif;margin:24px}td,th{border:1px solid #ccd;"
            "padding:4px 8px}table{border-collapse:collapse}.pass{color:#146c2e}.fail{color:#b3261e}</style>"
            "<h1>tapeflow data quality</h1><table>"
            "<tr><th>date</th><th>venue</th><th>symbol</th><th>checks</th>"
            f"</tr>{''.join(rows)}</table>")
    out = Path(lake) / DOCS_DIR / "index.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".index.html.{os.getpid()}.tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, out)
    return out
