"""One real day through the suites: CME ES MBO of 2023-12-25 (a holiday session opening at 23:00 UTC).

Counts are taken independently through ``databento_dbn`` and plain Python over the snapshot lists;
what fails is real and explained in docs/quality.md (quiet pre-open, crossed pre-open book).
"""

from __future__ import annotations

from pathlib import Path

import databento_dbn
import pyarrow as pa
import pytest
import zstandard

from quality import run_suite
from tapeflow.book.l3 import l3_book_snapshots
from tapeflow.schemas.records import SCALE
from tapeflow.venues.databento.parse import decode_all
from tests.conftest import need

ES = "databento/glbx/esh4-glbx-mdp3-20231225.mbo.dbn.zst"
DBN_F_SNAPSHOT = 1 << 5
MINUTE_NS = 60 * SCALE


@pytest.fixture(scope="module")
def es(real_data: Path):
    path = need(real_data / ES)
    raw = zstandard.ZstdDecompressor().stream_reader(path.open("rb")).read()
    decoder = databento_dbn.DBNDecoder()
    decoder.write(raw)
    records = [r for r in decoder.decode() if isinstance(r, databento_dbn.MBOMsg)]
    events = decode_all([path])["order_event"]
    return events, records, l3_book_snapshots(events, levels=10, interval_ns=SCALE)


@pytest.mark.realdata
def test_es_order_events(es):
    events, records, _ = es
    result = run_suite("order_events", events, partition_day="2023-12-25")
    assert result.row_count == len(records) == 68_792
    # independent: silences over a minute between consecutive records, in file order
    recv = [r.ts_recv for r in records]
    quiet = sum(1 for a, b in zip(recv, recv[1:], strict=False) if b - a > MINUTE_NS)
    assert {c.name: c.unexpected_count for c in result.failed} == {"stale_intervals": quiet}
    assert quiet == 7
    stale = result.check("stale_intervals")
    # the longest: the start-of-day snapshot at midnight, then nothing until the 22:00 UTC pre-open
    assert stale.details["longest_silence_ns"] == max(b - a for a, b in zip(recv, recv[1:], strict=False))
    # the 8,725 snapshot rows keep their orders' Dec 24 venue times yet count for the capture day
    snapshot = sum(1 for r in records if r.flags & DBN_F_SNAPSHOT)
    assert snapshot == 8_725 and sum(1 for r in records if r.ts_event < 1_703_462_400 * SCALE) == snapshot
    assert result.check("ts_within_day").passed and result.check("sequence_gaps").passed
    assert result.check("recv_skew").element_count == len(records) - snapshot


@pytest.mark.realdata
def test_es_book_snapshots_cross_only_before_the_open(es):
    _, records, snaps = es
    result = run_suite("book_snapshots", snaps, partition_day="2023-12-25")
    rows = snaps.to_pylist()
    crossed = [r["ts_event_ns"] for r in rows if r["bid_price_nanos"][0] >= r["ask_price_nanos"][0]]
    check = result.check("crossed_book")
    assert not check.passed and check.unexpected_count == len(crossed) > 0
    first_trade_ns = next(r.ts_recv for r in records if r.action in (databento_dbn.Action.TRADE,
                                                                      databento_dbn.Action.FILL))
    # the pre-open book crosses until the opening match; no snapshot after the first trade does
    assert max(crossed) <= -(-first_trade_ns // SCALE) * SCALE
    assert (rows[-1]["bid_price_nanos"][0], rows[-1]["ask_price_nanos"][0]) == (4_810_000_000_000,
                                                                                 4_810_250_000_000)
    # the grid's last instant falls on the next midnight: outside the day (the lake files it under
    # the next day; this table is the whole rebuild, not split)
    next_midnight = 1_703_548_800 * SCALE
    outside = sum(1 for r in rows if r["ts_event_ns"] >= next_midnight)
    assert outside == 1 and result.check("ts_within_day").unexpected_count == outside
    assert {c.name for c in result.failed} == {"crossed_book", "stale_intervals", "ts_within_day"}


def _crossed(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["bid_price_nanos"] and r["ask_price_nanos"]
            and r["bid_price_nanos"][0] >= r["ask_price_nanos"][0]]


@pytest.mark.realdata
def test_es_pre_open_crossings_are_counted_and_crossings_after_the_open_fail(es):
    from quality import session_opens
    from tapeflow.derived.trades import trades_from_order_events

    events, records, snaps = es
    # independent: the first trade (T) record of the file, as databento_dbn reads it
    open_ns = next(r.ts_recv for r in records if r.action == databento_dbn.Action.TRADE)
    opens = session_opens(trades_from_order_events(events))
    assert opens == {"ESH4": open_ns}
    rows = snaps.to_pylist()
    pre_open = [r for r in rows if r["ts_recv_ns"] < open_ns]
    assert len(_crossed(pre_open)) == len(_crossed(rows)) == 1_205  # every crossing is pre-open

    result = run_suite("book_snapshots", snaps, partition_day="2023-12-25", session_open_ns=opens)
    check = result.check("crossed_book")
    assert check.passed and check.unexpected_count == 0
    assert check.details["pre_open_crossed"] == 1_205 and check.details["pre_open_rows"] == len(pre_open)
    assert check.details["session_open_ns"] == {"GLBX.MDP3/ESH4": open_ns}
    assert check.element_count == len(rows) - len(pre_open)  # pre-open rows are not judged
    # ts_within_day: the unsplit rebuild's last grid instant is the next midnight (see above)
    assert {c.name for c in result.failed} == {"stale_intervals", "ts_within_day"}

    # 7 snapshots after the open whose best bid is raised onto the best ask: exactly 7 failures
    after = [i for i, r in enumerate(rows) if r["ts_recv_ns"] >= open_ns][100:107]
    for i in after:
        bids = rows[i]["bid_price_nanos"]
        rows[i] = {**rows[i], "bid_price_nanos": [rows[i]["ask_price_nanos"][0], *bids[1:]]}
    broken = pa.Table.from_pylist(rows, schema=snaps.schema)
    result = run_suite("book_snapshots", broken, partition_day="2023-12-25", session_open_ns=opens)
    check = result.check("crossed_book")
    assert not check.passed and check.unexpected_count == len(after) == 7
    assert check.details["pre_open_crossed"] == 1_205
    assert sorted(int(e["location"].split()[1]) for e in check.examples) == after[:5]


@pytest.mark.realdata
def test_a_continuous_venue_gets_no_pre_open(es):
    _, records, snaps = es
    open_ns = next(r.ts_recv for r in records if r.action == databento_dbn.Action.TRADE)
    relabeled = snaps.set_column(snaps.schema.get_field_index("venue"), "venue",
                                 pa.array(["binance-usdm"] * snaps.num_rows, pa.string()))
    check = run_suite("book_snapshots", relabeled, partition_day="2023-12-25",
                      session_open_ns={"ESH4": open_ns}).check("crossed_book")
    assert not check.passed and check.unexpected_count == 1_205 and "pre_open_crossed" not in check.details
