"""The Parquet lake: layout, round trips, idempotent replace, merge, crash safety, bytes per row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from tapeflow.errors import StorageError
from tapeflow.schemas import ALL_RECORDS
from tapeflow.schemas.records import BOOK_DELTA, F_LAST, L2_CLEAR, NO_SIDE, REJECTED, TRADE
from tapeflow.storage import lake
from tapeflow.storage.parts import STAGING
from tapeflow.storage.writer import write
from tests.storage.samples import KEYS, T0, all_samples, rows, synthetic_deltas


@pytest.mark.parametrize("name", sorted(ALL_RECORDS))
def test_every_record_type_round_trips_exactly(tmp_path: Path, name: str) -> None:
    record = ALL_RECORDS[name]
    table = all_samples()[name]
    written = write(record, table, tmp_path)
    back = lake.read(record, tmp_path)
    assert back.schema == record.arrow_schema()
    assert rows(back) == rows(table)
    # one file per (venue, symbol, day): KEYS has 7 distinct ones, 2 rows each
    assert len(written) == len({(v, s, lake.day_of(ts)) for v, s, ts in KEYS}) == 7
    assert sum(w.rows for w in written) == table.num_rows == 14


def test_partition_paths_are_hive_style_and_escaped(tmp_path: Path) -> None:
    write(TRADE, all_samples()["trade"], tmp_path)
    found = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.parquet"))
    assert found == sorted([
        "trade/venue=GLBX.MDP3/symbol=ESH4/date=2024-08-08/part-0.parquet",
        "trade/venue=binance-usdm/symbol=BTCUSDT/date=2024-08-08/part-0.parquet",
        "trade/venue=binance-usdm/symbol=BTCUSDT/date=2024-08-09/part-0.parquet",
        "trade/venue=binance-usdm/symbol=ETH%2FUSDT/date=2024-08-08/part-0.parquet",
        "trade/venue=kraken/symbol=XBT%3DEUR%25%C3%A9/date=2024-08-08/part-0.parquet",
        "trade/venue=weird%20venue/symbol=%2E./date=2024-08-07/part-0.parquet",
        # no venue time (-1): filed under its capture day
        "trade/venue=weird%20venue/symbol=_unknown_/date=2024-08-08/part-0.parquet",
    ])
    # nothing escapes the dataset directory, and no partition value is a hidden name
    assert all(".." not in Path(p).parts for p in found)


def test_other_hive_readers_decode_the_same_values(tmp_path: Path) -> None:
    write(TRADE, all_samples()["trade"], tmp_path)
    keys = pa.schema([("venue", pa.string()), ("symbol", pa.string()), ("date", pa.string())])
    part = ds.partitioning(keys, flavor="hive")
    table = ds.dataset(tmp_path / "trade", format="parquet", partitioning=part).to_table()
    symbols = set(table.column("symbol").to_pylist())
    assert symbols == {"BTCUSDT", "ETH/USDT", "ESH4", "..", "XBT=EUR%é", "_unknown_"}  # "": the placeholder
    assert set(table.column("venue").to_pylist()) == {"binance-usdm", "GLBX.MDP3", "weird venue", "kraken"}


def test_rejects_without_a_symbol_are_readable_by_a_plain_hive_reader(tmp_path: Path) -> None:
    """A lake whose dead letters all lack a symbol: pyarrow read ``__HIVE_DEFAULT_PARTITION__`` as
    null and could not open the dataset ("couldn't infer type"); the placeholder reads as text."""
    table = REJECTED.table({"ts_event_ns": [-1, -1], "ts_recv_ns": [T0, T0 + 1], "venue": ["binance"] * 2,
                            "symbol": ["", ""], "reason": ["bad_json"] * 2, "detail": ["x"] * 2,
                            "location": ["f:1", "f:2"], "raw": [b"{", b"["]})
    write(REJECTED, table, tmp_path)
    read = ds.dataset(tmp_path / "rejected", format="parquet", partitioning="hive").to_table()
    assert read.column("symbol").to_pylist() == [lake.EMPTY_VALUE] * 2 == ["_unknown_"] * 2
    assert lake.read(REJECTED, tmp_path).column("symbol").to_pylist() == ["", ""]  # tapeflow reads ""


def test_a_lake_written_with_the_hive_null_still_reads_as_empty(tmp_path: Path) -> None:
    write(TRADE, all_samples()["trade"], tmp_path)
    base = tmp_path / "trade" / "venue=weird%20venue"
    (base / "symbol=_unknown_").rename(base / "symbol=__HIVE_DEFAULT_PARTITION__")
    assert "" in lake.read(TRADE, tmp_path).column("symbol").to_pylist()


def test_read_filters_by_venue_symbol_and_date(tmp_path: Path) -> None:
    write(TRADE, all_samples()["trade"], tmp_path)
    assert lake.read(TRADE, tmp_path, venue="binance-usdm").num_rows == 6
    assert lake.read(TRADE, tmp_path, venue="binance-usdm", symbol="ETH/USDT").num_rows == 2
    assert lake.read(TRADE, tmp_path, symbol="BTCUSDT", date="2024-08-09").num_rows == 2
    assert lake.read(TRADE, tmp_path, symbol="").num_rows == 2
    assert lake.read(TRADE, tmp_path, venue="nowhere").num_rows == 0
    assert lake.read(BOOK_DELTA, tmp_path / "empty").schema == BOOK_DELTA.arrow_schema()


def test_replace_is_idempotent_and_replaces(tmp_path: Path) -> None:
    table = synthetic_deltas(2_000)
    first = write(BOOK_DELTA, table, tmp_path)
    bytes_once = [w.path.read_bytes() for w in first]
    again = write(BOOK_DELTA, table, tmp_path)
    assert [w.path.read_bytes() for w in again] == bytes_once  # deterministic: same rows, same file
    assert lake.read(BOOK_DELTA, tmp_path).num_rows == table.num_rows
    dataset = tmp_path / "book_delta"
    assert len(list(dataset.rglob("*"))) == len(list(dataset.rglob("*.parquet"))) + 3  # no temp files
    assert not any((tmp_path / STAGING).iterdir())  # nor any left in the staging area

    smaller = table.slice(0, 100)
    write(BOOK_DELTA, smaller, tmp_path)
    assert lake.read(BOOK_DELTA, tmp_path).equals(smaller)


def test_merge_keeps_rows_of_another_source_by_content(tmp_path: Path) -> None:
    table = synthetic_deltas(3_000)
    n = table.num_rows
    a, b = table.slice(0, 2 * n // 3), table.slice(n // 3)  # overlap: the middle third
    write(BOOK_DELTA, a, tmp_path)
    write(BOOK_DELTA, b, tmp_path, mode="merge")
    back = lake.read(BOOK_DELTA, tmp_path)
    assert back.num_rows == n
    assert rows(back) == rows(table)
    # merging the same rows again changes nothing
    write(BOOK_DELTA, b, tmp_path, mode="merge")
    assert lake.read(BOOK_DELTA, tmp_path).num_rows == n


def test_merge_never_collapses_distinct_rows_that_share_a_key(tmp_path: Path) -> None:
    table = synthetic_deltas(50)
    write(BOOK_DELTA, table, tmp_path)
    flags = BOOK_DELTA.column_names.index("flags")
    new_flags = pa.array([F_LAST | 4], pa.uint8())
    changed = table.slice(10, 1).set_column(flags, table.schema.field(flags), new_flags)
    write(BOOK_DELTA, changed, tmp_path, mode="merge")
    back = lake.read(BOOK_DELTA, tmp_path)
    assert back.num_rows == table.num_rows + 1  # same key, different content: both kept
    assert back.column("flags").to_pylist().count(F_LAST | 4) == 1


def test_append_keeps_repeated_rows(tmp_path: Path) -> None:
    table = synthetic_deltas(50)
    write(BOOK_DELTA, table, tmp_path)
    write(BOOK_DELTA, table, tmp_path, mode="append")
    assert lake.read(BOOK_DELTA, tmp_path).num_rows == 2 * table.num_rows


def test_partition_sorted_by_recv_then_sequence_keeping_event_order(tmp_path: Path) -> None:
    # one venue event: a clear (side N, must stay first) then levels, F_LAST on the last row
    event = BOOK_DELTA.table(
        {"ts_event_ns": [T0] * 3, "ts_recv_ns": [T0 + 5] * 3, "sequence": [9] * 3,
         "side": [NO_SIDE, ord("B"), ord("A")], "action": [L2_CLEAR, ord("U"), ord("U")],
         "price_nanos": [0, 2, 1], "size_nanos": [0, 1, 1], "flags": [0, 0, F_LAST]},
        constants={"venue": "v", "symbol": "s"},
    )
    stream = synthetic_deltas(5).to_pydict()
    stream |= {"ts_event_ns": [T0] * len(stream["ts_event_ns"])}
    earlier = BOOK_DELTA.table({k: v for k, v in stream.items() if k not in ("venue", "symbol")},
                               constants={"venue": "v", "symbol": "s"})
    shuffled = pa.concat_tables([event, earlier.take(np.random.default_rng(1).permutation(earlier.num_rows))])
    write(BOOK_DELTA, shuffled, tmp_path)
    back = lake.read(BOOK_DELTA, tmp_path)
    recv, seq = back.column("ts_recv_ns").to_numpy(), back.column("sequence").to_numpy()
    assert np.all((np.diff(recv) > 0) | ((np.diff(recv) == 0) & (np.diff(seq) >= 0)))
    assert back.slice(0, 3).equals(event)  # T0 + 5 precedes the synthetic stream's capture times


def test_a_failed_write_leaves_the_old_file_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    table = synthetic_deltas(200)
    (written,) = write(BOOK_DELTA, table, tmp_path)
    before = written.path.read_bytes()

    def crash(table: pa.Table, where: object, **kwargs: object) -> None:
        where.write(b"PAR1 half a file")  # type: ignore[attr-defined]
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", crash)
    with pytest.raises(StorageError, match="disk full"):
        write(BOOK_DELTA, table.slice(0, 10), tmp_path)
    monkeypatch.undo()
    assert written.path.read_bytes() == before
    assert [p.name for p in written.path.parent.iterdir()] == ["part-0.parquet"]
    assert lake.read(BOOK_DELTA, tmp_path).equals(table)
    assert not any((tmp_path / STAGING).iterdir())


def test_readers_ignore_a_temp_file_left_by_a_killed_writer(tmp_path: Path) -> None:
    (written,) = write(REJECTED, all_samples()["rejected"].slice(0, 2), tmp_path)
    (written.path.parent / ".part-0.parquet.999.deadbeef.tmp").write_bytes(b"PAR1 half")
    assert lake.read(REJECTED, tmp_path).num_rows == 2


def test_bad_arguments_raise_storage_errors(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="'upsert'"):
        write(TRADE, all_samples()["trade"], tmp_path, mode="upsert")  # type: ignore[arg-type]
    with pytest.raises(StorageError, match="expected"):
        write(TRADE, all_samples()["quote"], tmp_path)
    assert write(TRADE, TRADE.empty_table(), tmp_path) == []


def test_escape_round_trips_and_day_of_floors() -> None:
    odd = ["", ".", "..", ".hidden", "a/b", "x=y", "100%", "é", "__HIVE_DEFAULT_PARTITION__", "_unknown_",
           "BTC-USD"]
    for value in odd:
        escaped = lake.escape(value)
        assert "/" not in escaped and escaped not in (".", "..") and not escaped.startswith(".")
        assert lake.unescape(escaped) == value
    assert lake.escape("BTC-USD") == "BTC-USD"
    assert lake.day_of(-1) == "1969-12-31"
    assert lake.day_of(0) == "1970-01-01"
    assert lake.day_of(T0) == "2024-08-08"


def _bytes_per_row(root: Path, table: pa.Table) -> float:
    written = write(BOOK_DELTA, table, root)
    assert sum(w.rows for w in written) == table.num_rows
    return sum(w.bytes_written for w in written) / table.num_rows


def test_synthetic_delta_stream_fits_in_six_bytes_per_row(tmp_path: Path) -> None:
    table = synthetic_deltas()
    assert table.num_rows > 500_000
    assert _bytes_per_row(tmp_path, table) <= 6.0


@pytest.mark.realdata
def test_binance_capture_deltas_fit_in_six_bytes_per_row(tmp_path: Path, real_data: Path) -> None:
    from tapeflow.venues import formats
    from tests.conftest import need

    fmt = formats()["binance"]  # a venue folder that fails to import is an error, never a skip
    path = need(real_data / "binance" / "usdm_btcusdt_20240808.gz")
    deltas = pa.concat_tables([c.get(BOOK_DELTA) for c in fmt.decode([path])])
    assert deltas.num_rows > 400_000
    assert _bytes_per_row(tmp_path, deltas) <= 6.0


def test_rows_without_venue_time_file_under_their_capture_day(tmp_path: Path) -> None:
    rejected = all_samples()["rejected"]
    ts_event = REJECTED.column_names.index("ts_event_ns")
    unknown = pa.array([-1] * rejected.num_rows, pa.int64())
    rejected = rejected.set_column(ts_event, rejected.schema.field(ts_event), unknown)
    written = write(REJECTED, rejected, tmp_path)
    days = {lake.day_of(t) for t in rejected.column("ts_recv_ns").to_pylist()}
    assert {w.date for w in written} == days
    assert "1969-12-31" not in days


@pytest.mark.parametrize(("venues", "symbols"), [
    (["V"], ["ES"]),  # both constant: the byte comparison path
    (["V"], ["ES", "NQ", ""]),  # constant venue, mixed symbols (one of them empty)
    (["V", "W"], ["ESH4"]),
    ([""], ["AB", "BA"]),  # same length, different bytes
    (["é"], ["A", "AB"]),  # different lengths
])
def test_split_groups_rows_by_venue_symbol_day_in_input_order(venues: list[str], symbols: list[str]) -> None:
    rng = np.random.default_rng(7)
    n = 600
    v = [venues[i] for i in rng.integers(0, len(venues), n)]
    s = [symbols[i] for i in rng.integers(0, len(symbols), n)]
    ts = rng.integers(0, 3 * lake.NS_PER_DAY, n)
    whole = pa.table({"venue": v, "symbol": s, "ts_event_ns": ts, "row": np.arange(n)})
    # several chunks, one of them a slice with an offset, one of a single row
    table = pa.concat_tables([whole.slice(0, 250), whole.slice(250, 1), whole.slice(251)]).slice(3)
    expected: dict[tuple[str, str, str], list[int]] = {}
    for row in range(3, n):
        day = str(np.datetime64(int(ts[row]) // lake.NS_PER_DAY, "D"))
        expected.setdefault((v[row], s[row], day), []).append(row)
    got = {(venue, symbol, day): part.column("row").to_pylist()
           for venue, symbol, day, part in lake.split(table)}
    assert got == expected
