"""The option suites pass real Deribit rows and hand-built clean rows, and fail each injected fault."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from quality import check_names, run_suite
from tapeflow.cli import main
from tapeflow.options.surface import SURFACE_SCHEMA, surface_records
from tapeflow.schemas import ALL_RECORDS
from tapeflow.schemas.options import OPTION_SURFACE, OPTION_TICKER
from tests.conftest import need

SCALE = 1_000_000_000
DAY = "2021-04-05"
T0 = 1_617_642_000 * SCALE  # 2021-04-05 17:00 UTC
EXPIRY = 1_617_955_200 * SCALE  # 2021-04-09 08:00 UTC
N = 4


def _tickers() -> pa.Table:
    times = [T0 + i * SCALE for i in range(N)]
    return OPTION_TICKER.table({
        "ts_event_ns": times, "ts_recv_ns": [t + 1_000_000 for t in times],
        "symbol": ["BTC-9APR21-58000-C", "BTC-9APR21-58000-P", "BTC-9APR21-40000-C", "BTC-9APR21-70000-C"],
        "strike_price_nanos": [58_000 * SCALE, 58_000 * SCALE, 40_000 * SCALE, 70_000 * SCALE],
        "option_type": ["C", "P", "C", "C"],
        "mark_price_nanos": [30_000_000, 25_000_000, 310_000_000, 1_000_000],
        "t_years": [(EXPIRY - t) / (365 * 86_400 * SCALE) for t in times],
        # a deep in-the-money call has no IV: its reason says why
        "iv": [0.75, 0.74, math.nan, 0.9], "iv_reason": ["ok", "ok", "no_vega", "ok"],
        "mark_iv": [0.75, 0.74, 1.2, 0.9], "delta": [0.52, -0.48, math.nan, 0.05],
        "delta_at_mark_iv": [0.52, -0.48, 0.99, 0.05], "venue_delta": [0.52, -0.48, 0.99, math.nan],
    }, constants={"venue": "deribit", "underlying": "BTC", "expiry_ns": EXPIRY,
                  "underlying_price_nanos": 58_100 * SCALE})


def _surfaces() -> pa.Table:
    nan = math.nan
    return OPTION_SURFACE.table({
        "expiry_ns": [EXPIRY + w * 7 * 86_400 * SCALE for w in range(N)],
        "t_years": [0.01, 0.03, 0.05, 0.07], "atm_iv": [0.75, 0.8, nan, 0.82],
        "atm_total_var": [0.005625, 0.0192, nan, 0.047], "rr25": [0.02, nan, nan, nan],
        "bf25": [0.01, nan, nan, nan], "n_strikes": [6, 3, 1, 2], "n_options": [8, 4, 1, 2],
        "reasons": ["ok", "no_25d_put", "too_few_strikes", "no_25d_call,no_25d_put"],
        "calendar_violations": [0, 1, 0, 0], "calendar_checked": [0, 5, 0, 2],
        "butterfly_violations": [0, 0, 0, 0], "butterfly_checked": [4, 1, 0, 0],
        "parity_violations": [1, 0, 0, 0], "parity_checked": [2, 1, 0, 1],
    }, constants={"ts_event_ns": T0, "ts_recv_ns": T0, "venue": "deribit", "symbol": "BTC"})


CLEAN = {"option_tickers": _tickers, "option_surfaces": _surfaces}


def _with(table: pa.Table, name: str, row: int, value) -> pa.Table:  # noqa: ANN001
    values = table.column(name).to_pylist()
    values[row] = value
    i = table.column_names.index(name)
    return table.set_column(i, table.schema.field(i), pa.array(values, table.schema.field(i).type))


def test_both_records_are_registered() -> None:
    assert ALL_RECORDS["option_ticker"] is OPTION_TICKER
    assert ALL_RECORDS["option_surface"] is OPTION_SURFACE


def test_the_surface_record_holds_every_surface_column() -> None:
    common = {"ts_event_ns", "ts_recv_ns", "venue", "symbol"}
    stored = {f.name: f.arrow_type for f in OPTION_SURFACE.fields if f.name not in common}
    plain = {f.name: f.type for f in SURFACE_SCHEMA if f.name not in ("underlying", "ts_ns")}
    assert stored == plain


@pytest.mark.parametrize("dataset", sorted(CLEAN))
def test_clean_rows_pass_every_check(dataset: str) -> None:
    result = run_suite(dataset, CLEAN[dataset](), partition_day=DAY)
    assert result.passed, [(c.name, c.examples) for c in result.failed]
    assert [c.name for c in result.checks] == list(check_names(dataset))


# (dataset, row, column, value, the one check that must fail)
FAULTS = [
    ("option_tickers", 0, "iv", 0.0, "iv_range"),  # a zero vol reported as a solution
    ("option_tickers", 0, "iv", 12.0, "iv_range"),  # a premium read in USD, not coin
    ("option_tickers", 0, "iv", math.nan, "iv_range"),  # NaN without a reason
    ("option_tickers", 2, "iv_reason", "ok", "iv_range"),  # NaN said to be fine
    ("option_tickers", 2, "iv_reason", "gave_up", "iv_reason_code"),
    ("option_tickers", 0, "strike_price_nanos", 0, "strike_positive"),
    ("option_tickers", 0, "option_type", "X", "option_type"),
    ("option_tickers", 0, "expiry_ns", T0 - SCALE, "expiry_after_ts"),  # expired, priced as if not
    ("option_tickers", 0, "ts_event_ns", T0 + 86_400 * SCALE, "ts_within_day"),
    ("option_surfaces", 0, "atm_iv", math.nan, "atm_iv_reason"),  # NaN with reasons ok
    ("option_surfaces", 0, "atm_iv", -0.1, "atm_iv_reason"),
    ("option_surfaces", 2, "atm_iv", 0.5, "atm_iv_reason"),  # a value where there are too few strikes
    ("option_surfaces", 1, "reasons", "ok", "wings_reason"),  # NaN wings lose their reason
    ("option_surfaces", 0, "rr25", math.nan, "wings_reason"),
    ("option_surfaces", 1, "reasons", "ok,no_25d_put", "reason_code"),
    ("option_surfaces", 1, "reasons", "no_25d_put,no_smile", "reason_code"),
    ("option_surfaces", 0, "parity_violations", 3, "violation_counts"),  # more than checked
    ("option_surfaces", 0, "calendar_violations", -1, "violation_counts"),
]


@pytest.mark.parametrize(("dataset", "row", "column", "value", "check"), FAULTS,
                         ids=[f"{d}-{r}-{c}-{v}" for d, r, c, v, _ in FAULTS])
def test_each_fault_fails_its_check(dataset: str, row: int, column: str, value, check: str) -> None:  # noqa: ANN001
    table = _with(CLEAN[dataset](), column, row, value)
    result = run_suite(dataset, table, partition_day=DAY)
    assert [c.name for c in result.failed] == [check]


@pytest.fixture(scope="module")
def real(real_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[pa.Table, pa.Table]:
    folder = need(real_data / "options" / "deribit")
    paths = sorted(str(p) for p in folder.glob("cryptofeed_DERIBIT*"))
    if len(paths) != 2:
        pytest.skip(f"expected the two Deribit captures in {folder}, found {len(paths)}")
    tmp = tmp_path_factory.mktemp("options")
    argv = ["options", "--format", "deribit", *paths, "--out", str(tmp / "t.parquet"),
            "--surface", str(tmp / "s.parquet"), "--quiet"]
    assert main(argv) == 0
    return pq.read_table(tmp / "t.parquet"), surface_records(pq.read_table(tmp / "s.parquet"), "deribit")


def _day(table: pa.Table, day: str) -> pa.Table:
    start = int(dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC).timestamp()) * SCALE
    ts = table.column("ts_event_ns")
    return table.filter(pc.and_(pc.greater_equal(ts, start), pc.less(ts, start + 86_400 * SCALE)))


@pytest.mark.parametrize("day", ["2021-04-05", "2021-04-17"])
def test_real_deribit_rows_pass_both_suites(real, day: str) -> None:  # noqa: ANN001
    tickers, surfaces = real
    for dataset, table in (("option_tickers", tickers), ("option_surfaces", surfaces)):
        part = _day(table, day)
        assert part.num_rows > 0, (dataset, day)
        result = run_suite(dataset, part, partition_day=day)
        assert result.passed, (dataset, [(c.name, c.examples) for c in result.failed])
        print(f"{dataset} {day}: {part.num_rows} rows, {len(result.checks)} checks passed")


def test_damaged_real_rows_fail(real) -> None:  # noqa: ANN001
    tickers, surfaces = (_day(t, DAY) for t in real)
    bad = _with(tickers, "strike_price_nanos", 0, -1)
    assert [c.name for c in run_suite("option_tickers", bad, partition_day=DAY).failed] == ["strike_positive"]
    thin = surfaces.column("reasons").to_pylist().index("too_few_strikes")
    bad = _with(surfaces, "atm_iv", thin, 0.5)
    assert [c.name for c in run_suite("option_surfaces", bad, partition_day=DAY).failed] == ["atm_iv_reason"]


def test_real_rows_round_trip_through_the_writer(real, tmp_path: Path) -> None:  # noqa: ANN001
    from tapeflow.storage import lake as lake_store
    from tapeflow.storage.warehouse import Warehouse
    from tapeflow.storage.writer import Writer

    with Warehouse(f"chdb://{tmp_path / 'wh'}") as wh:
        with Writer(tmp_path / "lake", wh) as writer:
            for table in real:
                with writer.load(ALL_RECORDS[table.schema.metadata[b"tapeflow.record"].decode()],
                                 "replace") as load:
                    load.add(table)
                    load.commit()
        for record, table in zip((OPTION_TICKER, OPTION_SURFACE), real, strict=True):
            want = _frame(table)
            pd.testing.assert_frame_equal(_frame(lake_store.read(record, tmp_path / "lake")), want)
            pd.testing.assert_frame_equal(_frame(wh.fetch(record).cast(record.arrow_schema())), want)
            print(f"{record.name}: {len(want)} rows in the lake and the warehouse")


def _frame(table: pa.Table) -> pd.DataFrame:
    frame = table.to_pandas()
    return frame.sort_values(list(frame.columns), kind="stable").reset_index(drop=True)
