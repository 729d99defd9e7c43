"""Injected faults fail the right blocking check with the right count, and stop what is downstream.

Each scenario alters one line kind of a clean simulated day (the clean day passes every check:
``test_sim_day``); the expected counts follow from the alteration itself.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from pathlib import Path

import dagster as dg

from tests.dagster.conftest import (
    SIM_DAY,
    check_results,
    copy_landing,
    materializations,
    materialize,
    register,
    sim_lines,
    write_sim,
)

SYMBOL = "SIM-ETHUSDT"
NS = 1_000_000_000
INGEST = {"trades", "book_deltas", "order_events", "venue_quotes", "dead_letters"}


def _run(sim_files: Path, root: Path, alter) -> tuple[dg.ExecuteInProcessResult, object]:
    from assets.partitions import partition_key

    dep = copy_landing(sim_files, root)
    path = dep.landing / "sim" / SYMBOL / f"{SIM_DAY}.events.csv.gz"
    rows = sim_lines(path)
    expected = alter(rows)
    write_sim(path, rows)
    instance = dg.DagsterInstance.ephemeral()
    register(instance, dep)
    return materialize(dep, instance, partition_key=partition_key(SIM_DAY, "sim", SYMBOL)), expected


def _failed(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str], int]:
    return {k: ev.metadata["unexpected_count"].value for k, ev in check_results(result).items()
            if not ev.passed and ev.severity.value == "ERROR"}


def _order_lifetimes(rows: list[list[str]]) -> dict[str, tuple[int, int, int]]:
    """order id -> (row of its add, row of its delete, executions in between) for A ... D orders."""
    added, out = {}, {}
    executed: Counter[str] = Counter()
    for i, r in enumerate(rows):
        if r[3] == "A":
            added[r[4]] = i
        elif r[3] == "E":
            executed[r[4]] += 1
        elif r[3] == "D" and r[4] in added:
            out[r[4]] = (added[r[4]], i, executed[r[4]])
    return out


def test_crossed_book_fails_crossed_book_on_snapshots_and_stops_features(sim_files, tmp_path) -> None:
    def cross(rows: list[list[str]]) -> int:
        start = int(rows[0][1])
        # a bid resting 2-6 s, never executed, moved 1% above the market: the book is crossed
        # exactly while it rests
        life = next((a, d) for a, d, e in _order_lifetimes(rows).values()
                    if rows[a][5] == "B" and int(rows[a][1]) > start + 30 * NS and not e
                    and 2 * NS < int(rows[d][1]) - int(rows[a][1]) < 6 * NS)
        add, delete = life
        rows[add][6] = str((Decimal(rows[add][6]) * Decimal("1.01")).quantize(Decimal(rows[add][6])))
        lo, hi = int(rows[add][1]), int(rows[delete][1])
        return len(range(-(-lo // NS) * NS, hi, NS))  # 1 s grid instants while it rests

    result, crossed_instants = _run(sim_files, tmp_path, cross)
    assert crossed_instants >= 2
    failed = _failed(result)
    assert failed[("book_snapshots", "crossed_book")] == crossed_instants
    assert failed[("bbo", "crossed_book")] > 0
    assert set(failed) == {("book_snapshots", "crossed_book"), ("bbo", "crossed_book")}
    done = set(materializations(result))
    assert not result.success
    assert {"book_snapshots", "bbo"} <= done and not done & {"features", "clickhouse_tables"}
    # the data_docs asset will not run: the failing step wrote the day's page itself
    from quality.store import docs_dir
    from tapeflow.batch.targets import Target

    page = (docs_dir(tmp_path / "lake", Target(SIM_DAY, "sim", SYMBOL)) / "index.html").read_text()
    assert "crossed_book" in page and "FAIL" in page


def test_sequence_gap_fails_sequence_gaps_and_stops_everything_after_ingest(sim_files, tmp_path) -> None:
    def drop_one(rows: list[list[str]]) -> int:
        seen = Counter(r[4] for r in rows)
        start = int(rows[0][1])
        victim = next(i for i, r in enumerate(rows)
                      if r[3] == "A" and seen[r[4]] == 1 and int(r[1]) > start + 60 * NS)
        del rows[victim]
        return 1

    result, gaps = _run(sim_files, tmp_path, drop_one)
    failed = _failed(result)
    assert failed[("order_events", "sequence_gaps")] == gaps
    assert {k for k in failed if k[0] == "order_events"} == {("order_events", "sequence_gaps")}
    assert set(materializations(result)) == INGEST


def test_clock_skew_fails_recv_skew_with_the_skewed_count(sim_files, tmp_path) -> None:
    def skew(rows: list[list[str]]) -> int:
        start = int(rows[0][1])
        adds = [r for r in rows if r[3] == "A" and int(r[1]) > start + 40 * NS][:7]
        for r in adds:  # the venue clock 10 s behind the capture clock (the bound is 5 s)
            r[0] = str(int(r[0]) - 10 * NS)
        return len(adds)

    result, skewed = _run(sim_files, tmp_path, skew)
    failed = _failed(result)
    assert failed[("order_events", "recv_skew")] == skewed
    assert {k for k in failed if k[0] == "order_events"} == {("order_events", "recv_skew")}
    assert set(materializations(result)) == INGEST


def test_a_day_far_above_its_20_day_baseline_warns_without_blocking(tmp_path: Path) -> None:
    from assets import checks
    from tapeflow.batch.targets import Target
    from tapeflow.schemas.records import TRADE
    from tapeflow.storage.writer import write

    def trades(day: int, n: int) -> object:
        ts = [1_704_067_200 * NS + day * 86_400 * NS + i * NS for i in range(n)]
        return TRADE.table({"ts_event_ns": ts, "ts_recv_ns": ts, "sequence": list(range(n)),
                            "trade_id": [str(i) for i in range(n)], "price_nanos": [100 * NS] * n,
                            "size_nanos": [NS] * n, "aggressor_side": [ord("B")] * n, "flags": [0] * n},
                           constants={"venue": "sim", "symbol": "X"})

    history = [40, 42, 38, 41, 39, 40]  # trades per day on 2024-01-01 .. 01-06
    for day, n in enumerate(history):
        write(TRADE, trades(day, n), tmp_path)
    today = Target("2024-01-07", "sim", "X")
    base = checks.baseline(tmp_path, TRADE, today)
    assert sorted(base.row_counts) == sorted(history)
    results = {r.check_name: r for r in checks.evaluate("trades", {today: trades(6, 400)}, tmp_path,
                                                        record=TRADE)}
    busy = results["rows_vs_baseline"]
    assert not busy.passed and busy.severity.value == "WARN"
    assert all(r.passed for name, r in results.items() if name not in checks.WARN_ONLY)
