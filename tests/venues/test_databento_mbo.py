"""MBO self-consistency on the CME ES files, with counts taken independently through databento_dbn."""

from __future__ import annotations

from pathlib import Path

import databento_dbn
import numpy as np
import pyarrow as pa
import pytest
import zstandard

from tapeflow.book.l3 import l3_book_snapshots, replay_l3
from tapeflow.schemas.records import F_LAST, F_MAYBE_BAD_BOOK, L3_CANCEL, UNDEF_PRICE
from tapeflow.venues.databento.parse import decode_all
from tapeflow.venues.databento.verify_mbo import verify_mbo
from tests.conftest import need

ES = "databento/glbx/esh4-glbx-mdp3-{day}.mbo.dbn.zst"
DBN_F_LAST, DBN_F_SNAPSHOT = 1 << 7, 1 << 5  # flag bits as Databento documents them


def _dbn_records(path: Path) -> list[databento_dbn.MBOMsg]:
    raw = zstandard.ZstdDecompressor().stream_reader(path.open("rb")).read()
    decoder = databento_dbn.DBNDecoder()
    decoder.write(raw)
    return [r for r in decoder.decode() if isinstance(r, databento_dbn.MBOMsg)]


@pytest.fixture(scope="module")
def es_day(real_data: Path) -> tuple[pa.Table, list[databento_dbn.MBOMsg]]:
    path = need(real_data / ES.format(day="20231225"))
    return decode_all([path])["order_event"], _dbn_records(path)


@pytest.mark.realdata
def test_es_mbo_oracle(es_day: tuple[pa.Table, list[databento_dbn.MBOMsg]]) -> None:
    events, records = es_day
    # independent counts from the vendor's own decoder
    snapshot = sum(1 for r in records if r.flags & DBN_F_SNAPSHOT)
    published = [i for i, r in enumerate(records) if r.flags & DBN_F_LAST]
    trade_actions = (databento_dbn.Action.TRADE, databento_dbn.Action.FILL)
    first_trade = next(i for i, r in enumerate(records) if r.action in trade_actions)
    judged = sum(1 for i in published if i >= first_trade)
    assert (len(records), snapshot) == (68_792, 8_725)
    assert events.num_rows == len(records)

    report = verify_mbo(events)
    assert report.line() == f"verified: {judged} of {judged} mbo published book states"
    assert report.passed and not report.failures
    d = report.details["GLBX.MDP3/ESH4"]
    assert (d["records"], d["snapshot_records"], d["published"]) == (len(records), snapshot, len(published))
    assert d["unknown_cancel_modify"] == 0
    assert (d["final_bid_px"], d["final_ask_px"]) == (4_810_000_000_000, 4_810_250_000_000)
    assert d["final_status"] == "valid"
    # pre-open (before the first trade) is where the crossed published books are
    assert d["preopen_published"] == len(published) - judged and d["preopen_crossed"] > 0


@pytest.mark.realdata
def test_both_days_back_to_back_resync_on_the_second_snapshot(real_data: Path) -> None:
    paths = [need(real_data / ES.format(day=day)) for day in ("20231224", "20231225")]
    events = decode_all(paths)["order_event"]
    first_day = len(_dbn_records(paths[0]))
    replay = replay_l3(events)
    status = replay.bbo["status"]
    # the 24th is one complete snapshot (valid at its F_LAST); the 25th's snapshot clears and rebuilds
    assert status[first_day - 1] == 0 and (status[first_day:first_day + 8_725] == 1).all()
    assert replay.bbo["bid_px"][-1] == 4_810_000_000_000 and replay.bbo["ask_px"][-1] == 4_810_250_000_000
    assert verify_mbo(events).passed


@pytest.mark.realdata
def test_an_unknown_cancel_fails_the_oracle(es_day: tuple[pa.Table, list[databento_dbn.MBOMsg]]) -> None:
    events, _ = es_day
    action = events.column("action").to_numpy()
    order_id = events.column("order_id").to_numpy()
    # drop the add of an order that is later cancelled: its cancel now names an unknown id
    cancel = int(np.flatnonzero((action == L3_CANCEL) & (np.arange(len(action)) > 20_000))[0])
    add = int(np.flatnonzero(order_id[:cancel] == order_id[cancel])[0])
    keep = np.delete(np.arange(events.num_rows), add)
    report = verify_mbo(events.take(keep))
    assert not report.passed and report.details["GLBX.MDP3/ESH4"]["unknown_cancel_modify"] >= 1
    assert any("C of unknown order id" in f for f in report.failures)


@pytest.mark.realdata
def test_minute_snapshots_end_on_the_final_book(es_day: tuple[pa.Table, list[databento_dbn.MBOMsg]]) -> None:
    events, records = es_day
    snaps = l3_book_snapshots(events, levels=3, interval_ns=60 * 10**9)
    published_recv = [r.ts_recv for r in records if r.flags & DBN_F_LAST]
    minute = 60 * 10**9
    first, last = -(-published_recv[0] // minute), -(-published_recv[-1] // minute)
    assert snaps.num_rows == last - first + 1
    final = snaps.slice(snaps.num_rows - 1).to_pylist()[0]
    top = (final["bid_price_nanos"][0], final["ask_price_nanos"][0])
    assert top == (4_810_000_000_000, 4_810_250_000_000)
    assert final["flags"] & F_MAYBE_BAD_BOOK == 0
    assert UNDEF_PRICE not in final["bid_price_nanos"]
    flags = events.column("flags").to_numpy()
    assert snaps.num_rows < int(np.count_nonzero(flags & F_LAST))
