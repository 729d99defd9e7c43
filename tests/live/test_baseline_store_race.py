"""The institutional baseline store under concurrent writers (the live stage at its day roll and
the Dagster ``signals`` asset, separate processes): no writer drops another's day.

Before, the store was one JSON file per instrument that each writer rewrote whole from what it had
read: writer A reads, writer B writes day X, writer A writes, and day X is gone until a partition
recomputes it. Now each day is its own file, written atomically."""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import numpy as np
import pytest

from tapeflow.errors import StorageError
from tapeflow.signals.institutional import Baselines
from tapeflow.signals.stream_institutional import BaselineStore, StreamingInstitutional
from tests.live.test_institutional_stream import COLS
from tests.signals.test_institutional import DAY, S, _params, _tape

D0 = 19_724  # 2024-01-02


def _rec(day: int) -> tuple[int, int, np.ndarray, np.ndarray]:
    """A record whose numbers say which day it is (so a day written over by another's is seen)."""
    return 1_800 * S, 60 * S, np.full(48, day * 1.5 + 0.1), np.full(48, float(day % 1800))


def _legacy(store: BaselineStore, venue: str, symbol: str, days: list[int]) -> None:
    """A baseline file in the layout of before (one file per instrument)."""
    path = store.legacy_path(venue, symbol)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = {"days": {str(d): {"bucket_ns": b, "window_ns": w, "sq": sq.tolist(), "cnt": cnt.tolist()}
                    for d in days for b, w, sq, cnt in [_rec(d)]}}
    path.write_text(json.dumps(raw))


def _assert_holds(store: BaselineStore, days: list[int]) -> None:
    got = store.load("sim", "X").days
    assert sorted(got) == sorted(days), f"missing {sorted(set(days) - set(got))}"
    for d in days:
        assert got[d][:2] == _rec(d)[:2] and np.array_equal(got[d][2], _rec(d)[2])


def test_a_read_then_another_writer_then_a_write_keeps_both_days(tmp_path: Path) -> None:
    # the interleaving that dropped a day: A reads, B writes, A writes (the old store failed this)
    store_a, store_b = BaselineStore(tmp_path), BaselineStore(tmp_path)
    a = store_a.load("sim", "X")
    store_b.save("sim", "X", Baselines({D0: _rec(D0)}))
    a.days[D0 + 1] = _rec(D0 + 1)
    store_a.save("sim", "X", a)
    _assert_holds(store_a, [D0, D0 + 1])


