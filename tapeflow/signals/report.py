"""Markdown for a reader to judge alerts on data without truth: rates per hour and the strongest alerts.

``render`` takes one :class:`FileRun` per input (its ``signal`` rows, or why it was skipped) and
writes two tables: alerts per hour per kind per file (with each file's span) and the top alerts of
each kind by confidence, then score, with their evidence. Nothing here runs a detector:
``tapeflow.signals.realruns`` does, over the real captures.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa

from tapeflow.schemas.records import SIGNAL_KINDS, UNDEF_PRICE

_NS_PER_HOUR = 3_600 * 10**9
_EVIDENCE_CHARS = 160
_SIDES = {1: "bid/buy", -1: "ask/sell", 0: "none"}


@dataclass(frozen=True)
class FileRun:
    """One input's detector run.

    Attributes:
        label: the file as a reader knows it (``cryptofeed/KRAKEN.ws.50.0``).
        format_name: the ``--format`` it was read with.
        signals: its ``signal`` rows; None when skipped.
        span_ns: capture time from its first to its last record (of the part judged).
        instruments: instruments with trades or a book in it.
        note: why it was skipped, or how it was cut (the first hours only).
    """

    label: str
    format_name: str
    signals: pa.Table | None
    span_ns: int = 0
    instruments: int = 0
    note: str = ""

    @property
    def hours(self) -> float:
        """The judged span in hours."""
        return self.span_ns / _NS_PER_HOUR


def counts_by_kind(signals: pa.Table) -> dict[str, int]:
    """Alerts per ``kind`` in a ``signal`` table."""
    out: dict[str, int] = {}
    for kind in signals.column("kind").to_pylist():
        out[kind] = out.get(kind, 0) + 1
    return out


def per_hour(count: int, span_ns: int) -> float:
    """``count`` alerts over ``span_ns`` as a rate per hour (NaN for an empty span)."""
    return count / (span_ns / _NS_PER_HOUR) if span_ns > 0 else math.nan


def rate_table(runs: Sequence[FileRun]) -> str:
    """Markdown: one row per file, one column per kind seen, cells ``count (rate/h)``."""
    done = [r for r in runs if r.signals is not None]
    kinds = sorted({k for r in done for k in counts_by_kind(r.signals)})
    head = ["file", "format", "span h", "instr.", *kinds]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in runs:
        if r.signals is None:
            lines.append("| " + " | ".join([r.label, r.format_name, "-", "-", *["-"] * len(kinds)]) + " |")
            continue
        counts = counts_by_kind(r.signals)
        cells = [_rate_cell(counts.get(k, 0), r.span_ns) for k in kinds]
        lines.append("| " + " | ".join([r.label, r.format_name, f"{r.hours:.3g}", str(r.instruments),
                                        *cells]) + " |")
    return "\n".join(lines)


def top_alerts(runs: Sequence[FileRun], kind: str, n: int = 5) -> list[tuple[str, dict]]:
    """The ``n`` alerts of ``kind`` over every run, by confidence then score (highest first),
    ties by time; each as (file label, the row as a dict)."""
    rows = []
    for r in runs:
        if r.signals is None or r.signals.num_rows == 0:
            continue
        for row in r.signals.to_pylist():
            if row["kind"] == kind:
                rows.append((r.label, row))
    rows.sort(key=lambda lr: (-_num(lr[1]["confidence"]), -_num(lr[1]["score"]), lr[1]["ts_event_ns"]))
    return rows[:n]


def top_table(runs: Sequence[FileRun], n: int = 5) -> str:
    """Markdown: per kind, its ``n`` strongest alerts with time, symbol, side, price and evidence."""
    kinds = sorted({k for r in runs if r.signals is not None for k in counts_by_kind(r.signals)})
    out = []
    for kind in kinds:
        out += [f"**{kind}**", "",
                "| file | time (UTC) | symbol | side | price | confidence | score | evidence |",
                "|---|---|---|---|---|---|---|---|"]
        for label, row in top_alerts(runs, kind, n):
            out.append("| " + " | ".join([
                label, _time(row["ts_event_ns"]), str(row["symbol"]),
                _SIDES.get(row["side"], str(row["side"])),
                _price(row["price_nanos"]), f"{row['confidence']:.3f}", f"{row['score']:.4g}",
                "`" + _trim(row["evidence"]) + "`"]) + " |")
        out.append("")
    return "\n".join(out)


def render(runs: Sequence[FileRun], n: int = 5) -> str:
    """Both tables and the skipped files' reasons, as one Markdown fragment."""
    notes = [f"- {r.label} ({r.format_name}): {r.note}" for r in runs if r.note]
    parts = ["Alerts per kind per file, `count (per hour)` over the judged span:", "", rate_table(runs), ""]
    if notes:
        parts += ["Skipped or cut:", "", *notes, ""]
    seen = {k for r in runs if r.signals is not None for k in counts_by_kind(r.signals)}
    silent = [k for k in SIGNAL_KINDS if k not in seen]
    if silent:
        parts += [f"No alert on any file: {', '.join(silent)}.", ""]
    parts += [f"Top {n} per kind over every file (confidence, then score):", "", top_table(runs, n)]
    return "\n".join(parts).rstrip() + "\n"


def _rate_cell(count: int, span_ns: int) -> str:
    if count == 0:
        return "0"
    rate = per_hour(count, span_ns)
    return f"{count} ({rate:.3g})"


def _num(x: float | None) -> float:
    return -math.inf if x is None or math.isnan(x) else float(x)


def _time(ts_ns: int) -> str:
    t = dt.datetime.fromtimestamp(ts_ns // 10**9, dt.UTC)
    return f"{t:%Y-%m-%d %H:%M:%S}.{ts_ns % 10**9 // 10**6:03d}"


def _price(price_nanos: int | None) -> str:
    if price_nanos is None or price_nanos == UNDEF_PRICE:
        return "-"
    return f"{price_nanos / 1e9:.10g}"


def _trim(evidence: str | None) -> str:
    """Compact JSON, cut to a table cell's width; pipes escaped so the row stays one row."""
    if not evidence:
        return "{}"
    try:
        text = json.dumps(json.loads(evidence), separators=(",", ":"))
    except ValueError:
        text = evidence
    if len(text) > _EVIDENCE_CHARS:
        text = text[:_EVIDENCE_CHARS - 1] + "…"
    return text.replace("|", "\\|").replace("`", "'")
