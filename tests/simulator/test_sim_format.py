"""Determinism, planted episodes, and the ``sim`` decoder round trip."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tapeflow.book.l2 import replay_l2
from tapeflow.errors import FormatError
from tapeflow.schemas.records import (
    F_HIDDEN,
    F_LAST,
    F_SNAPSHOT,
    L3_ADD,
    L3_CANCEL,
    L3_CLEAR,
    L3_FILL,
    L3_TRADE,
)
from tapeflow.simulator import KINDS, SimSummary, simulate
from tapeflow.venues import get_format
from tapeflow.venues.base import merge
from tapeflow.venues.sim.parse import decode, l3_to_l2
from tests.simulator.conftest import MINUTE_NS, files_of

HEADER = "ts_event,ts_recv,seq,type,order_id,side,price,size"


def _digest(summary: SimSummary) -> str:
    h = hashlib.sha256()
    for path in [*summary.files, summary.episodes_path]:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    runs = [
        simulate(seed, 2, 2 * MINUTE_NS, tmp_path / f"run{i}", "equity", progress=False)
        for i, seed in enumerate((3, 3, 4))
    ]
    assert [p.relative_to(runs[0].out_dir) for p in runs[0].files] == [
        p.relative_to(runs[1].out_dir) for p in runs[1].files
    ]
    assert _digest(runs[0]) == _digest(runs[1])
    assert _digest(runs[0]) != _digest(runs[2])
    assert runs[0].events == runs[1].events and runs[0].events["SIMA"] > 100


def test_files_per_symbol_per_day_with_snapshot_at_each_start(episode_run: SimSummary) -> None:
    names = sorted(str(p.relative_to(episode_run.out_dir)) for p in episode_run.files)
    assert names == [
        "sim/SIM-BTCUSDT/2024-01-01.events.csv.gz",
        "sim/SIM-BTCUSDT/2024-01-02.events.csv.gz",
        "sim/SIM-ETHUSDT/2024-01-01.events.csv.gz",
        "sim/SIM-ETHUSDT/2024-01-02.events.csv.gz",
    ]
    second_day = files_of(episode_run, "SIM-BTCUSDT")[1]
    with gzip.open(second_day, "rt") as fh:
        lines = [next(fh) for _ in range(3)]
    assert lines[0].strip() == HEADER
    assert lines[1].split(",")[3] == "R" and lines[1].split(",")[0] == "1704153600000000000"
    assert lines[2].split(",")[3] == "S"  # the book carried over midnight is restated


def test_planted_episodes_real_and_lookalike_of_every_kind(episode_run: SimSummary) -> None:
    ep = pq.read_table(episode_run.episodes_path).to_pylist()
    assert len(ep) == episode_run.episodes == 40  # 2 symbols x 10 kinds x (real + look-alike)
    for symbol in ("SIM-BTCUSDT", "SIM-ETHUSDT"):
        mine = [e for e in ep if e["instrument"] == symbol]
        assert sorted((e["kind"], e["lookalike"]) for e in mine) == sorted(
            (k, look) for k in KINDS for look in (False, True)
        )
    for e in ep:
        assert e["end_ns"] >= e["start_ns"]
        if not e["lookalike"] and e["kind"] != "contraction":  # a compressed range has no side
            assert e["side"] in ("B", "A")
    spoof = [e for e in ep if e["kind"] == "spoofing" and not e["lookalike"]]
    for e in spoof:
        # layers cancelled 20 ms - 1 s after the genuine order's fill
        import json

        fill_ns = json.loads(e["params"])["fill_ns"]
        assert 20_000_000 <= e["end_ns"] - fill_ns <= 1_000_000_000
    ice = [e for e in ep if e["kind"] == "iceberg" and not e["lookalike"]]
    assert all(e["refills"] >= 1 for e in ice), ice  # the peak was shown again after a fill


def test_spoof_layers_are_in_the_feed(episode_run: SimSummary) -> None:
    # each real spoofing episode's layer price holds adds of 3-10x the median depth (3 BTC)
    ep = [
        e
        for e in pq.read_table(episode_run.episodes_path).to_pylist()
        if e["kind"] == "spoofing" and not e["lookalike"]
    ]
    for e in ep:
        tables = merge(list(decode(files_of(episode_run, e["instrument"]))))
        oe = tables["order_event"]
        px = oe.column("price_nanos").to_numpy()
        size = oe.column("size_nanos").to_numpy()
        ts = oe.column("ts_event_ns").to_numpy()
        act = oe.column("action").to_numpy()
        at = (px == e["price_nanos"]) & (act == L3_ADD) & (ts >= e["start_ns"]) & (ts <= e["end_ns"])
        assert (size[at] >= 9_000_000_000).any()


def test_decode_round_trip_every_line_and_an_uncrossed_book(episode_run: SimSummary) -> None:
    path = files_of(episode_run, "SIM-BTCUSDT")[0]
    with gzip.open(path, "rt") as fh:
        lines = fh.read().splitlines()[1:]
    kinds = {t: sum(1 for ln in lines if ln.split(",")[3] == t) for t in "RSADEH"}
    tables = merge(list(decode([path])))
    oe = tables["order_event"]
    act = oe.column("action").to_numpy()
    flags = oe.column("flags").to_numpy()
    assert "rejected" not in tables
    # R -> R; S and A -> A; D -> C; E -> T + F + C; H -> T (counted independently from the text)
    assert (act == L3_CLEAR).sum() == kinds["R"] == 1
    assert (act == L3_ADD).sum() == kinds["S"] + kinds["A"]
    assert (act == L3_CANCEL).sum() == kinds["D"] + kinds["E"]
    assert (act == L3_FILL).sum() == kinds["E"]
    assert (act == L3_TRADE).sum() == kinds["E"] + kinds["H"]
    assert tables["trade"].num_rows == kinds["E"] + kinds["H"]
    assert (flags & F_LAST).astype(bool).sum() == len(lines) - kinds["S"]  # one F_LAST per message
    # An independent dict book over the L3 events: every cancel/fill hits a live order, never crossed.
    book: dict[int, list[int]] = {}
    levels = {66: {}, 65: {}}
    checked = 0
    cols = [
        oe.column(n).to_numpy() for n in ("action", "order_id", "side", "price_nanos", "size_nanos", "flags")
    ]
    for a, oid, side, price, size, fl in zip(*cols, strict=True):
        if a == L3_ADD:
            book[oid] = [side, price, size]
            levels[side][price] = levels[side].get(price, 0) + size
        elif a in (L3_CANCEL, L3_FILL):
            assert book[oid][0] == side and book[oid][1] == price and book[oid][2] >= size
            if a == L3_CANCEL:
                book[oid][2] -= size
                levels[side][price] -= size
                if not levels[side][price]:
                    del levels[side][price]
                if not book[oid][2]:
                    del book[oid]
        if fl & F_LAST and levels[66] and levels[65]:
            assert max(levels[66]) < min(levels[65])
            checked += 1
    assert checked > 0.9 * len(lines) - kinds["S"]


def test_l2_aggregation_replays_valid_from_the_first_row(episode_run: SimSummary) -> None:
    for path in files_of(episode_run, "SIM-ETHUSDT"):
        tables = merge(list(decode([path])))
        deltas = tables["book_delta"]
        assert deltas.column("flags").to_numpy()[0] & F_SNAPSHOT
        out = replay_l2(deltas)
        status = out.bbo["status"]
        last_snap = np.flatnonzero(deltas.column("flags").to_numpy() & F_SNAPSHOT)[-1]
        assert (status[last_snap:] == 0).all()  # VALID from the snapshot's end, never crossed
        assert (out.bbo["bid_px"][last_snap + 1 :] < out.bbo["ask_px"][last_snap + 1 :]).all()


def test_l3_to_l2_levels_carry_between_chunks() -> None:
    from tapeflow.schemas.records import ORDER_EVENT

    def ev(action, side, price, size):
        return dict(
            ts_event_ns=1,
            ts_recv_ns=1,
            venue="sim",
            symbol="X",
            sequence=1,
            order_id=1,
            action=ord(action),
            side=ord(side),
            price_nanos=price,
            size_nanos=size,
            flags=F_LAST,
        )

    rows = [ev("A", "B", 10, 5), ev("A", "B", 10, 3), ev("A", "A", 11, 2), ev("C", "B", 10, 5)]
    table = ORDER_EVENT.table({k: [r[k] for r in rows] for k in rows[0]})
    levels: dict[tuple[int, int], int] = {}
    first = l3_to_l2(table.slice(0, 2), levels)
    second = l3_to_l2(table.slice(2), levels)
    assert first.column("size_nanos").to_pylist() == [5, 8]
    assert second.column("size_nanos").to_pylist() == [2, 3]
    assert levels == {(ord("B"), 10): 3, (ord("A"), 11): 2}


def test_bad_lines_become_rejects_with_reasons(tmp_path: Path) -> None:
    folder = tmp_path / "sim" / "SIMA"
    folder.mkdir(parents=True)
    path = folder / "2024-01-02.events.csv.gz"
    body = [
        HEADER,
        "1,1,1,R,0,B,0,0",
        "2,2,2,A,7,B,100.01,100",
        "3,3,3,A,8,B,abc,100",
        "4,4,4,Q,9,B,1,1",
        "5,5,5,A,10,B,-1.00,100",
        "6,6",
        "7,7,7,A,11,X,1.00,100",
        "8,8,8,D,7,B,100.01,100",
    ]
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(body) + "\n")
    tables = merge(list(decode([path])))
    rej = tables["rejected"]
    assert rej.column("reason").to_pylist() == [
        "bad_number",
        "unknown_message",
        "negative",
        "truncated",
        "bad_side",
    ]
    assert rej.column("location").to_pylist()[0].endswith(":4")
    assert rej.column("raw").to_pylist()[0] == b"3,3,3,A,8,B,abc,100"
    oe = tables["order_event"]
    assert oe.column("action").to_pylist() == [L3_CLEAR, L3_ADD, L3_CANCEL]
    assert oe.column("flags").to_pylist()[0] == F_SNAPSHOT | F_LAST  # empty snapshot: valid at once
    assert oe.column("symbol").to_pylist() == ["SIMA"] * 3


def test_wrong_header_is_a_format_error(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("time,type\n1,2\n")
    with pytest.raises(FormatError, match="not a sim file"):
        list(decode([path]))


def test_format_registered_and_verify_passes(episode_run: SimSummary) -> None:
    fmt = get_format("sim")
    paths = files_of(episode_run, "SIM-ETHUSDT")
    reports = fmt.verify(paths)
    assert len(reports) == 2
    for rep in reports:
        assert rep.passed, rep.failures
        assert rep.details["crossed"] == 0
        assert rep.total > 1000


def test_hidden_executions_are_flagged_hidden(equity_run: SimSummary) -> None:
    path = equity_run.files[0]  # hidden liquidity is an equity-preset feature
    with gzip.open(path, "rt") as fh:
        hidden_lines = sum(1 for line in fh.read().splitlines()[1:] if line.split(",")[3] == "H")
    trades = merge(list(decode([path])))["trade"]
    flagged = int(((trades.column("flags").to_numpy() & F_HIDDEN) != 0).sum())
    assert hidden_lines > 0 and flagged == hidden_lines
