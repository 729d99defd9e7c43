"""Signals of the derived derivatives metrics (tapeflow/derivatives/derived_signals.py): planted
crossings against hand-worked answers, live == batch on random micro-batch cuts and on the real
captures, and bad thresholds as ConfigErrors naming the key."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pyarrow as pa
import pytest

from flows.derivatives import _DerivedLogic
from tapeflow.derivatives import decoder
from tapeflow.derivatives.derived_signals import LiveDerivedSignals, batch_signals, derived_signals
from tapeflow.derivatives.live_clusters import ClusterConfig, LiveClusters
from tapeflow.derivatives.live_derived import DerivedConfig, LiveDerived
from tapeflow.errors import ConfigError
from tapeflow.schemas.derivatives import (
    DERIVATIVE_BASIS,
    INDEX_PRICE,
    INSURANCE_FUND,
    LIQUIDATION,
    MARK_PRICE,
    OPEN_INTEREST,
)
from tapeflow.schemas.records import ASK, BID
from tapeflow.signals.config import DEFAULT_PATH, Thresholds, load
from tapeflow.venues.base import merge
from tapeflow.wire.capture import RECV, CaptureLine
from tests.conftest import need
from tests.derivatives.live_streams import FORMATS, PAIRS, T0, real_frames
from tests.derivatives.test_live_clusters import _liquidations
from tests.derivatives.test_live_derived import _stream, _tables

S = 1_000_000_000


def _thresholds(tmp_path: Path, symbols: list[str], **values: float) -> Thresholds:
    """The shipped file with ``[instrument."SYM".derivatives]`` overrides (the per-instrument path)."""
    text = DEFAULT_PATH.read_text()
    for sym in symbols:
        text += f'\n[instrument."{sym}".derivatives]\n' + "".join(f"{k} = {v!r}\n" for k, v in values.items())
    path = tmp_path / "thresholds.toml"
    path.write_text(text)
    return load(path)


def _conf(score: float) -> float:
    # the shipped basis map (thresholds.toml: basis_platt_a = 3.545, basis_platt_b = 0.184)
    return 1.0 / (1.0 + math.exp(-(3.545 * math.log(score) + 0.184)))


def _rows(table: pa.Table) -> list[dict]:
    return [r | {"evidence": json.loads(r["evidence"])} for r in table.to_pylist()]


def _text(table: pa.Table) -> list[str]:
    return sorted(repr(r) for r in table.to_pylist())


def test_planted_crossings_give_exactly_the_expected_signals() -> None:
    thresholds = load(DEFAULT_PATH)  # basis 50 bps, OI 5 %, cluster 1,000,000, stress level 2
    common = {"venue": "binance-usdm", "symbol": "BTCUSDT"}
    marks = [(0, 60_000), (3, 60_360), (5, 60_390), (7, 60_000), (9, 59_640)]
    tables = {
        "mark_price": MARK_PRICE.table({"ts_event_ns": [T0 + t * S for t, _ in marks],
                                        "ts_recv_ns": [T0 + t * S for t, _ in marks],
                                        "mark_price_nanos": [p * S for _, p in marks]}, constants=common),
        "index_price": INDEX_PRICE.table({"ts_event_ns": [T0], "ts_recv_ns": [T0],
                                          "index_price_nanos": [60_000 * S]}, constants=common),
        "open_interest": OPEN_INTEREST.table({"ts_event_ns": [T0, T0 + 20 * S],
                                              "ts_recv_ns": [T0, T0 + 20 * S],
                                              "open_interest_nanos": [1000 * S, 1100 * S],
                                              "open_interest_value_nanos": [-1, -1]}, constants=common),
        # 3 x 60,000 x 10 = 1.8M (a signal); 2 x 30,000 x 5 = 300,000 (a cluster, under the threshold)
        "liquidation": LIQUIDATION.table({
            "ts_event_ns": [T0 + S, T0 + S + S // 2, T0 + 2 * S, T0 + 40 * S, T0 + 41 * S],
            "ts_recv_ns": [T0 + S, T0 + S + S // 2, T0 + 2 * S, T0 + 40 * S, T0 + 41 * S],
            "liquidation_id": ["a", "b", "c", "d", "e"], "side": [BID, BID, BID, ASK, ASK],
            "price_nanos": [60_000 * S] * 3 + [30_000 * S] * 2, "size_nanos": [10 * S] * 3 + [5 * S] * 2},
            constants=common),
        # drawdowns 0, 4, 8, 15, 20, 30, 0, 15 %: levels 0 0 1 2 2 3 0 2 (watch 5, alert 10, critical 25)
        "insurance_fund": INSURANCE_FUND.table({
            "ts_event_ns": [T0 + i * S for i in range(8)], "ts_recv_ns": [T0 + i * S for i in range(8)],
            "asset": ["USDT"] * 8, "balance_nanos": [b * S for b in (100, 96, 92, 85, 80, 70, 100, 85)]},
            constants={"venue": "binance-usdm", "symbol": ""}),
    }
    config = DerivedConfig(interval_ns=S, max_staleness_ns=60 * S, window_ns=10 * S)
    got = _rows(batch_signals(tables, thresholds, config, ClusterConfig(window_ns=5 * S)))
    by_kind: dict[str, list[dict]] = {}
    for r in got:
        by_kind.setdefault(r["kind"], []).append(r)
    assert sorted(by_kind) == ["basis_extreme", "insurance_stress", "liquidation_cluster", "oi_surge"]
    # basis (mark - 60,000) / 60,000 * 1e4: 60 bps at 3 s (crossing), 65 at 5 s (still beyond),
    # 0 at 7 s, -60 at 9 s (a second crossing)
    basis = by_kind["basis_extreme"]
    assert [(r["ts_event_ns"] - T0, r["side"]) for r in basis] == [(3 * S, 1), (9 * S, -1)]
    assert [r["score"] for r in basis] == pytest.approx([60 / 50, 60 / 50])
    assert basis[0]["confidence"] == pytest.approx(_conf(1.2))
    assert basis[0]["evidence"]["mark_price_nanos"] == 60_360 * S
    assert basis[1]["evidence"]["basis_bps"] == pytest.approx(-60.0)
    # OI 1000 -> 1100 over the 10 s window: +10 % at 20 s, once
    (oi,) = by_kind["oi_surge"]
    assert (oi["ts_event_ns"] - T0, oi["side"], oi["score"]) == (20 * S, 1, pytest.approx(10 / 5))
    assert oi["evidence"]["change_nanos"] == 100 * S
    (cl,) = by_kind["liquidation_cluster"]
    assert (cl["start_ns"] - T0, cl["end_ns"] - T0, cl["side"]) == (S, 2 * S, 1)
    assert cl["score"] == pytest.approx(1.8) and cl["evidence"]["count"] == 3
    stress = by_kind["insurance_stress"]
    levels = [(r["ts_event_ns"] - T0, r["evidence"]["level"]) for r in stress]
    assert levels == [(3 * S, 2), (5 * S, 3), (7 * S, 2)]
    assert [r["score"] for r in stress] == pytest.approx([1.0, 1.5, 1.0])
    assert all(r["detector"] == "derivatives/1" and r["symbol"] in ("BTCUSDT", "") for r in got)


def test_random_micro_batches_equal_batch(tmp_path: Path) -> None:
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")
    rng = random.Random(seed)
    thresholds = _thresholds(tmp_path, ["BTCUSDT", "ETHUSDT", "SOLUSDT"], basis_bps=10.0,
                             oi_change_pct=50.0, cluster_notional=200_000.0)
    derived_cfg = DerivedConfig(interval_ns=S, max_staleness_ns=3 * S, window_ns=20 * S, lateness_ns=2 * S)
    cluster_cfg = ClusterConfig(window_ns=5 * S, min_notional=100_000.0, lateness_ns=0)
    rows = _stream(seed, n=400, jitter_ns=2 * S)
    liqs = sorted(_liquidations(seed, n=200), key=lambda r: r["ts_event_ns"])
    feed = sorted([(n, r) for n, r in rows] + [("liquidation", r) for r in liqs],
                  key=lambda x: x[1]["ts_recv_ns"])

    def tables(part: list[tuple[str, dict]]) -> dict[str, pa.Table]:
        out = _tables([x for x in part if x[0] != "liquidation"])
        mine = [r for n, r in part if n == "liquidation"]
        if mine:
            out["liquidation"] = LIQUIDATION.table({k: [r[k] for r in mine] for k in mine[0]})
        return out

    want = batch_signals(tables(feed), thresholds, derived_cfg, cluster_cfg)
    kinds = set(want.column("kind").to_pylist())
    assert kinds == {"basis_extreme", "oi_surge", "liquidation_cluster"}, kinds
    for _ in range(3):
        cuts = sorted(rng.sample(range(1, len(feed)), rng.randrange(1, 60)))
        stages = (LiveDerived(derived_cfg), LiveClusters(cluster_cfg))
        signals = LiveDerivedSignals(thresholds)
        got = []
        for a, b in zip([0, *cuts], [*cuts, len(feed)], strict=True):
            derived = [item for stage in stages for item in stage.update(tables(feed[a:b]))]
            assert all(n != "rejected" for n, _ in derived)
            got += signals.update(derived)
        got += signals.update([item for stage in stages for item in stage.flush()])
        live = pa.concat_tables([t for n, t in got if n == "signal"])
        assert _text(live) == _text(want)
    print(f"{want.num_rows} signals", sorted(kinds))


@pytest.mark.parametrize("venue", sorted(FORMATS))
def test_real_captures_live_equals_batch(real_data: Path, venue: str, tmp_path: Path) -> None:
    need(real_data / PAIRS)
    frames = real_frames(real_data, venue)
    dec = decoder(FORMATS[venue])
    # every instrument of the captures at the lowest thresholds, so that the real values signal
    symbols: set[str] = set()
    chunks = []
    for start in range(0, len(frames), 3):
        dec.feed_many([CaptureLine(T0 + i, RECV, "", f, f"live:{i}")
                       for i, f in enumerate(frames[start:start + 3], start)])
        chunks.append(dec.flush(0, "live"))
    for chunk in chunks:
        for table in chunk.tables.values():
            if "symbol" in table.column_names:
                symbols.update(table.column("symbol").to_pylist())
    thresholds = _thresholds(tmp_path, sorted(symbols), basis_bps=0.01, oi_change_pct=0.01,
                             cluster_notional=1.0)
    derived_cfg = DerivedConfig(interval_ns=600 * S, max_staleness_ns=86_400 * S, window_ns=3600 * S)
    cluster_cfg = ClusterConfig(window_ns=60 * S, min_notional=1.0)
    logic = _DerivedLogic((LiveDerived(derived_cfg), LiveClusters(cluster_cfg)),
                          LiveDerivedSignals(thresholds))
    items = []
    for chunk in chunks:
        items += logic.on_batch([dict(chunk.tables)])[0]
    items += logic.on_eof()[0]
    # the rows the live stages dead-lettered (too late for a closed grid time or chain) are not
    # in the batch input either: live == batch over the accepted rows
    late = {r["raw"] for n, t in items if n == "rejected" for r in t.to_pylist() if r["venue"] == "derived"}
    late = {x.decode() if isinstance(x, bytes) else x for x in late}
    decoded = dict(merge(chunks))
    accepted = {name: table.filter(pa.array([repr(r) not in late for r in table.to_pylist()]))
                for name, table in decoded.items() if name != "rejected"}
    live_parts = [t for n, t in items if n == "signal"]
    live = pa.concat_tables(live_parts) if live_parts else None
    want = batch_signals(accepted, thresholds, derived_cfg, cluster_cfg)
    print(venue, len(late), "late rows")
    print(venue, want.num_rows, "signals", sorted(set(want.column("kind").to_pylist())))
    assert _text(live) == _text(want) if live is not None else want.num_rows == 0
    assert want.num_rows or venue == "bybit"  # each Bybit instrument's frames lie within one grid step


def test_a_resumed_stage_carries_its_crossings() -> None:
    thresholds = load(DEFAULT_PATH)
    basis = {"ts_event_ns": [T0, T0 + S], "ts_recv_ns": [T0, T0 + S], "venue": ["x", "x"],
             "symbol": ["BTC", "BTC"], "interval": ["1s", "1s"], "mark_price_nanos": [1, 1],
             "index_price_nanos": [1, 1], "basis_bps": [70.0, 80.0]}
    table = DERIVATIVE_BASIS.table(basis)
    one, state = derived_signals({"derivative_basis": table.slice(0, 1)}, thresholds)
    two, _ = derived_signals({"derivative_basis": table.slice(1, 1)}, thresholds, state)
    assert (one.num_rows, two.num_rows) == (1, 0)  # 80 bps continues the crossing at 70
    assert derived_signals({"derivative_basis": table.slice(1, 1)}, thresholds)[0].num_rows == 1


@pytest.mark.parametrize(("line", "message"), [
    ("basis_bps = -1.0", "derivatives.basis_bps"),
    ("oi_change_pct = \"five\"", "derivatives.oi_change_pct"),
    ("stress_level = 4", "derivatives.stress_level"),
    ("cluster_notional = 0.0", "derivatives.cluster_notional"),
    ("basis_band = 3.0", "derivatives.basis_band"),
])
def test_bad_thresholds_are_config_errors_naming_the_key(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "t.toml"
    path.write_text(DEFAULT_PATH.read_text() + f'\n[instrument."BTCUSDT".derivatives]\n{line}\n')
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load(path)


def test_the_derived_steps_snapshot_carries_the_crossings() -> None:
    import pickle

    stages = (LiveDerived(), LiveClusters())
    logic = _DerivedLogic(stages, LiveDerivedSignals(load(DEFAULT_PATH)))
    logic.signals.state.beyond[("basis_extreme", "x", "BTC")] = True
    again = pickle.loads(logic.snapshot())
    assert again[1].state.beyond == {("basis_extreme", "x", "BTC"): True}
