"""Kraken live sync on the real book-1000 capture: every checksum after sync, breaks and resyncs."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import orjson
import pyarrow.compute as pc
import pytest

from tapeflow.schemas.records import F_GAP, F_MAYBE_BAD_BOOK
from tapeflow.venues import get_format
from tapeflow.venues.base import merge
from tapeflow.venues.kraken.parse import KrakenDecoder, PairBook
from tapeflow.venues.kraken.sync import KrakenSync
from tapeflow.venues.livesync import CHECKSUM_MISMATCH, GAP, SYNCED
from tapeflow.wire.capture import RECV, CaptureLine
from tests.conftest import need
from tests.live.connb_support import feed, of_symbol, published_valid_is_true, received


@pytest.fixture(scope="module")
def book_capture(real_data: Path) -> Path:
    return need(real_data / "cryptofeed" / "KRAKEN.ws.50.0")


def _pair(line: CaptureLine) -> str:
    msg = orjson.loads(line.payload)
    return msg[-1] if isinstance(msg, list) else ""


def _is_update(line: CaptureLine) -> bool:
    return b'"c":' in line.payload


def _text(value_nanos: int, places: int) -> str:
    whole, frac = divmod(value_nanos, 10**9)
    return f"{whole}.{frac:09d}"[: len(str(whole)) + 1 + places]


def _snapshot_frame(book: PairBook, pair: str) -> bytes:
    """A Kraken v1 snapshot of ``book`` in wire format, as a resubscription would bring."""
    def side(levels: dict[int, int], prices: list[int]) -> list[list[str]]:
        return [[_text(p, book.price_places), _text(levels[p], book.volume_places), "1618678200.000000"]
                for p in prices]

    payload = {"as": side(book.asks, book.ask_px), "bs": side(book.bids, list(reversed(book.bid_px)))}
    return json.dumps([1, payload, "book-1000", pair]).encode()


def test_every_checksum_after_sync_and_rows_equal_batch(book_capture: Path) -> None:
    lines = received(book_capture)
    expected = sum(1 for ln in book_capture.read_text().splitlines() if '"c":' in ln and '"event"' not in ln)
    assert expected == 4269
    sync = KrakenSync()
    events = feed(sync, lines)
    assert [e.state for e in events] == [SYNCED] * 10
    assert (sync.stats.checksums, sync.stats.checksums_ok) == (expected, expected)
    assert sync.stats.breaks == [] and sync.broken() == set()
    live = sync.take()
    batch = merge(list(get_format("kraken").decode([book_capture])))
    assert set(live) == set(batch) == {"book_delta", "rejected"}
    for name in live:  # rejected: the XBT/CHF placeholder asks beyond int64 nanos
        assert live[name].to_pylist() == batch[name].to_pylist(), name


@pytest.mark.parametrize("fault", ["drop", "reorder"])
def test_lost_update_breaks_the_pair_until_a_fresh_snapshot(book_capture: Path, fault: str) -> None:
    lines = received(book_capture)
    updates = [i for i, ln in enumerate(lines) if _is_update(ln)]
    k = updates[1500]
    pair = _pair(lines[k])
    later = [i for i in updates if i > k and _pair(lines[i]) == pair]
    if fault == "drop":
        faulty = lines[:k] + lines[k + 1:]
        resync_at = later[20] - 1  # index in ``faulty`` after which the fresh snapshot arrives
    else:
        j = later[0]
        faulty = lines[:k] + [lines[j]] + lines[k + 1:j] + [lines[k]] + lines[j + 1:]
        resync_at = later[20]
    clean = KrakenDecoder()
    for ln in lines:  # the venue's true book at the resync point
        clean.feed(ln)
        if ln is faulty[resync_at]:
            break
    snap_frame = _snapshot_frame(clean.books[pair], pair)
    snap = CaptureLine(faulty[resync_at].recv_ns + 1, RECV, "", snap_frame, "snap")
    faulty = faulty[:resync_at + 1] + [snap] + faulty[resync_at + 1:]

    sync = KrakenSync()
    events = feed(sync, faulty)
    breaks = [e for e in events if e.state != SYNCED]
    assert [(e.symbol, e.state) for e in breaks] == [(pair, CHECKSUM_MISMATCH)]
    assert [e.symbol for e in events if e.state == SYNCED][-1] == pair
    assert sync.stats.resyncs == 1 and sync.broken() == set()
    # every check made on a synced book passed except the one that revealed the fault
    assert sync.stats.checksums_ok == sync.stats.checksums - 1
    # the checksum of the update that came early revealed this reorder first; the level times of
    # the late one saw it too (a reorder the checksums miss: the test below)
    assert sync.decoder.stats.reorders == (1 if fault == "reorder" else 0)
    failed_at = next(i for i, ln in enumerate(faulty) if breaks[0].detail.startswith(ln.location + ":"))
    checks_on_broken = sum(1 for ln in faulty[failed_at + 1:resync_at + 1]
                           if _is_update(ln) and _pair(ln) == pair)
    assert checks_on_broken >= 19
    assert sync.stats.checksums == 4269 - (1 if fault == "drop" else 0) - checks_on_broken

    live = sync.take()["book_delta"]
    rows = of_symbol(live, pair)
    flags = rows.column("flags").to_numpy()
    assert int((flags & F_GAP != 0).sum()) >= 1
    assert int((flags & F_MAYBE_BAD_BOOK != 0).sum()) > 0
    truth = merge(list(get_format("kraken").decode([book_capture])))["book_delta"]
    valid, wrong = published_valid_is_true(live, truth, pair)
    assert wrong == []
    assert valid > 0
    # other pairs never noticed
    assert all(not np.any(of_symbol(live, p).column("flags").to_numpy() & (F_GAP | F_MAYBE_BAD_BOOK))
               for p in {_pair(ln) for ln in lines if _is_update(ln)} - {pair})


def _swap_the_checksums_miss(lines: list[CaptureLine], updates: list[int], start: int) -> tuple[int, int]:
    """The first update ``k`` (from ``updates[start]`` on) and the pair's next update ``j`` whose swap
    no checksum sees: both change levels below the top 10 only. Found by decoding, not assumed."""
    base = KrakenDecoder()
    fed = 0
    for n in range(start, len(updates)):
        k = updates[n]
        j = next((i for i in updates[n + 1:] if _pair(lines[i]) == _pair(lines[k])), None)
        if j is None:
            continue
        for ln in lines[fed:k]:
            base.feed(ln)
        fed = k
        trial = copy.deepcopy(base)
        for ln in [lines[j], *lines[k + 1:j], lines[k]]:
            trial.feed(ln)
        if trial.stats.failures == []:
            return k, j
    raise AssertionError("no reorder the checksums miss")


def test_a_reorder_the_checksums_miss_breaks_the_pair_by_its_level_times(book_capture: Path) -> None:
    lines = received(book_capture)
    updates = [i for i, ln in enumerate(lines) if _is_update(ln)]
    k, j = _swap_the_checksums_miss(lines, updates, 1500)
    pair = _pair(lines[k])
    faulty = lines[:k] + [lines[j]] + lines[k + 1:j] + [lines[k]] + lines[j + 1:]
    sync = KrakenSync()
    events = feed(sync, faulty)
    breaks = [(e.symbol, e.state, e.detail) for e in events if e.state != SYNCED]
    assert [b[:2] for b in breaks] == [(pair, GAP)]
    assert breaks[0][2].startswith(f"{lines[k].location}: {pair} update of ") and "reordered" in breaks[0][2]
    assert sync.decoder.stats.reorders == 1
    # no checksum saw it: every check on a synced book passed, the pair's later ones went unchecked
    assert sync.stats.checksums_ok == sync.stats.checksums
    assert sync.stats.checksums < 4269
    batch = KrakenDecoder()
    for ln in faulty:
        batch.feed(ln)
    rows = of_symbol(batch.flush(0, "test").tables["book_delta"], pair)
    late = rows.filter(pc.equal(rows.column("ts_recv_ns"), lines[k].recv_ns)).column("flags").to_pylist()
    assert late and late[0] & F_GAP
    gaps = rows.filter(pc.not_equal(pc.bit_wise_and(rows.column("flags"), F_GAP), 0))
    assert gaps.num_rows == 1  # the late update, and nothing before it


@pytest.mark.parametrize("damage", ["negative", "truncated"])
def test_rejected_book_frame_breaks_the_pair(book_capture: Path, damage: str) -> None:
    lines = received(book_capture)
    updates = [i for i, ln in enumerate(lines) if _is_update(ln)]
    k = updates[300]
    pair = _pair(lines[k])
    msg = orjson.loads(lines[k].payload)
    if damage == "negative":
        levels = next(part.get("a") or part.get("b") for part in msg[1:-2] if part.get("a") or part.get("b"))
        levels[0][1] = "-" + levels[0][1]
        payload = orjson.dumps(msg)
    else:
        payload = lines[k].payload[:-9]
    nxt = next(i for i in updates if i > k and _pair(lines[i]) == pair)
    sync = KrakenSync()
    bad = CaptureLine(lines[k].recv_ns, RECV, "", payload, "bad")
    events = feed(sync, lines[:k] + [bad] + lines[k + 1:nxt + 1])
    broken = [(e.symbol, e.state) for e in events if e.state != SYNCED]
    # a frame whose pair can be read breaks that pair at once; an unreadable one is caught by the
    # pair's next checksum
    assert broken == [(pair, GAP if damage == "negative" else CHECKSUM_MISMATCH)]
    reasons = sync.take()["rejected"].column("reason").to_pylist()
    assert [r for r in reasons if r != "price_beyond_range"] == [damage]  # XBT/CHF placeholder asks