def test_the_live_day_roll_keeps_a_day_the_asset_wrote_meanwhile(tmp_path: Path) -> None:
    params = _params()
    rng = np.random.default_rng(5)
    t0 = 1_704_196_800 * S  # 2024-01-02 12:00 UTC: two days of 2 minutes of fills
    parts = [_tape(rng, t0 + d * DAY, 120)[0] for d in range(2)]
    tape = {c: np.concatenate([p[c] for p in parts]) for c in COLS}
    tape["order_id"][len(parts[0]["order_id"]):] += np.uint64(10 ** 6)
    touch = np.ones(len(tape["ts_event_ns"]), bool)
    day2 = len(parts[0]["ts_event_ns"])
    store = BaselineStore(tmp_path)
    live = StreamingInstitutional("sim", "X", store)
    cut = {c: v[:day2] for c, v in tape.items()}
    live.add(cut, touch[:day2], params)  # day 1: the stage has read the store (empty)
    asset_day = int(tape["ts_event_ns"][0] // DAY) - 3  # the asset backfills an earlier day
    BaselineStore(tmp_path).save("sim", "X", Baselines({asset_day: _rec(asset_day)}))
    live.add({c: v[day2:day2 + 50] for c, v in tape.items()}, touch[day2:day2 + 50], params)  # day roll
    days = store.load("sim", "X").days
    assert asset_day in days, "the live stage's day roll dropped the day the asset wrote"
    assert int(tape["ts_event_ns"][0] // DAY) in days


@pytest.mark.parametrize("baseline_days", [20, 5])
def test_the_live_day_roll_prunes_the_days_before_the_baseline_look_back(tmp_path: Path,
                                                                       baseline_days: int) -> None:
    params = {**_params(), "baseline_days": baseline_days}
    rng = np.random.default_rng(7)
    t0 = 1_704_196_800 * S  # 2024-01-02 12:00 UTC: one day of 2 minutes of fills, then the roll
    parts = [_tape(rng, t0 + d * DAY, 120)[0] for d in range(2)]
    tape = {c: np.concatenate([p[c] for p in parts]) for c in COLS}
    tape["order_id"][len(parts[0]["order_id"]):] += np.uint64(10 ** 6)
    touch = np.ones(len(tape["ts_event_ns"]), bool)
    day1, day2 = int(tape["ts_event_ns"][0] // DAY), len(parts[0]["ts_event_ns"])
    store = BaselineStore(tmp_path)
    old = list(range(day1 - 30, day1))  # 30 days the asset wrote before
    store.put("sim", "X", {d: _rec(d) for d in old})
    (store.path("sim", "X") / ".tmp-writer").write_text("{}")  # another writer's file in flight
    live = StreamingInstitutional("sim", "X", store)
    live.add({c: v[:day2] for c, v in tape.items()}, touch[:day2], params)
    assert sorted(store.load("sim", "X").days) == old, "nothing is pruned before a day rolls over"
    live.add({c: v[day2:day2 + 50] for c, v in tape.items()}, touch[day2:day2 + 50], params)  # day roll
    # the next day (day1 + 1) reads days day1 + 1 - baseline_days .. day1: every older file is gone
    kept = sorted(store.load("sim", "X").days)
    assert kept == list(range(day1 + 1 - baseline_days, day1 + 1)), kept
    assert (store.path("sim", "X") / ".tmp-writer").exists(), "pruning deleted a file that is no day"
    assert store.prune("sim", "X", day1 + 1 - baseline_days) == []  # idempotent


def _writer(root: Path, days: list[int], reads: bool, seed: int) -> None:
    """One writer process: adds its days one by one, as the asset does (read the 20 days before,
    write the day and what it computed: ``save`` of what it read and its day) or as the live stage
    does (write the day it rolled over)."""
    store, rng = BaselineStore(root), random.Random(seed)
    for d in days:
        if reads:
            b = store.load("sim", "X", days=range(d - 20, d))
            b.days[d] = _rec(d)
            store.save("sim", "X", Baselines({k: v for k, v in b.days.items() if k >= d - 2}))
        else:
            store.put("sim", "X", {d: _rec(d)})
        if rng.random() < 0.3:
            time.sleep(0.0005)


# the children run only this file's writer (files, json, numpy), never JAX, which warns on any fork
# of a process that imported it; a fresh interpreter per writer cost seconds of imports
@pytest.mark.filterwarnings("ignore:os.fork\\(\\) was called:RuntimeWarning")
def test_two_processes_adding_days_at_once_lose_none(tmp_path: Path) -> None:
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")
    store = BaselineStore(tmp_path)
    old = [D0 - 40 + k for k in range(5)]
    _legacy(store, "sim", "X", old)  # both writers migrate the old file as they start
    plan = {True: [D0 + 2 * k for k in range(40)], False: [D0 + 2 * k + 1 for k in range(40)]}
    pids = []
    for reading, days in plan.items():
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                _writer(tmp_path, days, reading, seed + reading)
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    codes: dict[int, int] = {}
    reads, deadline = 0, time.monotonic() + 60
    while len(codes) < len(pids):
        if time.monotonic() > deadline:
            for p in pids:
                if p not in codes:
                    os.kill(p, 9)
                    os.waitpid(p, 0)
            pytest.fail("the writers did not finish in 60 s")
        # read while they write: never a torn file, never the old days missing
        got = store.load("sim", "X").days
        assert set(old) <= set(got)
        reads += 1
        for p in pids:
            if p not in codes:
                done, status = os.waitpid(p, os.WNOHANG)
                if done:
                    codes[p] = os.waitstatus_to_exitcode(status)
    print(f"{reads} reads during the writes")
    assert list(codes.values()) == [0, 0]
    _assert_holds(store, old + plan[True] + plan[False])
    assert not store.legacy_path("sim", "X").exists()  # migrated
    assert not [p for p in store.path("sim", "X").iterdir() if p.name.startswith(".")]  # no temp files


def test_an_old_file_is_read_then_moved_into_per_day_files(tmp_path: Path) -> None:
    store = BaselineStore(tmp_path)
    _legacy(store, "sim", "X", [D0, D0 + 1])
    _assert_holds(store, [D0, D0 + 1])  # read as it is
    assert sorted(store.load("sim", "X", days=[D0 + 1, D0 + 5]).days) == [D0 + 1]
    newer = (_rec(D0)[0], _rec(D0)[1], np.zeros(48), np.zeros(48))
    store.put("sim", "X", {D0: newer, D0 + 2: _rec(D0 + 2)})  # the first write migrates
    assert not store.legacy_path("sim", "X").exists()
    got = store.load("sim", "X").days
    assert sorted(got) == [D0, D0 + 1, D0 + 2]
    assert np.array_equal(got[D0][2], np.zeros(48))  # the day written now, not the old file's


def test_a_bad_day_file_is_a_clear_error(tmp_path: Path) -> None:
    store = BaselineStore(tmp_path)
    store.put("sim", "X", {D0: _rec(D0)})
    (store.path("sim", "X") / "2024-01-02.json").write_text('{"day": 19724, "sq": 1}')
    with pytest.raises(StorageError, match=r"2024-01-02\.json: not an institutional baseline file"):
        store.load("sim", "X")
    (store.path("sim", "X") / "2024-01-02.json").write_text(json.dumps({"day": D0 + 1}))
    with pytest.raises(StorageError, match="its name says"):
        store.load("sim", "X")
    (store.path("sim", "X") / "2024-01-02.json").unlink()
    (store.path("sim", "X") / "notes.txt").write_text("x")
    with pytest.raises(StorageError, match=r"notes\.txt: not an institutional baseline file"):
        store.load("sim", "X")
