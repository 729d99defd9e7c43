"""The 20-day history in the lake reaches the baseline checks and sizes volume and dollar bars.

Synthetic trades at one price, one unit each, on consecutive days: every expected number is
plain arithmetic on the day counts written here.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

NS = 1_000_000_000
DAY0_NS = 1_704_067_200 * NS  # 2024-01-01
PRICE_NANOS = 100 * NS
HISTORY = [400, 420, 380, 410, 390, 400]  # trades (= units traded) on 2024-01-01 .. 01-06


def _trades(day: int, n: int) -> pa.Table:
    from tapeflow.schemas.records import TRADE

    ts = [DAY0_NS + day * 86_400 * NS + i * NS for i in range(n)]
    return TRADE.table({"ts_event_ns": ts, "ts_recv_ns": ts, "sequence": list(range(n)),
                        "trade_id": [str(i) for i in range(n)], "price_nanos": [PRICE_NANOS] * n,
                        "size_nanos": [NS] * n, "aggressor_side": [ord("B")] * n, "flags": [0] * n},
                       constants={"venue": "sim", "symbol": "X"})


def _history(lake: Path) -> None:
    """What the bars and daily_baselines assets leave in the lake for each history day."""
    from tapeflow.batch.bars import BarThresholds, day_bars
    from tapeflow.derived.profiles import PROFILE, daily_profile
    from tapeflow.schemas.records import BAR, METRIC, TRADE
    from tapeflow.storage.writer import write

    for day, n in enumerate(HISTORY):
        trades = _trades(day, n)
        write(TRADE, trades, lake)
        write(PROFILE, daily_profile(trades, METRIC.empty_table(), f"2024-01-0{day + 1}"), lake)
        write(BAR, day_bars(trades, BarThresholds(0, 0, "day", 0)), lake)


def test_baseline_checks_are_evaluated_against_the_history(tmp_path: Path) -> None:
    from assets import checks
    from tapeflow.batch.targets import Target
    from tapeflow.schemas.records import TRADE

    _history(tmp_path)
    today = Target("2024-01-07", "sim", "X")
    results = {r.check_name: r for r in checks.evaluate("trades", {today: _trades(6, 405)}, tmp_path,
                                                        record=TRADE)}
    mean = sum(HISTORY) / len(HISTORY)
    for name, value in (("rows_vs_baseline", 405), ("volume_vs_baseline", 405 * NS)):
        check = results[name]
        assert check.passed and "skipped" not in check.metadata, name
        [judged] = check.metadata["details"].value["instruments"]
        assert judged["baseline_days"] == len(HISTORY) and judged["value"] == value
        assert judged["baseline_mean"] == mean * (NS if name == "volume_vs_baseline" else 1)
    # a day 10x its history warns on both
    busy = {r.check_name: r for r in checks.evaluate("trades", {today: _trades(6, 4_000)}, tmp_path,
                                                     record=TRADE)}
    assert {n for n, r in busy.items() if not r.passed} == {"rows_vs_baseline", "volume_vs_baseline"}
    assert all(busy[n].severity.value == "WARN" for n in ("rows_vs_baseline", "volume_vs_baseline"))


def test_baseline_checks_without_history_yield_no_result_and_the_page_says_skipped(tmp_path: Path) -> None:
    from assets import checks
    from quality import store
    from tapeflow.batch.targets import Target
    from tapeflow.schemas.records import TRADE

    today = Target("2024-01-07", "sim", "X")
    results = {r.check_name: r for r in checks.evaluate("trades", {today: _trades(6, 405)}, tmp_path,
                                                        record=TRADE)}
    # no result: Dagster shows the planned check as skipped (tests/dagster/test_dagster_ui.py)
    assert not {"rows_vs_baseline", "volume_vs_baseline"} & set(results)
    assert results["schema"].passed
    kept = store.load(tmp_path, [today])[(today, "trades")]
    for name in ("rows_vs_baseline", "volume_vs_baseline"):
        assert kept.check(name).details["skipped"] == "no baseline of at least 5 days"


def test_a_range_with_and_without_history_evaluates_where_it_can(tmp_path: Path) -> None:
    from assets import checks
    from tapeflow.batch.targets import Target
    from tapeflow.schemas.records import TRADE

    _history(tmp_path)
    judged, fresh = Target("2024-01-07", "sim", "X"), Target("2024-01-07", "sim", "NEW")
    other = _trades(6, 405).set_column(3, "symbol", pa.array(["NEW"] * 405))
    tables = {judged: _trades(6, 405), fresh: other}
    results = {r.check_name: r for r in checks.evaluate("trades", tables, tmp_path, record=TRADE)}
    rows = results["rows_vs_baseline"]
    assert rows.passed and rows.metadata["partitions_checked"].value == 1
    assert rows.metadata["partitions_skipped"].value == {str(fresh): "no baseline of at least 5 days"}
    assert "evaluated on 1 of 2 partitions; skipped on 1: no baseline of at least 5 days" in rows.description


def test_volume_and_dollar_bars_are_sized_from_the_baseline_else_from_the_day(tmp_path: Path) -> None:
    from tapeflow.batch.bars import THRESHOLD_BARS_PER_DAY, bar_thresholds, day_bars
    from tapeflow.batch.targets import Target

    today, trades = Target("2024-01-07", "sim", "X"), _trades(6, 1_200)  # 3x a history day
    fresh = bar_thresholds(tmp_path, today, trades)
    assert (fresh.source, fresh.baseline_days) == ("day", 0)
    assert fresh.volume_nanos == 1_200 * NS // THRESHOLD_BARS_PER_DAY
    assert fresh.notional_nanos == 1_200 * PRICE_NANOS // THRESHOLD_BARS_PER_DAY

    _history(tmp_path)
    sized = bar_thresholds(tmp_path, today, trades)
    units = sum(HISTORY) * NS // (len(HISTORY) * THRESHOLD_BARS_PER_DAY)
    assert (sized.source, sized.baseline_days) == ("baseline", len(HISTORY))
    assert sized.volume_nanos == units and sized.notional_nanos == units * PRICE_NANOS // NS
    intervals = day_bars(trades, sized).column("interval").to_pylist()
    # a day three times the mean day gets about three times the bars
    per_bar = sized.volume_nanos // NS
    assert intervals.count(f"volume:{sized.volume_nanos}") == -(-1_200 // per_bar) > 250
    assert intervals.count(f"dollar:{sized.notional_nanos}") == -(-1_200 // per_bar)
