"""Deribit option captures in a landing folder -> the underlying-days they hold, and one day's rows.

The batch runtime's option assets are partitioned by UTC day x underlying (``deribit.BTC``), not by
instrument: a surface's natural key is the underlying, and an option chain has hundreds of
instruments that come and go. Captures land under ``<landing>/deribit/`` (any layout below it;
files named ``cryptofeed_DERIBIT*`` or ``*.deribit.txt``, hidden and ``.tmp``/``.part`` files
ignored). Which underlying-days a capture holds is only known after decoding it, so
:class:`OptionIndex` keeps the first decode's answer in ``<lake>/_sources/options_index.json``
(path, size, mtime -> underlying-days, or the decode error). A day's rows are those whose venue time
(``ts_event_ns``) falls on the day, the lake's rule; a day's surfaces are built from that day's
tickers alone (docs/options.md, "The asset").
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tapeflow.errors import TapeflowError
from tapeflow.options.deribit import VENUE, DeribitTickerDecoder
from tapeflow.options.records import OPTION_TICKER
from tapeflow.options.surface import STALENESS_NS, STEP_NS, surface_records, surfaces
from tapeflow.schemas import concat
from tapeflow.schemas.records import REJECTED

__all__ = ["FOLDER", "INDEX_FILE", "DayRows", "OptionIndex", "UnderlyingDay", "capture_files", "day_rows",
           "surface_facts"]

FOLDER = VENUE  # <landing>/deribit/
INDEX_FILE = Path("_sources") / "options_index.json"
_PATTERNS = ("cryptofeed_DERIBIT*", "*.deribit.txt")
_SKIP_SUFFIXES = (".tmp", ".part")
_DAY_NS = 86_400 * 1_000_000_000
CHECKS = ("calendar", "butterfly", "parity")


@dataclass(frozen=True, order=True)
class UnderlyingDay:
    """One partition of the option assets: a UTC day of one underlying at one venue."""

    date: str
    venue: str
    underlying: str


def capture_files(landing: Path | None) -> list[Path]:
    """Every Deribit capture under ``<landing>/deribit/`` (none when the folder is missing)."""
    root = Path(landing) / FOLDER if landing is not None else None
    if root is None or not root.is_dir():
        return []
    found = {p for pattern in _PATTERNS for p in root.rglob(pattern)}
    return sorted(p for p in found if p.is_file() and not p.name.startswith((".", "_"))
                  and not p.name.endswith(_SKIP_SUFFIXES))


def _day(ts_ns: int) -> str:
    return dt.datetime.fromtimestamp(ts_ns // 1_000_000_000, dt.UTC).date().isoformat()


class OptionIndex:
    """Which underlying-days each capture holds, kept across sensor ticks in the lake.

    Args:
        lake: the lake root (the index lives in ``<lake>/_sources/options_index.json``).
    """

    def __init__(self, lake: Path) -> None:
        self.path = Path(lake) / INDEX_FILE
        self.entries: dict[str, dict] = {}
        if self.path.is_file():
            self.entries = json.loads(self.path.read_text())

    @staticmethod
    def signature(path: Path) -> list[int]:
        """Size and mtime: a capture that changes (still being written) is decoded again."""
        st = path.stat()
        return [st.st_size, st.st_mtime_ns]

    def refresh(self, files: Sequence[Path], *, limit: int | None = None) -> list[str]:
        """Decode the new or changed ``files`` (at most ``limit``); returns the paths decoded now."""
        fresh = [p for p in files if self.entries.get(str(p), {}).get("signature") != self.signature(p)]
        fresh = fresh[:limit] if limit is not None else fresh
        for path in fresh:
            entry: dict = {"signature": self.signature(path), "days": [], "error": None}
            try:
                tickers = concat(OPTION_TICKER, [c.get(OPTION_TICKER) for c in _decoder().run([path])])
                entry["days"] = [list(d) for d in sorted({(_day(ts), VENUE, u) for ts, u in zip(
                    tickers.column("ts_event_ns").to_pylist(), tickers.column("underlying").to_pylist(),
                    strict=True)})]
            except TapeflowError as exc:  # an unreadable capture is shown by the sensor, never fatal
                entry["error"] = str(exc)
            self.entries[str(path)] = entry
        if fresh:
            self._save()
        return [str(p) for p in fresh]

    def days(self, paths: Iterable[str] | None = None) -> set[UnderlyingDay]:
        """The underlying-days the given indexed paths (every one when None) hold."""
        keys = self.entries if paths is None else [p for p in paths if p in self.entries]
        return {UnderlyingDay(*d) for k in keys for d in self.entries[k]["days"]}

    def holding(self, want: UnderlyingDay) -> list[Path]:
        """The indexed captures holding rows of ``want``."""
        key = [want.date, want.venue, want.underlying]
        return sorted(Path(k) for k, e in self.entries.items() if key in e["days"])

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.entries, sort_keys=True, indent=1))
        os.replace(tmp, self.path)


def _decoder() -> DeribitTickerDecoder:
    return DeribitTickerDecoder(chunk_rows=20_000)


@dataclass
class DayRows:
    """One underlying-day's rows: priced tickers, their surfaces (stored form), the dead letters."""

    tickers: pa.Table
    surfaces: pa.Table
    rejected: pa.Table


