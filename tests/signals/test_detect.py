"""Detectors on hand-built trades, and ``tapeflow signals detect`` + ``score`` on simulated markets
from evaluation seeds drawn at random (printed), never the development seeds (101-102, 201-202)."""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from quality import run_suite
from tapeflow.cli import main
from tapeflow.schemas.records import ASK, BID, SIGNAL
from tapeflow.signals import whale
from tapeflow.signals.config import DEFAULT_PATH, load
from tapeflow.signals.score import score
from tests.signals.evaluation import assert_calibrated, assert_rate

S = 1_000_000_000


def _trades(ts, side, size, price):
    ts = np.asarray(ts, np.int64)
    return {"ts_event_ns": ts, "ts_recv_ns": ts + 1000, "price_nanos": np.asarray(price, np.int64),
            "size_nanos": np.asarray(size, np.int64), "aggressor_side": np.asarray(side, np.uint8)}


def test_whale_finds_a_sweep_and_a_parent_order_not_a_busy_two_sided_period():
    params = load(DEFAULT_PATH).for_instrument("whale", "SIMA")
    rng = np.random.default_rng(0)
    n = 1000  # 50 minutes of ordinary prints, one every 3 s, sides at random
    ts = list(np.arange(n) * 3 * S)
    side = list(rng.choice([BID, ASK], n))
    size = list(np.maximum(1, rng.lognormal(np.log(100), 0.3, n)).astype(np.int64))
    price = [10_000] * n
    # a sweep at 1000.5 s: one buy aggressor through 5 levels, 10x the median print
    ts += [1000 * S + S // 2] * 5
    side += [BID] * 5
    size += [200] * 5
    price += [10_000, 10_001, 10_002, 10_003, 10_004]
    # a parent sell order from 2000 s: 40 children of 300 over 40 s
    ts += list(2000 * S + np.arange(40) * S + S // 3)
    side += [ASK] * 40
    size += [300] * 40
    price += [10_000] * 40
    # a busy two-sided period from 2500 s: 200 extra ordinary prints in 40 s, alternating sides
    ts += list(2500 * S + np.arange(200) * (S // 5) + S // 7)
    side += [BID, ASK] * 100
    size += [100] * 200
    price += [10_000] * 200
    order = np.argsort(np.asarray(ts), kind="stable")
    tr = _trades(*(np.asarray(c)[order] for c in (ts, side, size, price)))
    got = whale.detect(tr, params, "sim", "SIMA").table().to_pylist()
    found = [(r["side"], r["ts_event_ns"] // S, r["evidence"]) for r in got]
    sweep = [r for r in got if '"sweep"' in r["evidence"]]
    assert [(r["side"], r["ts_event_ns"]) for r in sweep] == [(1, 1000 * S + S // 2)], found
    parents = [r for r in got if '"parent"' in r["evidence"]]
    assert len(parents) == 1 and parents[0]["side"] == -1, found
    # the window's first same-side print opens the episode: at most the 60 s window before the alert
    assert 2000 * S <= parents[0]["ts_event_ns"] <= 2040 * S
    assert parents[0]["ts_event_ns"] - 60 * S < parents[0]["start_ns"] <= 2000 * S + S // 3
    assert not [r for r in got if 2500 * S <= r["ts_event_ns"] <= 2600 * S], "the busy period alerted"
    assert all(0.0 <= r["confidence"] <= 1.0 and r["score"] >= 1.0 for r in got)


@pytest.fixture(scope="module")
def evaluation(equity_day):
    """The run's shared equity day (tests/signals/conftest.py; test_l3_scores scores it too)."""
    print(f"\nsignals evaluation seed: {equity_day.seed} (equity preset, 2 instruments x 2 h, "
          "6 episodes/kind/h)")
    return equity_day.seed, equity_day.summary, equity_day.signals()


def test_detect_writes_signal_rows_that_pass_their_quality_suite(evaluation):
    _, summary, table = evaluation
    assert table.schema == SIGNAL.arrow_schema() and table.num_rows > 0
    result = run_suite("signals", table)
    assert {c.name: c.examples[:1] for c in result.failed} == {}
    registered = {"whale", "withdrawal", "spoofing", "iceberg", "wall", "spike", "hidden", "institutional",
                  "absorption", "creep", "contraction", "stealth"}
    assert set(table.column("kind").to_pylist()) <= registered
    # the simulator's feed has order ids: its icebergs come from the L3 detector alone
    assert "iceberg_l2/1" not in set(table.column("detector").to_pylist())
    # ... and its spoofing from the L3 detector alone (no double alerts)
    assert "spoofing_l2/1" not in set(table.column("detector").to_pylist())
    assert set(table.column("symbol").to_pylist()) <= set(summary.events)


def test_scores_on_evaluation_seeds_meet_the_floors(evaluation, capsys):
    seed, summary, table = evaluation
    report = score(pq.read_table(summary.episodes_path), table, kinds=["whale", "withdrawal"])
    with capsys.disabled():
        print(f"\nseed {seed}\n{report.render()}")
    # claims below the pooled rates of random seeds (docs/signals.md): withdrawal P 0.716, R 0.667
    # (6 fresh seeds after the s26 change, 99.9 % lower bounds 0.584 and 0.536); whale P 0.289,
    # R 0.615 (8 fresh seeds on the s27 simulator and thresholds, 99.9 % lower bounds 0.220 and
    # 0.506; its false alerts are mostly the spike look-alike's sweeps and background sweeps in
    # quiet stretches). They guard against regressions; the goal (F1 >= 0.9) is not met
    wd, wh = report.kind("withdrawal"), report.kind("whale")
    assert wd.episodes == wh.episodes == 24
    assert_rate("withdrawal precision", wd.hits, wd.alerts, 0.55)
    assert_rate("withdrawal recall", wd.hits, wd.episodes, 0.5)
    assert wd.latency_median_ns <= 1 * S
    assert_rate("whale precision", wh.hits, wh.alerts, 0.2)
    assert_rate("whale recall", wh.hits, wh.episodes, 0.45)
    assert wh.latency_median_ns <= 60 * S
    # the calibration goal, ECE <= 0.05 (confidences refit on the calibration seeds)
    assert_calibrated(report, 0.05)


def test_detect_reads_the_thresholds_file_settings_name(evaluation, tmp_path, monkeypatch, capsys):
    _, summary, table = evaluation
    edited = tmp_path / "t.toml"
    edited.write_text(DEFAULT_PATH.read_text().replace("min_levels_pulled = 4", "min_levels_pulled = 1000")
                      .replace("min_levels_pulled = 3", "min_levels_pulled = 1000"))
    monkeypatch.setenv("TAPEFLOW_SIGNALS_CONFIG", str(edited))
    code = main(["signals", "detect", "--format", "sim", *map(str, summary.files),
                 "--out", str(tmp_path / "o")])
    assert code == 0 and str(edited) in capsys.readouterr().out
    again = pq.read_table(tmp_path / "o" / "signals.parquet")
    # the L3 detectors (spoofing, iceberg) do not read the withdrawal thresholds
    assert "withdrawal" not in set(again.column("kind").to_pylist())
    assert set(again.column("kind").to_pylist()) >= {"whale"}
    again = again.filter(pc.equal(again.column("kind"), "whale"))
    whale_rows = table.filter(pc.equal(table.column("kind"), "whale"))
    assert again.column("params_hash").to_pylist() == whale_rows.column("params_hash").to_pylist()


def test_detect_refuses_bad_arguments_with_a_message(tmp_path, capsys):
    assert main(["signals", "detect", "--format", "sim", str(tmp_path / "absent.csv.gz"),
                 "--out", str(tmp_path)]) == 2
    assert "absent.csv.gz" in capsys.readouterr().err
    path = tmp_path / "x.events.csv.gz"
    path.write_bytes(b"")
    assert main(["signals", "detect", "--format", "sim", str(path), "--out", str(tmp_path),
                 "--preset", "forex"]) == 2
    assert "forex" in capsys.readouterr().err
