"""The wall detector on a hand-built book grid: a wall that stands alerts once (``appeared``) and
then says how it went (``pulled`` / ``eaten``); an order cancelled at once, a defender at the touch
and size piling up level by level (the look-alikes) do not; the scorer counts the outcome rows
neither as hits nor as false alerts."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from kernels.signals_walls import wall_runs_ref
from kernels.signals_windows import block_quantiles_ref
from tapeflow.schemas.records import BID
from tapeflow.signals import walls
from tapeflow.signals.config import DEFAULT_PATH, load
from tapeflow.signals.score import score

GRID_NS = 100_000_000
T0 = 1_704_205_800_000_000_000
ROWS, LEVELS = 1200, 11


def _book() -> dict[str, np.ndarray]:
    k = np.arange(LEVELS)
    bid_p = np.tile(1000 - k, (ROWS, 1))
    ask_p = np.tile(1001 + k, (ROWS, 1))
    bid_s = np.full((ROWS, LEVELS), 10)
    ask_s = np.full((ROWS, LEVELS), 10)
    bid_s[100:400, 2] += 500  # A: a wall 2 ticks behind the bid, 30 s, then cancelled
    ask_s[500:504, 2] += 500  # B: the look-alike, cancelled 400 ms after it appears
    bid_s[600:700, 0] += 500  # C: a defender at the touch
    ask_s[750:900, 1] += np.minimum(10 * np.arange(150), 500)  # D: size piling up a row at a time
    ask_s[950:1150, 2] += 500  # E: a wall 2 ticks behind the ask, eaten from row 1140
    ask_s[1140:1150, 2] -= 50 * np.arange(1, 11)
    ts = T0 + np.arange(ROWS) * GRID_NS
    return dict(ts=ts, recv=ts + 1000, flags=np.zeros(ROWS, np.uint8), bid_p=bid_p, bid_s=bid_s,
                ask_p=ask_p, ask_s=ask_s)


def _trades() -> dict[str, np.ndarray]:
    # buyers lift the ask wall E, 50 lots a row from row 1140, a hair before each row's capture
    ts = T0 + np.arange(1140, 1150) * GRID_NS - 10_000
    return dict(ts_event_ns=ts, ts_recv_ns=ts + 500, price_nanos=np.full(10, 1003),
                size_nanos=np.full(10, 50), aggressor_side=np.full(10, BID, np.uint8))


def _params() -> dict:
    params = load(DEFAULT_PATH).for_instrument("wall", "SIMA")
    wanted = (params["min_size_x_depth"], params["persist_ns"], params["min_ticks_behind"])
    assert wanted == (12.0, 2 * 10**9, 1)
    return params


def _rows(table: pa.Table) -> list[tuple[int, int, str, int]]:
    return [(r["side"], r["price_nanos"], json.loads(r["evidence"])["event"],
             (r["ts_event_ns"] - T0) // GRID_NS) for r in table.to_pylist()]


def test_standing_walls_alert_with_their_outcome_and_the_lookalikes_do_not() -> None:
    got = walls.detect(_book(), _trades(), 1, _params(), "sim", "SIMA").table()
    # appeared after standing 2 s (20 rows: the first row it showed plus 19); gone on the first
    # row under the threshold it appeared with (12 x the touch depth of 10)
    assert _rows(got) == [(1, 998, "appeared", 119), (1, 998, "pulled", 400),
                          (-1, 1003, "appeared", 969), (-1, 1003, "eaten", 1147)]
    rows = got.to_pylist()
    assert rows[0]["start_ns"] == T0 + 100 * GRID_NS and rows[1]["start_ns"] == rows[0]["start_ns"]
    assert rows[0]["size_nanos"] == 510 and rows[0]["confidence"] == pytest.approx(1 / (1 + np.exp(-2.75)))
    first = json.loads(rows[0]["evidence"])
    assert first["size_x_depth"] == 51.0 and first["ticks_behind"] == 2 and first["jump_x_depth"] == 50.0
    eaten = json.loads(rows[3]["evidence"])
    assert eaten["traded_nanos"] == 400 and eaten["left_nanos"] == 110


def test_without_the_trades_the_eaten_wall_reads_pulled() -> None:
    none = {k: v[:0] for k, v in _trades().items()}
    got = walls.detect(_book(), none, 1, _params(), "sim", "SIMA").table()
    assert [e for _, _, e, _ in _rows(got)] == ["appeared", "pulled", "appeared", "pulled"]


@pytest.mark.parametrize("change, extra", [
    (dict(persist_ns=300_000_000), (-1, 1003, "appeared", 502)),  # B stands 400 ms: persistence rejects it
    (dict(min_ticks_behind=0), (1, 1000, "appeared", 619)),  # C sits at the touch
    (dict(min_jump_share=0.0), (-1, 1002, "appeared", 780)),  # D never jumped
])
def test_each_rule_is_what_rejects_its_lookalike(change: dict, extra: tuple) -> None:
    got = _rows(walls.detect(_book(), _trades(), 1, {**_params(), **change}, "sim", "SIMA").table())
    assert extra in got


def test_the_reference_kernels_give_the_same_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    jax_rows = walls.detect(_book(), _trades(), 1, _params(), "sim", "SIMA").table().to_pylist()
    monkeypatch.setattr(walls, "wall_runs", wall_runs_ref)
    monkeypatch.setattr(walls, "block_medians", lambda x, b, k: block_quantiles_ref(x, b, k, (0.5,))[:, 0])
    assert walls.detect(_book(), _trades(), 1, _params(), "sim", "SIMA").table().to_pylist() == jax_rows


def test_outcome_rows_are_neither_hits_nor_false_alerts() -> None:
    got = walls.detect(_book(), _trades(), 1, _params(), "sim", "SIMA").table()
    truth = pa.table({"instrument": ["SIMA", "SIMA"], "kind": ["wall", "wall"], "lookalike": [False, True],
                      "side": ["B", "A"], "price_nanos": [998, 1003],
                      "start_ns": [T0 + 100 * GRID_NS, T0 + 950 * GRID_NS],
                      "end_ns": [T0 + 400 * GRID_NS, T0 + 1150 * GRID_NS], "params": ["{}", "{}"]})
    k = score(truth, got).kind("wall")
    # 4 rows: A's appeared hits; E (a look-alike here) is one false alert, its outcome row none
    assert (k.episodes, k.alerts, k.hits) == (1, 2, 1)
    # the rule is what keeps them out: the same rows all marked as alerts count double
    relabel = pa.array([e.replace('"pulled"', '"appeared"').replace('"eaten"', '"appeared"')
                        for e in got.column("evidence").to_pylist()])
    k = score(truth, got.set_column(got.schema.get_field_index("evidence"), "evidence", relabel)).kind("wall")
    assert (k.alerts, k.hits) == (4, 1)


def test_short_or_empty_inputs_give_no_rows() -> None:
    book = _book()
    for rows in (0, 1, 15):
        part = {k: v[:rows] for k, v in book.items()}
        assert walls.detect(part, _trades(), 1, _params(), "sim", "SIMA").table().num_rows == 0
    empty_book = {k: np.zeros_like(v) for k, v in book.items()}  # every level absent
    assert walls.detect({**empty_book, "ts": book["ts"], "recv": book["recv"]}, _trades(), 1, _params(),
                        "sim", "SIMA").table().num_rows == 0


def test_a_degraded_book_row_flags_the_rows_whose_evidence_it_touched() -> None:
    from tapeflow.schemas.records import F_MAYBE_BAD_BOOK

    book = _book()
    book["flags"][110] = F_MAYBE_BAD_BOOK  # inside A's first 2 s: its appeared and outcome rows
    book["flags"][200] = F_MAYBE_BAD_BOOK  # after A appeared: its outcome row only
    rows = walls.detect(book, _trades(), 1, _params(), "sim", "SIMA").table().to_pylist()
    assert [r["flags"] for r in rows] == [F_MAYBE_BAD_BOOK, F_MAYBE_BAD_BOOK, 0, 0]
    book["flags"][110] = 0
    rows = walls.detect(book, _trades(), 1, _params(), "sim", "SIMA").table().to_pylist()
    assert [r["flags"] for r in rows] == [0, F_MAYBE_BAD_BOOK, 0, 0]
