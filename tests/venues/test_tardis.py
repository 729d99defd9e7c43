"""Tardis CSVs: exact decimals, every kind on the real files, the trade-id oracle, L2 event flags."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tapeflow.book.l2 import replay_l2
from tapeflow.errors import BadNumber, FormatError
from tapeflow.schemas.records import F_GAP, F_LAST, F_SNAPSHOT, UNDEF_PRICE
from tapeflow.venues import get_format
from tapeflow.venues.base import merge
from tapeflow.venues.tardis import reader
from tapeflow.venues.tardis.decimals import decimals_to_nanos
from tapeflow.venues.tardis.parse import decode, decode_all
from tapeflow.wire.numbers import to_nanos
from tests.conftest import need, real_data_root

TARDIS = real_data_root() / "tardis"
HEADER_L2 = "exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount\n"
HEADER_TRADES = "exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n"


def _scalar(text: str | None, allow_negative: bool = False) -> int | str:
    if text is None or not text.strip():
        return "missing_field"
    try:
        return to_nanos(text, allow_negative=allow_negative)
    except BadNumber as exc:
        return exc.reason


def _vector(texts: list, allow_negative: bool = False) -> list:
    values, errors = decimals_to_nanos(pa.array(texts, pa.string()), allow_negative=allow_negative)
    return [errors[i].reason if i in errors else int(values[i]) for i in range(len(texts))]


EDGES = [
    "0",
    "-0",
    "1",
    "0.1",
    "9682",
    "0.132",
    "1.000000000",
    "1.0000000001",
    "1.0000000000",
    "1e-3",
    "1E3",
    "-1.5",
    "+2",
    ".5",
    "5.",
    "",
    " ",
    "abc",
    "1.2.3",
    "NaN",
    "inf",
    "9223372036.854775807",
    "9223372036.854775808",
    "-9223372036.854775807",
    "99999999999",
    "0000000000012.5",
    None,
]


@pytest.mark.parametrize("allow_negative", [False, True])
def test_vectorized_decimals_equal_to_nanos_on_edge_cases(allow_negative: bool) -> None:
    assert _vector(EDGES, allow_negative) == [_scalar(t, allow_negative) for t in EDGES]


decimal_texts = st.builds(
    lambda sign, whole, frac, exp: f"{sign}{whole}{'.' + frac if frac is not None else ''}{exp}",
    st.sampled_from(["", "-", "+"]),
    st.from_regex(r"\d{0,12}", fullmatch=True),
    st.none() | st.from_regex(r"\d{0,11}", fullmatch=True),
    st.sampled_from(["", "", "", "e2", "e-4"]),
)


@settings(max_examples=300, deadline=None)
@given(texts=st.lists(decimal_texts, max_size=30), allow_negative=st.booleans())
def test_vectorized_decimals_equal_to_nanos(texts: list[str], allow_negative: bool) -> None:
    assert _vector(texts, allow_negative) == [_scalar(t, allow_negative) for t in texts]


def _csv_rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_trades_file_decodes_exactly(real_data: Path) -> None:
    path = need(TARDIS / "tardis_trades.csv")
    rows = _csv_rows(path)
    trades = decode_all([path])["trade"].to_pydict()
    assert len(trades["price_nanos"]) == len(rows) == 9_999
    assert trades["price_nanos"] == [to_nanos(r["price"]) for r in rows]
    assert trades["size_nanos"] == [to_nanos(r["amount"]) for r in rows]
    assert trades["ts_event_ns"] == [int(r["timestamp"]) * 1000 for r in rows]
    assert trades["ts_recv_ns"] == [int(r["local_timestamp"]) * 1000 for r in rows]
    assert trades["sequence"] == [int(r["id"]) for r in rows]
    assert trades["aggressor_side"] == [ord("B") if r["side"] == "buy" else ord("A") for r in rows]
    assert set(trades["venue"]) == {"binance-futures"} and set(trades["symbol"]) == {"BTCUSDT"}


def test_trade_ids_are_contiguous(real_data: Path) -> None:
    path = need(TARDIS / "tardis_trades.csv")
    data_lines = path.read_text().count("\n") - 1  # minus the header
    (report,) = get_format("tardis").verify([path])
    assert report.line() == f"verified: {data_lines - 1} of {data_lines - 1} tardis trade ids contiguous"
    assert report.passed and data_lines - 1 == 9_998


def test_a_deleted_trade_shows_as_an_id_gap(real_data: Path, tmp_path: Path) -> None:
    lines = need(TARDIS / "tardis_trades.csv").read_text().splitlines(keepends=True)
    dropped_id = lines[5000].split(",")[4]
    damaged = tmp_path / "tardis_trades.csv"
    damaged.write_text("".join(lines[:5000] + lines[5001:]))
    (report,) = get_format("tardis").verify([damaged])
    assert (report.ok, report.total) == (9_996, 9_997)
    assert not report.passed
    assert report.failures == [
        f"tardis_trades.csv BTCUSDT: id {int(dropped_id) - 1} then {int(dropped_id) + 1}: 1 id(s) missing"
    ]


def test_uuid_trade_ids_are_kept_but_have_no_oracle(real_data: Path) -> None:
    path = need(TARDIS / "bitmex_trades_XBTUSD.csv")
    rows = _csv_rows(path)
    trades = decode_all([path])["trade"].to_pydict()
    assert trades["trade_id"] == [r["id"] for r in rows]
    assert set(trades["sequence"]) == {-1}
    assert trades["size_nanos"] == [to_nanos(r["amount"]) for r in rows]
    assert get_format("tardis").verify([path]) == []


@pytest.mark.parametrize("name", ["tardis_quotes.csv", "huobi-dm-swap_quotes_BTC-USD.csv"])
def test_quotes_decode_exactly(real_data: Path, name: str) -> None:
    path = need(TARDIS / name)
    rows = _csv_rows(path)
    quotes = decode_all([path])["quote"].to_pydict()
    assert len(quotes["bid_price_nanos"]) == len(rows)
    assert quotes["bid_price_nanos"] == [to_nanos(r["bid_price"]) for r in rows]
    assert quotes["ask_size_nanos"] == [to_nanos(r["ask_amount"]) for r in rows]


@pytest.mark.parametrize(
    ("name", "depth"),
    [
        ("binance-futures_book_snapshot_5_BTCUSDT.csv", 5),
        ("binance-futures_book_snapshot_25_BTCUSDT.csv", 25),
    ],
)
def test_book_snapshots_keep_every_level(real_data: Path, name: str, depth: int) -> None:
    path = need(TARDIS / name)
    rows = _csv_rows(path)
    snaps = decode_all([path])["book_snapshot"].to_pydict()
    assert snaps["levels"] == [depth] * len(rows)
    assert snaps["bid_price_nanos"] == [[to_nanos(r[f"bids[{k}].price"]) for k in range(depth)] for r in rows]
    assert snaps["ask_size_nanos"] == [[to_nanos(r[f"asks[{k}].amount"]) for k in range(depth)] for r in rows]


def test_deribit_l2_snapshot_is_a_clear_then_flagged_rows(real_data: Path) -> None:
    path = need(TARDIS / "deribit_incremental_book_L2_BTC-PERPETUAL.csv")
    rows = _csv_rows(path)
    deltas = decode_all([path])["book_delta"]
    d = deltas.to_pydict()
    assert len(d["action"]) == len(rows) + 1  # one snapshot block: one R clear in front
    assert chr(d["action"][0]) == "R" and d["flags"][0] == F_SNAPSHOT
    assert d["flags"][1:] == [F_SNAPSHOT] * (len(rows) - 1) + [F_SNAPSHOT | F_LAST]
    assert d["price_nanos"][1:] == [to_nanos(r["price"]) for r in rows]
    replay = replay_l2(deltas)
    assert int(replay.bbo["status"][-1]) == 0
    assert int(replay.bbo["ask_px"][-1]) == min(to_nanos(r["price"]) for r in rows)
    assert int(replay.bbo["bid_px"][-1]) == UNDEF_PRICE


L2_BODY = [
    "x,S,1,2,true,bid,10,1",
    "x,S,1,2,true,ask,11,1",  # snapshot block
    "x,S,5,6,false,bid,10,0",
    "x,S,5,6,false,bid,9.5,2",  # event at t=5
    "x,S,7,8,false,ask,11,3",  # event at t=7
    "x,S,9,10,true,bid,8,1",
    "x,S,9,10,true,ask,12,1",  # a new snapshot resets the book
    "x,S,12,13,false,ask,12,oops",  # bad amount: rejected
    "x,S,14,15,false,ask,12.5,1",  # follows a rejected row: gap
]
L2_EXPECTED = [  # (action, flags)
    ("R", F_SNAPSHOT),
    ("U", F_SNAPSHOT),
    ("U", F_SNAPSHOT | F_LAST),
    ("D", 0),
    ("U", F_LAST),
    ("U", F_LAST),
    ("R", F_SNAPSHOT),
    ("U", F_SNAPSHOT),
    ("U", F_SNAPSHOT | F_LAST),
    ("U", F_GAP | F_LAST),
]


def _write(tmp_path: Path, name: str, header: str, body: list[str], *, gz: bool = False) -> Path:
    text = header + "\n".join(body) + "\n"
    path = tmp_path / (name + (".gz" if gz else ""))
    path.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
    return path


@pytest.mark.parametrize("chunk_bytes", [reader.CHUNK_BYTES, 40, 64])
def test_l2_events_flags_survive_chunking(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk_bytes: int
) -> None:
    monkeypatch.setattr(reader, "CHUNK_BYTES", chunk_bytes)
    path = _write(tmp_path, "l2.csv", HEADER_L2, L2_BODY)
    chunks = list(decode([path]))
    tables = merge(chunks)
    d = tables["book_delta"].to_pydict()
    assert [(chr(a), f) for a, f in zip(d["action"], d["flags"], strict=True)] == L2_EXPECTED
    assert d["ts_event_ns"][-1] == 14_000
    rejected = tables["rejected"].to_pydict()
    assert rejected["reason"] == ["bad_number"] and rejected["location"] == [f"{path}:9"]
    assert rejected["raw"] == [L2_BODY[7].encode()]
    if chunk_bytes < 100:
        assert len(chunks) > 3


def test_bad_trade_rows_become_rejects_with_their_line(tmp_path: Path) -> None:
    body = [
        "ex,S,1000,2000,1,buy,100.5,0.25",
        "ex,S,1001,2001,2,sell,abc,1",  # line 3: bad price
        "ex,S,1002,2002,3,buy,100,-1",  # line 4: negative amount
        "ex,S,1003,2003,4,buy,100",  # line 5: truncated
        "ex,S,12x,2004,5,buy,100,1",  # line 6: bad timestamp
        "ex,S,1005,2005,6,unknown,100.000000001,2",
        "",  # blank line: nothing to keep, nothing lost
        "ex,S,1006,2006,7,sell,1.0000000001,2",  # line 9: sub-nano price
    ]
    path = _write(tmp_path, "trades.csv", HEADER_TRADES, body, gz=True)
    tables = decode_all([path])
    t = tables["trade"].to_pydict()
    assert t["sequence"] == [1, 6]
    assert t["price_nanos"] == [100_500_000_000, 100_000_000_001]
    assert t["aggressor_side"] == [ord("B"), ord("N")]
    r = tables["rejected"].to_pydict()
    got = sorted(zip(r["location"], r["reason"], strict=True))
    assert got == sorted(
        [
            (f"{path}:3", "bad_number"),
            (f"{path}:4", "negative"),
            (f"{path}:5", "truncated"),
            (f"{path}:6", "bad_number"),
            (f"{path}:9", "bad_number"),
        ]
    )
    assert b"ex,S,1003,2003,4,buy,100" in r["raw"]
    assert any("price 'abc'" in d for d in r["detail"])


def test_unknown_header_is_a_format_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "liq.csv", "exchange,symbol,timestamp,local_timestamp,foo,bar\n", ["a,b,1,2,3,4"])
    with pytest.raises(FormatError, match="unsupported Tardis CSV kind"):
        list(decode([path]))
    with pytest.raises(FormatError, match="not a Tardis CSV"):
        list(decode([_write(tmp_path, "x.csv", "a,b,c\n", ["1,2,3"])]))


def test_progress_reaches_the_file_size(real_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reader, "CHUNK_BYTES", 100_000)
    path = need(TARDIS / "tardis_quotes.csv")
    chunks = list(decode([path]))
    assert len(chunks) >= 8
    assert sum(c.bytes_read for c in chunks) == path.stat().st_size  # increments add up
    assert sum(c.tables["quote"].num_rows for c in chunks) == 9_999
    assert min(c.bytes_read for c in chunks) >= 0
