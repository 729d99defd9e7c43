"""One real day through the suites: CME ES MBO of 2023-12-25 (a holiday session opening at 23:00 UTC).

Counts are taken independently through ``databento_dbn`` and plain Python over the snapshot lists;
what fails is real and explained in docs/quality.md (quiet pre-open, crossed pre-open book).
"""

from __future__ import annotations

from pathlib import Path

import databento_dbn
import pytest
import zstandard

from quality import run_suite
from tapeflow.book_l3 import l3_book_snapshots
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
    assert {c.name for c in result.failed} == {"crossed_book", "stale_intervals"}
