"""Live institutional pressure (``tapeflow.signals.stream_institutional``) over a replayed simulated
three-day session: fed in micro-batches, restarted at a day boundary (its 20-day baseline read back
from the store under the lake) and pickled mid-day, its rows equal the batch detector's over the
whole session, row for row; without the store the restarted days judge against their own day."""

from __future__ import annotations

import itertools
import json
import pickle
import random
from pathlib import Path

import numpy as np
import pytest

from tapeflow.errors import StorageError
from tapeflow.signals import institutional
from tapeflow.signals.institutional import Baselines
from tapeflow.signals.stream_institutional import BaselineStore, StreamingInstitutional
from tests.signals.test_institutional import DAY, S, _params, _tape

COLS = ("ts_event_ns", "ts_recv_ns", "order_id", "action", "side_code", "size_nanos")


def _session(seed: int, days: int = 3) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Short simulated days (15 min each, at the same time of day) with a one-sided parent in each."""
    rng = np.random.default_rng(seed)
    t0 = 1_704_196_800 * S  # 2024-01-02 12:00 UTC
    parts = [_tape(rng, t0 + d * DAY, 900, parent_side=d % 2)[0] for d in range(days)]
    for k, p in enumerate(parts):
        p["order_id"] = p["order_id"] + np.uint64(10 ** 6 * k)
    tape = {c: np.concatenate([p[c] for p in parts]) for c in COLS}
    return tape, np.ones(len(tape["ts_event_ns"]), bool)


def _rows(tables) -> list[dict]:
    return sorted((r for t in tables for r in t.to_pylist()), key=lambda r: (r["ts_event_ns"], r["side"]))


def _feed(stage: StreamingInstitutional, tape, touch, lo: int, hi: int, cuts: list[int], params, *,
          final: bool, pickle_at: int | None = None) -> tuple[StreamingInstitutional, list]:
    out = []
    edges = [lo, *[c for c in cuts if lo < c < hi], hi]
    for k, (a, b) in enumerate(itertools.pairwise(edges)):
        if k == pickle_at:
            stage = pickle.loads(pickle.dumps(stage))  # a recovery snapshot mid-day
        out += stage.add({c: v[a:b] for c, v in tape.items()}, touch[a:b], params, final=final and b == hi)
    return stage, out


def test_live_equals_batch_across_a_restart_at_the_day_roll(tmp_path: Path) -> None:
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")
    params = _params()
    tape, touch = _session(seed)
    want = _rows([institutional.detect(tape, touch, params, "sim", "X").table()])
    where = [json.loads(r["evidence"])["baseline"] for r in want]
    print(f"batch: {len(want)} alerts, baselines {where}")
    assert "earlier_days" in where and "own_day" in where  # days 2 and 3 judged against day 1 (and 2)

    rng = random.Random(seed)
    n = len(tape["ts_event_ns"])
    cuts = sorted(rng.sample(range(1, n), 60))
    day2 = int(np.searchsorted(tape["ts_event_ns"], 1_704_196_800 * S + DAY - 3600 * S))
    store = BaselineStore(tmp_path / "lake" / "_baselines")
    first = StreamingInstitutional("sim", "X", store)
    _, got = _feed(first, tape, touch, 0, day2, cuts, params, final=True)  # the process stops after day 1
    assert store.path("sim", "X").exists()
    restarted = StreamingInstitutional("sim", "X", store)  # a new process: the baseline from the store
    restarted, rest = _feed(restarted, tape, touch, day2, n, cuts, params, final=True, pickle_at=7)
    assert _rows(got + rest) == want
    assert sorted(store.load("sim", "X").days) == sorted({int(t // DAY) for t in tape["ts_event_ns"]})

    # the same restart without the store: days 2 and 3 lose their baseline, and the rows differ
    amnesiac = StreamingInstitutional("sim", "X")
    _, forgot = _feed(amnesiac, tape, touch, day2, n, cuts, params, final=True)
    assert _rows(got + forgot) != want
    day2_rows = [r for r in _rows(forgot) if r["ts_event_ns"] // DAY == tape["ts_event_ns"][day2] // DAY]
    assert day2_rows and all(json.loads(r["evidence"])["baseline"] == "own_day" for r in day2_rows)


def test_the_day_roll_inside_one_batch_and_one_batch_per_day(tmp_path: Path) -> None:
    params = _params()
    tape, touch = _session(11)
    want = _rows([institutional.detect(tape, touch, params, "sim", "X").table()])
    n = len(tape["ts_event_ns"])
    for cuts in ([], [n // 2]):  # the whole session at once; a cut in the middle of day 2
        stage = StreamingInstitutional("sim", "X", BaselineStore(tmp_path / f"b{len(cuts)}"))
        _, got = _feed(stage, tape, touch, 0, n, cuts, params, final=True)
        assert _rows(got) == want


def test_the_store_round_trips_bit_for_bit_and_a_bad_file_is_a_clear_error(tmp_path: Path) -> None:
    store = BaselineStore(tmp_path)
    rng = np.random.default_rng(3)
    days = Baselines({19725 + d: (1_800 * S, 60 * S, rng.random(48) * 1e26, rng.integers(0, 1800, 48) * 1.0)
                      for d in range(3)})
    store.save("sim", "A/B", days)  # a symbol with a slash stays one directory
    back = store.load("sim", "A/B")
    assert sorted(back.days) == sorted(days.days)
    for d, (b, w, sq, cnt) in days.days.items():
        assert back.days[d][:2] == (b, w)
        assert np.array_equal(back.days[d][2], sq) and np.array_equal(back.days[d][3], cnt)
    assert store.load("sim", "NONE").days == {}
    assert [p.name for p in store.path("sim", "A/B").parent.iterdir()] == ["A%2FB"]
    store.legacy_path("sim", "C").write_text('{"days": {"x": 1}}')  # the layout of before
    with pytest.raises(StorageError, match=r"C\.json: not an institutional baseline file"):
        store.load("sim", "C")