def day_rows(files: Sequence[Path], want: UnderlyingDay, *, step_ns: int = STEP_NS,
             staleness_ns: int = STALENESS_NS) -> DayRows:
    """Decode ``files`` and keep ``want``'s tickers; its surfaces from those tickers alone.

    Args:
        files: the captures holding the day (:meth:`OptionIndex.holding`).
        want: the underlying-day.
        step_ns: the surface grid's step.
        staleness_ns: the oldest ticker a snapshot uses.

    Returns:
        The day's ``option_ticker`` rows in capture order, its ``option_surface`` rows, and the
        captures' dead letters filed on the day (rejects keep their capture time).
    """
    tickers, rejected = [], []
    for chunk in _decoder().run(list(files)):
        tickers.append(chunk.get(OPTION_TICKER))
        rejected.append(chunk.get(REJECTED))
    table = concat(OPTION_TICKER, tickers)
    start = int(dt.datetime.fromisoformat(want.date).replace(tzinfo=dt.UTC).timestamp()) * 1_000_000_000
    ts = table.column("ts_event_ns")
    keep = pc.and_(pc.equal(table.column("underlying"), want.underlying),
                   pc.and_(pc.greater_equal(ts, start), pc.less(ts, start + _DAY_NS)))
    day = table.filter(keep)
    dead = concat(REJECTED, rejected)
    recv = dead.column("ts_recv_ns")
    dead = dead.filter(pc.and_(pc.greater_equal(recv, start), pc.less(recv, start + _DAY_NS)))
    surface = surface_records(surfaces(day, step_ns, staleness_ns), want.venue)
    return DayRows(day, surface, dead)


def surface_facts(surface: pa.Table) -> dict[str, object]:
    """What one partition's surfaces say: snapshots, expiries, share with an ATM IV, violations.

    Args:
        surface: ``option_surface`` rows.

    Returns:
        ``snapshots``, ``expiry_rows``, ``expiries`` (distinct), ``atm_iv_share`` (of the expiry
        rows, None without rows), ``rr25_share``, and per no-arbitrage check its violations and
        points checked (``calendar_violations``, ``calendar_checked``, ...).
    """
    n = surface.num_rows
    snaps = len(set(surface.column("ts_event_ns").to_pylist())) if n else 0
    out: dict[str, object] = {
        "snapshots": snaps, "expiry_rows": n,
        "expiries": len(set(surface.column("expiry_ns").to_pylist())) if n else 0,
    }
    for col in ("atm_iv", "rr25"):
        finite = int(np.isfinite(surface.column(col).to_numpy()).sum()) if n else 0
        out[f"{col}_share"] = round(finite / n, 4) if n else None
    for check in CHECKS:
        for part in ("violations", "checked"):
            name = f"{check}_{part}"
            out[name] = int(pc.sum(surface.column(name)).as_py() or 0) if n else 0
    return out
