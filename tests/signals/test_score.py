"""The scorer on hand-built truth and alerts: every expected number below is worked out by hand."""

from __future__ import annotations

import json
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tapeflow.cli import main
from tapeflow.errors import InputError
from tapeflow.schemas.records import UNDEF_PRICE
from tapeflow.signals.score import score

S = 1_000_000_000
NO = UNDEF_PRICE


def _truth(rows):
    cols = ("episode_id", "instrument", "kind", "lookalike", "side", "price_nanos", "start_ns", "end_ns",
            "params")
    data = {c: [r[k] for r in rows] for k, c in enumerate(cols)}
    return pa.table(data)


def _alerts(rows):
    cols = ("symbol", "kind", "side", "price_nanos", "ts_event_ns", "confidence")
    data = {c: [r[k] for r in rows] for k, c in enumerate(cols)}
    return pa.table({**data, "side": pa.array(data["side"], pa.int32())})


TRUTH = _truth([
    ("e0", "S", "whale", False, "B", NO, 100 * S, 160 * S, "{}"),
    ("e1", "S", "whale", False, "A", NO, 1000 * S, 1000 * S, "{}"),
    ("e2", "S", "whale", True, "N", NO, 2000 * S, 2030 * S, "{}"),
    ("e3", "S", "spoofing", False, "A", NO, 3000 * S, 3002 * S, json.dumps({"fill_ns": 3001 * S})),
    ("e4", "S", "iceberg", False, "B", 500, 4000 * S, 4030 * S, "{}"),
    ("e5", "S", "withdrawal", False, "B", NO, 5000 * S, 5000 * S, "{}"),
    ("e6", "S", "withdrawal", False, "A", NO, 6000 * S, 6000 * S, "{}"),
])
ALERTS = _alerts([
    ("S", "whale", 1, NO, 170 * S, 0.95),            # a0 hits e0 (60 s window after its end), 70 s
    ("S", "whale", 1, NO, 175 * S, 0.15),            # a1 e0 already matched: false positive
    ("S", "whale", -1, NO, 1000 * S + S // 2, 0.85),  # a2 hits e1, 0.5 s
    ("S", "whale", 1, NO, 2010 * S, 0.25),           # a3 on the look-alike: false positive
    ("S", "whale", -1, NO, 1061 * S, 0.05),          # a4 61 s after e1: outside the window
    ("S", "spoofing", -1, NO, 3001 * S + S // 5, 0.75),  # a5 hits e3, 0.2 s after the fill
    ("S", "spoofing", 1, NO, 3001 * S + S // 5, 0.35),   # a6 wrong side
    ("S", "iceberg", 1, 501, 4010 * S, 0.55),        # a7 wrong price
    ("S", "iceberg", 1, 500, 4034 * S, 0.55),        # a8 hits e4 (5 s window), 34 s after its start
    ("S", "withdrawal", 1, NO, 5004 * S, 0.95),      # a9 hits e5, 4 s
    ("S", "withdrawal", -1, NO, 6006 * S, 0.15),     # a10 6 s after e6: outside the 5 s window
    ("S", "absorption", 1, NO, 7000 * S, 0.45),      # a11 no such episode
])


def test_per_kind_counts_precision_recall_f1_latency():
    r = score(TRUTH, ALERTS)
    got = {k.kind: (k.episodes, k.alerts, k.hits) for k in r.kinds}
    assert got == {"whale": (2, 5, 2), "spoofing": (1, 2, 1), "iceberg": (1, 2, 1),
                   "withdrawal": (2, 2, 1), "absorption": (0, 1, 0)}
    whale = r.kind("whale")
    assert whale.precision == pytest.approx(0.4) and whale.recall == 1.0
    assert whale.f1 == pytest.approx(2 * 0.4 / 1.4)
    assert whale.latency_median_ns == pytest.approx((70 * S + S // 2) / 2)
    assert r.kind("spoofing").latency_median_ns == S // 5
    assert r.kind("iceberg").latencies_ns == [34 * S]
    wd = r.kind("withdrawal")
    assert (wd.precision, wd.recall, wd.f1) == (0.5, 0.5, 0.5) and wd.latencies_ns == [4 * S]
    ab = r.kind("absorption")
    assert ab.precision == 0.0 and math.isnan(ab.recall) and math.isnan(ab.f1)


def test_reliability_table_and_ece():
    r = score(TRUTH, ALERTS)
    counts = [b.count for b in r.bins]
    assert counts == [1, 2, 1, 1, 1, 2, 0, 1, 1, 2]
    assert r.bins[5].hit_rate == 0.5 and r.bins[5].mean_confidence == pytest.approx(0.55)
    assert r.bins[9].hit_rate == 1.0
    # |conf - hit rate| weighted: (.05 + 2*.15 + .25 + .35 + .45 + 2*.05 + .25 + .15 + 2*.05) / 12
    assert r.ece == pytest.approx(2.0 / 12)


def test_each_episode_and_alert_matches_once_with_a_maximum_matching():
    truth = _truth([
        ("a", "T", "withdrawal", False, "B", NO, 100 * S, 100 * S, "{}"),
        ("b", "T", "withdrawal", False, "B", NO, 108 * S, 108 * S, "{}"),
    ])
    # the first alert is as near to a as to b; nearest-first alone would leave the second unmatched
    alerts = _alerts([("T", "withdrawal", 1, NO, 104 * S, 0.5), ("T", "withdrawal", 1, NO, 96 * S, 0.5)])
    r = score(truth, alerts)
    assert r.kind("withdrawal").hits == 2 and r.matched == [(0, 1), (1, 0)]
    assert sorted(r.kind("withdrawal").latencies_ns) == [-4 * S, -4 * S]
    other = _alerts([("U", "withdrawal", 1, NO, 100 * S, 0.5)])
    assert score(truth, other).kind("withdrawal").hits == 0, "another instrument never matches"


def test_cli_prints_the_scores(tmp_path, capsys):
    pq.write_table(TRUTH, tmp_path / "episodes.parquet")
    (tmp_path / "sig").mkdir()
    pq.write_table(ALERTS.slice(0, 6), tmp_path / "sig" / "a.parquet")
    pq.write_table(ALERTS.slice(6), tmp_path / "sig" / "b.parquet")
    code = main(["signals", "score", "--truth", str(tmp_path / "episodes.parquet"),
                 "--signals", str(tmp_path / "sig"), "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    whale = next(k for k in out["kinds"] if k["kind"] == "whale")
    assert (whale["hits"], whale["alerts"], whale["precision"]) == (2, 5, 0.4)
    assert out["ece"] == pytest.approx(2.0 / 12)
    assert main(["signals", "score", "--truth", str(tmp_path / "episodes.parquet"),
                 "--signals", str(tmp_path / "sig"), "--kinds", "withdrawal"]) == 0
    text = capsys.readouterr().out
    assert "withdrawal" in text and "whale" not in text and "ECE" in text


def test_bad_inputs_are_clear_errors(tmp_path, capsys):
    pq.write_table(TRUTH.drop(["side"]), tmp_path / "truth.parquet")
    pq.write_table(ALERTS, tmp_path / "s.parquet")
    assert main(["signals", "score", "--truth", str(tmp_path / "truth.parquet"),
                 "--signals", str(tmp_path / "s.parquet")]) == 2
    assert "lacks columns ['side']" in capsys.readouterr().err
    assert main(["signals", "score", "--truth", str(tmp_path / "nope.parquet"),
                 "--signals", str(tmp_path / "s.parquet")]) == 2
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(InputError, match="cannot read"):
        from tapeflow.signals.score import read_signals
        read_signals(tmp_path / "junk.parquet")


def test_calibration_z_says_whether_an_ece_is_sampling_noise():
    from tapeflow.signals.score import CalibrationBin, ScoreReport

    # ten alerts at 0.9 of which five hit: 4 hits short of the 9 expected, sd sqrt(10 * .9 * .1)
    over = ScoreReport([], [CalibrationBin(0.9, 1.0, 10, 0.9, 0.5)], 0.4, [])
    assert over.calibration_z == pytest.approx(-4 / math.sqrt(0.9))
    # the same ECE-sized gap on two alerts is noise: 1 hit of 2 at 0.9 is 0.8 / 0.42 = -1.9 sigma
    few = ScoreReport([], [CalibrationBin(0.9, 1.0, 2, 0.9, 0.5)], 0.4, [])
    assert few.calibration_z == pytest.approx(-0.8 / math.sqrt(0.18))
    assert math.isnan(ScoreReport([], [], math.nan, []).calibration_z)
    # a certain confidence that misses is infinitely far off
    assert ScoreReport([], [CalibrationBin(0.9, 1.0, 4, 1.0, 0.75)], 0.25, []).calibration_z == -math.inf


def test_calibration_p_is_the_exact_tail_of_the_hits():
    from tapeflow.signals.score import CalibrationBin, ScoreReport

    def tail(n, p, k):  # P(X <= k), X ~ Binomial(n, p), summed by hand
        return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))

    # ten alerts at 0.9, five hits: -4.2 sigma, P 0.0033 exactly (the lower tail, doubled)
    over = ScoreReport([], [CalibrationBin(0.9, 1.0, 10, 0.9, 0.5)], 0.4, [])
    assert over.calibration_p == pytest.approx(2 * tail(10, 0.9, 5), rel=1e-9)
    assert 0.003 < over.calibration_p < 0.004
    # 4 misses of 24 alerts at 0.963: 3.37 sigma by the normal approximation, P 0.022 exactly
    # (a cross-strike seed had 4 of 26): noise, not a miscalibration
    near_one = ScoreReport([], [CalibrationBin(0.9, 1.0, 24, 0.963, 20 / 24)], 0.13, [])
    assert near_one.calibration_z < -3.29
    assert near_one.calibration_p == pytest.approx(2 * tail(24, 0.963, 20), rel=1e-9)
    assert near_one.calibration_p > 0.02
    # two bins: the hits' distribution is the convolution of the two binomials
    two = ScoreReport([], [CalibrationBin(0.2, 0.3, 2, 0.25, 0.0), CalibrationBin(0.8, 0.9, 2, 0.85, 0.5)],
                      0.3, [])
    pmf_a = [0.75**2, 2 * 0.25 * 0.75, 0.25**2]
    pmf_b = [0.15**2, 2 * 0.85 * 0.15, 0.85**2]
    dist = [sum(pmf_a[i] * pmf_b[k - i] for i in range(3) if 0 <= k - i <= 2) for k in range(5)]
    assert two.calibration_p == pytest.approx(min(1.0, 2 * min(sum(dist[:2]), sum(dist[1:]))), rel=1e-9)
    # a certain confidence that misses is impossible; all hits at 0.9 is likely
    assert ScoreReport([], [CalibrationBin(0.9, 1.0, 4, 1.0, 0.75)], 0.25, []).calibration_p == 0.0
    assert ScoreReport([], [CalibrationBin(0.9, 1.0, 4, 0.9, 1.0)], 0.1, []).calibration_p == 1.0
    assert math.isnan(ScoreReport([], [], math.nan, []).calibration_p)


def test_whale_latency_is_measured_from_the_planted_decisive_moment():
    # the simulator's episodes table carries decisive_ns: a whale parent's is the child at which
    # its volume reaches 50x the median trade, not its first child (docs/simulator.md)
    truth = TRUTH.append_column("decisive_ns", pa.array([130 * S, 1000 * S, -1, 3000 * S, 4000 * S,
                                                         5000 * S, 6000 * S], pa.int64()))
    assert sorted(score(truth, ALERTS).kind("whale").latencies_ns) == [S // 2, 40 * S]
    # other kinds keep their rules (spoofing from its fill, iceberg from its start)
    assert score(truth, ALERTS).kind("iceberg").latencies_ns == [34 * S]

