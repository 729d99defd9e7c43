"""Stream names, entry ids and the row encoding of the bus (no Redis needed)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tapeflow.bus.streams import (
    BusError,
    assign_ids,
    decode_rows,
    encode_rows,
    parse_id,
    record_of_stream,
    split_streams,
    stream_name,
)
from tapeflow.schemas import ALL_RECORDS
from tests.bus.rows import trades


def _reference_ids(recv_ns: list[int], last: tuple[int, int]) -> list[tuple[int, int]]:
    out, (ms_prev, seq_prev) = [], last
    for t in recv_ns:
        ms = max(t // 1_000_000, ms_prev)
        seq = seq_prev + 1 if ms == ms_prev else 0
        out.append((ms, seq))
        ms_prev, seq_prev = ms, seq
    return out


@given(st.lists(st.integers(0, 10**13), max_size=50), st.integers(0, 10**7), st.integers(-1, 5))
def test_ids_equal_a_row_by_row_reference_and_grow(recv: list[int], last_ms: int, last_seq: int) -> None:
    last = (last_ms, last_seq)
    ms, seq = assign_ids(np.array(recv, np.int64), last)
    got = list(zip(ms.tolist(), seq.tolist(), strict=True))
    assert got == _reference_ids(recv, last)
    assert all(a < b for a, b in zip([last, *got], got, strict=False))


def test_a_batch_cut_anywhere_gets_the_same_ids() -> None:
    recv = np.array([5_000_000, 5_000_001, 3_000_000, 7_000_000, 7_000_000, 6_999_999], np.int64)
    whole = list(zip(*assign_ids(recv, (0, -1)), strict=True))
    first = list(zip(*assign_ids(recv[:2], (0, -1)), strict=True))
    rest = list(zip(*assign_ids(recv[2:], (int(first[-1][0]), int(first[-1][1]))), strict=True))
    assert whole == first + rest
    assert [(int(m), int(s)) for m, s in whole] == [(5, 0), (5, 1), (5, 2), (7, 0), (7, 1), (7, 2)]


def test_a_batch_splits_per_instrument_in_row_order_and_round_trips() -> None:
    table = trades([("binance", "BTCUSDT", 1_000_000), ("kraken", "XBT/USD", 2_000_000),
                     ("binance", "BTCUSDT", 1_000_000), ("binance", "", 9_000_000)])
    last: dict[str, tuple[int, int]] = {}
    parts = {p.stream: p for p in split_streams("trade", table, last, prefix="tf:")}
    assert sorted(parts) == ["tf:trades:binance:*", "tf:trades:binance:BTCUSDT", "tf:trades:kraken:XBT/USD"]
    assert parts["tf:trades:binance:BTCUSDT"].ids == ["1-0", "1-1"]
    assert last["tf:trades:binance:BTCUSDT"] == (1, 1)
    back = decode_rows(ALL_RECORDS["trade"], parts["tf:trades:binance:BTCUSDT"].rows)
    # int64 prices above 2**53 stay exact; NaN comes back as NaN
    assert back.column("price_nanos").to_pylist() == [2**62, 2**62 + 2]
    assert record_of_stream("tf:trades:binance:BTCUSDT", "tf:").name == "trade"


def test_binary_and_text_columns_round_trip() -> None:
    record = ALL_RECORDS["rejected"]
    table = pa.Table.from_pydict({"ts_event_ns": [1], "ts_recv_ns": [2], "venue": ["v"], "symbol": ["s"],
                                  "reason": ["bad_json"], "detail": ['a "quote"\nand a newline'],
                                  "location": ["f:1"], "raw": [b"\x00\xff{\n"]}).cast(record.arrow_schema())
    rows = encode_rows(table)
    assert len(rows) == 1
    assert decode_rows(record, rows).equals(table)


def test_names_and_bad_entries() -> None:
    assert stream_name("bar", "binance", "BTCUSDT") == "bars:binance:BTCUSDT"
    assert stream_name("status", "kraken", "") == "status:kraken:*"
    assert parse_id(b"17-3") == (17, 3)
    with pytest.raises(BusError, match="not <kind>"):
        record_of_stream("nothing:x:y")
    with pytest.raises(BusError, match="not a JSON trade row"):
        decode_rows(ALL_RECORDS["trade"], [b'{"venue": "x"}'])


def test_small_and_large_batches_encode_the_same_rows() -> None:
    """Below 128 rows orjson encodes, above it polars' NDJSON writer: both decode to the same rows."""
    record = ALL_RECORDS["rejected"]
    n = 300
    table = pa.Table.from_pydict({
        "ts_event_ns": list(range(n)), "ts_recv_ns": [2**62 + i for i in range(n)], "venue": ["v"] * n,
        "symbol": [f"s{i % 3}" for i in range(n)], "reason": ["bad_json"] * n,
        "detail": [f'row {i} "q"\n\u00e9' for i in range(n)], "location": ["f:1"] * n,
        "raw": [bytes([i % 256, 0, 255]) for i in range(n)]}).cast(record.arrow_schema())
    large = encode_rows(table)
    small = [row for i in range(0, n, 100) for row in encode_rows(table.slice(i, 100))]
    assert decode_rows(record, large).equals(table) and decode_rows(record, small).equals(table)
    metric = ALL_RECORDS["metric"]
    floats = [f.name for f in metric.arrow_schema() if pa.types.is_floating(f.type)]
    assert floats  # NaN -> null -> NaN on both paths
    for rows in (1, 200):
        cols = {f.name: pa.array([0] * rows, f.type) if pa.types.is_integer(f.type) else
                pa.array([float("nan"), 0.1 + 0.2][: 1] * rows, f.type) if pa.types.is_floating(f.type) else
                pa.array(["1s"] * rows) for f in metric.arrow_schema()}
        got = decode_rows(metric, encode_rows(pa.table(cols).cast(metric.arrow_schema())))
        assert np.isnan(got.column(floats[0]).to_numpy()).all()
