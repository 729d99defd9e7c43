"""A clean simulated day passes every check of every suite, with the baselines really evaluated."""

from __future__ import annotations

import sys

import pyarrow as pa
import pyarrow.compute as pc
import pytest

import quality
from quality import QualityConfig, check_names, run_suite
from tests.quality.conftest import DAY, steady_baseline

DATASETS = ("trades", "order_events", "book_deltas", "quotes", "book_snapshots", "bars", "metrics")


def _baseline(sim_day, dataset):
    table = sim_day.table(dataset)
    if dataset == "trades":
        return steady_baseline(table.num_rows, pc.sum(table.column("size_nanos")).as_py())
    if dataset == "bars":
        one_s = table.filter(pc.equal(table.column("interval"), "1s"))
        return steady_baseline(one_s.num_rows, pc.sum(one_s.column("volume_nanos")).as_py())
    return steady_baseline(table.num_rows)


@pytest.mark.parametrize("dataset", DATASETS)
def test_clean_day_passes_every_check(sim_day, dataset):
    table = sim_day.table(dataset)
    book = sim_day.quotes if dataset == "trades" else None
    result = run_suite(dataset, table, partition_day=DAY, baseline=_baseline(sim_day, dataset), book=book)
    assert result.row_count == table.num_rows > 0
    assert [c.name for c in result.checks] == list(check_names(dataset))
    failed = {c.name: (c.unexpected_count, c.examples[:1]) for c in result.failed}
    assert failed == {}
    # nothing may pass by being skipped: every check really judged the data
    assert [c.name for c in result.checks if "skipped" in c.details] == []
    for c in result.checks:
        assert c.unexpected_count == 0 and c.examples == []
        assert c.element_count > 0, c.name


def test_clean_trades_are_all_judged_against_the_book(sim_day):
    result = run_suite("trades", sim_day.trades, partition_day=DAY, book=sim_day.snapshots)
    check = result.check("trade_inside_book")
    assert check.passed
    # the 1 s snapshot grid starts at the first book row, so only trades before it go unjudged
    first_grid = sim_day.snapshots.column("ts_recv_ns").to_numpy().min()
    early = int((sim_day.trades.column("ts_recv_ns").to_numpy() < first_grid).sum())
    assert check.details["judged_trades"] == sim_day.trades.num_rows - early


def test_without_book_or_baseline_those_checks_say_skipped(sim_day):
    result = run_suite("trades", sim_day.trades)
    skipped = {c.name: c.details["skipped"] for c in result.checks if "skipped" in c.details}
    assert skipped == {"trade_inside_book": "no book given",
                       "rows_vs_baseline": "no baseline of at least 5 days",
                       "volume_vs_baseline": "no baseline of at least 5 days"}
    day = result.check("ts_within_day")
    assert day.details["day"] == DAY and day.details["day_inferred"] is True


def test_record_names_and_unknown_dataset(sim_day):
    assert run_suite("trade", sim_day.trades.slice(0, 50)).dataset == "trades"
    from tapeflow.errors import ConfigError

    with pytest.raises(ConfigError, match="no quality suite for dataset 'candles'"):
        run_suite("candles", sim_day.trades)
    with pytest.raises(ConfigError, match="'2024-13-01'"):
        run_suite("trades", sim_day.trades, partition_day="2024-13-01")


def test_import_quality_does_not_import_great_expectations():
    import subprocess

    code = "import sys, quality; print('great_expectations' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_config_defaults_are_the_documented_ones():
    cfg = QualityConfig()
    assert (cfg.recv_skew_ns, cfg.crossed_rate_max, cfg.stale_interval_ns, cfg.baseline_z_max) == (
        5_000_000_000, 0.0, 60_000_000_000, 4.0)


def test_baselines_from_earlier_days(sim_day):
    trades = sim_day.trades
    n, volume = trades.num_rows, pc.sum(trades.column("size_nanos")).as_py()
    # five earlier "days": the whole day, then halves; one day the instrument is missing
    days = [trades, trades.slice(0, n // 2), trades.slice(n // 2), trades.slice(0, 0), trades]
    (symbol,) = set(trades.column("symbol").to_pylist())
    base = quality.baselines_from_days("trades", days)
    assert list(base) == [symbol]
    half = pc.sum(trades.slice(0, n // 2).column("size_nanos")).as_py()
    assert list(base[symbol].row_counts) == [n, n // 2, n - n // 2, 0, n]
    assert list(base[symbol].volumes_nanos) == [volume, half, volume - half, 0, volume]
    bars = quality.baselines_from_days("bars", [sim_day.bars])
    one_s = sim_day.bars.filter(pc.equal(sim_day.bars.column("interval"), "1s"))
    assert list(bars[symbol].row_counts) == [one_s.num_rows]
    assert list(bars[symbol].volumes_nanos) == [volume]


def test_derived_baseline_record_feeds_the_trades_suite(sim_day):
    from tapeflow.derived import baselines, daily_profile
    from tapeflow.schemas.records import SCALE

    trades, day_ns = sim_day.trades, 86_400 * SCALE

    def shifted(table, days):
        out = table
        for c in ("ts_event_ns", "ts_recv_ns"):
            i = out.column_names.index(c)
            out = out.set_column(i, out.schema.field(i), pc.add(out.column(c), days * day_ns))
        return out

    # six identical earlier days: the derived baseline has std 0, so today must match exactly
    profiles = pa.concat_tables([daily_profile(shifted(trades, -k), sim_day.metrics.slice(0, 0), day)
                                 for k, day in ((k, f"2023-12-{32 - k:02d}") for k in range(1, 7))])
    table = baselines(profiles, 20, days=[DAY])
    assert table.column("days_used").to_pylist() == [6]
    same = run_suite("trades", trades, partition_day=DAY, baseline=table)
    assert same.check("rows_vs_baseline").passed and same.check("volume_vs_baseline").passed
    assert "skipped" not in same.check("rows_vs_baseline").details
    half = run_suite("trades", trades.slice(0, trades.num_rows // 2), partition_day=DAY, baseline=table)
    (inst,) = half.check("rows_vs_baseline").details["instruments"]
    assert (inst["value"], inst["baseline_mean"]) == (trades.num_rows // 2, trades.num_rows)
    assert inst["z"] == "-inf"  # a flat baseline: any change is infinitely unlikely
    assert {c.name for c in half.failed} == {"rows_vs_baseline", "volume_vs_baseline"}
