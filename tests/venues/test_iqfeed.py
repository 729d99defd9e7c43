"""IQFeed decoders: the real IQConnect protocol lines, the 6.2 fixtures, and every damage a dead letter."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from tapeflow.schemas.records import (
    ASK,
    BID,
    F_LAST,
    F_SNAPSHOT,
    L2_CLEAR,
    L2_DELETE,
    L2_SET,
    L3_ADD,
    L3_CANCEL,
    L3_MODIFY,
    UNDEF_PRICE,
)
from tapeflow.venues.iqfeed.parse import decode_all
from tapeflow.wire.rejects import IGNORED_BY_RULE, Reason
from tests.conftest import need

FIXTURES = Path(__file__).parent.parent / "fixtures" / "iqfeed"
NS = 1_000_000_000


def _utc_ns(text: str, hours_behind: int) -> int:
    """An Eastern wall-clock time, written out by hand with its offset (not through the decoder's code)."""
    day, clock = text.split(" ")
    whole, _, frac = clock.partition(".")
    base = dt.datetime.fromisoformat(f"{day}T{whole}+00:00").timestamp()
    return (int(base) + hours_behind * 3600) * NS + int(frac.ljust(9, "0") if frac else 0)


@pytest.fixture(scope="module")
def protocol_lines(real_data: Path) -> dict:
    return decode_all([need(real_data / "iqfeed" / "iqfeed_protocol_lines_from_unit_tests.txt")])


def test_real_market_by_order_lines(protocol_lines: dict) -> None:
    orders = protocol_lines["order_event"].to_pylist()
    # 3 add, 3 add (same id, the other side: a new resting state), 4 update, 5 delete, 6 summary
    assert [o["action"] for o in orders] == [L3_ADD, L3_ADD, L3_MODIFY, L3_CANCEL, L3_ADD]
    first = orders[0]
    assert first["symbol"] == "@ESM19" and first["order_id"] == 12345678 and first["side"] == ASK
    assert first["price_nanos"] == 2938_250_000_000 and first["size_nanos"] == 65 * NS
    assert first["ts_event_ns"] == _utc_ns("2019-04-23 20:31:04.876740", 4)  # EDT
    assert orders[1]["side"] == BID
    assert orders[3]["price_nanos"] == 2938_250_000_000 and orders[3]["size_nanos"] == 65 * NS  # from its add
    assert orders[4]["flags"] == F_LAST | F_SNAPSHOT
    assert all(o["flags"] & F_LAST for o in orders)


def test_real_market_by_price_lines(protocol_lines: dict) -> None:
    deltas = protocol_lines["book_delta"].to_pylist()
    got = [(d["side"], d["action"], d["price_nanos"], d["size_nanos"], d["flags"]) for d in deltas]
    px = 2938_250_000_000
    assert got == [
        (ord("N"), L2_CLEAR, 0, 0, F_SNAPSHOT),  # 7 opens a summary run: the book is replaced
        (BID, L2_SET, px, 65 * NS, F_SNAPSHOT | F_LAST),
        (ASK, L2_SET, px, 65 * NS, F_LAST),  # 8 updates
        (BID, L2_SET, px, 65 * NS, F_LAST),
        (ASK, L2_DELETE, px, 0, F_LAST),  # 9 delete
    ]


def test_real_top_level_market_maker_quotes_and_fundamentals(protocol_lines: dict) -> None:
    quotes = protocol_lines["quote"].to_pylist()
    by_symbol = {(q["symbol"], q["flags"]): q for q in quotes}
    z = by_symbol[("@ES#", F_SNAPSHOT)]  # the Z summary of MD01
    assert (z["bid_price_nanos"], z["ask_price_nanos"]) == (2982_250_000_000, 2982_500_000_000)
    assert (z["bid_size_nanos"], z["ask_size_nanos"]) == (99 * NS, 238 * NS)
    assert z["ts_event_ns"] == _utc_ns("2019-10-18 12:49:52.696621", 4)  # the later of bid and ask time
    es = by_symbol[("@ESM19", 0)]
    assert es["bid_price_nanos"] == 2938 * NS  # IQFeed writes "2938." for 2938
    (inst,) = protocol_lines["instrument"].to_pylist()  # the 6.2 layout; the other F line is 6.0's
    assert inst["symbol"] == "MSFT" and inst["currency"] == "USD" and inst["instrument_class"] == "1"
    assert inst["tick_size_nanos"] == 100_000_000 and inst["expiration_ns"] == -1
    assert '"Company Name":"MICROSOFT"' in inst["raw"]


def test_every_real_line_accounted_for(protocol_lines: dict, real_data: Path) -> None:
    lines = (real_data / "iqfeed" / "iqfeed_protocol_lines_from_unit_tests.txt").read_bytes().splitlines()
    rejected = protocol_lines["rejected"].to_pylist()
    rows = sum(t.num_rows for n, t in protocol_lines.items() if n != "rejected") - 1  # the clear row
    quiet = sum(1 for line in lines if line[:2] in (b"S,", b"T,", b"M,"))
    assert rows + len(rejected) + quiet == len(lines) == 38
    assert {r["reason"] for r in rejected} <= {r.value for r in Reason}
    by_reason = {}
    for r in rejected:
        by_reason[r["reason"]] = by_reason.get(r["reason"], 0) + 1
    # E and n are IQConnect's own errors; Q/P lines of other field sets than the session's are bad lines
    assert by_reason["venue_error"] == 4 and by_reason["unsupported_channel"] == 2
    assert by_reason["bad_line"] == 10


def test_l1_session_with_selected_fields() -> None:
    t = decode_all([FIXTURES / "l1_session_6.2.txt"])
    trades = t["trade"].to_pylist()
    assert [(x["trade_id"], x["price_nanos"], x["size_nanos"], x["aggressor_side"]) for x in trades] == [
        ("C", 322_750_000_000, 40 * NS, ASK), ("O", 322_910_000_000, 13 * NS, BID)]
    # the date comes from the T message, the time from Most Recent Trade Time (EDT on 2021-03-30)
    assert trades[0]["ts_event_ns"] == _utc_ns("2021-03-30 16:53:23.256494", 4)
    quotes = t["quote"].to_pylist()
    assert [q["flags"] for q in quotes] == [F_SNAPSHOT, 0]  # the P summary, then the Q's b/a
    assert quotes[1]["bid_price_nanos"] == 322_680_000_000 and quotes[1]["ask_size_nanos"] == 100 * NS
    (reject,) = t["rejected"].to_pylist()
    assert reject["reason"] == "venue_error" and reject["symbol"] == "ZZZZ"


def test_lookup_rows_with_request_ids_and_non_trade_ticks() -> None:
    t = decode_all([FIXTURES / "lookup_request_id_6.2.txt"])
    trades = t["trade"].to_pylist()
    assert [(x["trade_id"], x["sequence"]) for x in trades] == [("O2", 2), ("C4", 4)]
    (quote,) = t["quote"].to_pylist()
    assert quote["bid_price_nanos"] == 1_440_000_000 and quote["ask_price_nanos"] == 1_520_000_000
    assert quote["ts_event_ns"] == quote["ts_recv_ns"] == _utc_ns("2021-03-01 04:00:06.702200", 5)  # EST
    assert "rejected" not in t


DAMAGE = [
    ("2021-03-01 04:00:06.702115,1.52x0,50,1050,1.43,1.52,2,C,11,01,0,1,", "bad_number"),
    ("2021-03-01 04:00:06.702115,-1.52,50,1050,1.43,1.52,2,C,11,01,0,1,", "negative"),
    ("2021-03-01 04:00:06.702115,1.52,50,1050,1.43,1.52,2,X,11,01,0,1,", "bad_value"),
    ("2021-03-01 04:00:06.702115,1.52,50,1050,1.43,1.52,2,S,11,01,0,1,", "unsupported_channel"),
    ("2021-02-30 04:00:06.702115,1.52,50,1050,1.43,1.52,2,C,11,01,0,1,", "bad_timestamp"),
    ("3021-03-01 04:00:06.702115,1.52,50,1050,1.43,1.52,2,C,11,01,0,1,", "bad_timestamp"),  # fuzz finding
    ("2021-03-01 25:00:06,1.52,50,1050,1.43,1.52,2,C,11,01,0,1,", "bad_timestamp"),
    ("2021-03-01 04:00:06.702115,1.52,50,1050,1.43,1.52,99999999999999999999,C,11,01,0,1,", "out_of_range"),
    ("2021-03-01 04:00:06.702115,1.52,50,1050,1.43,1.52,2,C,11,01,0", "bad_line"),
    ("2021-03-01 04:00:06.702115,,50,1050,1.43,1.52,2,C,11,01,0,1,", "missing_field"),
    ("2021-03-01 04:00:06,1.50,1.60,1.55,1.52,1050,100,0,", "bad_line"),  # an interval row in a tick file
    ("7,@ESM19,X,2938.25,65,11,2,20:31:04.876740,2019-04-23,", "bad_side"),
    ("5,@ESM19,999,,A,20:31:04.876740,2019-04-23,", "unknown_id"),
    ("4,@ESM19,999,MD01,A,2938.25,65,10,2,20:31:04.876740,2019-04-23,", "unknown_id"),
    ("Q,AAPL,1,", "bad_line"),
    ("X,AAPL,1,", "bad_line"),
    ("E,!SYNTAX_ERROR!,", "venue_error"),
    ("\xff\xfe", "bad_line"),
]


@pytest.mark.parametrize(("text", "reason"), DAMAGE)
def test_damage_is_one_dead_letter_with_its_reason(tmp_path: Path, text: str, reason: str) -> None:
    good = "2021-03-01 04:00:07.000001,1.5200,100,1150,1.4400,1.5200,4,C,11,01,1,1,"
    path = tmp_path / "NEPT_ticks.csv"
    path.write_bytes(good.encode() + b"\r\n" + text.encode("latin-1") + b"\r\n" + good.encode() + b"\r\n")
    t = decode_all([path])
    (reject,) = t["rejected"].to_pylist()
    assert reject["reason"] == reason, reject["detail"]
    assert reject["location"].endswith(":2")
    assert t["trade"].num_rows == 2 and set(t["trade"].column("symbol").to_pylist()) == {"NEPT"}
    assert (reason in IGNORED_BY_RULE) == (reason == "unsupported_channel")


def test_a_damaged_zip_is_a_format_error(tmp_path: Path) -> None:
    from tapeflow.errors import FormatError

    path = tmp_path / "NEPT_ticks.zip"
    path.write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    with pytest.raises(FormatError, match="NEPT_ticks.zip"):
        decode_all([path])


def test_undefined_prices_stay_undefined(tmp_path: Path) -> None:
    path = tmp_path / "X_ticks.csv"
    path.write_text("2021-03-01 04:00:06.702200,1.52,0,1050,,1.52,3,b,11,,0,1,\n")
    (quote,) = decode_all([path])["quote"].to_pylist()
    assert quote["bid_price_nanos"] == UNDEF_PRICE and quote["ask_price_nanos"] == 1_520_000_000


def test_a_streaming_message_is_no_lookup_row() -> None:
    """An order delete (7 fields) or an order add (11) is not a daily or tick row: a lookup row starts
    with its date (the replay adapter took a ``5`` delete for a daily row before)."""
    from tapeflow.venues.iqfeed.history import DAILIES, TICKS, row_kind

    assert row_kind("5,@ESM19,12345678,,A,20:31:04.876740,2019-04-23".split(",")) is None
    assert row_kind("2021-03-26,1.47,1.31,1.46,1.36,4713611,0".split(",")) == DAILIES
    assert row_kind("2021-03-01 04:00:06.702115,1.52,50,1050,1.43,1.52,2,O,11,873D17,0,1".split(",")) == TICKS
