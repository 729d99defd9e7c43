"""The Arrow schema and the ClickHouse DDL are both derived from one declaration and agree."""

from __future__ import annotations

import re

import pyarrow as pa
import pytest

from tapeflow.errors import TapeflowError
from tapeflow.schemas import ALL_RECORDS, BATCH_RECORDS, Field, RecordType, common

# every declared record: the normalized feed and the batch runtime's own datasets
DECLARED = {**ALL_RECORDS, **BATCH_RECORDS}

_CH_OF_ARROW = {
    pa.int64(): "Int64", pa.int32(): "Int32", pa.uint64(): "UInt64", pa.uint32(): "UInt32",
    pa.uint16(): "UInt16", pa.uint8(): "UInt8", pa.float64(): "Float64", pa.bool_(): "Bool",
    pa.binary(): "String", pa.list_(pa.int64()): "Array(Int64)", pa.decimal128(38, 0): "Decimal(38, 0)",
}


def _ddl_columns(ddl: str) -> list[tuple[str, str]]:
    return re.findall(r"^\s+`(\w+)` (.+?),?$", ddl, flags=re.M)


@pytest.mark.parametrize("record", list(DECLARED.values()), ids=list(DECLARED))
def test_arrow_and_clickhouse_projections_agree(record: RecordType) -> None:
    schema = record.arrow_schema()
    ddl_cols = _ddl_columns(record.clickhouse_ddl())
    assert [n for n, _ in ddl_cols] == schema.names
    for (name, ch_type), arrow_field in zip(ddl_cols, schema, strict=True):
        if arrow_field.type == pa.string():
            assert ch_type in ("String", "LowCardinality(String)"), name
        else:
            assert ch_type == _CH_OF_ARROW[arrow_field.type], name


@pytest.mark.parametrize("record", list(DECLARED.values()), ids=list(DECLARED))
def test_every_record_carries_times_venue_symbol(record: RecordType) -> None:
    assert record.column_names[:4] == ["ts_event_ns", "ts_recv_ns", "venue", "symbol"]
    assert record["ts_event_ns"].kind == "i64" and record["ts_recv_ns"].kind == "i64"


@pytest.mark.parametrize("record", list(ALL_RECORDS.values()), ids=list(ALL_RECORDS))
def test_prices_and_sizes_are_exact_integers(record: RecordType) -> None:
    for f in record.fields:
        if f.name.endswith(("_nanos",)):
            assert f.kind in ("i64", "list_i64", "dec38"), f.name
        assert not (f.kind == "f64" and ("price" in f.name or "size" in f.name)), f.name


def test_batch_records_are_declared_once_and_apart_from_the_feed() -> None:
    from tapeflow.derived import BASELINE, PROFILE

    assert not set(BATCH_RECORDS) & set(ALL_RECORDS)
    assert BATCH_RECORDS["daily_profile"] is PROFILE and BATCH_RECORDS["baseline"] is BASELINE
    # a vendor's snapshots and bars keep the rebuilt records' columns under their own dataset
    assert BATCH_RECORDS["vendor_book_snapshot"].fields == ALL_RECORDS["book_snapshot"].fields
    assert BATCH_RECORDS["vendor_bar"].fields == ALL_RECORDS["bar"].fields


def test_table_rejects_missing_and_unknown_columns() -> None:
    rec = RecordType("t", common(Field("x", "i64")), order_by=("venue",))
    with pytest.raises(TapeflowError, match="missing"):
        rec.table({"x": [1]}, constants={"venue": "v", "symbol": "s", "ts_event_ns": 0})
    with pytest.raises(TapeflowError, match="no columns"):
        rec.table({"y": [1]})


def test_table_builds_with_constants() -> None:
    rec = ALL_RECORDS["trade"]
    t = rec.table(
        {"ts_event_ns": [1, 2], "ts_recv_ns": [3, 4], "sequence": [7, 8], "trade_id": ["7", "8"],
         "price_nanos": [10, 11], "size_nanos": [5, 6], "aggressor_side": [66, 65], "flags": [0, 0]},
        constants={"venue": "x", "symbol": "Y"},
    )
    assert t.schema == rec.arrow_schema()
    assert t.column("symbol").to_pylist() == ["Y", "Y"]
