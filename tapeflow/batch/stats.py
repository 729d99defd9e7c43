"""What one partition holds, for a data engineer reading a materialization: rows, rows after a
gap, rejected rows by reason, and the span of venue time it covers."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tapeflow.schemas.records import F_GAP, F_MAYBE_BAD_BOOK


def time_span(table: pa.Table) -> tuple[int, int] | None:
    """(first, last) partition time of ``table``: venue time, capture time where it is -1."""
    if table.num_rows == 0:
        return None
    ts = table.column("ts_event_ns").to_numpy()
    if "ts_recv_ns" in table.column_names:
        ts = np.where(ts >= 0, ts, table.column("ts_recv_ns").to_numpy())
    return int(ts.min()), int(ts.max())


def iso(ts_ns: int) -> str:
    """A UTC instant with microseconds (truncated, exact: no float on the way)."""
    return (_EPOCH + dt.timedelta(microseconds=ts_ns // 1000)).isoformat(timespec="microseconds")


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def flagged(table: pa.Table, flag: int) -> int:
    """Rows whose ``flags`` carry ``flag`` (0 for a table without flags)."""
    if not table.num_rows or "flags" not in table.column_names:
        return 0
    return int(np.count_nonzero(table.column("flags").to_numpy() & flag))


def reasons(rejected: pa.Table | None) -> dict[str, int]:
    """Rejected rows per reason code."""
    out: Counter[str] = Counter()
    if rejected is not None and rejected.num_rows:
        for v in pc.value_counts(rejected.column("reason").combine_chunks()).to_pylist():
            out[str(v["values"])] += int(v["counts"])
    return dict(sorted(out.items()))


def partition_stats(table: pa.Table, *, rejected: pa.Table | None = None,
                    books: bool = False) -> dict[str, Any]:
    """Plain facts about one partition's rows.

    Args:
        table: the partition's rows.
        rejected: the dead letters of the same instrument-day (their count by reason is reported).
        books: also count rows flagged ``F_MAYBE_BAD_BOOK`` (``maybe_bad_rows``).

    Returns:
        ``rows``, ``gap_rows`` (flagged ``F_GAP``: a sequence gap or checksum failure precedes
        them), ``rejected_rows`` and ``rejected_by_reason`` (with ``rejected``), ``maybe_bad_rows``
        (with ``books``), and ``first_event`` / ``last_event`` (ISO, UTC) and ``span_s`` when the
        partition has rows.
    """
    out: dict[str, Any] = {"rows": table.num_rows, "gap_rows": flagged(table, F_GAP)}
    if books:
        out["maybe_bad_rows"] = flagged(table, F_MAYBE_BAD_BOOK)
    if rejected is not None:
        by_reason = reasons(rejected)
        out["rejected_rows"] = sum(by_reason.values())
        out["rejected_by_reason"] = by_reason
    span = time_span(table)
    if span is not None:
        out["first_event"], out["last_event"] = iso(span[0]), iso(span[1])
        out["span_s"] = round((span[1] - span[0]) / 1e9, 3)
    return out


class PieceStats:
    """:func:`partition_stats` of a partition seen piece by piece (never held): counts, span, head.

    Args:
        head_rows: how many of the first rows to keep (``head``, for a preview).
    """

    def __init__(self, head_rows: int = 5) -> None:
        self.rows = self.gap_rows = self.maybe_bad_rows = 0
        self.first: int | None = None
        self.last: int | None = None
        self.head_rows = head_rows
        self.head: pa.Table | None = None

    def add(self, table: pa.Table) -> None:
        """Count the next piece's rows."""
        if not table.num_rows:
            if self.head is None:
                self.head = table.slice(0, 0)
            return
        self.rows += table.num_rows
        self.gap_rows += flagged(table, F_GAP)
        self.maybe_bad_rows += flagged(table, F_MAYBE_BAD_BOOK)
        span = time_span(table)
        if span is not None:
            self.first = span[0] if self.first is None else min(self.first, span[0])
            self.last = span[1] if self.last is None else max(self.last, span[1])
        if self.head is None or self.head.num_rows < self.head_rows:
            more = table.slice(0, self.head_rows - (self.head.num_rows if self.head is not None else 0))
            fresh = self.head is None or not self.head.num_rows
            self.head = more if fresh else pa.concat_tables([self.head, more])

    def stats(self, *, rejected: pa.Table | None = None, books: bool = False) -> dict[str, Any]:
        """What :func:`partition_stats` says of the rows added, in the same order."""
        out: dict[str, Any] = {"rows": self.rows, "gap_rows": self.gap_rows}
        if books:
            out["maybe_bad_rows"] = self.maybe_bad_rows
        if rejected is not None:
            by_reason = reasons(rejected)
            out["rejected_rows"] = sum(by_reason.values())
            out["rejected_by_reason"] = by_reason
        if self.first is not None and self.last is not None:
            out["first_event"], out["last_event"] = iso(self.first), iso(self.last)
            out["span_s"] = round((self.last - self.first) / 1e9, 3)
        return out
