"""The warehouse on chdb (always) and on a ClickHouse server (when TAPEFLOW_CLICKHOUSE_URL is set).

chdb opens one data directory per process, so the whole module shares one directory and every
test starts from empty tables.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from tapeflow.errors import ConfigError, StorageError
from tapeflow.schemas import ALL_RECORDS, concat
from tapeflow.schemas.records import BOOK_DELTA, QUOTE, TRADE
from tapeflow.storage import Warehouse
from tests.storage.samples import all_samples, rows, synthetic_deltas

REPO = Path(__file__).resolve().parents[2]


def _server_dsn() -> Iterator[str]:
    url = os.environ.get("TAPEFLOW_CLICKHOUSE_URL")
    if not url:
        pytest.skip("no ClickHouse server: set TAPEFLOW_CLICKHOUSE_URL=http://user:pass@host:8123 to run")
    # a database of its own, so the tests never touch real tables
    database = f"tapeflow_test_{uuid.uuid4().hex[:8]}"
    with Warehouse(url) as admin:
        admin.client.command(f"CREATE DATABASE {database}")
    parts = urlsplit(url)
    yield urlunsplit(parts._replace(path=f"/{database}"))
    with Warehouse(url) as admin:
        admin.client.command(f"DROP DATABASE IF EXISTS {database}")


@pytest.fixture(scope="module", params=["chdb", "server"])
def warehouse(request: pytest.FixtureRequest,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[Warehouse]:
    if request.param == "chdb":
        dsns: Iterator[str] = iter([f"chdb://{tmp_path_factory.mktemp('chdb')}"])
    else:
        dsns = _server_dsn()
    dsn = next(dsns)
    with Warehouse(dsn) as wh:
        wh.ensure_tables()
        yield wh
    next(dsns, None)


@pytest.fixture
def wh(warehouse: Warehouse) -> Warehouse:
    for name in ALL_RECORDS:
        warehouse.client.command(f"TRUNCATE TABLE IF EXISTS {name}")
    return warehouse


def _sql_count(wh: Warehouse, table: str) -> int:
    return int(wh.query(f"SELECT count() AS n FROM {table}").column("n")[0].as_py())


@pytest.mark.parametrize("name", sorted(ALL_RECORDS))
def test_every_record_type_round_trips_exactly(wh: Warehouse, name: str) -> None:
    record = ALL_RECORDS[name]
    table = all_samples()[name]
    assert wh.load(record, table) == table.num_rows
    back = wh.fetch(record)
    assert back.schema == record.arrow_schema()
    assert rows(back) == rows(table)  # lists, raw bytes, UInt64 max, UNDEF_PRICE, odd strings
    assert _sql_count(wh, name) == table.num_rows == 14


def test_loading_twice_leaves_exactly_one_copy(wh: Warehouse) -> None:
    deltas = synthetic_deltas(3_000)
    wh.load(BOOK_DELTA, deltas)
    wh.load(BOOK_DELTA, deltas)
    assert _sql_count(wh, "book_delta") == deltas.num_rows
    wh.client.command("OPTIMIZE TABLE book_delta FINAL")
    assert wh.count(BOOK_DELTA) == deltas.num_rows
    # no staging table is left behind
    assert not [n for n in wh.query("SHOW TABLES").column(0).to_pylist() if n.startswith("_stage")]


def test_a_reload_replaces_only_its_own_symbol_and_day(wh: Warehouse) -> None:
    trades = all_samples()["trade"]  # binance-usdm has BTCUSDT on two days and ETH/USDT on one
    wh.load(TRADE, trades)
    btc_day1 = trades.filter(pc.equal(trades.column("symbol"), "BTCUSDT")).slice(0, 1)
    wh.load(TRADE, btc_day1)
    assert wh.count(TRADE, "symbol = 'BTCUSDT'") == 1 + 2  # day 1 now one row; day 2 untouched
    assert wh.count(TRADE, "symbol = 'ETH/USDT'") == 2  # same venue and day, other symbol kept
    assert wh.count(TRADE) == trades.num_rows - 1


def test_merge_unions_sources_by_content(wh: Warehouse) -> None:
    deltas = synthetic_deltas(300)
    n = deltas.num_rows
    wh.load(BOOK_DELTA, deltas.slice(0, 2 * n // 3))
    wh.load(BOOK_DELTA, deltas.slice(n // 3), mode="merge")
    assert wh.count(BOOK_DELTA) == n
    wh.load(BOOK_DELTA, deltas.slice(n // 3), mode="merge")  # the same source again: idempotent
    assert wh.count(BOOK_DELTA) == n


def test_rows_sharing_a_key_are_never_collapsed(wh: Warehouse) -> None:
    # two quotes of one frame: same venue, symbol, ts_recv and sequence, different prices
    quote = all_samples()["quote"].slice(0, 1)
    bid = QUOTE.column_names.index("bid_price_nanos")
    lower = pa.array([quote.column(bid)[0].as_py() - 1], pa.int64())
    other = quote.set_column(bid, quote.schema.field(bid), lower)
    pair = pa.concat_tables([quote, other])
    assert len({tuple(r[c] for c in QUOTE.order_by) for r in pair.to_pylist()}) == 1
    wh.load(QUOTE, pair)
    wh.load(QUOTE, pair, mode="merge")
    wh.client.command("OPTIMIZE TABLE quote FINAL")
    assert wh.count(QUOTE) == 2


def test_append_adds_to_the_slice(wh: Warehouse) -> None:
    trades = all_samples()["trade"]
    wh.load(TRADE, trades)
    wh.load(TRADE, trades, mode="append")
    assert wh.count(TRADE) == 2 * trades.num_rows


def test_query_returns_arrow(wh: Warehouse) -> None:
    wh.load(TRADE, all_samples()["trade"])
    got = wh.query("SELECT venue, count() AS n FROM trade GROUP BY venue ORDER BY venue")
    assert isinstance(got, pa.Table)
    assert dict(zip(got.column("venue").to_pylist(), got.column("n").to_pylist(), strict=True)) == {
        "GLBX.MDP3": 2, "binance-usdm": 6, "kraken": 2, "weird venue": 4}
    with pytest.raises(StorageError, match="no_such_table"):
        wh.query("SELECT * FROM no_such_table")


def test_empty_load_and_missing_table(wh: Warehouse) -> None:
    assert wh.load(TRADE, concat(TRADE, [])) == 0
    assert wh.count(TRADE) == 0


def test_a_chdb_dir_held_by_another_process_is_a_clear_error(warehouse: Warehouse) -> None:
    if warehouse.chdb_path is None:
        pytest.skip("chdb only")
    code = (
        "from tapeflow.storage import Warehouse\n"
        "try:\n"
        f"    Warehouse('chdb://{warehouse.chdb_path}')\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.stdout.startswith("StorageError"), out.stdout + out.stderr
    assert "locked by another process" in out.stdout and str(warehouse.chdb_path) in out.stdout


def test_a_second_chdb_dir_in_one_process_is_a_clear_error(warehouse: Warehouse, tmp_path: Path) -> None:
    if warehouse.chdb_path is None:
        pytest.skip("chdb only")
    with pytest.raises(StorageError, match="one per process"):
        Warehouse(f"chdb://{tmp_path / 'other'}")


def test_bad_dsns_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="neither"):
        Warehouse("postgres://x")
    with pytest.raises(ConfigError, match="chdb:///absolute"):
        Warehouse("chdb://relative/dir")
