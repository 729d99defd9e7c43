"""Oracles for DBN files.

- A trades file given together with an OHLCV file of the same dataset: the bars rebuilt from the
  trades (``tapeflow.derived.bars.time_bars``: every trade record, per instrument, by ``ts_event``) must
  equal Databento's own bars exactly (open, high, low, close, volume) for every bar of the
  instruments in the trades file whose bucket lies inside the trades file's time range, and no
  rebuilt bar may be missing from Databento's.
- An MBO file: self-consistency through ``verify_mbo`` (no cancel/modify of an unknown order,
  final book uncrossed).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

from tapeflow.derived.bars import interval_ns, time_bars
from tapeflow.venues.databento.framing import DbnHeader, read_dbn_header
from tapeflow.venues.databento.messages import SCHEMA_INTERVALS
from tapeflow.venues.databento.parse import decode_all
from tapeflow.wire.registry import VerifyReport

_COMPARED = ("open_price_nanos", "high_price_nanos", "low_price_nanos", "close_price_nanos", "volume_nanos")


def read_header(path: Path) -> DbnHeader:
    """The DBN header (version, metadata) of a file, without reading its records."""
    return read_dbn_header(path)


def verify(paths: Sequence[Path]) -> list[VerifyReport]:
    """Check DBN files against their own oracles (see the module docstring).

    Files without an oracle (a definition file, a trades file alone) produce no report.
    """
    headers = {Path(p): read_header(Path(p)) for p in paths}
    schema = {p: str(h.metadata.schema) if h.metadata is not None else "" for p, h in headers.items()}
    reports: list[VerifyReport] = []
    trades = [p for p in headers if schema[p] == "trades"]
    for path, header in headers.items():
        if schema[path] in SCHEMA_INTERVALS and SCHEMA_INTERVALS[schema[path]] != "eod":
            pair = [t for t in trades if headers[t].metadata.dataset == header.metadata.dataset]
            if pair:
                reports.append(verify_bars(pair, path, headers))
        elif schema[path] == "mbo" or ".mbo." in path.name:
            reports.append(verify_mbo_file(path))
    return reports


def verify_bars(
    trade_paths: Sequence[Path], ohlcv_path: Path, headers: dict[Path, DbnHeader] | None = None
) -> VerifyReport:
    """Rebuild ``ohlcv_path``'s bars from ``trade_paths`` and compare them exactly."""
    headers = headers or {p: read_header(p) for p in (*trade_paths, ohlcv_path)}
    interval = SCHEMA_INTERVALS[str(headers[ohlcv_path].metadata.schema)]
    step = interval_ns(interval)
    theirs = decode_all([ohlcv_path]).get("bar")
    trades = decode_all(list(trade_paths)).get("trade")
    what = f"databento {headers[ohlcv_path].metadata.schema} bars"
    if theirs is None or trades is None:
        return VerifyReport(0, 0, what, ["no bars or no trades decoded"])
    ours = time_bars(trades, interval)
    # Only buckets wholly inside a trades file's requested range, for the symbols it holds.
    windows = [(h.metadata.start, h.metadata.end) for p, h in headers.items() if p in trade_paths]
    symbols = set(trades.column("symbol").unique().to_pylist())

    def inside(open_ns: int) -> bool:
        return any(start <= open_ns and open_ns + step <= end for start, end in windows)

    def keyed(table: pa.Table) -> dict[tuple[str, int], tuple[int, ...]]:
        rows = table.select(["symbol", "ts_event_ns", *_COMPARED]).to_pylist()
        return {
            (r["symbol"], r["ts_event_ns"]): tuple(r[c] for c in _COMPARED)
            for r in rows
            if r["symbol"] in symbols and inside(r["ts_event_ns"])
        }

    expected, rebuilt = keyed(theirs), keyed(ours)
    failures = []
    ok = 0
    for key, want in sorted(expected.items()):
        got = rebuilt.get(key)
        if got == want:
            ok += 1
        else:
            failures.append(
                f"{key[0]} bar at {key[1]}: databento {dict(zip(_COMPARED, want, strict=True))}, "
                f"rebuilt {dict(zip(_COMPARED, got, strict=True)) if got else 'none'}"
            )
    failures += [
        f"{k[0]} bar at {k[1]} rebuilt from trades but absent from databento"
        for k in rebuilt
        if k not in expected
    ]
    return VerifyReport(
        ok,
        len(expected),
        what,
        failures,
        details={"rule": "all trade records, per instrument, bucketed by ts_event", "rebuilt": len(rebuilt)},
    )


def verify_mbo_file(path: Path) -> VerifyReport:
    """MBO self-consistency via ``verify_mbo`` (reports its absence instead of failing)."""
    try:
        from tapeflow.venues.databento.verify_mbo import verify_mbo
    except ImportError:
        return VerifyReport(
            0,
            0,
            f"mbo checks of {path.name}",
            ["verify_mbo is not available (tapeflow.venues.databento.verify_mbo missing)"],
        )
    events = decode_all([path]).get("order_event")
    if events is None:
        return VerifyReport(0, 0, f"mbo checks of {path.name}", ["no order events decoded"])
    return verify_mbo(events)
