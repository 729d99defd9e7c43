"""The derived stages' own thresholds (insurance-fund stress levels, liquidation-cluster window and
size) come from the signals thresholds file, per instrument, the same in the live derived step and
in the batch functions the ``derivatives_derived`` asset calls (tapeflow/derivatives/derived_config.py)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pyarrow as pa
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource

from flows.derivatives import _new_logic, derivatives_stream
from tapeflow.derivatives.derived import insurance_stress
from tapeflow.derivatives.derived_config import StageThresholds
from tapeflow.derivatives.live_clusters import batch_clusters
from tapeflow.errors import ConfigError
from tapeflow.schemas.derivatives import INSURANCE_FUND, LIQUIDATION
from tapeflow.schemas.records import BID
from tapeflow.signals.config import DEFAULT_PATH, load

S = 1_000_000_000
T0 = 1_718_173_800 * S


def _file(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "thresholds.toml"
    path.write_text(DEFAULT_PATH.read_text() + extra)
    return path


def _funds() -> pa.Table:
    # drawdowns 0, 7 %, 12 %, 30 % for each of two funds
    rows = [(sym, i, bal) for sym in ("BTCUSDT", "ETHUSDT") for i, bal in enumerate((100, 93, 88, 70))]
    return INSURANCE_FUND.table({"ts_event_ns": [T0 + i * S for _, i, _ in rows],
                                 "ts_recv_ns": [T0 + i * S for _, i, _ in rows],
                                 "venue": ["binance-usdm"] * len(rows), "symbol": [s for s, _, _ in rows],
                                 "asset": ["USDT"] * len(rows), "balance_nanos": [b * S for _, _, b in rows]})


def _liquidations() -> pa.Table:
    # per symbol two sells of 60,000 quote units, 3 s apart: one 120,000 cluster under a 5 s window
    rows = [(sym, k) for sym in ("BTCUSDT", "ETHUSDT") for k in range(2)]
    return LIQUIDATION.table({"ts_event_ns": [T0 + 3 * k * S for _, k in rows],
                              "ts_recv_ns": [T0 + 3 * k * S for _, k in rows], "venue": ["bybit"] * 4,
                              "symbol": [s for s, _ in rows], "liquidation_id": [f"{s}{k}" for s, k in rows],
                              "side": [BID] * 4, "price_nanos": [60_000 * S] * 4, "size_nanos": [S] * 4})


OVERRIDE = ('\n[instrument."ETHUSDT".derivatives]\nstress_watch = 0.08\nstress_alert = 0.15\n'
            'stress_critical = 0.35\ncluster_window_ns = 2_000_000_000\n')


def test_stress_levels_and_clusters_follow_the_file_per_instrument_live_and_batch(tmp_path: Path) -> None:
    limits = load(_file(tmp_path, OVERRIDE))
    logic = _new_logic(None, None, limits, None)  # the live derived step's stages
    logic = pickle.loads(pickle.dumps(logic))  # its snapshot keeps the per-instrument thresholds
    items = logic.step({INSURANCE_FUND.name: _funds(), LIQUIDATION.name: _liquidations()}) + logic.eof()
    live = {name: pa.concat_tables([t for n, t in items if n == name])
            for name in ("insurance_stress", "liquidation_cluster")}
    levels = {s: [r["level"] for r in live["insurance_stress"].to_pylist() if r["symbol"] == s]
              for s in ("BTCUSDT", "ETHUSDT")}
    # BTCUSDT: the shipped 5 / 10 / 25 %; ETHUSDT: its own 8 / 15 / 35 %
    assert levels == {"BTCUSDT": [0, 1, 2, 3], "ETHUSDT": [0, 0, 1, 2]}
    clusters = live["liquidation_cluster"].to_pylist()
    # ETHUSDT's 2 s window splits its pair into two chains of 60,000, each under the 100,000 minimum
    assert [(r["symbol"], r["count"], r["notional"]) for r in clusters] == [("BTCUSDT", 2, 120_000.0)]
    # the batch functions the derivatives_derived asset calls, with the same file: the same rows
    stages = StageThresholds(limits)
    assert batch_clusters(_liquidations(), stages.clusters).to_pylist() == clusters
    batch = insurance_stress(_funds(), stages.stress)
    assert batch.column("level").to_pylist() == [0, 1, 2, 3, 0, 0, 1, 2]


@pytest.mark.parametrize(("extra", "message"), [
    ('\n[instrument."ETHUSDT".derivatives]\nstress_alert = 0.04\n', r"instrument\.'ETHUSDT'.*must increase"),
    ('\n[instrument."ETHUSDT".derivatives]\nstress_watch = 1.5\n', r"derivatives\.stress_watch"),
    ('\n[instrument."ETHUSDT".derivatives]\ncluster_window_ns = 0\n', r"derivatives\.cluster_window_ns"),
])
def test_a_bad_stage_threshold_is_one_clear_error_before_the_flow_runs(tmp_path: Path, extra: str,
                                                                        message: str) -> None:
    path = _file(tmp_path, extra)
    with pytest.raises(ConfigError, match=message):
        derivatives_stream(Dataflow("bad"), TestingSource([]), thresholds=load(path))
