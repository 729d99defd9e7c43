"""Insurance-fund balances past int64 nanos (Bybit's shared USDT pool, 10,148,045,273.618073 USDT:
1.01e19 nanos, int64 stops at 9.22e18) are stored exactly: ``balance_nanos`` is a ``dec38`` column
(Arrow decimal128(38, 0), ClickHouse Decimal(38, 0)), and lakes and warehouses written with the older
``Int64`` column are widened when met (docs/derivatives.md, docs/storage.md "Widened columns")."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tapeflow.derivatives.derived import insurance_stress
from tapeflow.errors import StorageError
from tapeflow.schemas.core import Field
from tapeflow.schemas.derivatives import INSURANCE_FUND
from tapeflow.storage import lake as lake_store
from tapeflow.storage.warehouse import Warehouse
from tapeflow.storage.writer import Writer
from tests.derivatives.test_bybit_insurance import EXAMPLE
from tests.derivatives.test_poll import file_decode

MS = 1_000_000
T0 = 1714003200000 * MS
SHARED = 10_148_045_273_618_073_000  # "10148045273.618073" (Bybit's example) x 1e9, by hand
BIG = 10_100_000_000 * 10**9  # 1.01e10 units


def _older(kind: str) -> object:
    """``insurance_fund`` as a lake or warehouse written before the widening knew it."""
    fields = tuple(dataclasses.replace(f, kind=kind) if f.name == "balance_nanos" else f
                   for f in INSURANCE_FUND.fields)
    return dataclasses.replace(INSURANCE_FUND, fields=fields)


def _funds(*rows: tuple[int, str, int]) -> pa.Table:
    return INSURANCE_FUND.table({
        "ts_event_ns": [r[0] for r in rows], "ts_recv_ns": [r[0] for r in rows],
        "venue": ["bybit"] * len(rows), "symbol": [r[1] for r in rows], "asset": ["USDT"] * len(rows),
        "balance_nanos": [r[2] for r in rows]})


def _key(rows: list[dict]) -> list[tuple]:
    return sorted((r["symbol"], r["ts_event_ns"], int(r["balance_nanos"])) for r in rows)


def test_the_documented_pools_reach_lake_and_warehouse_exactly(tmp_path: Path) -> None:
    got = file_decode("bybit", EXAMPLE, "https://api.bybit.com/v5/market/insurance")
    assert "rejected" not in got
    decoded = got["insurance_fund"]
    table = INSURANCE_FUND.table({k: [r[k] for r in decoded] for k in INSURANCE_FUND.column_names})
    table = pa.concat_tables([table, _funds((T0 + 1, "shared-USDT", BIG))])
    with Writer(tmp_path / "lake", f"chdb://{tmp_path / 'wh'}") as writer:
        writer.replace(INSURANCE_FUND, table)
        from_warehouse = writer.warehouse.fetch(INSURANCE_FUND).to_pylist()
    from_lake = lake_store.read(INSURANCE_FUND, tmp_path / "lake").to_pylist()
    want = _key(table.to_pylist())
    assert ("shared-USDT", T0, SHARED) in want and ("shared-USDT", T0 + 1, BIG) in want and len(want) == 6
    assert _key(from_lake) == want
    assert _key(from_warehouse) == want


def test_an_older_int64_lake_is_widened_on_read_and_merge(tmp_path: Path) -> None:
    old = _older("i64")
    with Writer(tmp_path) as writer:
        writer.replace(old, _funds((T0, "shared-USDT", 9_000_000_000 * 10**9)))
    day = lake_store.day_of(T0)
    directory = lake_store.partition_dir(tmp_path, INSURANCE_FUND, "bybit", "shared-USDT", day)
    assert pq.read_schema(next(directory.glob("*.parquet"))).field("balance_nanos").type == pa.int64()
    assert lake_store.read(INSURANCE_FUND, tmp_path).column("balance_nanos").to_pylist() == [9 * 10**18]
    with Writer(tmp_path) as writer:  # a merge rewrites the partition: the old part's int64 rows go along
        writer.merge(INSURANCE_FUND, _funds((T0 + 1, "shared-USDT", BIG)))
    back = lake_store.read(INSURANCE_FUND, tmp_path)
    assert back.schema.field("balance_nanos").type == pa.decimal128(38, 0)
    assert [int(v) for v in back.column("balance_nanos").to_pylist()] == [9_000_000_000 * 10**9, BIG]


def test_a_lake_column_of_another_kind_is_a_clear_error(tmp_path: Path) -> None:
    with Writer(tmp_path) as writer:
        writer.replace(_older("f64"), _funds((T0, "shared-USDT", 5)))
    with pytest.raises(StorageError, match="balance_nanos.*double.*no lossless widening"):
        lake_store.read(INSURANCE_FUND, tmp_path)


def test_an_older_int64_warehouse_table_is_widened_in_place(tmp_path: Path) -> None:
    dsn = f"chdb://{tmp_path / 'wh'}"
    with Writer(None, dsn) as writer:
        writer.replace(_older("i64"), _funds((T0, "a", 7 * 10**9)))
    with Warehouse(dsn) as wh:
        before = wh.query("SELECT type FROM system.columns WHERE table = 'insurance_fund' "
                          "AND name = 'balance_nanos'").column(0).to_pylist()
    assert before == ["Int64"]
    with Writer(None, dsn) as writer:
        writer.replace(INSURANCE_FUND, _funds((T0, "shared-USDT", BIG)))
        rows = writer.warehouse.fetch(INSURANCE_FUND).to_pylist()
    assert _key(rows) == [("a", T0, 7 * 10**9), ("shared-USDT", T0, BIG)]


def test_a_warehouse_column_of_another_kind_is_a_clear_error(tmp_path: Path) -> None:
    dsn = f"chdb://{tmp_path / 'wh'}"
    with Warehouse(dsn) as wh:
        wh.ensure_tables([_older("f64")])
    with Warehouse(dsn) as wh, pytest.raises(StorageError, match="Float64.*Decimal\\(38, 0\\).*by hand"):
        wh.ensure_tables([INSURANCE_FUND])


def test_stress_of_a_pool_past_int64_is_exact() -> None:
    drop = BIG - 1_010_000_000 * 10**9  # 10 % below the peak: the alert level (0.10), reached exactly
    rows = insurance_stress(_funds((T0, "shared-USDT", BIG), (T0 + 1, "shared-USDT", drop))).to_pylist()
    assert [(int(r["balance_nanos"]), int(r["peak_nanos"]), r["level"]) for r in rows] == [
        (BIG, BIG, 0), (drop, BIG, 2)]
    assert rows[1]["drawdown"] == 0.1


def test_the_wide_kind_keeps_its_place_in_the_declaration() -> None:
    f = INSURANCE_FUND["balance_nanos"]
    assert (f.kind, f.arrow_type, f.clickhouse_type) == ("dec38", pa.decimal128(38, 0), "Decimal(38, 0)")
    assert f.widens_arrow(pa.int64()) and not f.widens_arrow(pa.float64())
    assert Field("x", "i64").widened is False


@pytest.mark.parametrize("rows", [3, 200], ids=["small", "polars"])  # both encoders of the bus
def test_a_wide_balance_crosses_the_bus_exactly(rows: int) -> None:
    from tapeflow.bus.streams import decode_rows, encode_rows

    table = _funds(*[(T0 + i, "shared-USDT", BIG + i) for i in range(rows)])
    back = decode_rows(INSURANCE_FUND, encode_rows(table))
    assert back.equals(table)
