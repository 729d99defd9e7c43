"""L3 (market-by-order) book rebuild throughput on the CME ES MBO day, against peers in the same run.

Contenders, all rebuilding the book of the same file (``esh4-glbx-mdp3-20231225.mbo.dbn.zst``,
68,792 records):

* ``tapeflow numba``: :func:`kernels.l3book.l3_replay` over the day tiled ``copies`` times (each copy
  starts with its own snapshot, which clears and rebuilds the book), BBO + status + anomaly per event.
* ``plain-Python reference (dict scan)``: :func:`kernels.reference_l3.l3_replay_reference`, one copy
  (the test oracle, BBO by scanning the levels after every event: a floor, not a tuned dict book).
* ``NautilusTrader OrderBook (L3_MBO)``: the file loaded with Nautilus's own Databento loader
  (legacy Cython deltas; it emits no row for T/F records, so it applies fewer events) and applied
  with ``OrderBook.apply_delta`` in a Python loop, one copy; skipped when Nautilus is missing.

Timings are best-of-``repeat`` wall clock of the replay alone (decoding excluded). Every contender's
final best bid/ask is printed: they must agree (4810.00 / 4810.25).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from kernels.l3book import l3_replay
from kernels.reference_l3 import l3_replay_reference
from tapeflow.venues.databento.parse import decode_all

ES_MBO = "databento/glbx/esh4-glbx-mdp3-20231225.mbo.dbn.zst"
_COLUMNS = ("order_id", "action", "side", "price_nanos", "size_nanos", "flags")


def _data_root() -> Path:
    default = Path(__file__).resolve().parents[2] / "shared" / "data"
    return Path(os.environ.get("TAPEFLOW_REAL_DATA", default))


def _best_of(repeat: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def _row(name: str, events: int, seconds: float, bid: float, ask: float) -> dict[str, Any]:
    return {"name": name, "events": events, "seconds": seconds, "events_per_s": events / seconds,
            "final_bid": bid, "final_ask": ask}


def run(*, copies: int = 20, repeat: int = 5, path: Path | None = None) -> list[dict[str, Any]]:
    """Time every contender; return one dict per contender (name, events, seconds, events_per_s).

    Args:
        copies: how many times the day is tiled for the numba kernel (more events, steadier timing).
        repeat: best-of count for every timing.
        path: the MBO file (default: the ES day under ``$TAPEFLOW_REAL_DATA``).
    """
    path = path or _data_root() / ES_MBO
    table = decode_all([path])["order_event"]
    one = [table.column(c).to_numpy() for c in _COLUMNS]
    tiled = [np.tile(a, copies) for a in one]
    l3_replay(*(a[:1000] for a in one))  # compile (or load the numba cache) outside the timing
    rows = []
    seconds, out = _best_of(repeat, lambda: l3_replay(*tiled))
    rows.append(_row("tapeflow numba L3", len(tiled[0]), seconds, out["bid_px"][-1] / 1e9,
                     out["ask_px"][-1] / 1e9))
    seconds, out = _best_of(1, lambda: l3_replay_reference(*one))
    # the oracle itself: dicts, with the BBO found by scanning the levels after every event
    rows.append(_row("plain-Python reference (dict scan)", len(one[0]), seconds, out["bid_px"][-1] / 1e9,
                     out["ask_px"][-1] / 1e9))
    nautilus = _nautilus(path, repeat)
    if nautilus is not None:
        rows.append(nautilus)
    return rows


def _nautilus(path: Path, repeat: int) -> dict[str, Any] | None:
    try:
        from nautilus_trader.adapters.databento.loaders import DatabentoDataLoader
        from nautilus_trader.model.book import OrderBook
        from nautilus_trader.model.enums import BookType
    except ImportError:
        return None
    deltas = DatabentoDataLoader().from_dbn_file(str(path), as_legacy_cython=True)

    def replay() -> Any:
        book = OrderBook(deltas[0].instrument_id, BookType.L3_MBO)
        apply = book.apply_delta
        for delta in deltas:
            apply(delta)
        return book

    seconds, book = _best_of(repeat, replay)
    return _row("NautilusTrader OrderBook L3_MBO", len(deltas), seconds, float(book.best_bid_price()),
                float(book.best_ask_price()))


def main() -> list[dict[str, Any]]:
    """Print one line per contender and the ratios to the numba kernel; return the rows."""
    rows = run()
    ours = rows[0]["events_per_s"]
    print("L3 book rebuild, CME ES MBO 2023-12-25")
    for r in rows:
        rate = r["events_per_s"]
        print(f"  {r['name']:<34} {r['events']:>10,} events {r['seconds']:8.4f} s {rate / 1e6:8.2f} M/s"
              f"  kernel is x{ours / rate:7.1f}  final {r['final_bid']:.2f} / {r['final_ask']:.2f}")
    return rows


if __name__ == "__main__":
    main()
