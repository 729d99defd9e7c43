"""The ``signals`` asset judges institutional pressure against the 20-day baseline of the days
before each partition: a three-day backfill (run out of order: the last day first) stores the rows
the batch detector gives over the whole session, days 2 and 3 judged on ``earlier_days`` and never
on a later day; the first day says it has no baseline."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kernels.codes import F_LAST
from tests.dagster.conftest import Deployment, definitions, materializations

S = 1_000_000_000
LOT = 1_000_000_000
DAY = 86_400 * S
T0 = 1_704_196_800 * S  # 2024-01-02 12:00 UTC
DATES = ["2024-01-02", "2024-01-03", "2024-01-04"]
KEY = [("ts_event_ns", "ascending"), ("side", "ascending")]


def _day(rng: np.random.Generator, start_ns: int, seconds: int, parent_side: int,
         first_id: int) -> list[tuple]:
    """Balanced background fills every second; a one-sided parent of 100-lot children in
    [start + 600, start + 660) s. Every order rests 20 s at its side's touch (bid 100, ask 101)."""
    rows = []
    oid = first_id

    def order(t: int, side: int, size: int) -> None:
        nonlocal oid
        price = (100 if side == 0 else 101) * LOT
        rows.append((t - 20 * S, oid, ord("A"), side, price, size))
        rows.append((t, oid, ord("F"), side, price, size))
        oid += 1

    for s in range(seconds):
        t = start_ns + s * S
        for j in range(3):
            order(t + 1000 + j, (s + j) % 2, int(rng.integers(20, 200)) * LOT)
        if 600 <= s < 660:
            for j in range(3):
                order(t + 2000 + j, 1 - parent_side, 100 * LOT)
    return rows


def _events(seed: int) -> pa.Table:
    from tapeflow.schemas.records import ORDER_EVENT

    rng = np.random.default_rng(seed)
    rows = [r for d in range(len(DATES)) for r in _day(rng, T0 + d * DAY, 900, d % 2, 1 + 10 ** 6 * d)]
    rows.sort(key=lambda r: (r[0], r[2] != ord("A")))  # an order's add before its fill
    ts, oid, action, side, price, size = (np.array(c) for c in zip(*rows, strict=True))
    return ORDER_EVENT.table({
        "ts_event_ns": ts, "ts_recv_ns": ts, "sequence": np.arange(len(ts)),
        "order_id": oid.astype(np.uint64),
        "action": action.astype(np.uint8), "side": np.where(side == 0, ord("B"), ord("A")).astype(np.uint8),
        "price_nanos": price, "size_nanos": size, "flags": np.full(len(ts), F_LAST, np.uint8),
    }, constants={"venue": "sim", "symbol": "X"})


def _batch(events: pa.Table) -> list[dict]:
    """The batch detector over the whole session in one call (each day on the days before it)."""
    from tapeflow.book.partition import rebuild_slices
    from tapeflow.schemas import concat
    from tapeflow.schemas.records import BOOK_SNAPSHOT
    from tapeflow.signals.config import DEFAULT_PATH, load
    from tapeflow.signals.detect import grid_and_levels
    from tapeflow.signals.orders import detect_orders

    thresholds = load(DEFAULT_PATH)
    grid_ns, levels = grid_and_levels(thresholds)
    snaps = concat(BOOK_SNAPSHOT, [s for s, _ in rebuild_slices([[events]], [[]], levels=levels,
                                                                   interval_ns=grid_ns)])
    found = pa.concat_tables(detect_orders(events, snaps, thresholds))
    return _institutional(found)


def _institutional(table: pa.Table) -> list[dict]:
    rows = table.filter(pc.equal(table.column("kind"), "institutional")).sort_by(KEY)
    return rows.drop_columns([c for c in rows.column_names if c not in _COLUMNS]).to_pylist()


_COLUMNS = ("ts_event_ns", "ts_recv_ns", "kind", "side", "size_nanos", "start_ns", "end_ns", "confidence",
            "score", "detector", "params_hash", "flags", "evidence")


def test_a_backfill_judges_each_day_on_the_days_before_it(tmp_path: Path) -> None:
    from assets.partitions import INSTRUMENTS_NAME, instrument_key, partition_key
    from tapeflow.schemas.records import ORDER_EVENT, SIGNAL
    from tapeflow.signals.stream_institutional import BaselineStore
    from tapeflow.storage import lake
    from tapeflow.storage.writer import write

    dep = Deployment(tmp_path)
    events = _events(5)
    write(ORDER_EVENT, events, dep.lake)
    want = _batch(events)
    where = {(r["ts_event_ns"] // DAY - T0 // DAY, json.loads(r["evidence"])["baseline"]) for r in want}
    print(f"batch: {len(want)} alerts, (day, baseline) {sorted(where)}")
    # day 1 has no earlier day; days 2 and 3 are judged on the days before them
    assert where == {(0, "own_day"), (1, "earlier_days"), (2, "earlier_days")}

    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(INSTRUMENTS_NAME, [instrument_key("sim", "X")])
    asset = [a for a in definitions().assets if "signals" in {k.path[-1] for k in a.keys}]
    meta = {}
    for date in (DATES[2], DATES[0], DATES[1]):  # the last day first: its history comes from the lake
        result = dg.materialize(asset, partition_key=partition_key(date, "sim", "X"),
                                resources=dep.resources(), instance=instance,
                                selection=[dg.AssetKey("signals")])
        assert result.success
        [meta[date]] = materializations(result)["signals"].values()
    base = {d: m["institutional_baseline"] for d, m in meta.items()}
    print(json.dumps(base, indent=1))
    assert base[DATES[2]]["days"] == DATES[:2] and base[DATES[2]]["from_lake"] == DATES[:2]
    assert base[DATES[0]]["earlier_days"] == 0 and base[DATES[0]]["reason"].startswith("no baseline: ")
    assert base[DATES[1]]["days"] == DATES[:1] and base[DATES[1]]["from_lake"] == []  # the stored record
    stored = _institutional(lake.read(SIGNAL, dep.lake))
    assert stored == want  # day 1 judged after days 2 and 3 were stored: no look-ahead
    days = sorted(BaselineStore(dep.lake / "_baselines").load("sim", "X").days)
    assert days == [T0 // DAY + d for d in range(3)]
