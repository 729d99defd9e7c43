"""A feed whose times jump by years: the book stage never sizes memory from the span.

Found by the soak (docs/reliability.md): a first frame at its recorded 2024 time and the next ones
at today's made ``InstrumentBook`` size its snapshot grid for the whole gap (41.3 GiB) and the
flow died. Now the grid starts again at the jump and a ``status`` row (``time_jump``) says so.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa

from kernels.book_stage import MAX_GAP_STEPS
from tapeflow.book.grid import grid_rows
from tapeflow.book.stage import BookStage
from tapeflow.schemas.records import BOOK_DELTA

SECOND = 1_000_000_000
YEAR = 365 * 86_400 * SECOND
T0 = 1_717_200_000 * SECOND  # 2024-06-01


def _deltas(ts_ns: list[int], symbol: str = "BTC") -> pa.Table:
    n = len(ts_ns)
    return BOOK_DELTA.table({
        "ts_event_ns": ts_ns, "ts_recv_ns": ts_ns, "venue": ["v"] * n, "symbol": [symbol] * n,
        "sequence": list(range(n)), "side": [ord("B"), ord("A")] * (n // 2) + [ord("B")] * (n % 2),
        "action": [ord("U")] * n, "price_nanos": [100 + (i % 2) * 10 for i in range(n)],
        "size_nanos": [i + 1 for i in range(n)], "flags": [128] * n})


_CHILD = textwrap.dedent("""
    import resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
    from tapeflow.book.stage import BookStage
    from tapeflow.schemas.records import BOOK_DELTA, ORDER_EVENT
    kind = sys.argv[1]
    t0, t1 = 1_717_200_000 * 10**9, 1_796_000_000 * 10**9  # 2024-06-01, then 2026-12-01
    ts = [t0, t1, t1 + 10**9]
    if kind == "l2":
        cols = {"side": [66, 65, 66], "action": [85] * 3, "price_nanos": [100, 110, 101],
                "size_nanos": [1, 2, 3]}
        record = BOOK_DELTA
    else:
        cols = {"order_id": [1, 2, 3], "side": [66, 65, 66], "action": [65] * 3,
                "price_nanos": [100, 110, 101], "size_nanos": [1, 2, 3]}
        record = ORDER_EVENT
    table = record.table({"ts_event_ns": ts, "ts_recv_ns": ts, "venue": ["v"] * 3, "symbol": ["s"] * 3,
                          "sequence": [1, 2, 3], "flags": [128] * 3, **cols}
                         | ({"channel_id": [0] * 3} if "channel_id" in record.column_names else {}))
    stage = BookStage(kind, levels=10, interval_ns=10**9)
    snaps = []
    for i in range(3):  # one row per batch: the live flow's smallest batches
        snaps.append(stage.apply({record.name: table.slice(i, 1)})["book_snapshot"].num_rows)
    snaps.append(stage.close()["book_snapshot"].num_rows)
    status = stage.drain_status()
    print("OK", sum(snaps), status.column("state").to_pylist(), status.column("sequence").to_pylist())
""")


def test_years_apart_events_need_no_memory_for_the_span() -> None:
    """Two events 2.5 years apart under a 3 GiB address-space limit: before the fix the grid
    asked for the whole span (tens of GiB, MemoryError); now a clean run and one time_jump row."""
    for kind in ("l2", "l3"):
        done = subprocess.run([sys.executable, "-c", _CHILD, kind], capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        # instants: none before the jump (the 2024 row's span had no later row), then 2 at the new
        # time: the instant at t1 (made final by t1 + 1 s) and the closing one at t1 + 1 s
        assert done.stdout.split("\n")[-2] == "OK 2 ['time_jump'] [2]", (kind, done.stdout, done.stderr)


def test_a_jump_starts_the_grid_again_in_any_batches() -> None:
    ts = [T0, T0 + SECOND // 2, T0 + 2 * SECOND + 1, T0 + 2 * YEAR, T0 + 2 * YEAR + 3 * SECOND,
          T0 + SECOND, T0 + 2 * YEAR + 4 * SECOND]  # forward by 2 years, back to 2024 and forward again
    table = _deltas(ts)
    whole = BookStage("l2").replay({"book_delta": table})["book_snapshot"]
    grid, _ = grid_rows(np.array(ts, np.int64), SECOND)
    assert whole.column("ts_event_ns").to_pylist() == grid.tolist()
    # each span's instants before its running max (the stale 2024 row alone has none), the last
    # span's closing one: never the gap
    assert grid.tolist() == [T0, T0 + SECOND, T0 + 2 * SECOND, T0 + 2 * YEAR, T0 + 2 * YEAR + SECOND,
                             T0 + 2 * YEAR + 2 * SECOND, T0 + 2 * YEAR + 4 * SECOND]
    for size in (1, 2, 3):
        stage = BookStage("l2")
        parts = [stage.apply({"book_delta": table.slice(lo, size)})["book_snapshot"]
                 for lo in range(0, len(ts), size)]
        parts.append(stage.close()["book_snapshot"])
        assert pa.concat_tables(parts).equals(whole), size
        status = stage.drain_status()
        assert status.column("state").to_pylist() == ["time_jump"] * 3
        assert status.column("sequence").to_pylist() == [3, 5, 6]
        assert stage.drain_status().num_rows == 0


def test_a_gap_within_the_bound_is_filled() -> None:
    """A weekend (two days at 1 s) is no jump: its instants are all there."""
    ts = [T0, T0 + 2 * 86_400 * SECOND]
    snaps = BookStage("l2").replay({"book_delta": _deltas(ts)})["book_snapshot"]
    assert snaps.num_rows == 2 * 86_400 + 1
    assert MAX_GAP_STEPS * SECOND > 2 * 86_400 * SECOND


def test_a_heartbeat_years_ahead_fills_nothing() -> None:
    stage = BookStage("l2")
    stage.apply({"book_delta": _deltas([T0, T0 + SECOND // 2])})
    out = stage.advance("v", "BTC", T0 + 3 * YEAR)["book_snapshot"]
    assert out.num_rows == 0
    status = stage.drain_status()
    assert status.column("state").to_pylist() == ["time_jump"]
    assert status.column("sequence").to_pylist() == [-1]
    # the instrument's next row starts the grid again where it is
    later = _deltas([T0 + 3 * YEAR, T0 + 3 * YEAR + 2 * SECOND])
    got = stage.apply({"book_delta": later})["book_snapshot"].column("ts_event_ns").to_pylist()
    assert got == [T0 + 3 * YEAR, T0 + 3 * YEAR + SECOND]


def test_a_time_jump_reaches_the_pipeline_as_status() -> None:
    from tapeflow.live.pipeline import InstrumentPipeline

    pipe = InstrumentPipeline(BookStage("l2"), raw=False)
    items = pipe.apply({"book_delta": _deltas([T0, T0 + 2 * YEAR])})
    names = [name for name, _ in items]
    assert names.count("status") == 1
    status = dict(items)["status"]
    assert status.column("state").to_pylist() == ["time_jump"]
    assert "beyond 262144 grid steps" in status.column("detail")[0].as_py()
